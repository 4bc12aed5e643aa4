"""Schedules of the executor (/services/executor/api/schedules), on the session hub.

CRUD and ownership, next_run_at, bad cron / time zone, and a schedule that fell behind (its
next_run_at put in the past directly in the executor's database): it runs once, not once per
missed tick, and its job says which schedule made it. The executor looks for due schedules every
c.Executor.schedule_check_seconds (5 s by default).
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from tests.support.launcher import notebook, wait_for


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def next_tick(cron: str, tz: str, after: datetime) -> datetime:
    return croniter(cron, after.astimezone(ZoneInfo(tz))).get_next(datetime).astimezone(timezone.utc)


def assert_error(r, status: int, field: str | None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["status"] == status and body["message"] and body["field"] == field, body


@pytest.fixture(scope="module")
def users(hub):
    owner, other = unique("sch-own"), unique("sch-oth")
    return {"owner": owner, "token": hub.new_user(owner), "other": other, "other_token": hub.new_user(other)}


def template(text: str = "scheduled", **fields) -> dict:
    return {"notebook": notebook(f"print({text!r})"), **fields}


def create(hub, token, **fields) -> dict:
    body = {"name": "nightly", "cron": "0 3 * * *", "timezone": "UTC", "job": template(), **fields}
    r = hub.executor("POST", "schedules", token, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_create_read_update_delete(hub, users):
    token = users["token"]
    before = datetime.now(timezone.utc)
    r = hub.executor("POST", "schedules", token, json={"name": "weekday-report", "cron": "30 6 * * 1-5",
                                                        "timezone": "Europe/Paris", "job": template(name="report")})
    assert r.status_code == 201, r.text
    s = r.json()
    assert r.headers["Location"].endswith(f"/services/executor/api/schedules/{s['id']}")
    assert s["owner"] == users["owner"] and s["name"] == "weekday-report" and s["active"] is True
    assert s["job"]["name"] == "report" and s["job"]["notebook"]["cells"]
    # next_run_at: the next 06:30 on a weekday in Paris, in UTC, in the future
    when = parse_time(s["next_run_at"])
    assert when > datetime.now(timezone.utc)
    assert when == next_tick("30 6 * * 1-5", "Europe/Paris", before)
    local = when.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (6, 30) and local.weekday() < 5

    assert hub.executor("GET", f"schedules/{s['id']}", token).json() == s
    assert s["id"] in [x["id"] for x in hub.executor("GET", "schedules", token).json()["schedules"]]

    # Change the cron and the time zone: next_run_at follows.
    r = hub.executor("PATCH", f"schedules/{s['id']}", token, json={"cron": "0 12 * * *", "timezone": "Asia/Tokyo"})
    assert r.status_code == 200, r.text
    changed = r.json()
    assert (changed["cron"], changed["timezone"], changed["name"]) == ("0 12 * * *", "Asia/Tokyo", "weekday-report")
    tokyo = parse_time(changed["next_run_at"]).astimezone(ZoneInfo("Asia/Tokyo"))
    assert (tokyo.hour, tokyo.minute) == (12, 0) and parse_time(changed["next_run_at"]) > datetime.now(timezone.utc)

    # Pause: no next run. Resume: one again.
    paused = hub.executor("PATCH", f"schedules/{s['id']}", token, json={"active": False}).json()
    assert paused["active"] is False and paused["next_run_at"] is None
    assert hub.executor("GET", f"schedules/{s['id']}", token).json()["next_run_at"] is None
    resumed = hub.executor("PATCH", f"schedules/{s['id']}", token, json={"active": True}).json()
    assert resumed["active"] is True and parse_time(resumed["next_run_at"]) > datetime.now(timezone.utc)

    # Replace the job template (validated like a job).
    r = hub.executor("PATCH", f"schedules/{s['id']}", token, json={"job": template("new", parameters={"n": 1}), "name": "renamed"})
    assert r.status_code == 200, r.text
    assert r.json()["job"]["parameters"] == {"n": 1} and r.json()["name"] == "renamed"

    r = hub.executor("DELETE", f"schedules/{s['id']}", token)
    assert r.status_code == 204 and not r.content
    assert_error(hub.executor("GET", f"schedules/{s['id']}", token), 404, None)
    assert_error(hub.executor("DELETE", f"schedules/{s['id']}", token), 404, None)
    assert s["id"] not in [x["id"] for x in hub.executor("GET", "schedules", token).json()["schedules"]]


def test_ownership(hub, users):
    s = create(hub, users["token"], name="mine")
    url = f"schedules/{s['id']}"
    other, admin = users["other_token"], hub.admin_token
    for method, body in (("GET", None), ("PATCH", {"active": False}), ("DELETE", None)):
        assert_error(hub.executor(method, url, other, json=body), 404, None)
        assert_error(hub.executor(method, url, "", json=body), 401, None)
    assert hub.executor("GET", url, users["token"]).json() == s  # untouched
    assert s["id"] not in [x["id"] for x in hub.executor("GET", "schedules", other).json()["schedules"]]
    assert_error(hub.executor("GET", "schedules", ""), 401, None)
    assert_error(hub.executor("POST", "schedules", "", json={"name": "x", "cron": "* * * * *", "job": template()}), 401, None)
    # Admins see and change everyone's.
    assert s["id"] in [x["id"] for x in hub.executor("GET", "schedules", admin).json()["schedules"]]
    r = hub.executor("PATCH", url, admin, json={"name": "renamed by admin"})
    assert r.status_code == 200 and r.json()["owner"] == users["owner"] and r.json()["name"] == "renamed by admin"
    assert hub.executor("DELETE", url, admin).status_code == 204


BAD_SCHEDULES = [
    ("cron-garbage", {"cron": "every day"}, "cron"),
    ("cron-four-fields", {"cron": "0 3 * *"}, "cron"),
    ("cron-six-fields", {"cron": "0 0 3 * * *"}, "cron"),
    ("cron-out-of-range", {"cron": "61 * * * *"}, "cron"),
    ("cron-never", {"cron": "0 0 30 2 *"}, "cron"),
    ("cron-empty", {"cron": ""}, "cron"),
    ("cron-not-string", {"cron": 5}, "cron"),
    ("timezone-unknown", {"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ("timezone-directory", {"timezone": "America"}, "timezone"),
    ("timezone-path", {"timezone": "../../etc/passwd"}, "timezone"),
    ("timezone-long", {"timezone": "x" * 5000}, "timezone"),
    ("no-name", {"name": None}, "name"),
    ("active-not-bool", {"active": "yes"}, "active"),
    ("job-missing", {"job": None}, "job"),
    ("job-bad-notebook", {"job": {"notebook": {"cells": []}}}, "job.notebook"),
    ("job-unknown-profile", {"job": template(profile="no-such-profile")}, "job.profile"),
    ("job-unknown-kernel", {"job": template(kernel="no-such-kernel")}, "job.kernel"),
    ("job-cwd-escapes", {"job": template(cwd="../x")}, "job.cwd"),
    ("unknown-field", {"every": "day"}, "every"),
]


@pytest.mark.parametrize("change,field", [c[1:] for c in BAD_SCHEDULES], ids=[c[0] for c in BAD_SCHEDULES])
def test_bad_schedules_name_the_field(hub, users, change, field):
    body = {"name": "bad", "cron": "0 3 * * *", "timezone": "UTC", "job": template(), **change}
    body = {k: v for k, v in body.items() if v is not None}
    before = hub.executor("GET", "schedules", users["token"]).json()["schedules"]
    assert_error(hub.executor("POST", "schedules", users["token"], json=body), 400, field)
    assert hub.executor("GET", "schedules", users["token"]).json()["schedules"] == before


BAD_PATCHES = [
    ("cron", {"cron": "not cron"}, "cron"),
    ("cron-null", {"cron": None}, "cron"),
    ("cron-never", {"cron": "0 0 31 4 *"}, "cron"),
    ("timezone", {"timezone": "Nowhere/Special"}, "timezone"),
    ("timezone-null", {"timezone": None}, "timezone"),
    ("active-null", {"active": None}, "active"),
    ("name-null", {"name": None}, "name"),
    ("job-unknown-profile", {"job": template(profile="nope")}, "job.profile"),
    ("job-nan-parameter", b'{"job": {"notebook": %s, "parameters": {"x": NaN}}}', "job.parameters"),
    ("unknown-field", {"owner": "someone-else"}, "owner"),
    ("not-an-object", b'"active"', "body"),
]


@pytest.mark.parametrize("body,field", [c[1:] for c in BAD_PATCHES], ids=[c[0] for c in BAD_PATCHES])
def test_bad_patches_name_the_field_and_change_nothing(hub, users, body, field):
    s = create(hub, users["token"], name="patch-target")
    url = f"schedules/{s['id']}"
    if isinstance(body, bytes):
        data = body.replace(b"%s", json.dumps(notebook("print(1)")).encode())
        r = hub.executor("PATCH", url, users["token"], data=data)
    else:
        r = hub.executor("PATCH", url, users["token"], json=body)
    assert_error(r, 400, field)
    assert hub.executor("GET", url, users["token"]).json() == s
    hub.executor("DELETE", url, users["token"])


# --- a schedule that fell behind -----------------------------------------------------------------


def set_next_run_at(hub, schedule_id: int, when: datetime) -> None:
    """Write next_run_at as the executor's SQLAlchemy stores it in SQLite (naive UTC text)."""
    with sqlite3.connect(hub.data_dir / "executor.sqlite", timeout=30) as db:
        (stored,) = db.execute("SELECT next_run_at FROM schedules WHERE id = ?", (schedule_id,)).fetchone()
        assert stored is None or re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?", stored), stored
        value = when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        assert db.execute("UPDATE schedules SET next_run_at = ? WHERE id = ?", (value, schedule_id)).rowcount == 1
    db.close()


