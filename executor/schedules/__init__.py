"""Schedules: job templates submitted on a cron timetable (their API: api/schedules.py)."""
