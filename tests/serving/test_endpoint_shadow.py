"""Shadow versions against the session's real hub, MLflow, executor and scoring servers: a shadow
gets a copy of the requests after the live answer, its answers are recorded with the live request
ids and compared (GET endpoints/{name}/shadow), and it never answers a client, fails one, or slows one.

The model is tests/support/registry.py's: version 1 ("champion") predicts a > 0.5, version 2
b > 0.5, version 3 cannot load; this module adds version 4, version 1 fitted again (the same model).
"""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys

import pytest
import requests
from sklearn.metrics import accuracy_score, f1_score

from tests.support.endpoints import RUN, delete_endpoints, deploy, invoke, owner_and_other, pid_of, wait_status
from tests.support.launcher import wait_for

pytestmark = pytest.mark.slow

ROWS = 20
# A copy of version 1 (the same model: it must always agree), and versions 1 and 2's predictions of
# the test's rows made here, by MLflow, not by the endpoint.
LOCAL = r"""
import json, sys
import mlflow, numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression

name, rows = sys.argv[1], json.loads(sys.argv[2])
# Version 1 fitted again as tests/support/registry.py fits it (the same data, a deterministic fit).
rng = np.random.RandomState(0)
X = pd.DataFrame(rng.rand(60, 3), columns=["a", "b", "c"])
mlflow.set_experiment(f"endpoints-{name}")
with mlflow.start_run():
    model = LogisticRegression().fit(X, (X["a"] > 0.5).astype(int))
    copy = mlflow.sklearn.log_model(model, name="model", registered_model_name=name, input_example=X.head(2))
rows = pd.DataFrame(rows, columns=["a", "b", "c"])
predictions = {v: [int(p) for p in mlflow.pyfunc.load_model(f"models:/{name}/{v}").predict(rows)] for v in ("1", "2")}
print(json.dumps({"copy": str(copy.registered_model_version), "predictions": predictions}))
"""


@pytest.fixture(scope="module")
def people(hub):
    return owner_and_other(hub, "shd")


@pytest.fixture(scope="module", autouse=True)
def cleanup(hub):
    yield
    delete_endpoints(hub, "shd-")


