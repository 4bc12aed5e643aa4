"""The JupyterLab extension's server side (jupyterlab_notebench) in a real jupyter_server
(pytest-jupyter), forwarding to the real executor and MLflow of a running Notebench hub."""

import asyncio
import functools
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest
from jupyterlab_notebench.handlers import job_cwd
from jupyterlab_notebench.parameters import notebook_parameters, parse_parameters
from jupyterlab_notebench.upstream import MAX_JSON_DEPTH, upstream_url
from nbformat.v4 import new_code_cell, new_notebook

# pytest-jupyter's fixtures for this module only (as `pytest_plugins` they would apply to the whole
# session, and its autouse event-loop fixture would close the loops of other modules' tests).
from pytest_jupyter.jupyter_core import *  # noqa: E402,F401,F403
from pytest_jupyter.jupyter_server import *  # noqa: E402,F401,F403
from tornado.httpclient import HTTPClientError

from notebench.hub.platform.statuses import FINAL

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TRAIN_NOTEBOOK = REPO / "examples" / "train-model.ipynb"


def on_server_loop(test):
    """Run an async test on pytest-jupyter's event loop, where its server runs (pytest-jupyter's own
    hook for that is a session-wide plugin, which this module does not load)."""

    @functools.wraps(test)
    def run(**kwargs):
        return asyncio.get_event_loop().run_until_complete(test(**kwargs))

    return run


MAX_BODY_BYTES = 1024 * 1024  # the extension's limit in these tests (16 MiB by default)


@pytest.fixture
def jp_server_config():
    return {
        "ServerApp": {"jpserver_extensions": {"jupyterlab_notebench": True}},
        "NotebenchExtension": {"max_body_bytes": MAX_BODY_BYTES},
    }


@pytest.fixture(scope="module")
def ada(hub):
    return "extada", hub.new_user("extada")


