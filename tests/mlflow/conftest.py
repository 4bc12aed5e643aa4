"""The fixtures of the MLflow service's tests (test_mlflow_service.py, and test_mlflow_service_config.py
on a hub of its own): the service's URL once it is ready, and two users and the admin."""

import uuid

import pytest
import requests

from tests.support.mlflow import PREFIX, wait_for


@pytest.fixture(scope="module")
def base(hub):
    url = hub.url.rstrip("/") + PREFIX

    def ready():
        try:
            r = requests.get(url + "health", timeout=5)
        except requests.RequestException:
            return False
        return r.status_code == 200 and r.json()["mlflow"]["ready"]

    wait_for(ready, what="the MLflow service to be ready")
    return url


@pytest.fixture(scope="module")
def users(hub):
    suffix = uuid.uuid4().hex[:6]
    owner, other = f"owner-{suffix}", f"other-{suffix}"
    return {
        "owner": (owner, hub.new_user(owner)),
        "other": (other, hub.new_user(other)),
        "admin": ("admin", hub.admin_token),
    }