def jobs_of_schedule(hub, token, schedule_id: int) -> list[dict]:
    return [j for j in hub.executor("GET", "jobs?limit=200", token).json()["jobs"] if j["schedule_id"] == schedule_id]


def test_a_schedule_that_fell_behind_runs_once(hub, users):
    token = users["token"]
    now = datetime.now(timezone.utc)
    # Daily, at a time two hours ago: its next regular tick is ~22 hours away, far beyond this test.
    earlier = now - timedelta(hours=2)
    cron = f"{earlier.minute} {earlier.hour} * * *"
    s = create(hub, token, name="behind", cron=cron, job=template("from the schedule", name="behind-job"))
    regular_next = parse_time(s["next_run_at"])
    assert regular_next > now + timedelta(hours=21)
    # The executor was down for five days: five ticks were missed.
    set_next_run_at(hub, s["id"], now - timedelta(days=5))

    job = wait_for(lambda: (jobs_of_schedule(hub, token, s["id"]) or [None])[0], 60, interval=0.2,
                   message=f"a job of schedule {s['id']}")
    assert job["schedule_id"] == s["id"] and job["name"] == "behind-job" and job["owner"] == users["owner"]
    # Caught up in one go: the next run is the next regular tick, not one of the missed ones.
    after = hub.executor("GET", f"schedules/{s['id']}", token).json()
    assert parse_time(after["next_run_at"]) == regular_next

    # Wait for a later check of the schedules (a second schedule made due after the first job
    # appeared runs only in a later check), then count: still exactly one job.
    probe = create(hub, token, name="probe", cron=cron, job=template("probe", name="probe-job"))
    set_next_run_at(hub, probe["id"], now - timedelta(minutes=1))
    wait_for(lambda: jobs_of_schedule(hub, token, probe["id"]), 60, interval=0.2, message="the probe schedule's job")
    assert len(jobs_of_schedule(hub, token, s["id"])) == 1
    assert len(jobs_of_schedule(hub, token, probe["id"])) == 1

    done = hub.wait_job(job["id"], token)
    assert done["status"] == "succeeded", done
    out = hub.executor("GET", f"jobs/{job['id']}/output", token).json()
    assert "from the schedule" in json.dumps(out["cells"])

    # A deleted schedule's jobs stay, no longer linked to it.
    for x in (s, probe):
        assert hub.executor("DELETE", f"schedules/{x['id']}", token).status_code == 204
    assert hub.executor("GET", f"jobs/{job['id']}", token).json()["schedule_id"] is None


