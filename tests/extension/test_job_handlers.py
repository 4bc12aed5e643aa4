"""The Jobs panel's server side (issue 15) in a real jupyter_server (pytest-jupyter) forwarding to
the session hub's real executor and MLflow: a job's log from an offset, its MLflow run, deleting
it, re-running it, parameters as Python literals, errors naming their field, and schedules.
Each handler as anonymous, another user, the owner and an admin."""

import json
import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

# pytest-jupyter's fixtures for this module only (see test_extension.py).
from pytest_jupyter.jupyter_core import *  # noqa: E402,F401,F403
from pytest_jupyter.jupyter_server import *  # noqa: E402,F401,F403
from tornado.httpclient import HTTPClientError

from tests.extension.test_extension import fetch_json, on_server_loop, wait_job, write_notebook
from tests.support.jobs import unique


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"jupyterlab_notebench": True}}}


@pytest.fixture(scope="module")
def jpada(hub):
    name = unique("jp-ada")
    return name, hub.new_user(name)


@pytest.fixture(scope="module")
def jpbob(hub):
    name = unique("jp-bob")
    return name, hub.new_user(name)


@pytest.fixture
def as_user(hub, jpada, monkeypatch):
    """``as_user(name, token)``: the in-process server becomes that user's (jpada's by default)."""

    def become(name, token):
        monkeypatch.setenv("NOTEBENCH_URL", hub.url)
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
        monkeypatch.setenv("JUPYTERHUB_USER", name)

    become(*jpada)
    return become


async def refused(jp_fetch, *parts, method="GET", body=None, **kwargs) -> tuple[int, dict]:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("notebench", *parts, method=method, body=None if body is None else json.dumps(body),
                       allow_nonstandard_methods=True, **kwargs)
    assert e.value.response.headers["Content-Type"].startswith("application/json"), e.value.response.body
    return e.value.code, json.loads(e.value.response.body)


def bobs_job(hub, jpbob) -> dict:
    nb = json.loads(json.dumps(new_notebook(cells=[new_code_cell("print('bob')")])))
    nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    r = hub.executor("POST", "jobs", jpbob[1], json={"notebook": nb})
    assert r.status_code == 201, r.text
    hub.wait_job(r.json()["id"], jpbob[1])
    return r.json()


NEW_ROUTES = [
    ("DELETE", "jobs/1"),
    ("GET", "jobs/1/log"),
    ("GET", "jobs/1/run"),
    ("GET", "schedules"),
    ("POST", "schedules"),
    ("PATCH", "schedules/1"),
    ("DELETE", "schedules/1"),
]


@on_server_loop
async def test_anonymous_gets_nothing(jp_fetch, as_user):
    for method, path in NEW_ROUTES:
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch(*f"notebench/{path}".split("/"), method=method, body="{}" if method in ("POST", "PATCH") else None,
                           headers={"Authorization": ""}, allow_nonstandard_methods=True, follow_redirects=False)
        assert e.value.code in (401, 403), (method, path)


@on_server_loop
async def test_log_from_an_offset(jp_fetch, jp_root_dir, as_user):
    write_notebook(jp_root_dir, "talk.ipynb", "n = 3", "for i in range(n):\n    print(f'line {i} é✓')")
    job = await fetch_json(jp_fetch, "jobs", method="POST", body={"path": "talk.ipynb"})
    await wait_job(jp_fetch, job["id"])
    whole = await fetch_json(jp_fetch, "jobs", str(job["id"]), "log", params={"offset": "0"})
    assert "line 2 é✓" in whole["text"] and whole["offset"] == len(whole["text"].encode())
    # From the middle of a character: what comes back starts at a whole one, the offset says where it ends.
    cut = whole["text"].encode().index("✓".encode()) + 1
    rest = await fetch_json(jp_fetch, "jobs", str(job["id"]), "log", params={"offset": str(cut)})
    assert rest["offset"] == whole["offset"]
    nothing = await fetch_json(jp_fetch, "jobs", str(job["id"]), "log", params={"offset": str(whole["offset"])})
    assert nothing == {"text": "", "offset": whole["offset"]}
    beyond = await fetch_json(jp_fetch, "jobs", str(job["id"]), "log", params={"offset": "999999999999"})
    assert beyond["text"] == ""
    for bad in ["-1", "1.5", "x", "9" * 19, "１"]:
        status, body = await refused(jp_fetch, "jobs", str(job["id"]), "log", params={"offset": bad})
        assert (status, body["field"]) == (400, "offset"), bad


@on_server_loop
async def test_mlflow_run_of_a_job(jp_fetch, jp_root_dir, hub, as_user):
    write_notebook(jp_root_dir, "metric.ipynb", "accuracy = 0.75", "import mlflow\nmlflow.log_metric('accuracy', accuracy)")
    job = await fetch_json(jp_fetch, "jobs", method="POST", body={"path": "metric.ipynb", "literals": {"accuracy": "0.5"}})
    job = await wait_job(jp_fetch, job["id"])
    assert job["status"] == "succeeded", job
    run = await fetch_json(jp_fetch, "jobs", str(job["id"]), "run")
    assert run["run_id"] == job["mlflow_run_id"] and run["experiment_id"]
    assert run["metrics"] == {"accuracy": 0.5}


