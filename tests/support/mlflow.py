"""The MLflow service at /services/mlflow/ of a running hub: its prefix, its REST API with a token."""

import time

import requests

PREFIX = "/services/mlflow/"
DEADLINE_S = 60


def wait_for(condition, timeout=DEADLINE_S, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def api(base, token, method, path, **kwargs):
    headers = kwargs.pop("headers", {})
    if token:
        headers.setdefault("Authorization", f"Bearer {token}")
    return requests.request(method, base + path, headers=headers, timeout=60, **kwargs)
