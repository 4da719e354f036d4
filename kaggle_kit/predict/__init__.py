"""Inference over run folders and ensembles of runs."""
