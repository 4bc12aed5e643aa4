"""The code that runs as the user: the job runner and its papermill engine, a Kubernetes job pod's runner, the Dask scheduler warm-up, the scoring host, and the job's report protocol (events.py)."""
