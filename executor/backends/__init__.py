"""How jobs and scoring servers run: ``base.py`` the interfaces, ``local/`` as local processes, ``kubernetes/`` on Kubernetes (as dask-gateway's backends)."""
