"""The MLflow service at /services/mlflow/, through the hub's public proxy.

Uses the session fixture ``hub`` (tests/conftest.py): ``hub.url``, ``hub.admin_token``,
``hub.new_user(name) -> API token`` and, for the browser test, ``hub.admin_password`` (the hub
user ``admin`` logs in with it at /hub/login).
The last tests start a second, hub-less instance of the service to check start-up and shutdown.
"""

import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import requests

from tests.support.mlflow import PREFIX, api, wait_for


@contextlib.contextmanager
def mlflow_as(token, base):
    """An MlflowClient that talks to the service with ``token`` (as MLFLOW_TRACKING_TOKEN)."""
    from mlflow import MlflowClient

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_URI")}
    os.environ["MLFLOW_TRACKING_TOKEN"] = token
    os.environ["MLFLOW_TRACKING_URI"] = base.rstrip("/")
    try:
        yield MlflowClient(tracking_uri=base.rstrip("/"), registry_uri=base.rstrip("/"))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def owned(base, users, tmp_path_factory):
    """An experiment, a run with params/metrics/artifacts and a registered model of ``owner``."""
    _, token = users["owner"]
    suffix = uuid.uuid4().hex[:8]
    tmp = tmp_path_factory.mktemp("artifacts")
    blob = tmp / "blob.bin"
    blob.write_bytes(os.urandom(6 * 1024 * 1024 + 123))
    model_dir = tmp / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
    with mlflow_as(token, base) as client:
        exp_id = client.create_experiment(f"exp-{suffix}")
        run = client.create_run(exp_id, run_name="first")
        run_id = run.info.run_id
        client.log_param(run_id, "alpha", "0.5")
        client.log_metric(run_id, "loss", 0.25, step=1)
        client.log_metric(run_id, "loss", 0.125, step=2)
        client.log_artifact(run_id, str(blob), artifact_path="data")
        client.log_artifacts(run_id, str(model_dir), artifact_path="model")
        client.set_terminated(run_id)
        model_name = f"model-{suffix}"
        client.create_registered_model(model_name)
        version = client.create_model_version(
            model_name, source=f"runs:/{run_id}/model", run_id=run_id
        )
    return {
        "experiment_id": exp_id,
        "run_id": run_id,
        "model": model_name,
        "version": version.version,
        "blob_sha": hashlib.sha256(blob.read_bytes()).hexdigest(),
        "blob_size": blob.stat().st_size,
    }


# ---- anonymous access


