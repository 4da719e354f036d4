"""What `kit runs`, `kit runs diff` and `kit report` show of run folders: above predict, whose blends a report
scores."""
