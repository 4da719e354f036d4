"""K-fold training: one fold's loop, the run of all folds, and the tricks inside (FGM, AWP, EMA, frozen backbone)."""