def test_health_answers_anonymously(base):
    r = requests.get(base + "health", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["mlflow"]["ready"] is True


def test_anonymous_api_requests_get_401(base):
    r = requests.get(base + "api/2.0/mlflow/experiments/search?max_results=5", timeout=10)
    assert r.status_code == 401
    assert r.headers["Content-Type"].startswith("application/json")
    r = requests.post(base + "api/2.0/mlflow/experiments/create", json={"name": "x"}, timeout=10)
    assert r.status_code == 401
    # a token the hub does not know is no better than none
    r = api(base, "not-a-token", "GET", "api/2.0/mlflow/experiments/search?max_results=5")
    assert r.status_code == 401


def test_anonymous_browser_is_sent_to_hub_login(hub, base):
    r = requests.get(base, headers={"Accept": "text/html"}, allow_redirects=False, timeout=10)
    assert r.status_code == 302
    location = urljoin(base, r.headers["Location"])
    assert urlparse(location).path.endswith("/hub/api/oauth2/authorize")
    # following it ends on the hub's login page
    r = requests.get(base, headers={"Accept": "text/html"}, timeout=10)
    assert r.status_code == 200
    assert urlparse(r.url).path.endswith("/hub/login")


def test_token_without_access_to_services_gets_403(hub, base, users):
    name, _ = users["other"]
    r = requests.post(f"{hub.url}/hub/api/users/{name}/tokens",
                      headers={"Authorization": f"token {hub.admin_token}"},
                      json={"scopes": [f"read:users:name!user={name}"], "note": "narrow"},
                      timeout=30)
    assert r.status_code == 201, r.text
    narrow = r.json()["token"]
    r = api(base, narrow, "GET", "api/2.0/mlflow/experiments/search?max_results=1")
    assert r.status_code == 403
    assert "access:services" in r.json()["message"]


def test_refused_requests_do_not_break_kept_alive_connections(base, users):
    """Answers given before MLflow is asked (401, 403) must not reset the proxy's connections."""
    _, token = users["other"]
    s = requests.Session()
    statuses = []
    for _ in range(30):
        statuses.append(s.get(base + "api/2.0/mlflow/experiments/search?max_results=1",
                              timeout=30).status_code)
        statuses.append(s.get(base + "ajax-api/3.0/mlflow/assistant/sessions",
                              headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code)
        statuses.append(s.get(base + "api/2.0/mlflow/experiments/search?max_results=1",
                              headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code)
    assert statuses == [401, 403, 200] * 30


def test_a_rest_call_over_the_limit_is_a_json_413_and_the_connection_goes_on(base, users):
    """A REST body (not an artifact) over NOTEBENCH_MLFLOW_MAX_API_BODY_SIZE (16 MiB) is read,
    dropped and answered 413 in MLflow's error shape, through the proxy (never its error page)."""
    _, token = users["owner"]
    s = requests.Session()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    big = b'{"name": "' + b"x" * (20 * 1024 * 1024) + b'"}'
    r = s.post(base + "api/2.0/mlflow/experiments/create", data=big, headers=headers, timeout=120)
    assert r.status_code == 413, r.text[:300]
    assert r.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED" and "16777216" in r.json()["message"]
    # The same keep-alive connection carries the next call.
    assert s.get(base + "api/2.0/mlflow/experiments/search?max_results=1", headers=headers, timeout=30).status_code == 200


# ---- the owner


def test_owner_logs_runs_artifacts_and_models(base, users, owned, tmp_path):
    _, token = users["owner"]
    with mlflow_as(token, base) as client:
        run = client.get_run(owned["run_id"])
        assert run.data.params == {"alpha": "0.5"}
        assert run.data.metrics["loss"] == 0.125
        assert [m.value for m in client.get_metric_history(owned["run_id"], "loss")] == [
            0.25, 0.125,
        ]
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
        listed = {f.path for f in client.list_artifacts(owned["run_id"])}
        assert listed == {"data", "model"}
        local = client.download_artifacts(owned["run_id"], "data/blob.bin", str(tmp_path))
        data = Path(local).read_bytes()
        assert len(data) == owned["blob_size"]
        assert hashlib.sha256(data).hexdigest() == owned["blob_sha"]
        version = client.get_model_version(owned["model"], owned["version"])
        assert version.run_id == owned["run_id"]
    # the artifacts went through the service into its store, not to a client-side path
    r = api(base, token, "GET",
            f"api/2.0/mlflow-artifacts/artifacts/{owned['experiment_id']}/{owned['run_id']}"
            "/artifacts/model/MLmodel")
    assert r.status_code == 200
    assert r.text.startswith("artifact_path: model")


def test_streamed_artifact_upload_without_content_length(base, users, owned):
    """A chunked upload (no Content-Length) reaches the artifact store whole."""
    _, token = users["owner"]
    piece = os.urandom(256 * 1024)
    pieces = 33
    path = (f"api/2.0/mlflow-artifacts/artifacts/{owned['experiment_id']}/{owned['run_id']}"
            "/artifacts/streamed.bin")
    r = api(base, token, "PUT", path, data=(piece for _ in range(pieces)))
    assert r.status_code == 200, r.text
    r = api(base, token, "GET", path)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(piece) * pieces)
    assert r.content == piece * pieces
    # MLflow's other routes would read such a body as empty: refused instead
    r = api(base, token, "POST", "api/2.0/mlflow/experiments/create",
            data=(b for b in [b'{"name": "chunked"}']),
            headers={"Content-Type": "application/json"})
    assert r.status_code == 411


def test_owner_is_the_mlflow_user_named_by_the_hub(base, users):
    name, token = users["owner"]
    for auth in (f"token {token}", f"Bearer {token}"):
        r = api(base, None, "GET", "api/2.0/mlflow/users/current", headers={"Authorization": auth})
        assert r.status_code == 200, r.text
        assert r.json()["user"]["username"] == name
        assert r.json()["user"]["is_admin"] is False


def test_identity_headers_from_clients_are_ignored(base, users):
    name, token = users["owner"]
    forged = {
        "Authorization": f"Bearer {token}",
        "X-Notebench-User": "admin",
        "X-Notebench-Admin": "1",
        "X-Notebench-Secret": "guess",
    }
    r = api(base, None, "GET", "api/2.0/mlflow/users/current", headers=forged)
    assert r.status_code == 200
    assert r.json()["user"] == {**r.json()["user"], "username": name, "is_admin": False}


def test_hub_admin_is_mlflow_admin(base, users):
    _, token = users["admin"]
    r = api(base, token, "GET", "api/2.0/mlflow/users/current")
    assert r.status_code == 200
    assert r.json()["user"]["username"] == "admin"
    assert r.json()["user"]["is_admin"] is True


# ---- another user: reads (default permission READ), cannot change


def test_other_user_can_read(base, users, owned, tmp_path):
    _, token = users["other"]
    r = api(base, token, "GET",
            f"api/2.0/mlflow/experiments/get?experiment_id={owned['experiment_id']}")
    assert r.status_code == 200
    r = api(base, token, "GET", f"api/2.0/mlflow/runs/get?run_id={owned['run_id']}")
    assert r.status_code == 200
    assert r.json()["run"]["data"]["params"] == [{"key": "alpha", "value": "0.5"}]
    r = api(base, token, "GET", f"api/2.0/mlflow/registered-models/get?name={owned['model']}")
    assert r.status_code == 200
    with mlflow_as(token, base) as client:
        local = client.download_artifacts(owned["run_id"], "data/blob.bin", str(tmp_path))
        assert hashlib.sha256(Path(local).read_bytes()).hexdigest() == owned["blob_sha"]


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", "api/2.0/mlflow/experiments/update", {"experiment_id": "{experiment_id}",
                                                      "new_name": "stolen-{experiment_id}"}),
        ("POST", "api/2.0/mlflow/experiments/set-experiment-tag",
         {"experiment_id": "{experiment_id}", "key": "k", "value": "v"}),
        ("POST", "api/2.0/mlflow/experiments/delete", {"experiment_id": "{experiment_id}"}),
        ("POST", "api/2.0/mlflow/runs/log-parameter",
         {"run_id": "{run_id}", "key": "beta", "value": "1"}),
        ("POST", "api/2.0/mlflow/runs/update", {"run_id": "{run_id}", "run_name": "stolen"}),
        ("POST", "api/2.0/mlflow/runs/delete", {"run_id": "{run_id}"}),
        ("PATCH", "api/2.0/mlflow/registered-models/update",
         {"name": "{model}", "description": "stolen"}),
        ("POST", "api/2.0/mlflow/registered-models/rename",
         {"name": "{model}", "new_name": "stolen-{model}"}),
        ("DELETE", "api/2.0/mlflow/registered-models/delete", {"name": "{model}"}),
        ("DELETE", "api/2.0/mlflow/model-versions/delete", {"name": "{model}", "version": "1"}),
    ],
)
def test_other_user_cannot_change(base, users, owned, method, path, body):
    _, token = users["other"]
    body = {k: v.format(**owned) for k, v in body.items()}
    r = api(base, token, method, path, json=body)
    assert r.status_code == 403, (r.status_code, r.text)


