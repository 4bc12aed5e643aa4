"""Gated retraining (executor/schedules/promotion.py), on the session's real hub, MLflow, executor,
papermill jobs and scoring servers.

One schedule runs a training notebook (iris, logistic regression: ``C`` sets how good it is) that
registers a version of the owner's model from the job's run and logs its held-out accuracy. It is
made to fire now by putting its next run in the past (as tests/jobs/test_schedules.py does), four
times: a first run with no champion yet (promoted), then, with the policy rolling an endpoint that
serves the champion, a better run (promoted: alias moved, endpoint rolled by the schedule), a worse
one (refused: nothing changes) and one that logs no metric (refused: no metric).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.jobs.test_schedules import set_next_run_at
from tests.support.endpoints import (
    RUN,
    delete_endpoints,
    deploy_ready,
    owner_and_other,
    versions_answering,
    wait_status,
)
from tests.support.launcher import notebook, wait_for
from tests.support.mlflow import PREFIX, api

pytestmark = pytest.mark.slow

TRAIN = r"""
import mlflow
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

X, y = load_iris(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
model = LogisticRegression(C=C, max_iter=500).fit(X_train, y_train)
with mlflow.start_run():  # the job's own run
    if log_metric:
        mlflow.log_metric("accuracy", accuracy_score(y_test, model.predict(X_test)))
    mlflow.sklearn.log_model(model, name="model", registered_model_name=model_name, input_example=X_test.head(2))
"""
GOOD, BAD = 1.0, 1e-4  # C: a fit of iris (accuracy near 1), and one regularised into a constant (about 1/3)
IRIS_INPUT = {"dataframe_split": {"columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
                                  "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}}


def mlflow(hub, token, method, path, **kwargs):
    return api(hub.url + PREFIX, token, method, f"api/2.0/mlflow/{path}", **kwargs)


def champion(hub, token, model) -> str | None:
    r = mlflow(hub, token, "GET", "registered-models/alias", params={"name": model, "alias": "champion"})
    return r.json()["model_version"]["version"] if r.status_code == 200 else None


def accuracy_of(hub, token, run_id) -> float | None:
    run = mlflow(hub, token, "GET", "runs/get", params={"run_id": run_id}).json()["run"]
    return next((m["value"] for m in run["data"].get("metrics", []) if m["key"] == "accuracy"), None)


def decisions(hub, schedule_id, token, **params) -> list[dict]:
    r = hub.executor("GET", f"schedules/{schedule_id}/decisions", token, params=params)
    assert r.status_code == 200, r.text
    return r.json()["decisions"]


def job_template(model: str, C: float, log_metric: bool = True) -> dict:
    nb = notebook(TRAIN, parameters="C = 1.0\nlog_metric = True\nmodel_name = ''")
    return {"notebook": nb, "name": "retrain", "parameters": {"C": C, "log_metric": log_metric, "model_name": model}}


def policy(model: str, **fields) -> dict:
    return {"model": model, "metric": "accuracy", "greater_is_better": True, "margin": 0.05, "alias": "champion", **fields}


def run_now(hub, token, schedule_id, template) -> tuple[dict, dict]:
    """Give the schedule this job, make it due now; its job once succeeded, and the decision on it once made."""
    before = {j["id"] for j in hub.executor("GET", "jobs?limit=200", token).json()["jobs"]}
    r = hub.executor("PATCH", f"schedules/{schedule_id}", token, json={"job": template})
    assert r.status_code == 200, r.text
    set_next_run_at(hub, schedule_id, datetime.now(timezone.utc) - timedelta(minutes=1))

    def new_job():
        jobs = hub.executor("GET", "jobs?limit=200", token).json()["jobs"]
        return next((j for j in jobs if j["schedule_id"] == schedule_id and j["id"] not in before), None)

    job = wait_for(new_job, 60, interval=0.2, message=f"a job of schedule {schedule_id}")
    job = hub.wait_job(job["id"], token, timeout=300, interval=0.5)
    assert job["status"] == "succeeded", job

    def decided():
        return next((d for d in decisions(hub, schedule_id, token) if d["job_id"] == job["id"] and d["state"] == "done"), None)

    return job, wait_for(decided, 120, interval=0.2, message=f"the decision on job {job['id']}")


@pytest.fixture(scope="module")
def people(hub):
    return owner_and_other(hub, "promo")


@pytest.fixture(scope="module", autouse=True)
def cleanup(hub):
    yield
    delete_endpoints(hub, "promo-")


@pytest.fixture(scope="module")
def story(hub, people):
    """The four runs of one schedule, and what each left behind."""
    token, model, endpoint = people["owner_token"], f"promo-{people['owner']}", f"promo-ep-{RUN}"
    # The policy's model must exist for its owner: made empty, the first run registers version 1.
    assert mlflow(hub, token, "POST", "registered-models/create", json={"name": model}).status_code == 200
    earlier = datetime.now(timezone.utc) - timedelta(hours=2)  # daily, two hours ago: no regular tick in this test
    r = hub.executor("POST", "schedules", token, json={"name": "retrain", "cron": f"{earlier.minute} {earlier.hour} * * *",
                                                        "job": job_template(model, BAD), "promotion": policy(model)})
    assert r.status_code == 201, r.text
    schedule = r.json()
    story = {"model": model, "endpoint": endpoint, "schedule": schedule, "token": token}

    story["first"] = run_now(hub, token, schedule["id"], job_template(model, BAD))
    story["champion_after_first"] = champion(hub, token, model)
    # An endpoint serving the champion, which the policy now rolls.
    deploy_ready(hub, token, endpoint, [{"model": model, "version": "champion", "weight": 100}])
    r = hub.executor("PATCH", f"schedules/{schedule['id']}", token, json={"promotion": policy(model, endpoint=endpoint)})
    assert r.status_code == 200 and r.json()["promotion"]["endpoint"] == endpoint, r.text
    story["history_before"] = hub.executor("GET", f"endpoints/{endpoint}/history", token).json()["entries"]

    story["better"] = run_now(hub, token, schedule["id"], job_template(model, GOOD))
    story["champion_after_better"] = champion(hub, token, model)
    story["endpoint_after_better"] = wait_status(hub, endpoint, token)
    story["answering_after_better"] = versions_answering(hub, endpoint, token, IRIS_INPUT, 5)
    story["history_after_better"] = hub.executor("GET", f"endpoints/{endpoint}/history", token).json()["entries"]

    story["worse"] = run_now(hub, token, schedule["id"], job_template(model, BAD))
    story["no_metric"] = run_now(hub, token, schedule["id"], job_template(model, GOOD, log_metric=False))
    story["champion_at_end"] = champion(hub, token, model)
    story["endpoint_at_end"] = wait_status(hub, endpoint, token)
    story["history_at_end"] = hub.executor("GET", f"endpoints/{endpoint}/history", token).json()["entries"]
    return story


def test_a_first_run_with_no_champion_is_promoted(hub, story):
    job, decision = story["first"]
    assert decision["promoted"] is True and decision["champion_version"] is None and decision["champion_value"] is None
    assert decision["challenger_version"] == "1" == story["champion_after_first"]
    assert decision["challenger_value"] == accuracy_of(hub, story["token"], job["mlflow_run_id"])
    assert decision["reason"].startswith("promoted: no champion yet")
    assert decision["endpoint"] is None and decision["endpoint_history_id"] is None and decision["note"] is None
    assert (decision["schedule_id"], decision["model"], decision["metric"], decision["margin"], decision["alias"]) == (
        story["schedule"]["id"], story["model"], "accuracy", 0.05, "champion")


def test_a_better_challenger_moves_the_alias_and_rolls_the_endpoint(hub, story):
    job, decision = story["better"]
    first_job, first = story["first"]
    assert decision["promoted"] is True and decision["state"] == "done" and decision["note"] is None
    assert (decision["challenger_version"], decision["champion_version"]) == ("2", "1")
    token = story["token"]
    assert decision["challenger_value"] == accuracy_of(hub, token, job["mlflow_run_id"])
    assert decision["champion_value"] == accuracy_of(hub, token, first_job["mlflow_run_id"]) == first["challenger_value"]
    assert decision["challenger_value"] >= decision["champion_value"] + 0.05
    assert decision["reason"].startswith("promoted: accuracy ")
    assert story["champion_after_better"] == "2"
    # The endpoint serves version 2 now, rolled by the schedule, as its history says.
    model = story["model"]
    assert [(v["model"], v["version"], v["weight"]) for v in story["endpoint_after_better"]["versions"]] == [(model, "2", 100)]
    assert story["answering_after_better"] == {f"{model}/2"}
    entry = story["history_after_better"][0]
    assert len(story["history_after_better"]) == len(story["history_before"]) + 1
    assert entry["id"] == decision["endpoint_history_id"]
    assert (entry["actor"], entry["action"]) == (f"schedule {story['schedule']['id']}", "update")
    assert entry["detail"] == {"decision": decision["id"], "job": job["id"]}
    assert decision["reason"] in entry["reason"] and f"job {job['id']}" in entry["reason"]
    assert [(v["version"], v["weight"]) for v in entry["versions"]] == [("2", 100)]


def test_a_worse_challenger_is_refused_and_changes_nothing(hub, story):
    job, decision = story["worse"]
    assert decision["promoted"] is False and decision["state"] == "done"
    assert (decision["challenger_version"], decision["champion_version"]) == ("3", "2")
    assert decision["challenger_value"] == accuracy_of(hub, story["token"], job["mlflow_run_id"])
    assert decision["champion_value"] == story["better"][1]["challenger_value"] > decision["challenger_value"]
    assert decision["reason"].startswith("refused: accuracy ") and decision["endpoint_history_id"] is None
    # Alias and endpoint as the better run left them; no history entry since.
    assert story["champion_at_end"] == "2"
    assert [(v["version"], v["weight"]) for v in story["endpoint_at_end"]["versions"]] == [("2", 100)]
    assert [e["id"] for e in story["history_at_end"]] == [e["id"] for e in story["history_after_better"]]


def test_a_run_that_logs_no_metric_is_refused(story):
    job, decision = story["no_metric"]
    assert decision["promoted"] is False and decision["challenger_version"] == "4"
    assert decision["challenger_value"] is None and decision["champion_version"] == "2"
    assert decision["reason"].startswith("refused: no metric 'accuracy'")


def test_decisions_are_listed_newest_first_and_audited(hub, story):
    schedule_id, token = story["schedule"]["id"], story["token"]
    listed = decisions(hub, schedule_id, token)
    jobs = [story[k][0]["id"] for k in ("no_metric", "worse", "better", "first")]
    assert [d["job_id"] for d in listed] == jobs  # one decision per job, newest first
    assert [d["promoted"] for d in listed] == [False, False, True, True]
    page = hub.executor("GET", f"schedules/{schedule_id}/decisions", token, params={"limit": 3}).json()
    assert [d["id"] for d in page["decisions"]] == [d["id"] for d in listed[:3]] and page["next_cursor"]
    rest = decisions(hub, schedule_id, token, limit=3, cursor=page["next_cursor"])
    assert [d["id"] for d in rest] == [listed[3]["id"]]
    audit = hub.executor("GET", "audit", params={"action": "schedule.promotion", "user": story["schedule"]["owner"]}).json()
    entries = [e for e in audit["entries"] if e["target"] == f"schedule {schedule_id}"]
    assert sorted(e["detail"]["job"] for e in entries) == sorted(jobs)
    for e in entries:
        d = next(x for x in listed if x["job_id"] == e["detail"]["job"])
        assert e["actor"] == f"schedule {schedule_id}"
        assert (e["detail"]["promoted"], e["detail"]["reason"], e["detail"]["challenger_version"],
                e["detail"]["champion_version"], e["detail"]["challenger_value"], e["detail"]["champion_value"]) == (
            d["promoted"], d["reason"], d["challenger_version"], d["champion_version"], d["challenger_value"], d["champion_value"])


# --- access and validation (no job needed) --------------------------------------------------------


@pytest.fixture(scope="module")
def idle(hub, people):
    """A schedule of the owner with a policy, never due; the owner's model (empty)."""
    token, model = people["owner_token"], f"promo-idle-{people['owner']}"
    assert mlflow(hub, token, "POST", "registered-models/create", json={"name": model}).status_code == 200
    r = hub.executor("POST", "schedules", token, json={"name": "idle", "cron": "0 3 * * *",
                                                        "job": job_template(model, GOOD), "promotion": policy(model)})
    assert r.status_code == 201, r.text
    assert r.json()["promotion"] == policy(model, endpoint=None)
    yield {"schedule": r.json(), "model": model}
    hub.executor("DELETE", f"schedules/{r.json()['id']}", token)


def test_decisions_access_matrix(hub, people, idle):
    path = f"schedules/{idle['schedule']['id']}/decisions"
    r = hub.executor("GET", path, "")
    assert r.status_code == 401 and r.json()["status"] == 401, r.text  # anonymous, as every executor API answers it
    r = hub.executor("GET", path, people["other_token"])
    assert r.status_code == 404 and r.json()["status"] == 404, r.text
    for token in (people["owner_token"], None):  # the owner, the admin
        r = hub.executor("GET", path, token)
        assert r.status_code == 200 and r.json() == {"decisions": [], "next_cursor": None}, r.text
    assert hub.executor("GET", "schedules/999999999/decisions").status_code == 404
    assert hub.executor("GET", path, None, params={"limit": "0"}).json()["field"] == "limit"
    assert hub.executor("GET", path, None, params={"since": "x"}).json()["field"] == "since"


def test_bad_policies_name_the_field(hub, people, idle, story):
    token, other, model = people["owner_token"], people["other_token"], idle["model"]
    theirs = f"promo-theirs-{people['other']}"
    assert mlflow(hub, other, "POST", "registered-models/create", json={"name": theirs}).status_code == 200
    # The other user may not name the owner's endpoint (as if it did not exist), even with a model of their own.
    r = hub.executor("POST", "schedules", other, json={"name": "x", "cron": "0 3 * * *", "job": job_template(theirs, GOOD),
                                                        "promotion": policy(theirs, endpoint=story["endpoint"])})
    assert r.status_code == 400 and r.json()["field"] == "promotion.endpoint", r.text
    cases = [
        (policy(f"no-such-model-{RUN}"), "promotion.model"),
        (policy(model, endpoint=f"no-such-{RUN}"), "promotion.endpoint"),
        (policy(model, margin=-1), "promotion.margin"),
        (policy(model, metric=""), "promotion.metric"),
        (policy(model, alias="latest"), "promotion.alias"),
        (policy(model, greater_is_better="yes"), "promotion.greater_is_better"),
        (policy(model, endpoint="Bad Name"), "promotion.endpoint"),
        (policy(model, extra=1), "promotion.extra"),
        ({"metric": "accuracy"}, "promotion.model"),
        ("accuracy", "promotion"),
    ]
    before = hub.executor("GET", "schedules", token).json()["schedules"]
    for promotion, field in cases:
        body = {"name": "bad", "cron": "0 3 * * *", "job": job_template(model, GOOD), "promotion": promotion}
        r = hub.executor("POST", "schedules", token, json=body)
        assert r.status_code == 400 and r.json()["field"] == field, (promotion, r.text)
        r = hub.executor("PATCH", f"schedules/{idle['schedule']['id']}", token, json={"promotion": promotion})
        assert r.status_code == 400 and r.json()["field"] == field, (promotion, r.text)
    assert hub.executor("GET", "schedules", token).json()["schedules"] == before  # nothing made, nothing changed
    # An admin changing the owner's schedule names the owner's endpoint (the owner's, not the admin's, are checked).
    r = hub.executor("PATCH", f"schedules/{idle['schedule']['id']}", None,
                     json={"promotion": policy(model, endpoint=story["endpoint"])})
    assert r.status_code == 200 and r.json()["promotion"]["endpoint"] == story["endpoint"], r.text
    # null drops the policy.
    r = hub.executor("PATCH", f"schedules/{idle['schedule']['id']}", token, json={"promotion": None})
    assert r.status_code == 200 and r.json()["promotion"] is None, r.text
    r = hub.executor("PATCH", f"schedules/{idle['schedule']['id']}", token, json={"promotion": policy(model)})
    assert r.status_code == 200 and r.json()["promotion"]["model"] == model, r.text
