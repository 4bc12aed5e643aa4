"""Jobs: the queue, limits, starting, watching and recovery (``dispatcher.py``); the API is api/jobs.py."""