def test_other_user_cannot_write_artifacts(base, users, owned):
    _, token = users["other"]
    path = (f"api/2.0/mlflow-artifacts/artifacts/{owned['experiment_id']}/{owned['run_id']}"
            "/artifacts/intruder.txt")
    r = api(base, token, "PUT", path, data=b"nope")
    assert r.status_code == 403
    owner_token = users["owner"][1]
    assert api(base, owner_token, "GET", path).status_code == 404


# ---- the owner and admins can change


def test_owner_can_change(base, users, owned):
    _, token = users["owner"]
    r = api(base, token, "POST", "api/2.0/mlflow/experiments/set-experiment-tag",
            json={"experiment_id": owned["experiment_id"], "key": "team", "value": "a"})
    assert r.status_code == 200, r.text
    r = api(base, token, "PATCH", "api/2.0/mlflow/registered-models/update",
            json={"name": owned["model"], "description": "by the owner"})
    assert r.status_code == 200, r.text
    r = api(base, token, "POST", "api/2.0/mlflow/runs/log-parameter",
            json={"run_id": owned["run_id"], "key": "beta", "value": "2"})
    assert r.status_code == 200, r.text


def test_admin_can_change_anything(base, users, owned):
    _, token = users["admin"]
    r = api(base, token, "POST", "api/2.0/mlflow/experiments/update",
            json={"experiment_id": owned["experiment_id"], "new_name": f"renamed-{owned['model']}"})
    assert r.status_code == 200, r.text
    r = api(base, token, "PATCH", "api/2.0/mlflow/registered-models/update",
            json={"name": owned["model"], "description": "by an admin"})
    assert r.status_code == 200, r.text
    r = api(base, token, "POST", "api/2.0/mlflow/runs/delete", json={"run_id": owned["run_id"]})
    assert r.status_code == 200, r.text


