"""From run folders to a Kaggle submission: bundle, notebook, offline simulation, kaggle API client, submit."""
