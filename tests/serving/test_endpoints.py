"""Model endpoints: the endpoints API, the router (/services/executor/endpoints/<name>/invocations)
and the local scoring servers, against the session's real hub, MLflow and executor.

Models are real: a tiny scikit-learn model is trained, logged and registered (tests/support/registry.py: versions
1 "champion", 2, and 3 that cannot load) in the hub's MLflow as the owner.
"""

import concurrent.futures
import importlib.metadata
import json
import os
import signal
import threading
import time

import psutil
import pytest
import requests

from tests.support.endpoints import (
    RUN,
    delete_endpoints,
    deploy,
    invoke,
    owner_and_other,
    pid_of,
    scoring_servers,
    versions_answering,
    wait_status,
)
from tests.support.launcher import wait_for

pytestmark = pytest.mark.slow

INVOKE_SCOPE = "custom:notebench-endpoints:invoke"


@pytest.fixture(scope="module")
def people(hub):
    return owner_and_other(hub, "ep")


@pytest.fixture(scope="module", autouse=True)
def cleanup(hub):
    yield
    delete_endpoints(hub)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture(scope="module")
def main(hub, people, model):
    """An endpoint of the owner: champion (version 1) at 80 %, version 2 at 20 %."""
    name = f"main-{RUN}"
    created = deploy(hub, people["owner_token"], name, [
        {"model": model["name"], "version": "champion", "weight": 80},
        {"model": model["name"], "version": "2", "weight": 20},
    ])
    assert created["status"] == "starting"
    assert created["invocation_url"] == f"/services/executor/endpoints/{name}/invocations"
    wait_status(hub, name, people["owner_token"])
    return name


def test_deploy_resolves_the_alias_and_serves(hub, people, model, main):
    endpoint = hub.executor("GET", f"endpoints/{main}", people["owner_token"]).json()
    assert endpoint["owner"] == people["owner"] and endpoint["status"] == "ready" and endpoint["reason"] is None
    assert [(v["model"], v["version"], v["alias"], v["weight"], v["status"]) for v in endpoint["versions"]] == [
        (model["name"], "1", "champion", 80, "ready"),
        (model["name"], "2", None, 20, "ready"),
    ]
    r = invoke(hub, main, people["owner_token"], model["input"])
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 3
    assert r.headers["X-Notebench-Model-Version"] in (f"{model['name']}/1", f"{model['name']}/2")
    # Each version is its own process, as the owner's OS account when Notebench runs as root.
    servers = scoring_servers(hub, main)
    assert len(servers) == 2 and all(alive(s["handle"]["pid"]) for s in servers)
    if os.geteuid() == 0:
        for server in servers:
            assert psutil.Process(server["handle"]["pid"]).username() == f"nb-{people['owner']}"


def scoring_hosts_of(user: str) -> list:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "notebench.executor.runtime.scoring_host" in " ".join(p.info["cmdline"] or []) and (
                p.username() == f"nb-{user}" or p.environ().get("HOME", "").endswith(f"/{user}")
            ):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_listing_endpoints_prepares_the_users_first_deploy(hub):
    user = f"ep-warm-{RUN}"
    token = hub.new_user(user)
    assert not scoring_hosts_of(user)
    assert hub.executor("GET", "endpoints", token).json() == {"endpoints": []}
    wait_for(lambda: scoring_hosts_of(user), 60, message=f"a warm scoring process of {user}")
    hub.executor("GET", "endpoints", token)  # the panel polls: still one process, not one per listing
    assert len(scoring_hosts_of(user)) == 1


