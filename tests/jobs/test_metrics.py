"""Prometheus metrics of the executor (/services/executor/metrics): names by Prometheus'
conventions, values that move with jobs and invocations, and read only with read:metrics."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.endpoints import deploy, invoke, wait_status
from tests.support.jobs import submit, unique
from tests.support.metrics import samples, scrape, value


@pytest.fixture(scope="module")
def people(hub):
    owner = unique("mx-own")
    return {"owner": owner, "owner_token": hub.new_user(owner)}


def scoped_admin_token(hub, *scopes: str) -> str:
    """A token of the admin that holds only these scopes (not admin itself)."""
    r = hub.api("POST", "/users/admin/tokens", json={"scopes": list(scopes), "note": "metrics test"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_names_follow_prometheus_conventions(hub):
    r = scrape(hub)
    families = list(text_string_to_metric_families(r.text))
    names = {f.name for f in families}
    assert {"notebench_jobs", "notebench_job_queue_length", "notebench_job_queue_wait_seconds",
            "notebench_job_duration_seconds", "notebench_gpu_leases", "notebench_endpoint_requests",
            "notebench_endpoint_errors", "notebench_endpoint_request_duration_seconds", "notebench_mlflow_up"} <= names
    for family in families:
        assert re.fullmatch(r"notebench_[a-z][a-z0-9_]*", family.name), family.name
        assert family.documentation, family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name  # base units
            if family.samples:  # a labelled one has none until its first observation
                assert {s.name[len(family.name):] for s in family.samples} >= {"_bucket", "_sum", "_count"}
        for s in family.samples:
            assert all(re.fullmatch(r"[a-z_][a-z0-9_]*", k) for k in s.labels), s


def test_values_move_with_jobs_and_invocations(hub, people, model):
    token = people["owner_token"]
    before = samples(hub)
    job = submit(hub, token, "print('counted')")
    assert hub.wait_job(job["id"], token)["status"] == "succeeded"
    endpoint = unique("mx-ep")
    deploy(hub, token, endpoint, [{"model": model["name"], "version": "1", "weight": 100}])
    wait_status(hub, endpoint, token)
    for _ in range(3):
        assert invoke(hub, endpoint, token, model["input"]).status_code == 200
    assert invoke(hub, endpoint, token, {"nonsense": True}).status_code >= 400
    after = samples(hub)
    hub.executor("DELETE", f"endpoints/{endpoint}", token)

    assert value(after, "notebench_jobs", status="succeeded") == value(before, "notebench_jobs", status="succeeded") + 1
    assert (value(after, "notebench_job_duration_seconds_count", status="succeeded")
            == value(before, "notebench_job_duration_seconds_count", status="succeeded") + 1)
    assert value(after, "notebench_job_queue_wait_seconds_count") == value(before, "notebench_job_queue_wait_seconds_count") + 1
    version = {"endpoint": endpoint, "model": model["name"], "version": "1"}
    assert value(after, "notebench_endpoint_requests_total", **version) == 4
    assert value(after, "notebench_endpoint_errors_total", **version) == 1
    assert value(after, "notebench_endpoint_request_duration_seconds_count", **version) == 4
    assert value(after, "notebench_endpoint_request_duration_seconds_sum", **version) > 0
    assert value(after, "notebench_mlflow_up") == 1


def test_only_tokens_with_read_metrics_read_them(hub, people):
    assert scrape(hub, "").status_code == 401
    r = scrape(hub, people["owner_token"])
    assert r.status_code == 403 and "read:metrics" in r.json()["message"], r.text
    assert scrape(hub, scoped_admin_token(hub, "access:services!service=executor")).status_code == 403
    assert scrape(hub, scoped_admin_token(hub, "read:metrics", "access:services!service=executor")).status_code == 200
    assert scrape(hub).status_code == 200  # an admin