def test_owner_can_delete(base, users, owned):
    _, token = users["owner"]
    r = api(base, token, "DELETE", "api/2.0/mlflow/registered-models/delete",
            json={"name": owned["model"]})
    assert r.status_code == 200, r.text
    r = api(base, token, "POST", "api/2.0/mlflow/experiments/delete",
            json={"experiment_id": owned["experiment_id"]})
    assert r.status_code == 200, r.text


# ---- the web UI, with a cookie from the real OAuth flow


def _login(session, hub, name, password, next_url):
    r = session.get(next_url, headers={"Accept": "text/html"}, timeout=30)
    assert urlparse(r.url).path.endswith("/hub/login"), r.url
    m = re.search(r'name="_xsrf"\s+value="([^"]+)"', r.text)
    data = {"username": name, "password": password}
    if m:
        data["_xsrf"] = m.group(1)
    return session.post(r.url, data=data, headers={"Accept": "text/html"}, timeout=30)


def test_ui_loads_under_the_prefix_after_login(hub, base):
    name, password = "admin", hub.admin_password
    s = requests.Session()
    r = _login(s, hub, name, password, base)
    # the OAuth dance ends on the MLflow page, with the service's cookie set
    assert r.status_code == 200, (r.status_code, r.url)
    assert urlparse(r.url).path == PREFIX
    assert "<title>MLflow</title>" in r.text
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', r.text)
    assert assets, r.text
    for asset in assets:
        url = urljoin(r.url, asset)
        assert urlparse(url).path.startswith(PREFIX), url
        a = s.get(url, headers={"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Site": "same-origin"},
                  timeout=30)
        assert a.status_code == 200, (url, a.status_code)
        assert ("javascript" in a.headers["Content-Type"]) or ("css" in a.headers["Content-Type"])
    # the app's ajax calls, as a browser sends them (same-origin fetch)
    fetch = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin",
             "Accept": "application/json"}
    r = s.get(base + "ajax-api/2.0/mlflow/users/current", headers=fetch, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["username"] == name
    r = s.post(base + "ajax-api/2.0/mlflow/experiments/create", headers=fetch,
               json={"name": f"ui-exp-{uuid.uuid4().hex[:8]}"}, timeout=30)
    assert r.status_code == 200, r.text
    # a page on another site cannot use the cookie to change things
    r = s.post(base + "ajax-api/2.0/mlflow/experiments/create",
               headers={"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "cross-site",
                        "Origin": "https://evil.example"},
               json={"name": f"csrf-{name}"}, timeout=30)
    assert r.status_code == 401


# ---- start-up and shutdown of the service itself (without a hub)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid):
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:  # ppid
            out.append(int(entry.name))
    return out


def _alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _group_members(pgid):
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


@pytest.fixture
def standalone(tmp_path):
    """The service started the way the hub starts it, minus the hub (OAuth is not used)."""
    port = _free_port()
    env = dict(
        os.environ,
        NOTEBENCH_DATA_DIR=str(tmp_path / "data"),
        NOTEBENCH_MLFLOW_DEFAULT_PERMISSION="READ",
        JUPYTERHUB_SERVICE_NAME="mlflow",
        JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}",
        JUPYTERHUB_SERVICE_PREFIX=PREFIX,
        JUPYTERHUB_API_URL="http://127.0.0.1:9/hub/api",
        JUPYTERHUB_API_TOKEN="unused-" + uuid.uuid4().hex,
        JUPYTERHUB_CLIENT_ID="service-mlflow",
        JUPYTERHUB_OAUTH_CALLBACK_URL=f"{PREFIX}oauth_callback",
        JUPYTERHUB_BASE_URL="/",
    )
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "notebench.hub.mlflow_service"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}{PREFIX}"

    def ready():
        try:
            r = requests.get(url + "health", timeout=2)
        except requests.RequestException:
            return None
        return r.json() if r.status_code == 200 and r.json()["mlflow"]["ready"] else None

    try:
        health = wait_for(ready, what="the standalone service")
        ready_s = time.monotonic() - started
        backend = wait_for(lambda: _children(proc.pid), what="the backend process")[0]
        yield {"proc": proc, "url": url, "backend": backend, "ready_s": ready_s,
               "health": health}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _backend_port(pid):
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return int(args[args.index(b"--port") + 1])


