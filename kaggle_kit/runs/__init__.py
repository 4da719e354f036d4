"""The run folder and what it shows: file names, manifest, plots."""
