"""`python -m kaggle_kit ...` is `kit ...` (what torchrun launches: `torchrun ... -m kaggle_kit train ell`)."""

from kaggle_kit.cli import main

main()