def test_standalone_restarts_mlflow_and_sigterm_leaves_no_orphans(standalone, record_property):
    record_property("mlflow_service_ready_s", round(standalone["ready_s"], 2))
    assert standalone["health"]["status"] == "ok"
    assert standalone["health"]["mlflow"]["restarts"] == 0
    proc, url, backend = standalone["proc"], standalone["url"], standalone["backend"]
    # the backend trusts nobody but the front: a forged identity without the secret gets 401
    port = _backend_port(backend)
    r = requests.get(f"http://127.0.0.1:{port}{PREFIX}api/2.0/mlflow/users/current",
                     headers={"X-Notebench-User": "admin", "X-Notebench-Admin": "1"}, timeout=10)
    assert r.status_code == 401
    assert os.getpgid(backend) == backend  # its own process group

    # MLflow dies: the front starts a new one and reports it
    os.kill(backend, signal.SIGKILL)

    def restarted():
        h = requests.get(url + "health", timeout=5).json()["mlflow"]
        return h["ready"] and h["restarts"] == 1

    wait_for(restarted, what="MLflow to be restarted")
    new_backend = wait_for(lambda: [p for p in _children(proc.pid) if p != backend],
                           what="the new backend process")[0]

    # the hub stops the service: nothing of MLflow survives
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    for pid in (backend, new_backend):
        wait_for(lambda pid=pid: not _alive(pid) and not _group_members(pid),
                 what=f"MLflow process group {pid} to exit")


def test_backend_exits_when_the_front_is_killed(standalone):
    backend = standalone["backend"]
    standalone["proc"].kill()
    standalone["proc"].wait(10)
    wait_for(lambda: not _alive(backend) and not _group_members(backend), timeout=30,
             what="the orphaned MLflow backend to exit")
