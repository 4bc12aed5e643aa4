"""The audit log (GET /api/audit): every change to jobs, schedules and endpoints is recorded with
who made it and when; only admins read it, filtered by time, user and action; nothing edits or
deletes an entry through the API."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.support.endpoints import deploy, wait_status
from tests.support.jobs import submit, unique
from tests.support.launcher import notebook


@pytest.fixture(scope="module")
def people(hub):
    owner, other = unique("au-own"), unique("au-oth")
    return {"owner": owner, "owner_token": hub.new_user(owner), "other": other, "other_token": hub.new_user(other)}


def entries(hub, token=None, **params) -> list[dict]:
    r = hub.executor("GET", "audit", token, params={"limit": "200", **params})
    assert r.status_code == 200, r.text
    return r.json()["entries"]


def executors(found: list[dict]) -> list[dict]:
    """The entries the executor recorded itself (not the hub's or MLflow's reports: making the test
    users and their tokens, registering their models)."""
    return [e for e in found if "source" not in e["detail"]]


def assert_error(r, status: int, field: str | None) -> None:
    assert r.status_code == status, r.text
    assert r.json()["status"] == status and r.json()["field"] == field, r.json()


@pytest.fixture(scope="module")
def history(hub, people, model):
    """What the owner did (and the admin, to the owner's things), in order; the time before it."""
    token = people["owner_token"]
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    done = submit(hub, token, "print('audited')")
    hub.wait_job(done["id"], token)
    running = submit(hub, token, "import time; time.sleep(600)")
    hub.wait_job(running["id"], token, until=("running",))
    assert hub.executor("POST", f"jobs/{running['id']}/cancel", token).status_code == 200
    assert hub.executor("DELETE", f"jobs/{done['id']}", hub.admin_token).status_code == 204  # by the admin
    r = hub.executor("POST", "schedules", token, json={"name": "nightly", "cron": "0 3 * * *", "timezone": "UTC",
                                                        "job": {"notebook": notebook("print(1)")}})
    assert r.status_code == 201, r.text
    schedule = r.json()["id"]
    assert hub.executor("PATCH", f"schedules/{schedule}", token, json={"active": False}).status_code == 200
    assert hub.executor("DELETE", f"schedules/{schedule}", token).status_code == 204
    endpoint = unique("au-ep")
    deploy(hub, token, endpoint, [{"model": model["name"], "version": "1", "weight": 100}])
    wait_status(hub, endpoint, token)
    r = hub.executor("PATCH", f"endpoints/{endpoint}", token,
                     json={"versions": [{"model": model["name"], "version": "champion", "weight": 100}]})
    assert r.status_code == 200, r.text
    assert hub.executor("DELETE", f"endpoints/{endpoint}", token).status_code == 204
    return {"before": before, "done": done["id"], "running": running["id"], "schedule": schedule, "endpoint": endpoint}


def test_every_change_is_recorded_with_who_and_when(hub, people, history):
    owner = people["owner"]
    seen = [(e["actor"], e["action"], e["target"], e["owner"]) for e in reversed(executors(entries(hub, user=owner)))]
    assert seen == [
        (owner, "job.submit", f"job {history['done']}", owner),
        (owner, "job.submit", f"job {history['running']}", owner),
        (owner, "job.cancel", f"job {history['running']}", owner),
        ("admin", "job.delete", f"job {history['done']}", owner),  # an admin acting on the owner's job
        (owner, "schedule.create", f"schedule {history['schedule']}", owner),
        (owner, "schedule.update", f"schedule {history['schedule']}", owner),
        (owner, "schedule.delete", f"schedule {history['schedule']}", owner),
        (owner, "endpoint.deploy", f"endpoint {history['endpoint']}", owner),
        (owner, "endpoint.update", f"endpoint {history['endpoint']}", owner),
        (owner, "endpoint.delete", f"endpoint {history['endpoint']}", owner),
    ]
    by_action = {e["action"]: e for e in executors(entries(hub, user=owner))}
    assert by_action["schedule.update"]["detail"]["changed"] == ["active"]
    assert by_action["endpoint.update"]["detail"]["versions"][0]["version"] == "champion"  # as asked
    assert by_action["job.cancel"]["detail"]["was"] == "running"
    for entry in by_action.values():
        assert history["before"] <= datetime.fromisoformat(entry["at"]) <= datetime.now(timezone.utc)


def test_filters_by_time_user_and_action(hub, people, history):
    owner = people["owner"]
    assert [e["action"] for e in entries(hub, user=owner, action="schedule")] == [
        "schedule.delete", "schedule.update", "schedule.create"]
    assert [e["target"] for e in entries(hub, user=owner, action="job.cancel")] == [f"job {history['running']}"]
    assert entries(hub, user=owner, since=(datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()) == []
    assert len(executors(entries(hub, user=owner, since=history["before"].isoformat()))) == 10
    assert executors(entries(hub, user=owner, until=history["before"].isoformat())) == []  # (its model: before)
    assert executors(entries(hub, user=people["other"])) == []  # did nothing here, owns nothing
    # Paging: newest first, the cursor goes on where the page ended.
    r = hub.executor("GET", "audit", None, params={"user": owner, "limit": "4"}).json()
    rest = hub.executor("GET", "audit", None, params={"user": owner, "limit": "200", "cursor": r["next_cursor"]}).json()
    assert [e["id"] for e in r["entries"] + rest["entries"]] == [e["id"] for e in entries(hub, user=owner)]


def test_only_admins_read_it(hub, people, history):
    assert_error(hub.executor("GET", "audit", ""), 401, None)
    for token in (people["owner_token"], people["other_token"]):
        assert_error(hub.executor("GET", "audit", token), 403, None)
        assert_error(hub.executor("GET", "audit", token, params={"user": people["owner"]}), 403, None)
    assert entries(hub, hub.admin_token)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_no_api_writes_or_deletes_an_entry(hub, people, history, method):
    """Only the reporting services append (POST, their scope: tests/hub/test_audit_reports.py)."""
    before = entries(hub, user=people["owner"])
    for token in (None, people["owner_token"]):  # the admin, the owner
        r = hub.executor(method, "audit", token, json={"actor": "nobody", "action": "job.submit"})
        assert r.status_code == (403 if method == "POST" else 405), r.text
        r = hub.executor(method, f"audit/{before[0]['id']}", token)
        assert r.status_code == 404, r.text
    assert entries(hub, user=people["owner"]) == before


@pytest.mark.parametrize("params,field", [
    ({"since": "yesterday"}, "since"), ({"until": "2026-13-01"}, "until"), ({"action": "job.explode"}, "action"),
    ({"action": "job.%"}, "action"), ({"limit": "0"}, "limit"), ({"cursor": "-1"}, "cursor"), ({"who": "ada"}, "who"),
])
def test_bad_filters_name_the_field(hub, params, field):
    assert_error(hub.executor("GET", "audit", None, params=params), 400, field)


def test_a_users_own_input_is_kept_as_data(hub, people):
    """Names a user chose (job and schedule names) are stored as given and never widen a filter."""
    token = people["other_token"]
    name = "x%' OR 1=1 --"
    r = hub.executor("POST", "schedules", token, json={"name": name, "cron": "0 3 * * *", "timezone": "UTC",
                                                        "job": {"notebook": notebook("print(1)")}})
    assert r.status_code == 201, r.text
    assert hub.executor("DELETE", f"schedules/{r.json()['id']}", token).status_code == 204
    mine = executors(entries(hub, user=people["other"]))
    assert [e["detail"]["name"] for e in mine] == [name, name]
    assert entries(hub, user=name) == []