@pytest.fixture
def as_ada(hub, ada, monkeypatch):
    """The in-process server is ada's: the hub's URL and her token, as the spawner sets them."""
    name, token = ada
    monkeypatch.setenv("NOTEBENCH_URL", hub.url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
    monkeypatch.setenv("JUPYTERHUB_USER", name)
    return name, token


async def fetch_json(jp_fetch, *parts, method="GET", body=None, **kwargs):
    if body is not None:
        kwargs["body"] = json.dumps(body)
    response = await jp_fetch("notebench", *parts, method=method, **kwargs)
    return json.loads(response.body or b"null")


async def wait_job(jp_fetch, job_id, until=FINAL, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await fetch_json(jp_fetch, "jobs", str(job_id))
        if job["status"] in until:
            return job
        await asyncio.sleep(0.2)  # polling interval while waiting on the job's status
    raise TimeoutError(f"job {job_id} did not reach {until}")


def write_notebook(root: Path, path: str, parameters: str, body: str) -> None:
    nb = new_notebook(cells=[new_code_cell(parameters, metadata={"tags": ["parameters"]}), new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, root / path)


# --- installed ---------------------------------------------------------------------------------


def test_labextension_installed_and_enabled():
    out = subprocess.run(
        [str(VENV_BIN / "jupyter"), "labextension", "list"], capture_output=True, text=True, check=True
    )
    text = out.stdout + out.stderr
    line = next((ln for ln in text.splitlines() if "jupyterlab-notebench" in ln), "")
    assert "enabled" in line and "OK" in line, text
    assert "(python, jupyterlab_notebench)" in line  # the prebuilt one shipped by pip, not a dev link
    out = subprocess.run(
        [str(VENV_BIN / "jupyter"), "server", "extension", "list"], capture_output=True, text=True, check=True
    )
    assert any("jupyterlab_notebench" in ln and "enabled" in ln for ln in (out.stdout + out.stderr).splitlines())


# --- parameters cell ---------------------------------------------------------------------------


def test_parameters_cell_parsing():
    source = (
        "alpha = 0.5  # regularisation\n"
        "epochs: int = 10\n"
        "name = 'run'\n"
        "verbose = True\n"
        "layers = [64, 32]\n"
        "options = {'a': 1}\n"
        "seed = None\n"
        "grid = np.arange(3)\n"
        "a, b = 1, 2\n"
        "print('not a parameter')\n"
    )
    params = {p["name"]: p for p in parse_parameters(source)}
    assert list(params) == ["alpha", "epochs", "name", "verbose", "layers", "options", "seed", "grid"]
    assert params["alpha"] == {"name": "alpha", "type": "float", "default": 0.5, "annotation": None, "help": "regularisation"}
    assert params["epochs"]["type"] == "int" and params["epochs"]["annotation"] == "int"
    assert params["name"]["type"] == "str" and params["name"]["default"] == "run"
    assert params["verbose"]["type"] == "bool" and params["verbose"]["default"] is True
    assert params["layers"]["type"] == "list" and params["layers"]["default"] == [64, 32]
    assert params["options"]["type"] == "dict"
    assert params["seed"]["type"] == "none"
    assert params["grid"] == {"name": "grid", "type": "expression", "default": "np.arange(3)", "annotation": None, "help": ""}
    with pytest.raises(ValueError, match="not valid Python"):
        parse_parameters("x = (")

    nb = nbformat.read(TRAIN_NOTEBOOK, 4)
    parsed = notebook_parameters(nb)
    assert parsed["has_parameters_cell"] is True
    assert [p["name"] for p in parsed["parameters"]] == ["C", "max_iter", "test_size"]
    assert notebook_parameters({"cells": [{"cell_type": "code", "metadata": {}, "source": "x = 1"}]}) == {
        "has_parameters_cell": False,
        "parameters": [],
    }


def test_parameters_cell_nested_too_deeply():
    # CPython's parser answers these with MemoryError or RecursionError, not SyntaxError.
    for source in ["x = " + "-" * 100_000 + "1", "x = " + "not " * 100_000 + "1", "x: " + "-" * 900 + "int = 1"]:
        try:
            parse_parameters(source)
        except ValueError as e:
            assert "nested too deeply" in str(e) or "not valid Python" in str(e)


def test_job_cwd_is_the_notebooks_directory_under_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "work" / "deep").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))

    class Contents:
        root_dir = str(home)

    assert job_cwd(Contents, "work/deep/a.ipynb") == "work/deep"
    assert job_cwd(Contents, "a.ipynb") == ""
    Contents.root_dir = str(tmp_path)  # a server rooted above home: outside home means home
    assert job_cwd(Contents, "elsewhere/a.ipynb") == ""
    assert job_cwd(Contents, "home/work/a.ipynb") == "work"


# --- authentication and SSRF -------------------------------------------------------------------

ROUTES = [
    ("GET", "profiles"),
    ("GET", "parameters?path=a.ipynb"),
    ("GET", "jobs"),
    ("POST", "jobs"),
    ("GET", "jobs/1"),
    ("POST", "jobs/1/cancel"),
    ("POST", "jobs/1/output"),
    ("GET", "jobs/1/output.html"),
    ("GET", "models/runs"),
    ("GET", "models/registered"),
    ("POST", "models/versions"),
    ("POST", "models/aliases"),
    ("DELETE", "models/aliases?name=a&alias=b"),
    ("GET", "endpoints"),
    ("POST", "endpoints"),
    ("GET", "endpoints/e1"),
    ("PATCH", "endpoints/e1"),
    ("DELETE", "endpoints/e1"),
    ("GET", "endpoints/e1/metrics"),
    ("GET", "endpoints/e1/example"),
    ("POST", "endpoints/e1/invoke"),
]


