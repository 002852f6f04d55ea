"""Reporting: the run report (report.py, its HTML and plots), the dataset card and
metrics against a gold column."""
