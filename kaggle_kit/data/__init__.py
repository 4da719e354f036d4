"""Competition files in: reading and validating CSVs, fold assignment, tokenised batches."""
