"""Model endpoints through the executor's API on a running hub: deploy, wait for a status, invoke,
and find the scoring servers the executor recorded. Shared by serving/ and faults/test_chaos.py."""

from __future__ import annotations

import json
import sqlite3
import uuid

import requests

from tests.support.launcher import wait_for

RUN = uuid.uuid4().hex[:6]  # OS accounts outlive test runs: names are per run


def owner_and_other(hub, prefix: str) -> dict:
    """Two new users of this run and their tokens (a test module's ``people``): an owner and another user."""
    owner, other = f"{prefix}-owner-{RUN}", f"{prefix}-other-{RUN}"
    return {"owner": owner, "owner_token": hub.new_user(owner), "other": other, "other_token": hub.new_user(other)}


def versions_answering(hub, name, token, payload, n) -> set:
    """Invoke ``n`` times (all must succeed); the versions that answered."""
    seen = set()
    with requests.Session() as session:
        for _ in range(n):
            r = invoke(hub, name, token, payload, session)
            assert r.status_code == 200, r.text
            seen.add(r.headers["X-Notebench-Model-Version"])
    return seen


def invoke(hub, name, token, payload, session=None):
    headers = {"Authorization": f"token {token}"} if token else {}
    return (session or requests).post(
        f"{hub.url}/services/executor/endpoints/{name}/invocations", json=payload, headers=headers, timeout=60
    )


def wait_status(hub, name, token, status="ready", timeout=180):
    def reached():
        endpoint = hub.executor("GET", f"endpoints/{name}", token).json()
        return endpoint if endpoint["status"] in (status, "failed") else None

    endpoint = wait_for(reached, timeout, interval=0.05, message=f"endpoint {name} {status}")
    assert endpoint["status"] == status, endpoint
    return endpoint


def deploy(hub, token, name, versions, **extra):
    r = hub.executor("POST", "endpoints", token, json={"name": name, "versions": versions, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def scoring_servers(hub, name) -> list[dict]:
    """The executor's records of the endpoint's scoring servers (pid, socket) from its store."""
    with sqlite3.connect(hub.data_dir / "executor.sqlite") as db:
        rows = db.execute(
            "SELECT s.model, s.version, s.handle, s.retired FROM scoring_servers s JOIN endpoints e ON e.id = s.endpoint_id"
            " WHERE e.name = ?",
            (name,),
        ).fetchall()
    return [{"model": m, "version": v, "handle": json.loads(h) if h else None, "retired": r} for m, v, h, r in rows]


def pid_of(hub, name, version) -> int | None:
    return next((s["handle"] or {}).get("pid") for s in scoring_servers(hub, name) if s["version"] == version)


def delete_endpoints(hub, prefix: str = "") -> None:
    """Delete this run's endpoints whose names start with ``prefix`` (as the admin, who sees all)."""
    for endpoint in hub.executor("GET", "endpoints").json()["endpoints"]:
        if endpoint["name"].startswith(prefix) and RUN in endpoint["name"]:
            hub.executor("DELETE", f"endpoints/{endpoint['name']}")


def deploy_ready(hub, token, name, versions, **extra) -> dict:
    """Deploy and wait until the endpoint is ready; returns it."""
    deploy(hub, token, name, versions, **extra)
    return wait_status(hub, name, token)