@on_server_loop
async def test_python_literals_as_parameters(jp_fetch, jp_root_dir, as_user):
    write_notebook(jp_root_dir, "literals.ipynb", "n = 1\nrate = 0.5\nopts = {'a': 1}\nmaybe = None\nname = 'x'",
                   "print(repr((n, rate, opts, maybe, name)))")
    literals = {"n": "None", "rate": "2", "opts": "{'a': (1, 2), 'b': None, 'c': True}", "maybe": "[1, 'two']"}
    job = await fetch_json(jp_fetch, "jobs", method="POST",
                           body={"path": "literals.ipynb", "literals": literals, "parameters": {"name": "it's"}})
    assert job["parameters"] == {"n": None, "rate": 2.0, "opts": {"a": [1, 2], "b": None, "c": True},
                                 "maybe": [1, "two"], "name": "it's"}
    job = await wait_job(jp_fetch, job["id"])
    assert job["status"] == "succeeded", job
    log = await fetch_json(jp_fetch, "jobs", str(job["id"]), "log")
    assert "(None, 2.0, {'a': [1, 2], 'b': None, 'c': True}, [1, 'two'], \"it's\")" in log["text"]

    bad = [
        ({"n": "'ten'"}, "parameters.n", "must be an int"),
        ({"n": "True"}, "parameters.n", "must be an int"),
        ({"opts": "[1]"}, "parameters.opts", "must be a dict"),
        ({"rate": "abc"}, "parameters.rate", "is not a Python literal"),
        ({"rate": ""}, "parameters.rate", "enter a value"),
        ({"maybe": "{1: 2}"}, "parameters.maybe", "keys must be strings"),
        ({"maybe": "{1, 2}"}, "parameters.maybe", "cannot be passed"),
        ({"maybe": "1e999"}, "parameters.maybe", "NaN and infinity"),
        ({"maybe": "__import__('os').system('id')"}, "parameters.maybe", "is not a Python literal"),
        ({"maybe": "[" * 5000 + "]" * 5000}, "parameters.maybe", ""),
        ({"maybe": 3}, "parameters.maybe", "as text"),
    ]
    for literals, field, message in bad:
        status, body = await refused(jp_fetch, "jobs", method="POST", body={"path": "literals.ipynb", "literals": literals})
        assert (status, body["field"]) == (400, field) and message in body["message"], (literals, body)
    status, body = await refused(jp_fetch, "jobs", method="POST", body={"path": "literals.ipynb", "literals": ["n"]})
    assert (status, body["field"]) == (400, "literals")


@on_server_loop
async def test_the_executors_errors_name_their_field(jp_fetch, jp_root_dir, as_user):
    write_notebook(jp_root_dir, "fields.ipynb", "n = 1", "n")
    for change, field in [({"profile": "no-such"}, "profile"), ({"timeout_seconds": 0}, "timeout_seconds"),
                          ({"workers": 65}, "workers"), ({"literals": {"not valid": "1"}}, "parameters")]:
        status, body = await refused(jp_fetch, "jobs", method="POST", body={"path": "fields.ipynb", **change})
        assert (status, body["field"]) == (400, field) and body["message"], (change, body)
    status, body = await refused(jp_fetch, "jobs", method="POST", body={"path": "missing.ipynb"})
    assert status == 404


@on_server_loop
async def test_delete_a_job(jp_fetch, jp_root_dir, hub, jpada, jpbob, as_user):
    write_notebook(jp_root_dir, "gone.ipynb", "seconds = 0", "import time\ntime.sleep(seconds)")
    job = await wait_job(jp_fetch, (await fetch_json(jp_fetch, "jobs", method="POST", body={"path": "gone.ipynb"}))["id"])
    response = await jp_fetch("notebench", "jobs", str(job["id"]), method="DELETE")
    assert response.code == 204
    assert (await refused(jp_fetch, "jobs", str(job["id"])))[0] == 404
    assert hub.executor("GET", f"jobs/{job['id']}", jpada[1]).status_code == 404

    # Running: refused, with the reason at the status.
    slow = await fetch_json(jp_fetch, "jobs", method="POST", body={"path": "gone.ipynb", "literals": {"seconds": "300"}})
    await wait_job(jp_fetch, slow["id"], until=("running",))
    status, body = await refused(jp_fetch, "jobs", str(slow["id"]), method="DELETE")
    assert (status, body["field"]) == (409, "status") and "cancel it first" in body["message"]
    await fetch_json(jp_fetch, "jobs", str(slow["id"]), "cancel", method="POST", body={})
    await wait_job(jp_fetch, slow["id"])

    # Another user's: not found, and still there.
    theirs = bobs_job(hub, jpbob)
    for method, parts in [("DELETE", ()), ("GET", ("log",)), ("GET", ("run",))]:
        assert (await refused(jp_fetch, "jobs", str(theirs["id"]), *parts, method=method))[0] == 404
    assert hub.executor("GET", f"jobs/{theirs['id']}", jpbob[1]).status_code == 200

    # An admin's server deletes anyone's ended job.
    as_user("admin", hub.admin_token)
    log = await fetch_json(jp_fetch, "jobs", str(theirs["id"]), "log")
    assert "bob" in log["text"]
    assert (await jp_fetch("notebench", "jobs", str(theirs["id"]), method="DELETE")).code == 204
    assert hub.executor("GET", f"jobs/{theirs['id']}", jpbob[1]).status_code == 404


