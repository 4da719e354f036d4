"""kaggle-kit: reproducible train -> bundle -> submit for Kaggle NLP code competitions."""

__version__ = "0.1.0"
