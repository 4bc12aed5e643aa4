"""Notebench notebook execution service (jobs, schedules, endpoints). Built in a later issue."""
