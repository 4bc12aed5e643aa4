"""Notebench notebook execution service: jobs, schedules, model endpoints (``python -m notebench.executor``)."""