@pytest.mark.parametrize("auth", ["none", "wrong token"])
@on_server_loop
async def test_every_handler_requires_authentication(jp_fetch, jp_base_url, as_ada, auth):
    header = {"Authorization": "" if auth == "none" else "token not-a-real-token"}
    for method, path in ROUTES:
        body = "{}" if method in ("POST", "PATCH") else None
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch(*f"notebench/{path}".split("?")[0].split("/"), method=method, body=body,
                           headers=dict(header), allow_nonstandard_methods=True, follow_redirects=False)
        if path.endswith("output.html"):  # a page (shown in a frame), so it sends you to log in
            assert e.value.code == 302 and "/login" in e.value.response.headers["Location"]
        else:
            assert e.value.code in (401, 403), (method, path, e.value.code)


@on_server_loop
async def test_no_cors_wildcard(jp_fetch, as_ada):
    for parts in [("profiles",), ("jobs",)]:
        response = await jp_fetch("notebench", *parts, headers={"Origin": "http://evil.example"})
        assert "Access-Control-Allow-Origin" not in response.headers


def test_upstream_urls_stay_under_their_prefix(monkeypatch):
    monkeypatch.setenv("NOTEBENCH_URL", "http://127.0.0.1:8000/")
    assert upstream_url("executor", ["jobs", "7"]) == "http://127.0.0.1:8000/services/executor/api/jobs/7"
    # A value with slashes or a scheme stays one encoded segment under the fixed prefix.
    url = upstream_url("executor", ["jobs", "../../../hub/api/users"])
    assert url == "http://127.0.0.1:8000/services/executor/api/jobs/..%2F..%2F..%2Fhub%2Fapi%2Fusers"
    url = upstream_url("mlflow", ["logged-models", "http://169.254.169.254/latest"])
    assert url.startswith("http://127.0.0.1:8000/services/mlflow/api/2.0/mlflow/logged-models/http%3A%2F%2F")
    for bad in ("..", ".", ""):
        with pytest.raises(Exception, match="invalid path segment"):
            upstream_url("executor", ["jobs", bad])
    with pytest.raises(KeyError):
        upstream_url("hub", ["api", "users"])


@on_server_loop
async def test_crafted_paths_reach_no_other_upstream(jp_fetch, jp_root_dir, hub, as_ada):
    # Routes only take digits for job ids and slugs for endpoint names: anything else is no route.
    for parts in [
        ("jobs", "..%2F..%2F..%2Fhub%2Fapi%2Fusers"),
        ("jobs", "1%2F..%2F..%2F..%2F..%2Fhub%2Fapi%2Fusers"),
        ("endpoints", "..%2F..%2Fjobs"),
        ("endpoints", "E1"),
    ]:
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("notebench", *parts)
        assert e.value.code == 404, parts
    # A URL or a path outside the server's files as the notebook to run is refused.
    for path in ["http://127.0.0.1:1/x.ipynb", "../../../etc/passwd.ipynb", "/etc/hosts.ipynb", "notes.txt"]:
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("notebench", "jobs", method="POST", body=json.dumps({"path": path}))
        assert e.value.code in (400, 404), path
    # Query arguments are passed on only when known (owner= would list others' jobs for an admin).
    jobs = await fetch_json(jp_fetch, "jobs", params={"owner": "admin", "limit": "5"})
    assert all(job["owner"] == as_ada[0] for job in jobs["jobs"])
    # Model names travel as encoded query values: a name with a path in it reaches MLflow as a name.
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("notebench", "models", "aliases", method="DELETE",
                       params={"name": "../../../hub/api/users", "alias": "x"})
    assert e.value.code in (400, 403, 404)


# --- bad input --------------------------------------------------------------------------------