@on_server_loop
async def test_rerun_a_job_whose_notebook_is_gone(jp_fetch, jp_root_dir, hub, jpbob, as_user):
    write_notebook(jp_root_dir, "once/again.ipynb", "word = 'first'", "print('said', word)")
    first = await wait_job(jp_fetch, (await fetch_json(jp_fetch, "jobs", method="POST", body={"path": "once/again.ipynb"}))["id"])
    (jp_root_dir / "once" / "again.ipynb").unlink()
    assert (await refused(jp_fetch, "parameters", params={"path": "once/again.ipynb"}))[0] == 404
    again = await fetch_json(jp_fetch, "jobs", method="POST", body={"from_job": first["id"], "parameters": {"word": "second"}})
    assert again["notebook_path"] == "once/again.ipynb" and again["cwd"] == first["cwd"]
    again = await wait_job(jp_fetch, again["id"])
    assert again["status"] == "succeeded", again
    log = (await fetch_json(jp_fetch, "jobs", str(again["id"]), "log"))["text"]
    output = (await fetch_json(jp_fetch, "jobs", str(again["id"]), "output", method="POST", body={}))["path"]
    texts = "".join(o.get("text", "") for c in nbformat.read(jp_root_dir / output, 4).cells for o in c.get("outputs", []))
    assert "said second" in texts and "said first" not in texts, (log, texts)
    # Only the user's own jobs, by a real id.
    theirs = bobs_job(hub, jpbob)
    assert (await refused(jp_fetch, "jobs", method="POST", body={"from_job": theirs["id"]}))[0] == 404
    for bad in ["1", True, -1, 2**63, 1.5]:
        status, body = await refused(jp_fetch, "jobs", method="POST", body={"from_job": bad})
        assert (status, body["field"]) == (400, "from_job"), bad


@on_server_loop
async def test_schedules(jp_fetch, jp_root_dir, hub, jpada, jpbob, as_user):
    write_notebook(jp_root_dir, "nightly.ipynb", "n = 1", "n")
    body = {"path": "nightly.ipynb", "literals": {"n": "2"}, "cron": "30 2 * * *", "timezone": "Europe/Paris"}
    schedule = await fetch_json(jp_fetch, "schedules", method="POST", body=body)
    assert schedule["name"] == "nightly" and schedule["owner"] == jpada[0] and schedule["active"]
    assert schedule["job"]["parameters"] == {"n": 2} and schedule["timezone"] == "Europe/Paris"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:30:00Z", schedule["next_run_at"]), schedule  # Paris is whole hours off UTC
    listed = await fetch_json(jp_fetch, "schedules")
    assert schedule["id"] in [s["id"] for s in listed["schedules"]]

    for change, field in [({"cron": "every day"}, "cron"), ({"cron": "0 0 30 2 *"}, "cron"),
                          ({"timezone": "Mars/Olympus"}, "timezone"), ({"profile": "no-such"}, "profile"),
                          ({"literals": {"n": "'x'"}}, "parameters.n")]:
        status, answer = await refused(jp_fetch, "schedules", method="POST", body={**body, **change})
        assert (status, answer["field"]) == (400, field), (change, answer)

    sid = str(schedule["id"])
    paused = await fetch_json(jp_fetch, "schedules", sid, method="PATCH", body={"active": False})
    assert paused["active"] is False and paused["next_run_at"] is None
    resumed = await fetch_json(jp_fetch, "schedules", sid, method="PATCH", body={"active": True})
    assert resumed["active"] is True and resumed["next_run_at"]
    status, answer = await refused(jp_fetch, "schedules", sid, method="PATCH", body={"active": "no"})
    assert (status, answer["field"]) == (400, "active")

    # Another user: not found; their own list does not show it.
    as_user(*jpbob)
    for method, patch in [("PATCH", {"active": False}), ("DELETE", None)]:
        assert (await refused(jp_fetch, "schedules", sid, method=method, body=patch))[0] == 404
    assert schedule["id"] not in [s["id"] for s in (await fetch_json(jp_fetch, "schedules"))["schedules"]]
    # An admin sees it, with its owner, and may pause it.
    as_user("admin", hub.admin_token)
    seen = {s["id"]: s for s in (await fetch_json(jp_fetch, "schedules"))["schedules"]}
    assert seen[schedule["id"]]["owner"] == jpada[0]
    assert (await fetch_json(jp_fetch, "schedules", sid, method="PATCH", body={"active": False}))["active"] is False
    # The owner deletes it.
    as_user(*jpada)
    assert (await jp_fetch("notebench", "schedules", sid, method="DELETE")).code == 204
    assert (await refused(jp_fetch, "schedules", sid, method="DELETE"))[0] == 404