def test_ownership_matrix(hub, people, model, main):
    owner, other, admin = people["owner_token"], people["other_token"], hub.admin_token
    body = {"versions": [{"model": model["name"], "version": "champion", "weight": 80},
                         {"model": model["name"], "version": "2", "weight": 20}]}
    reads = [("GET", f"endpoints/{main}"), ("GET", f"endpoints/{main}/metrics"), ("GET", f"endpoints/{main}/requests")]
    for method, path in reads + [("PATCH", f"endpoints/{main}"), ("DELETE", f"endpoints/{main}"), ("GET", "endpoints"),
                                 ("POST", "endpoints")]:
        r = hub.executor(method, path, "", json=body if method in ("PATCH", "POST") else None)
        assert r.status_code == 401, (method, path, r.text)
        if path != "endpoints":  # others' endpoints do not exist for them
            r = hub.executor(method, path, other, json=body if method == "PATCH" else None)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["status"] == 404
    for method, path in reads:
        assert hub.executor(method, path, owner).status_code == 200, path
        assert hub.executor(method, path, admin).status_code == 200, path
    assert main not in [e["name"] for e in hub.executor("GET", "endpoints", other).json()["endpoints"]]
    assert main in [e["name"] for e in hub.executor("GET", "endpoints", owner).json()["endpoints"]]
    assert main in [e["name"] for e in hub.executor("GET", "endpoints", admin).json()["endpoints"]]
    # Invocations: anonymous 401, another user 404, the owner and an admin 200.
    assert invoke(hub, main, None, model["input"]).status_code == 401
    assert invoke(hub, main, "not-a-token", model["input"]).status_code == 401
    assert invoke(hub, main, other, model["input"]).status_code == 404
    assert invoke(hub, main, owner, model["input"]).status_code == 200
    assert invoke(hub, main, admin, model["input"]).status_code == 200
    # An admin may change others' endpoints (same versions: nothing to start).
    r = hub.executor("PATCH", f"endpoints/{main}", admin, json=body)
    assert r.status_code == 200, r.text
    wait_status(hub, main, owner)