def deep(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


async def refused(jp_fetch, parts, method="POST", body=b"", **kwargs) -> tuple[int, dict]:
    """The status and JSON body of a request that must fail."""
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("notebench", *parts, method=method, body=body, allow_nonstandard_methods=True, **kwargs)
    assert e.value.response.headers["Content-Type"].startswith("application/json")
    return e.value.code, json.loads(e.value.response.body)


# Every route that reads a JSON body; none of these requests gets as far as an upstream.
BODY_ROUTES = [
    ("POST", "jobs"),
    ("POST", "models/versions"),
    ("POST", "models/aliases"),
    ("POST", "endpoints"),
    ("PATCH", "endpoints/e1"),
    ("POST", "endpoints/e1/invoke"),
]


@on_server_loop
async def test_bad_bodies_are_4xx_json_naming_what_is_wrong(jp_fetch, jp_root_dir, monkeypatch):
    monkeypatch.delenv("NOTEBENCH_URL", raising=False)  # reaching an upstream would be a 503
    bad = [
        (deep(100_000), 400, "the request body is nested deeper than"),  # a RecursionError was a 500
        (b"[" * 100_000 + b"]" * 100_000, 400, "the request body is nested deeper than"),
        (deep(MAX_JSON_DEPTH + 1), 400, f"the request body is nested deeper than {MAX_JSON_DEPTH} levels"),
        (b'{"a": ', 400, "the request body is not JSON"),
        (b'{"a": "\xff\xfe"}', 400, "the request body is not JSON"),  # not UTF-8
        (b"[1, 2]", 400, "the body must be a JSON object"),
        (b" " * (MAX_BODY_BYTES + 1), 413, f"at most {MAX_BODY_BYTES} allowed"),
    ]
    for method, path in BODY_ROUTES:
        for body, status, message in bad:
            code, reply = await refused(jp_fetch, path.split("/"), method, body)
            assert (code, message in reply["message"]) == (status, True), (method, path, code, reply)
    assert (await refused(jp_fetch, ["jobs"], body=deep(MAX_JSON_DEPTH)))[0] == 400  # parsed: no path

    write_notebook(jp_root_dir, "p.ipynb", "x = 1", "print(x)")
    code, reply = await refused(jp_fetch, ["jobs"], body=json.dumps({"path": "p.ipynb", "parameters": [1]}))
    assert code == 400 and reply["message"] == "parameters must be an object {name: value}"

    # The notebook to run is read as JSON too, and so is its parameters cell as Python.
    nb = json.loads(nbformat.writes(new_notebook()))
    nb["metadata"]["deep"] = json.loads(deep(MAX_JSON_DEPTH))
    (jp_root_dir / "deep.ipynb").write_text(json.dumps(nb))
    code, reply = await refused(jp_fetch, ["jobs"], body=json.dumps({"path": "deep.ipynb"}))
    assert code == 400 and reply["message"] == f"the notebook deep.ipynb is nested deeper than {MAX_JSON_DEPTH} levels"
    code, reply = await refused(jp_fetch, ["parameters"], method="GET", body=None, params={"path": "deep.ipynb"})
    assert code == 400 and "nested deeper" in reply["message"]
    write_notebook(jp_root_dir, "cell.ipynb", "x = " + "-" * 100_000 + "1", "print(x)")
    code, reply = await refused(jp_fetch, ["parameters"], method="GET", body=None, params={"path": "cell.ipynb"})
    assert code == 400 and reply["message"] == "the parameters cell is nested too deeply to read"


class FakeUpstream(BaseHTTPRequestHandler):
    """Answers as a broken or hostile upstream would: ``ANSWERS[path] = (status, body)``."""

    ANSWERS = {
        "/services/executor/api/profiles": (200, deep(100_000)),
        "/services/executor/api/jobs": (200, b"<html>a proxy's page</html>"),
        "/services/executor/api/endpoints": (400, deep(100_000)),
        "/services/executor/endpoints/e1/invocations": (200, deep(100_000)),
    }

    def answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body = self.ANSWERS.get(self.path.split("?")[0], (404, b"{}"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_upstream(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeUpstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("NOTEBENCH_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "the-servers-token")
    yield
    server.shutdown()
    server.server_close()


@on_server_loop
async def test_bad_upstream_answers_are_502_json_naming_the_upstream(jp_fetch, fake_upstream):
    code, reply = await refused(jp_fetch, ["profiles"], method="GET", body=None)
    assert code == 502 and reply["message"] == f"the answer from executor is nested deeper than {MAX_JSON_DEPTH} levels"
    code, reply = await refused(jp_fetch, ["jobs"], method="GET", body=None)
    assert code == 502 and reply["message"].startswith("the answer from executor is not JSON")
    # An upstream's error keeps its status; a body that is no JSON message is passed on as text.
    code, reply = await refused(jp_fetch, ["endpoints"], method="GET", body=None)
    assert code == 400 and reply["message"].startswith('{"a":{"a":')
    # "Try it" shows what the endpoint answered, whatever it is.
    result = await fetch_json(jp_fetch, "endpoints", "e1", "invoke", method="POST", body={"payload": {"x": [1]}})
    assert result["status"] == 200 and "predictions" not in result
    assert result["error"].startswith(f"the endpoint's answer is nested deeper than {MAX_JSON_DEPTH} levels: ")


# --- jobs through the real executor ------------------------------------------------------------


@on_server_loop
async def test_profiles_are_the_executors(jp_fetch, hub, as_ada):
    ours = await fetch_json(jp_fetch, "profiles")
    theirs = hub.executor("GET", "profiles", as_ada[1]).json()
    assert ours == theirs and {p["name"] for p in ours["profiles"]} >= {"cpu"}


@on_server_loop
async def test_run_a_notebook_as_a_job(jp_fetch, jp_root_dir, hub, as_ada):
    write_notebook(jp_root_dir, "work/double.ipynb", "x = 1  # the number\nlabel = 'a'", "print(label, x * 2)")
    params = await fetch_json(jp_fetch, "parameters", params={"path": "work/double.ipynb"})
    assert [(p["name"], p["type"], p["default"], p["help"]) for p in params["parameters"]] == [
        ("x", "int", 1, "the number"),
        ("label", "str", "a", ""),
    ]

    job = await fetch_json(jp_fetch, "jobs", method="POST",
                           body={"path": "work/double.ipynb", "parameters": {"x": 21, "label": "answer"},
                                 "profile": "cpu", "timeout_seconds": 300, "workers": 0})
    assert job["name"] == "double" and job["owner"] == as_ada[0] and job["parameters"] == {"x": 21, "label": "answer"}
    job = await wait_job(jp_fetch, job["id"])
    assert job["status"] == "succeeded", job
    assert hub.executor("GET", f"jobs/{job['id']}", as_ada[1]).json()["status"] == "succeeded"  # the real one
    listed = await fetch_json(jp_fetch, "jobs", params={"limit": "50"})
    assert job["id"] in [j["id"] for j in listed["jobs"]]

    saved = await fetch_json(jp_fetch, "jobs", str(job["id"]), "output", method="POST", body={})
    assert saved["path"] == f"job-outputs/double-{job['id']}.ipynb"
    output = nbformat.read(jp_root_dir / saved["path"], 4)
    assert "answer 42" in "".join(o.get("text", "") for c in output.cells for o in c.get("outputs", []))

    response = await jp_fetch("notebench", "jobs", str(job["id"]), "output.html")
    assert response.headers["Content-Type"].startswith("text/html")
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert b"answer 42" in response.body


@on_server_loop
async def test_failed_job_shows_cell_and_message(jp_fetch, jp_root_dir, as_ada):
    write_notebook(jp_root_dir, "broken.ipynb", "n = 0", "1 / n")
    job = await fetch_json(jp_fetch, "jobs", method="POST", body={"path": "broken.ipynb"})
    job = await wait_job(jp_fetch, job["id"])
    assert job["status"] == "failed"
    assert job["error"]["ename"] == "ZeroDivisionError" and job["error"]["cell_index"] is not None


@on_server_loop
async def test_cancel_a_job(jp_fetch, jp_root_dir, as_ada):
    write_notebook(jp_root_dir, "slow.ipynb", "seconds = 300", "import time\ntime.sleep(seconds)")
    job = await fetch_json(jp_fetch, "jobs", method="POST", body={"path": "slow.ipynb"})
    await wait_job(jp_fetch, job["id"], until=("running",))
    await fetch_json(jp_fetch, "jobs", str(job["id"]), "cancel", method="POST", body={})
    assert (await wait_job(jp_fetch, job["id"]))["status"] == "cancelled"


@on_server_loop
async def test_others_jobs_are_not_found(jp_fetch, hub, as_ada):
    bob = hub.new_user("extbob")
    nb = json.loads(json.dumps(new_notebook(cells=[new_code_cell("1")])))
    nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    theirs = hub.executor("POST", "jobs", bob, json={"notebook": nb}).json()
    for parts in [("jobs", str(theirs["id"])), ("jobs", str(theirs["id"]), "output.html")]:
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("notebench", *parts)
        assert e.value.code == 404


# --- models through the real MLflow ------------------------------------------------------------


@on_server_loop
async def test_runs_register_and_aliases(jp_fetch, jp_root_dir, hub, as_ada):
    (jp_root_dir / "train-model.ipynb").write_bytes(TRAIN_NOTEBOOK.read_bytes())
    # C is a float in the notebook: sent as JSON 1 it still arrives as 1.0.
    job = await fetch_json(jp_fetch, "jobs", method="POST", body={"path": "train-model.ipynb", "parameters": {"C": 1, "max_iter": 300}})
    assert job["parameters"] == {"C": 1.0, "max_iter": 300} and type(job["parameters"]["C"]) is float
    job = await wait_job(jp_fetch, job["id"])
    assert job["status"] == "succeeded", job

    runs = (await fetch_json(jp_fetch, "models", "runs"))["runs"]
    run = next(r for r in runs if r["job_id"] == str(job["id"]))
    assert run["run_id"] == job["mlflow_run_id"] and run["experiment"] == f"{as_ada[0]}/train-model"
    assert 0.5 < run["metrics"]["accuracy"] <= 1 and run["params"]["C"] == "1.0"

    name = f"iris-{as_ada[0]}"
    version = await fetch_json(jp_fetch, "models", "versions", method="POST",
                               body={"model_id": run["model_id"], "name": name, "description": "from the test"})
    assert version["name"] == name and version["run_id"] == run["run_id"]
    second = await fetch_json(jp_fetch, "models", "versions", method="POST", body={"model_id": run["model_id"], "name": name})
    assert int(second["version"]) == int(version["version"]) + 1

    await fetch_json(jp_fetch, "models", "aliases", method="POST", body={"name": name, "alias": "champion", "version": version["version"]})
    await fetch_json(jp_fetch, "models", "aliases", method="POST", body={"name": name, "alias": "challenger", "version": second["version"]})
    # Moving an alias is setting it on another version.
    await fetch_json(jp_fetch, "models", "aliases", method="POST", body={"name": name, "alias": "champion", "version": second["version"]})
    models = {m["name"]: m for m in (await fetch_json(jp_fetch, "models", "registered"))["registered_models"]}
    model = models[name]
    assert model["aliases"] == {"champion": second["version"], "challenger": second["version"]}
    assert model["owner"] == as_ada[0]
    v1 = next(v for v in model["versions"] if v["version"] == version["version"])
    assert v1["tags"]["notebench.job_id"] == str(job["id"]) and v1["description"] == "from the test"
    await jp_fetch("notebench", "models", "aliases", method="DELETE", params={"name": name, "alias": "challenger"})
    model = {m["name"]: m for m in (await fetch_json(jp_fetch, "models", "registered"))["registered_models"]}[name]
    assert model["aliases"] == {"champion": second["version"]}
    # The registry is the real one.
    real = hub_mlflow(hub, as_ada[1], "registered-models/get", params={"name": name})
    assert {a["alias"] for a in real["registered_model"]["aliases"]} == {"champion"}


def hub_mlflow(hub, token, path, **kwargs):
    import requests

    r = requests.get(f"{hub.url}/services/mlflow/api/2.0/mlflow/{path}",
                     headers={"Authorization": f"token {token}"}, timeout=30, **kwargs)
    r.raise_for_status()
    return r.json()


# --- endpoints through the real executor -------------------------------------------------------


async def wait_endpoint(jp_fetch, name, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        endpoint = await fetch_json(jp_fetch, "endpoints", name)
        if endpoint["status"] in ("ready", "failed"):
            return endpoint
        await asyncio.sleep(0.2)  # polling interval while the scoring servers start
    raise TimeoutError(f"endpoint {name} not ready")


@on_server_loop
async def test_deploy_try_it_and_metrics(jp_fetch, jp_root_dir, hub, as_ada):
    (jp_root_dir / "train-model.ipynb").write_bytes(TRAIN_NOTEBOOK.read_bytes())
    job = await fetch_json(jp_fetch, "jobs", method="POST", body={"path": "train-model.ipynb"})
    assert (await wait_job(jp_fetch, job["id"]))["status"] == "succeeded"
    run = next(r for r in (await fetch_json(jp_fetch, "models", "runs"))["runs"] if r["job_id"] == str(job["id"]))
    model = f"iris-deploy-{as_ada[0]}"
    v1 = await fetch_json(jp_fetch, "models", "versions", method="POST", body={"model_id": run["model_id"], "name": model})
    v2 = await fetch_json(jp_fetch, "models", "versions", method="POST", body={"model_id": run["model_id"], "name": model})
    await fetch_json(jp_fetch, "models", "aliases", method="POST", body={"name": model, "alias": "champion", "version": v1["version"]})

    name = f"ext-{as_ada[0]}"
    versions = [{"model": model, "version": "champion", "weight": 80}, {"model": model, "version": v2["version"], "weight": 20}]
    created = await fetch_json(jp_fetch, "endpoints", method="POST", body={"name": name, "versions": versions})
    assert created["name"] == name and created["owner"] == as_ada[0]
    endpoint = await wait_endpoint(jp_fetch, name)
    assert endpoint["status"] == "ready", endpoint
    assert {(v["version"], v["weight"]) for v in endpoint["versions"]} == {(v1["version"], 80), (v2["version"], 20)}
    assert name in [e["name"] for e in (await fetch_json(jp_fetch, "endpoints"))["endpoints"]]

    # "Try it" sends the model's logged input example and reports who answered.
    example = (await fetch_json(jp_fetch, "endpoints", name, "example"))["payload"]
    assert "dataframe_split" in example
    answered = set()
    for _ in range(10):
        result = await fetch_json(jp_fetch, "endpoints", name, "invoke", method="POST", body={})
        assert result["status"] == 200 and len(result["predictions"]) == len(example["dataframe_split"]["data"])
        answered.add(result["version"])
    assert answered == {f"{model}/{v1['version']}", f"{model}/{v2['version']}"}  # 80/20 over 10 requests

    metrics = await fetch_json(jp_fetch, "endpoints", name, "metrics")
    assert sum(v["requests"] for v in metrics["versions"]) >= 10

    patched = await fetch_json(jp_fetch, "endpoints", name, method="PATCH",
                               body={"versions": [{"model": model, "version": v2["version"], "weight": 100}]})
    assert patched["name"] == name
    assert (await wait_endpoint(jp_fetch, name))["versions"][0]["weight"] == 100
    await jp_fetch("notebench", "endpoints", name, method="DELETE")
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("notebench", "endpoints", name)
    assert e.value.code == 404
