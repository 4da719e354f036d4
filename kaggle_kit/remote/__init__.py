"""`kit remote`: train on Kaggle's GPUs (upload, training notebook, push, status, pull) and bring the run home."""
