"""Backbones with pooling heads."""
