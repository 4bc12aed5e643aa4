"""GET /services/executor/api/endpoints/{name}/logs: the last lines of each scoring server's log.

Locally against the session's real hub, executor and scoring servers (a real registered model,
tests/support/registry.py); on Kubernetes up to the API call, with kubernetes_asyncio's client
sending through the recorder of tests/unit/test_executor_kubernetes.py.
"""

import asyncio
import json
import os
from pathlib import Path

import pytest

from tests.support.endpoints import RUN, deploy, owner_and_other, scoring_servers, wait_status
from tests.unit.test_executor_kubernetes import DEADLINE, HANDLE, PODS, endpoint_backend, kube_api

pytestmark = pytest.mark.slow

MAX_LOG_BYTES = 64 * 1024  # c.Endpoints.max_log_bytes' default


@pytest.fixture(scope="module")
def people(hub):
    return owner_and_other(hub, "mp-logs")


@pytest.fixture(scope="module")
def served(hub, people, model):
    """An endpoint of the owner serving versions 1 and 2; deleted at the end."""
    name = f"mp-logs-{RUN}"
    deploy(hub, people["owner_token"], name, [
        {"model": model["name"], "version": "1", "weight": 50},
        {"model": model["name"], "version": "2", "weight": 50},
    ])
    wait_status(hub, name, people["owner_token"])
    yield name
    hub.executor("DELETE", f"endpoints/{name}")


def logs(hub, name, token, **query):
    return hub.executor("GET", f"endpoints/{name}/logs", token, params=query)


def test_owner_and_admin_read_each_versions_log_others_do_not(hub, people, model, served):
    for token in (people["owner_token"], hub.admin_token):
        r = logs(hub, served, token)
        assert r.status_code == 200, r.text
        versions = r.json()["versions"]
        assert [(v["model"], v["version"], v["status"]) for v in versions] == [(model["name"], "1", "ready"),
                                                                               (model["name"], "2", "ready")]
        for version in versions:  # uvicorn's own start-up lines, written by the scoring server
            assert "Application startup complete" in version["log"], version["log"]
    anonymous = logs(hub, served, "")
    assert anonymous.status_code == 401
    other = logs(hub, served, people["other_token"])
    assert other.status_code == 404 and other.json()["status"] == 404
    # The same answer as for an endpoint that does not exist.
    missing = logs(hub, f"mp-none-{RUN}", people["owner_token"])
    assert missing.status_code == 404 and missing.json()["message"] == other.json()["message"].replace(served, f"mp-none-{RUN}")


@pytest.mark.parametrize("lines", ["0", "-1", "1001", "abc", "1e3", "99999999999", "٣", "5x", ""])
def test_a_bad_lines_parameter_is_a_400_naming_it(hub, people, served, lines):
    r = logs(hub, served, people["owner_token"], lines=lines)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "lines"


def test_an_unknown_query_parameter_is_a_400_naming_it(hub, people, served):
    r = logs(hub, served, people["owner_token"], follow="1")
    assert r.status_code == 400 and r.json()["field"] == "follow"


def log_file(hub, name, version) -> Path:
    server = next(s for s in scoring_servers(hub, name) if s["version"] == version and not s["retired"])
    return Path(server["handle"]["dir"]) / "server.log"


@pytest.mark.skipif(os.geteuid() != 0, reason="writes into the owner's scoring server directory as root")
def test_what_the_model_writes_comes_back_as_bounded_text(hub, people, served):
    path = log_file(hub, served, "1")
    # What the model's code may print: markup, bytes that are not UTF-8, a very long line.
    with open(path, "ab") as f:
        f.write(b"<script>alert(1)</script>\n\xff\xfe not utf-8\n" + b"x" * (3 * MAX_LOG_BYTES) + b"\nlast line\n")
    r = logs(hub, served, people["owner_token"], lines="3")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    log = r.json()["versions"][0]["log"]
    assert log.endswith("last line") and len(log.encode()) <= MAX_LOG_BYTES
    assert len(log.splitlines()) <= 3
    r = logs(hub, served, people["owner_token"], lines="1")
    assert r.json()["versions"][0]["log"] == "last line"
    # Lines before the long one are beyond the byte bound: the markup is not there, and would
    # only ever be JSON text.
    assert "<script>" not in r.text


@pytest.mark.skipif(os.geteuid() != 0, reason="replaces a file in the owner's scoring server directory as root")
def test_a_log_that_is_a_link_is_not_followed(hub, people, served):
    path = log_file(hub, served, "2")
    secret = path.parent.parent / f"root-only-{RUN}"
    secret.write_text("root's secret\n")
    os.chmod(secret, 0o600)
    try:
        path.unlink()
        path.symlink_to(secret)  # as the owner could, in their own directory
        r = logs(hub, served, people["owner_token"])
        assert r.status_code == 200
        assert r.json()["versions"][1]["log"] == "" and "secret" not in r.text
    finally:
        secret.unlink()


# --- Kubernetes: the pod's log through the API ----------------------------------------------------


def test_on_kubernetes_the_newest_pods_log_is_read_with_a_tail_and_byte_limit():
    async def scenario():
        api, recorder = await kube_api()
        backend = endpoint_backend(api)
        pods = [{"metadata": {"name": "nbrel-model-12-new", "creationTimestamp": "2030-01-01T10:05:00Z"}},
                {"metadata": {"name": "nbrel-model-12-old", "creationTimestamp": "2030-01-01T10:00:00Z"}}]
        recorder.answer("GET", PODS, body={"items": pods})
        long_log = b"<b>markup</b>\n\xff\n" + b"y" * 5000
        recorder.answer("GET", f"{PODS}/nbrel-model-12-new/log", raw=long_log)
        text = await asyncio.wait_for(backend.logs(HANDLE, lines=50, max_bytes=1000), DEADLINE)
        assert text == long_log[:1000].decode("utf-8", "replace")  # cut here too, whatever the API sends
        assert recorder.made("GET", "/pods")[0].query == {
            "labelSelector": "app.kubernetes.io/instance=nbrel,notebench.io/server-id=12"}
        [log_call] = recorder.made("GET", "/log")
        assert log_call.path.endswith("/nbrel-model-12-new/log")
        assert log_call.query == {"container": "model-server", "tailLines": "50", "previous": "false", "limitBytes": "1000"}
        assert not recorder.unexpected

        # No pod (yet): no log, and no log call.
        recorder.canned[("GET", PODS, "")].clear()
        recorder.answer("GET", PODS, body={"items": []})
        assert await backend.logs(HANDLE, lines=50, max_bytes=1000) == ""
        assert len(recorder.made("GET", "/log")) == 1

        # The API refusing the log (the pod is gone meanwhile): no log, no error.
        recorder.canned[("GET", PODS, "")].clear()
        recorder.answer("GET", PODS, body={"items": pods[:1]})
        recorder.canned[("GET", f"{PODS}/nbrel-model-12-new/log", "")].clear()
        recorder.answer("GET", f"{PODS}/nbrel-model-12-new/log", 404, {"reason": "NotFound"})
        assert await backend.logs(HANDLE, lines=50, max_bytes=1000) == ""

    asyncio.run(scenario())


def test_the_openapi_description_has_the_logs_route():
    from notebench.executor.api.openapi import spec

    path = spec()["paths"]["/endpoints/{name}/logs"]["get"]
    assert {p["name"] for p in path["parameters"]} == {"name", "lines"}
    assert path["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/EndpointLogs"}
    assert json.dumps(spec()).count("VersionLog") >= 2