def test_an_invoke_only_token_invokes_and_does_nothing_else(hub, people, model, main):
    owner = people["owner"]
    r = hub.api("POST", f"/users/{owner}/tokens", people["owner_token"], json={"scopes": [f"{INVOKE_SCOPE}!user"], "note": "invoke"})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert invoke(hub, main, token, model["input"]).status_code == 200
    assert hub.executor("GET", "jobs", token).status_code == 403
    assert hub.executor("GET", "endpoints", token).status_code == 403
    assert hub.api("POST", f"/users/{owner}/server", token).status_code == 403  # cannot start (or reach) the server
    r = requests.get(f"{hub.url}/services/mlflow/api/2.0/mlflow/experiments/search?max_results=1",
                     headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert r.status_code in (401, 403), r.text  # nor MLflow
    assert hub.api("POST", f"/users/{owner}/tokens", token, json={}).status_code == 403  # nor make itself a better token
    # Someone else's invoke-only token cannot invoke the owner's endpoint.
    r = hub.api("POST", f"/users/{people['other']}/tokens", people["other_token"], json={"scopes": [f"{INVOKE_SCOPE}!user"]})
    assert invoke(hub, main, r.json()["token"], model["input"]).status_code == 404
    # A token of the owner's without the scope cannot invoke.
    r = hub.api("POST", f"/users/{owner}/tokens", people["owner_token"], json={"scopes": ["access:services"]})
    assert invoke(hub, main, r.json()["token"], model["input"]).status_code == 403


@pytest.mark.parametrize(
    "change, field",
    [
        ({"name": "Bad_Name"}, "name"),
        ({"name": "-dash"}, "name"),
        ({"versions": []}, "versions"),
        ({"versions": [{"model": "M", "version": "1", "weight": 90}]}, "versions"),
        ({"versions": [{"model": "M", "version": "1", "weight": 101}]}, "versions.0.weight"),
        ({"versions": [{"model": "no-such-model", "version": "1", "weight": 100}]}, "versions.0.model"),
        ({"versions": [{"model": "M", "version": "99", "weight": 100}]}, "versions.0.version"),
        ({"versions": [{"model": "M", "version": "no-such-alias", "weight": 100}]}, "versions.0.version"),
        ({"versions": [{"model": "M", "version": "999999999999999999999", "weight": 100}]}, "versions.0.version"),
        ({"versions": [{"model": "M", "version": "2147483648", "weight": 100}]}, "versions.0.version"),
        ({"versions": [{"model": "M", "version": "0", "weight": 100}]}, "versions.0.version"),
        ({"versions": [{"model": "M", "version": "champion", "weight": 50}, {"model": "M", "version": "1", "weight": 50}]},
         "versions.1.version"),
        ({"profile": "no-such-profile"}, "profile"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_input_names_the_field(hub, people, model, change, field):
    body = {"name": f"bad-{RUN}", "versions": [{"model": model["name"], "version": "1", "weight": 100}], **change}
    body["versions"] = [{**v, "model": model["name"] if v["model"] == "M" else v["model"]} for v in body["versions"]]
    r = hub.executor("POST", "endpoints", people["owner_token"], json=body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field, r.text
    assert hub.executor("GET", f"endpoints/bad-{RUN}", people["owner_token"]).status_code == 404


def test_other_bad_requests(hub, people, model, main):
    owner = people["owner_token"]
    # Names are unique across users.
    r = hub.executor("POST", "endpoints", people["other_token"],
                     json={"name": main, "versions": [{"model": model["name"], "version": "1", "weight": 100}]})
    assert r.status_code in (400, 409), r.text  # the other user may not read the owner's model, or the name is taken
    r = hub.executor("POST", "endpoints", owner, json={"name": main, "versions": [{"model": model["name"], "version": "1", "weight": 100}]})
    assert r.status_code == 409 and r.json()["field"] == "name"
    # Another user cannot deploy the owner's model by name, unless they may read it (MLflow decides).
    r = hub.executor("PATCH", f"endpoints/{main}", owner, json={"versions": [{"model": model["name"], "version": "1", "weight": 50}]})
    assert r.status_code == 400 and r.json()["field"] == "versions"
    # Invocations with input the model cannot score: 400 from the scoring server, naming the version.
    r = invoke(hub, main, owner, {"dataframe_split": {"columns": ["x"], "data": [["not a number"]]}})
    assert r.status_code == 400 and r.json()["field"] == "body"
    assert r.headers["X-Notebench-Model-Version"].startswith(model["name"] + "/")
    r = requests.post(f"{hub.url}/services/executor/endpoints/{main}/invocations", data=b"{not json",
                      headers={"Authorization": f"token {owner}", "Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 400
    assert invoke(hub, f"nothing-{RUN}", owner, model["input"]).status_code == 404


MLFLOW_ERROR_CODES = {"BAD_REQUEST", "INVALID_PARAMETER_VALUE"}


def test_router_errors_keep_mlflows_error_code(hub, people, model, main):
    owner = people["owner_token"]
    # The scoring server's own error: its status, message and MLflow error_code are kept.
    r = invoke(hub, main, owner, {"dataframe_split": {"columns": ["x"], "data": [["not a number"]]}})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["field"] == "body" and body["message"] and body["error_code"] in MLFLOW_ERROR_CODES, body
    # The router's own refusals carry MLflow's code for their status too.
    for token, status, code in [(None, 401, "UNAUTHENTICATED"), (people["other_token"], 404, "ENDPOINT_NOT_FOUND")]:
        r = invoke(hub, main, token, model["input"])
        assert r.status_code == status and r.json()["error_code"] == code, r.text
    r = hub.api("POST", f"/users/{people['owner']}/tokens", owner, json={"scopes": ["access:services"]})
    r = invoke(hub, main, r.json()["token"], model["input"])
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", r.text


def invocation_url(hub, name: str) -> str:
    return f"{hub.url}/services/executor/endpoints/{name}/invocations"


def test_an_invocation_without_content_type_is_a_json_415(hub, people, model, main):
    auth = {"Authorization": f"token {people['owner_token']}"}
    data = json.dumps(model["input"]).encode()  # bytes: requests sends no Content-Type
    r = requests.post(invocation_url(hub, main), data=data, headers=auth, timeout=60)
    assert r.status_code == 415, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["field"] == "Content-Type" and r.json()["error_code"] == "BAD_REQUEST", r.text
    # One the scoring server does not take: its 415 (plain text) as the same JSON body.
    r = requests.post(invocation_url(hub, main), data=data, headers={**auth, "Content-Type": "text/plain"}, timeout=60)
    assert r.status_code == 415 and r.json()["field"] == "Content-Type" and "text/plain" in r.json()["message"], r.text
    r = requests.post(invocation_url(hub, main), data=data, headers={**auth, "Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["api/jobs", "api/endpoints", "endpoints/{main}/invocations", "chunked endpoints/{main}/invocations"])
def test_a_200_mb_body_is_a_json_413_on_every_api(hub, people, main, path):
    """Read and dropped, then refused with the JSON 413 (c.Executor.max_body_bytes, 16 MiB), not
    the proxy's 503 page; the connection through the proxy is still good afterwards."""
    chunked = path.startswith("chunked ")
    url = f"{hub.url}/services/executor/{path.removeprefix('chunked ').format(main=main)}"
    payload = b'{"notebook": "' + b"x" * (200 * 1024 * 1024) + b'"}'
    step = 1 << 20
    data = (payload[i : i + step] for i in range(0, len(payload), step)) if chunked else payload
    headers = {"Authorization": f"token {people['owner_token']}", "Content-Type": "application/json"}
    with requests.Session() as session:
        r = session.post(url, data=data, headers=headers, timeout=120)
        assert r.status_code == 413, r.text[:500]
        assert r.headers["Content-Type"].startswith("application/json")
        body = r.json()
        assert body["status"] == 413 and body["field"] == "body" and str(16 * 1024 * 1024) in body["message"], body
        assert session.get(f"{hub.url}/services/executor/api/endpoints", headers=headers, timeout=60).status_code == 200


SCORING_INFO = ["ping", "health", "version"]


@pytest.mark.parametrize("what", SCORING_INFO)
def test_ping_health_and_version_per_endpoint(hub, people, model, main, what):
    """MLflow's scoring server paths, per endpoint, with the invocations' authorization."""
    url = f"{hub.url}/services/executor/endpoints/{main}/{what}"
    invoke_only = hub.api("POST", f"/users/{people['owner']}/tokens", people["owner_token"],
                          json={"scopes": [f"{INVOKE_SCOPE}!user"]}).json()["token"]
    no_scope = hub.api("POST", f"/users/{people['owner']}/tokens", people["owner_token"],
                       json={"scopes": ["access:services"]}).json()["token"]
    for who, token, status in [("anonymous", None, 401), ("other", people["other_token"], 404),
                               ("owner, without the invoke scope", no_scope, 403), ("owner", people["owner_token"], 200),
                               ("owner, invoke-only token", invoke_only, 200), ("admin", hub.admin_token, 200)]:
        r = requests.get(url, headers={"Authorization": f"token {token}"} if token else {}, timeout=60)
        assert r.status_code == status, (who, r.text)
        if status == 200:
            assert r.headers["X-Notebench-Model-Version"] in (f"{model['name']}/1", f"{model['name']}/2")
            assert r.text == (importlib.metadata.version("mlflow") if what == "version" else "\n")
        else:
            assert r.json()["status"] == status and r.json()["error_code"], (who, r.text)
    assert requests.get(f"{hub.url}/services/executor/endpoints/nothing-{RUN}/{what}",
                        headers={"Authorization": f"token {people['owner_token']}"}, timeout=60).status_code == 404


def test_ping_is_503_while_no_version_serves(hub, people, model):
    owner = people["owner_token"]
    name = f"broken-{RUN}"
    deploy(hub, owner, name, [{"model": model["name"], "version": "3", "weight": 100}])  # cannot load
    wait_status(hub, name, owner, status="failed")
    for what in ("ping", "health"):
        r = requests.get(f"{hub.url}/services/executor/endpoints/{name}/{what}", headers={"Authorization": f"token {owner}"}, timeout=60)
        assert r.status_code == 503 and r.json()["error_code"] == "TEMPORARILY_UNAVAILABLE", r.text
    assert invoke(hub, name, owner, model["input"]).status_code == 503
    assert hub.executor("DELETE", f"endpoints/{name}", owner).status_code == 204


def test_a_revoked_token_stops_working_within_60_seconds(hub, people, model, main):
    """HubAuth caches the hub's answer about a token (JupyterHub's default: 5 minutes): a revoked
    token must stop working within Notebench's bound (60 s) on the executor API, on invocations,
    on MLflow and on the user's own JupyterLab server."""
    owner = people["owner"]
    hub.spawn(owner)
    r = hub.api("POST", f"/users/{owner}/tokens", people["owner_token"], json={"note": "to revoke"})
    assert r.status_code == 201, r.text
    token, token_id = r.json()["token"], r.json()["id"]
    headers = {"Authorization": f"token {token}"}
    paths = {
        "executor API": lambda: hub.executor("GET", "endpoints", token),
        "invocation": lambda: invoke(hub, main, token, model["input"]),
        "MLflow": lambda: requests.get(f"{hub.url}/services/mlflow/api/2.0/mlflow/experiments/search?max_results=1",
                                       headers=headers, timeout=60),
        "JupyterLab server": lambda: requests.get(f"{hub.url}/user/{owner}/api/status", headers=headers,
                                                  allow_redirects=False, timeout=60),
    }
    for name, call in paths.items():  # it works (and each service has the hub's answer cached)
        assert call().status_code == 200, name
    assert hub.api("DELETE", f"/users/{owner}/tokens/{token_id}", people["owner_token"]).status_code == 204
    revoked = time.monotonic()
    refused = {}

    def all_refused():
        for name, call in paths.items():
            if name not in refused and call().status_code in (401, 403):
                refused[name] = time.monotonic() - revoked
        return len(refused) == len(paths)

    # Cached just before revoking: refused after at most 60 s. The deadline leaves room for a
    # loaded machine and still tells 60 s from JupyterHub's 300.
    try:
        wait_for(all_refused, 120, interval=1, message="the revoked token refused on every path")
    except TimeoutError:
        pytest.fail(f"120 s after revoking, the token was refused only on {refused}")
    finally:
        hub.stop_server(owner)
    print("revoked token refused after (s):", {name: round(t, 1) for name, t in refused.items()})


def test_traffic_split_within_3_points_over_10000_requests(hub, people, model, main):
    counts = {}
    lock = threading.Lock()

    def batch(n):
        seen = {}
        with requests.Session() as session:
            for _ in range(n):
                r = invoke(hub, main, people["owner_token"], model["input"], session)
                assert r.status_code == 200, r.text
                version = r.headers["X-Notebench-Model-Version"]
                seen[version] = seen.get(version, 0) + 1
        with lock:
            for k, v in seen.items():
                counts[k] = counts.get(k, 0) + v

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(batch, [2500] * 4))
    assert sum(counts.values()) == 10_000
    share = counts.get(f"{model['name']}/1", 0) / 100
    assert abs(share - 80) <= 3, counts


def test_metrics_and_the_sample_of_requests(hub, people, model, main):
    owner = people["owner_token"]
    r = invoke(hub, main, owner, model["input"])
    assert r.status_code == 200
    metrics = hub.executor("GET", f"endpoints/{main}/metrics", owner).json()
    by_version = {v["version"]: v for v in metrics["versions"]}
    assert set(by_version) >= {"1", "2"}
    for version in ("1", "2"):
        m = by_version[version]
        assert m["model"] == model["name"] and m["requests"] > 0
        assert 0 < m["latency_ms"]["p50"] <= m["latency_ms"]["p99"]
        assert m["series"] and sum(p["requests"] for p in m["series"]) <= m["requests"]
    r = hub.executor("GET", f"endpoints/{main}/requests", owner)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/x-ndjson")
    samples = [json.loads(line) for line in r.text.splitlines()]
    assert 0 < len(samples) <= 1000
    last = samples[-1]
    assert set(last) == {"time", "model", "version", "latency_ms", "status", "inputs", "outputs"}
    assert last["inputs"] == model["input"] and last["status"] == 200
    assert len(last["outputs"]["predictions"]) == 3


def test_rolling_update_fails_no_request(hub, people, model):
    owner = people["owner_token"]
    name = f"roll-{RUN}"
    deploy(hub, owner, name, [{"model": model["name"], "version": "1", "weight": 100}])
    wait_status(hub, name, owner)
    old_pid = scoring_servers(hub, name)[0]["handle"]["pid"]
    results, stop = [], threading.Event()

    def hammer():
        with requests.Session() as session:
            while not stop.is_set():
                r = invoke(hub, name, owner, model["input"], session)
                results.append((r.status_code, r.headers.get("X-Notebench-Model-Version")))

    clients = [threading.Thread(target=hammer) for _ in range(3)]
    for c in clients:
        c.start()
    try:
        wait_for(lambda: len(results) > 50, 60, message="traffic before the update")
        r = hub.executor("PATCH", f"endpoints/{name}", owner, json={"versions": [{"model": model["name"], "version": "2", "weight": 100}]})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "updating"
        wait_status(hub, name, owner)
        wait_for(lambda: not alive(old_pid), 60, message="the replaced server stopped")
        served = len(results)
        wait_for(lambda: len(results) > served + 50, 60, message="traffic after the update")
    finally:
        stop.set()
        for c in clients:
            c.join()
    failed = [r for r in results if r[0] != 200]
    assert not failed, failed[:5]
    versions = [v for _, v in results]
    assert versions[0] == f"{model['name']}/1" and versions[-1] == f"{model['name']}/2"
    switch = versions.index(f"{model['name']}/2")
    assert set(versions[switch + 10:]) == {f"{model['name']}/2"}  # a few in flight finish on the old one
    endpoint = hub.executor("GET", f"endpoints/{name}", owner).json()
    assert [(v["version"], v["weight"]) for v in endpoint["versions"]] == [("2", 100)]


def test_a_failed_update_keeps_the_previous_versions(hub, people, model, main):
    owner = people["owner_token"]
    before = hub.executor("GET", f"endpoints/{main}", owner).json()["versions"]
    # Version 3 is registered but is no pyfunc model: its scoring server exits while loading.
    r = hub.executor("PATCH", f"endpoints/{main}", owner, json={"versions": [
        {"model": model["name"], "version": "1", "weight": 50}, {"model": model["name"], "version": "3", "weight": 50}]})
    assert r.status_code == 200, r.text
    endpoint = wait_status(hub, main, owner)
    assert endpoint["reason"].startswith("not applied, the versions before are kept: " + model["name"] + "/3 did not start")
    assert [(v["version"], v["alias"], v["weight"]) for v in endpoint["versions"]] == [
        (v["version"], v["alias"], v["weight"]) for v in before]
    assert f"{model['name']}/3" not in versions_answering(hub, main, owner, model["input"], 20)
    assert [s["version"] for s in scoring_servers(hub, main)] == ["1", "2"]


def test_a_scoring_server_that_dies_is_started_again(hub, people, model, main):
    owner = people["owner_token"]
    before = {s["version"]: s["handle"]["pid"] for s in scoring_servers(hub, main)}
    os.killpg(os.getpgid(before["2"]), signal.SIGKILL)
    # Meanwhile the other version answers what would have gone to the dead one.
    versions_answering(hub, main, owner, model["input"], 30)
    wait_for(lambda: pid_of(hub, main, "2") != before["2"], 120, message="version 2 started again")
    endpoint = wait_status(hub, main, owner)
    assert [v["status"] for v in endpoint["versions"]] == ["ready", "ready"], endpoint
    assert versions_answering(hub, main, owner, model["input"], 30) == {f"{model['name']}/1", f"{model['name']}/2"}


def executor_process(hub):
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "notebench.executor" in " ".join(p.info["cmdline"] or []) and "scoring_host" not in " ".join(
                p.info["cmdline"] or []
            ) and p.environ().get("NOTEBENCH_DATA_DIR") == str(hub.data_dir):
                return p
        except psutil.Error:
            continue
    return None


def test_endpoints_come_back_after_the_executor_is_killed(hub, people, model, main):
    owner = people["owner_token"]
    before = {s["version"]: s["handle"]["pid"] for s in scoring_servers(hub, main)}
    old = executor_process(hub)
    old.send_signal(signal.SIGKILL)
    # One scoring server dies too: it is started again; the other is adopted as it runs.
    os.killpg(os.getpgid(before["2"]), signal.SIGKILL)
    wait_for(lambda: (p := executor_process(hub)) and p.pid != old.pid, 120, message="executor restarted")
    wait_for(lambda: hub.executor("GET", "jobs", owner).status_code == 200, 120, message="executor answering")
    # The new executor serves at once, with the live server while version 2 is started again.
    assert f"{model['name']}/1" in versions_answering(hub, main, owner, model["input"], 10)
    wait_for(lambda: pid_of(hub, main, "2") != before["2"], 120, message="version 2 started again")
    endpoint = wait_status(hub, main, owner)
    assert [v["status"] for v in endpoint["versions"]] == ["ready", "ready"], endpoint
    after = {s["version"]: s["handle"]["pid"] for s in scoring_servers(hub, main)}
    assert after["1"] == before["1"]  # adopted
    assert after["2"] != before["2"] and alive(after["2"])  # restarted
    assert versions_answering(hub, main, owner, model["input"], 50) == {f"{model['name']}/1", f"{model['name']}/2"}


def test_delete_stops_everything(hub, people, model, main):
    owner = people["owner_token"]
    pids = [s["handle"]["pid"] for s in scoring_servers(hub, main)]
    r = hub.executor("DELETE", f"endpoints/{main}", people["other_token"])
    assert r.status_code == 404
    r = hub.executor("DELETE", f"endpoints/{main}", hub.admin_token)
    assert r.status_code == 204
    assert not any(alive(pid) for pid in pids)
    assert hub.executor("GET", f"endpoints/{main}", owner).status_code == 404
    assert invoke(hub, main, owner, model["input"]).status_code == 404
    assert scoring_servers(hub, main) == []
