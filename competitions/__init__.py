"""Built-in competition plugins: one module per competition, each defining `COMPETITION`."""