def test_a_paused_schedule_never_runs(hub, users):
    token = users["token"]
    s = create(hub, token, name="paused", cron="0 3 * * *", job=template(name="paused-job"))
    paused = hub.executor("PATCH", f"schedules/{s['id']}", token, json={"active": False}).json()
    assert paused["active"] is False and paused["next_run_at"] is None
    # Even with a next run in the past (left over, or written by hand), an inactive schedule is skipped.
    set_next_run_at(hub, s["id"], datetime.now(timezone.utc) - timedelta(hours=1))
    # A probe made due after the pause runs in a later check; by then the paused one would have run.
    probe = create(hub, token, name="probe2", cron="0 3 * * *", job=template(name="probe2-job"))
    set_next_run_at(hub, probe["id"], datetime.now(timezone.utc) - timedelta(minutes=1))
    wait_for(lambda: jobs_of_schedule(hub, token, probe["id"]), 60, interval=0.2, message="the probe schedule's job")
    assert jobs_of_schedule(hub, token, s["id"]) == []
    for x in (s, probe):
        hub.executor("DELETE", f"schedules/{x['id']}", token)


def test_a_tick_past_the_owners_quota_is_skipped_and_audited(hub):
    """A schedule submits within its owner's quotas: a tick that would pass one is skipped (the
    audit log says why) and the next one runs once the quota allows."""
    owner = unique("sch-quota")
    token = hub.new_user(owner)
    assert hub.executor("PUT", f"quotas/users/{owner}", None, json={"queued_jobs": 0}).status_code == 200
    now = datetime.now(timezone.utc)
    earlier = now - timedelta(hours=2)
    s = create(hub, token, name="over", cron=f"{earlier.minute} {earlier.hour} * * *", job=template())
    set_next_run_at(hub, s["id"], now - timedelta(minutes=1))

    def skipped():
        entries = hub.executor("GET", "audit", None, params={"user": owner, "action": "schedule.skip"}).json()["entries"]
        return entries[0] if entries else None

    entry = wait_for(skipped, 60, interval=0.2, message="the skipped tick in the audit log")
    assert (entry["actor"], entry["target"], entry["owner"]) == (f"schedule {s['id']}", f"schedule {s['id']}", owner)
    assert (entry["detail"]["quota"], entry["detail"]["limit"], entry["detail"]["current"]) == ("queued_jobs", 0, 0)
    assert jobs_of_schedule(hub, token, s["id"]) == []

    assert hub.executor("PUT", f"quotas/users/{owner}", None, json={}).status_code == 200
    set_next_run_at(hub, s["id"], datetime.now(timezone.utc) - timedelta(minutes=1))
    job = wait_for(lambda: (jobs_of_schedule(hub, token, s["id"]) or [None])[0], 60, interval=0.2,
                   message="the schedule's job once the quota allows")
    assert hub.wait_job(job["id"], token)["status"] == "succeeded"
    assert hub.executor("DELETE", f"schedules/{s['id']}", token).status_code == 204