@pytest.fixture(scope="module")
def local(hub, people, model):
    rng = random.Random(18)
    rows = [[rng.random(), rng.random(), rng.random()] for _ in range(ROWS)]
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"{hub.url}/services/mlflow", MLFLOW_TRACKING_TOKEN=people["owner_token"])
    out = subprocess.run([sys.executable, "-c", LOCAL, model["name"], json.dumps(rows)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    return {"rows": rows, "copy": found["copy"], "predictions": found["predictions"]}


def one_row(values):
    return {"dataframe_split": {"columns": ["a", "b", "c"], "data": [values]}}


def shadow_report(hub, name, token, window="1h"):
    r = hub.executor("GET", f"endpoints/{name}/shadow?window={window}", token)
    assert r.status_code == 200, r.text
    return r.json()


def shadow_of(report, version) -> dict:
    return next(s for s in report["shadows"] if s["version"] == version)


def stored_shadow_answers(hub, name, version) -> dict:
    """The shadow's stored answers of the endpoint, by live request id, from the executor's store."""
    with sqlite3.connect(hub.data_dir / "executor.sqlite") as db:
        rows = db.execute(
            "SELECT p.request_id, p.status, p.outputs FROM endpoint_shadow_predictions p JOIN endpoints e"
            " ON e.id = p.endpoint_id WHERE e.name = ? AND p.version = ?", (name, version)).fetchall()
    return {i: (status, json.loads(outputs) if outputs else None) for i, status, outputs in rows}


@pytest.fixture(scope="module")
def main(hub, people, model, local):
    """Live: champion (1) at 100; shadows: the copy of 1 (all requests) and 2 (half of them)."""
    name, m = f"shd-main-{RUN}", model["name"]
    deploy(hub, people["owner_token"], name, [
        {"model": m, "version": "champion", "weight": 100},
        {"model": m, "version": local["copy"], "shadow": True},
        {"model": m, "version": "2", "shadow": True, "traffic_percent": 50},
    ])
    endpoint = wait_status(hub, name, people["owner_token"])
    assert [(v["version"], v["weight"], v["shadow"], v["traffic_percent"], v["status"]) for v in endpoint["versions"]] == [
        ("1", 100, False, None, "ready"), (local["copy"], 0, True, 100, "ready"), ("2", 0, True, 50, "ready")]
    assert endpoint["reason"] is None
    return name


@pytest.fixture(scope="module")
def traffic(hub, people, model, local, main):
    """ROWS requests to the main endpoint: their request ids and the predictions the client got."""
    ids, answers = [], []
    with requests.Session() as session:
        for row in local["rows"]:
            r = invoke(hub, main, people["owner_token"], one_row(row), session)
            assert r.status_code == 200, r.text
            # The live version answers, always: never a shadow.
            assert r.headers["X-Notebench-Model-Version"] == f"{model['name']}/1"
            ids.append(r.headers["X-Notebench-Request-Id"])
            answers.append(r.json()["predictions"][0])
            # Paced by the shadow: on a busy machine copies can fall more than max_shadow_in_flight
            # behind a fast client and be dropped (by design, counted); here every copy must land.
            wait_for(lambda: shadow_of(shadow_report(hub, main, people["owner_token"]), local["copy"])["requests"]
                     == len(ids), 60, message=f"the copy of request {len(ids)} answered by the shadow")
    return {"ids": ids, "answers": answers}


def test_a_shadow_never_answers_a_client(local, traffic):
    assert traffic["answers"] == local["predictions"]["1"]  # every prediction is the live model's


def test_shadow_answers_are_recorded_with_the_request_ids(hub, people, local, main, traffic):
    token = people["owner_token"]
    report = wait_for(lambda: (r := shadow_report(hub, main, token)) and shadow_of(r, local["copy"])["requests"] == ROWS
                      and shadow_of(r, "2")["requests"] == ROWS // 2 and r, 120, message="the shadows' answers recorded")
    ids = traffic["ids"]
    copy = stored_shadow_answers(hub, main, local["copy"])
    assert set(copy) == set(ids)
    assert [copy[i] for i in ids] == [(200, {"predictions": [p]}) for p in local["predictions"]["1"]]
    # traffic_percent 50: exactly half of the requests, each answered with version 2's prediction of its input.
    half = stored_shadow_answers(hub, main, "2")
    assert len(half) == ROWS // 2 and set(half) <= set(ids)
    taken = [n for n, i in enumerate(ids) if i in half]
    assert [half[ids[n]] for n in taken] == [(200, {"predictions": [local["predictions"]["2"][n]]}) for n in taken]

    [live] = report["live"]
    assert (live["version"], live["requests"], live["errors"]) == ("1", ROWS, 0) and live["latency_ms"]["p50"] > 0
    same = shadow_of(report, local["copy"])
    assert (same["errors"], same["compared"], same["agreement_rate"], same["traffic_percent"]) == (0, ROWS, 1.0, 100)
    assert same["latency_ms"]["p50"] > 0 and same["latency_ms"]["p99"] >= same["latency_ms"]["p50"]
    other = shadow_of(report, "2")
    agreeing = [local["predictions"]["1"][n] == local["predictions"]["2"][n] for n in taken]
    assert other["compared"] == ROWS // 2 and other["traffic_percent"] == 50
    assert other["agreement_rate"] == pytest.approx(sum(agreeing) / len(agreeing))
    assert 0 < other["agreement_rate"] < 1, "versions 1 and 2 disagree on some of these rows"
    assert other["dropped"] == 0 and other["quality"] == {}


def test_shadow_quality_from_labels_equals_scikit_learns(hub, people, local, main, traffic):
    token, ids = people["owner_token"], traffic["ids"]
    rng = random.Random(5)
    labels = [rng.randint(0, 1) for _ in ids]
    r = hub.executor("POST", f"endpoints/{main}/feedback", token,
                     json=[{"request_id": i, "label": t} for i, t in zip(ids, labels)])
    assert r.status_code == 200 and r.json() == {"accepted": ROWS, "unknown": []}, r.text
    report = shadow_report(hub, main, token, "1d")
    half = stored_shadow_answers(hub, main, "2")
    taken = [n for n, i in enumerate(ids) if i in half]
    expected = {
        local["copy"]: (labels, local["predictions"]["1"]),
        "2": ([labels[n] for n in taken], [local["predictions"]["2"][n] for n in taken]),
    }
    for version, (y_true, y_pred) in expected.items():
        found = shadow_of(report, version)
        assert found["labelled"] == len(y_true) and found["task"] == "classification"
        assert found["quality"] == pytest.approx({"accuracy": accuracy_score(y_true, y_pred),
                                                  "f1": f1_score(y_true, y_pred)}), version
    # The live versions' views leave the shadows out (quality, metrics, drift monitoring).
    assert [v["version"] for v in hub.executor("GET", f"endpoints/{main}/quality", token).json()["versions"]] == ["1"]
    assert [v["version"] for v in hub.executor("GET", f"endpoints/{main}/metrics", token).json()["versions"]] == ["1"]
    assert [v["version"] for v in hub.executor("GET", f"endpoints/{main}/monitoring?window=1h", token).json()["versions"]] == ["1"]


def test_a_stopped_or_killed_shadow_never_fails_a_live_request(hub, people, model, local, main, traffic):
    token = people["owner_token"]
    pid = pid_of(hub, main, local["copy"])
    group = os.getpgid(pid)
    os.killpg(group, signal.SIGSTOP)  # it answers nothing from now on: its copies hang
    try:
        answers = [invoke(hub, main, token, one_row(row)) for row in local["rows"]]
    finally:
        os.killpg(group, signal.SIGKILL)
    assert [r.status_code for r in answers] == [200] * ROWS, [r.text for r in answers]
    assert {r.headers["X-Notebench-Model-Version"] for r in answers} == {f"{model['name']}/1"}
    assert [r.json()["predictions"][0] for r in answers] == local["predictions"]["1"]
    # At most max_shadow_in_flight (8) copies waited on it; the others were dropped and counted.
    assert shadow_of(shadow_report(hub, main, token), local["copy"])["dropped"] == ROWS - 8
    # Dead now: the live version answers on, and the shadow is started again.
    answers = [invoke(hub, main, token, one_row(row)) for row in local["rows"][:5]]
    assert [r.status_code for r in answers] == [200] * 5
    wait_for(lambda: pid_of(hub, main, local["copy"]) not in (None, pid), 120, message="the shadow started again")
    endpoint = wait_status(hub, main, token)
    assert [v["status"] for v in endpoint["versions"]] == ["ready"] * 3, endpoint
    # The copies it never answered are its errors (not the live version's).
    report = wait_for(lambda: (r := shadow_report(hub, main, token)) and shadow_of(r, local["copy"])["errors"] >= 8 and r,
                      120, message="the hung copies failed")
    assert report["live"][0]["errors"] == 0


def once_settled(hub, method, path, token, body):
    """The answer to a change, asked again while the previous change still ends (409 until then)."""
    def answered():
        r = hub.executor(method, path, token, json=body)
        return [r] if r.status_code != 409 else None

    return wait_for(answered, 180, interval=0.05, message=f"{method} {path} accepted")[0]


def versions_of(endpoint_or_entry) -> list[tuple]:
    return [(v["version"], v["weight"], v["shadow"], v["traffic_percent"]) for v in endpoint_or_entry["versions"]]


def test_a_shadow_that_fails_to_start_leaves_the_live_versions_serving(hub, people, model, local, main):
    token, m = people["owner_token"], model["name"]
    r = once_settled(hub, "PATCH", f"endpoints/{main}", token, {"versions": [
        {"model": m, "version": "1", "weight": 100}, {"model": m, "version": "3", "shadow": True}]})
    assert r.status_code == 200, r.text
    endpoint = wait_status(hub, main, token)
    assert endpoint["reason"].startswith(f"shadow {m}/3 did not start"), endpoint
    assert [(v["version"], v["shadow"], v["status"]) for v in endpoint["versions"]] == [("1", False, "ready"), ("3", True, "failed")]
    with requests.Session() as session:
        for row in local["rows"][:5]:
            r = invoke(hub, main, token, one_row(row), session)
            assert r.status_code == 200 and r.headers["X-Notebench-Model-Version"] == f"{m}/1", r.text


def test_rollback_restores_the_shadows(hub, people, model, local, main):
    token, m = people["owner_token"], model["name"]
    entries = hub.executor("GET", f"endpoints/{main}/history", token).json()["entries"]
    deployed = entries[-1]
    assert deployed["action"] == "deploy"
    assert versions_of(deployed) == [("1", 100, False, None), (local["copy"], 0, True, 100), ("2", 0, True, 50)]
    assert versions_of(entries[0]) == [("1", 100, False, None), ("3", 0, True, 100)]  # the failed shadow's update
    r = once_settled(hub, "POST", f"endpoints/{main}/rollback", token, {"to": deployed["id"]})
    assert r.status_code == 200, r.text
    endpoint = wait_status(hub, main, token)
    assert versions_of(endpoint) == [("1", 100, False, None), (local["copy"], 0, True, 100), ("2", 0, True, 50)]
    assert endpoint["reason"] is None and {v["status"] for v in endpoint["versions"]} == {"ready"}
    r = invoke(hub, main, token, one_row(local["rows"][0]))
    assert r.status_code == 200 and r.headers["X-Notebench-Model-Version"] == f"{m}/1"
    request_id = r.headers["X-Notebench-Request-Id"]

    def copied():
        shadow_report(hub, main, token)  # writes what was recorded until now
        return request_id in stored_shadow_answers(hub, main, local["copy"])

    wait_for(copied, 60, message="the restored shadow got a copy")


@pytest.mark.parametrize("versions, field", [
    ([{"version": "1", "weight": 100}, {"version": "2", "shadow": True, "weight": 10}], "versions.1.weight"),
    ([{"version": "1", "weight": 100}, {"version": "2", "traffic_percent": 50, "weight": 0}], "versions.1.traffic_percent"),
    ([{"version": "1", "weight": 100}, {"version": "2", "shadow": True, "traffic_percent": 0}], "versions.1.traffic_percent"),
    ([{"version": "1", "weight": 100}, {"version": "2", "shadow": True, "traffic_percent": 101}], "versions.1.traffic_percent"),
    ([{"version": "1", "shadow": True}], "versions"),  # no live version
    ([{"version": "1", "weight": 100}, {"version": "1", "shadow": True}], "versions"),  # both live and shadow
    ([{"version": "1", "weight": 90}, {"version": "2", "shadow": True}], "versions"),  # the live weights sum to 90
    ([{"version": "1"}, {"version": "2", "shadow": True}], "versions.0.weight"),
    ([{"version": "champion", "weight": 100}, {"version": "1", "shadow": True}], "versions.1.version"),  # the alias is 1
])
def test_bad_versions_name_the_field(hub, people, model, versions, field):
    token = people["owner_token"]
    versions = [{"model": model["name"], **v} for v in versions]
    r = hub.executor("POST", "endpoints", token, json={"name": f"shd-bad-{RUN}", "versions": versions})
    assert r.status_code == 400 and r.json()["field"] == field, r.text
    assert hub.executor("GET", f"endpoints/shd-bad-{RUN}", token).status_code == 404


def test_ownership_matrix(hub, people, main):
    path = f"endpoints/{main}/shadow"
    assert hub.executor("GET", path, "").status_code == 401
    r = hub.executor("GET", path, people["other_token"])
    assert r.status_code == 404 and r.json()["status"] == 404, r.text
    for token in (people["owner_token"], hub.admin_token):
        r = hub.executor("GET", path, token)
        assert r.status_code == 200 and r.json()["window"] == "1d", r.text
    r = hub.executor("GET", path + "?window=2d", people["owner_token"])
    assert r.status_code == 400 and r.json()["field"] == "window", r.text
