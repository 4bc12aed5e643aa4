"""Usage and cost (GET /api/usage, `notebench admin usage`) on a real hub whose meter ticks every
second: what a job, a scoring server and a user server accrue, that accrual stops when they stop
and carries on across a restart of the executor; who may read whose; CSV; bad input."""

from __future__ import annotations

import csv
import io
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from tests.jobs.test_executor_recovery import executor_process
from tests.support.endpoints import deploy, wait_status
from tests.support.jobs import submit, unique
from tests.support.launcher import BASE_CONFIG, REPO, running_hub, wait_for

pytestmark = pytest.mark.slow

CONFIG = BASE_CONFIG + """
c.Usage.interval_seconds = 1
c.Usage.prices = {"gpu": 2.5}
c.Usage.currency = "EUR"
"""
# The default profiles (hub/platform/profiles.py): cpu 2 cores, 4 GiB; gpu 4 cores, 16 GiB, 1 GPU.
CPU, GPU = {"cpu": 2, "gib": 4, "gpus": 0}, {"cpu": 4, "gib": 16, "gpus": 1}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory, "usage", CONFIG) as h:
        yield h


@pytest.fixture(scope="module")
def people(hub):
    owner, other, group = unique("us-own"), unique("us-oth"), unique("us-team")
    people = {"owner": owner, "owner_token": hub.new_user(owner), "other": other, "other_token": hub.new_user(other),
              "group": group}
    assert hub.api("POST", f"/groups/{group}").status_code == 201
    assert hub.api("POST", f"/groups/{group}/users", json={"users": [owner]}).status_code == 200
    return people


def usage(hub, token=None, **params) -> dict:
    r = hub.executor("GET", "usage", token, params={"since": "2000-01-01", **params})
    assert r.status_code == 200, r.text
    return r.json()


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def intervals(hub, kind: str, ref: str) -> list[dict]:
    """The meter's intervals of one thing, from the executor's store."""
    with sqlite3.connect(hub.data_dir / "executor.sqlite") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM usage_intervals WHERE kind = ? AND ref = ? ORDER BY id", (kind, ref)).fetchall()
    return [dict(r) for r in rows]


def assert_error(r, status: int, field: str | None) -> None:
    assert r.status_code == status, r.text
    assert r.json()["status"] == status and r.json()["field"] == field, r.json()


def job_counted(hub, user: str, profile: str) -> dict:
    """A job of ``user``'s that ran, once the meter has counted it to its end."""
    token = hub.new_user(user)
    job = hub.wait_job(submit(hub, token, "import time; time.sleep(1)", profile=profile)["id"], token)
    assert job["status"] == "succeeded", job
    wait_for(lambda: [r for r in intervals(hub, "job", f"job {job['id']}") if r["ended"]], 60,
             message="the job's interval ended")
    return job


def test_a_jobs_usage_is_its_profile_times_its_duration(hub):
    user = unique("us-job")
    job = job_counted(hub, user, "gpu")
    seconds = (when(job["finished_at"]) - when(job["started_at"])).total_seconds()
    ref = f"job {job['id']}"
    report = usage(hub, user=user)
    assert {(r["user"], r["profile"]) for r in report["rows"]} == {(user, "gpu")}
    totals, hours = report["totals"], seconds / 3600
    assert totals["profile_hours"] == pytest.approx(hours, abs=1e-5)
    assert totals["cpu_seconds_requested"] == pytest.approx(GPU["cpu"] * seconds, abs=1e-3)
    assert totals["memory_gb_hours"] == pytest.approx(GPU["gib"] * hours, abs=1e-5)
    assert totals["gpu_hours"] == pytest.approx(GPU["gpus"] * hours, abs=1e-5)
    assert totals["cost"] == pytest.approx(2.5 * hours, abs=1e-5) and report["currency"] == "EUR"
    # Measured at the meter's ticks while it ran (this short job may have ended before one came).
    assert totals["cpu_seconds_used"] is None or 0 < totals["cpu_seconds_used"] <= totals["cpu_seconds_requested"]
    (row,) = intervals(hub, "job", ref)
    assert row["owner"] == user


def test_a_jobs_used_cpu_is_measured_by_root_while_it_runs(hub):
    """A job that keeps one core busy for 4 s: what its processes used, as /proc has it, sampled at each
    tick (1 s here), about one core's worth and never more than it asked for."""
    user = unique("us-cpu")
    token = hub.new_user(user)
    burn = "import time\nend = time.time() + 4\nwhile time.time() < end: pass"
    job = hub.wait_job(submit(hub, token, burn)["id"], token)
    assert job["status"] == "succeeded", job
    wait_for(lambda: [r for r in intervals(hub, "job", f"job {job['id']}") if r["ended"]], 60,
             message="the job's interval ended")
    totals = usage(hub, user=user)["totals"]
    assert 1.0 <= totals["cpu_seconds_used"] <= totals["cpu_seconds_requested"], totals


def test_a_scoring_server_accrues_until_its_endpoint_is_deleted(hub, people, model):
    owner, token = people["owner"], people["owner_token"]
    name = unique("us-ep")
    deploy(hub, token, name, [{"model": model["name"], "version": "1", "weight": 100}])
    wait_status(hub, name, token)
    created = when(hub.executor("GET", f"endpoints/{name}", token).json()["created_at"])
    # Accruing, and with the owner's groups (asked of the hub just after the interval is opened).
    mine = wait_for(lambda: (u := usage(hub, token))["totals"]["profile_hours"] > 0 and u["rows"][0]["groups"] and u,
                    60, message="the scoring server's usage")
    assert {r["profile"] for r in mine["rows"]} == {"cpu"} and mine["totals"]["cost"] is None  # no price for cpu
    assert mine["rows"][0]["groups"] == [people["group"]]
    assert hub.executor("DELETE", f"endpoints/{name}", token).status_code == 204
    deleted = datetime.now(timezone.utc)
    with sqlite3.connect(hub.data_dir / "executor.sqlite") as db:
        (server_id,) = db.execute("SELECT MAX(CAST(SUBSTR(ref, 9) AS INTEGER)) FROM usage_intervals "
                                  "WHERE kind = 'scoring_server' AND owner = ?", (owner,)).fetchone()
    wait_for(lambda: all(r["ended"] for r in intervals(hub, "scoring_server", f"scoring {server_id}")), 60,
             message="the scoring server's interval ended")
    total = usage(hub, token)["totals"]
    assert 0 < total["profile_hours"] <= (deleted - created).total_seconds() / 3600
    assert total["cpu_seconds_requested"] == pytest.approx(CPU["cpu"] * total["profile_hours"] * 3600, abs=0.01)  # hours: 6 decimals


def test_a_server_accrues_until_it_is_stopped_and_across_an_executor_restart(hub, people):
    user = unique("us-srv")
    hub.new_user(user)
    spawned = datetime.now(timezone.utc)
    hub.spawn(user, profile="cpu")
    ref = f"server {user}/"
    first = wait_for(lambda: intervals(hub, "server", ref), 60, message="the server's interval")[0]
    assert (first["profile"], first["cpu"], first["ended"]) == ("cpu", CPU["cpu"], 0)

    old = executor_process(hub)
    old.send_signal(signal.SIGKILL)
    killed = datetime.now(timezone.utc)
    wait_for(lambda: (p := executor_process(hub)) and p.pid != old.pid, 120, message="executor restarted")
    # The same interval carries on past the restart (the gap is counted); no second one.
    wait_for(lambda: when(intervals(hub, "server", ref)[0]["last_seen_at"] + "Z") > killed + timedelta(seconds=1),
             120, message="the server's interval extended after the restart")
    (row,) = intervals(hub, "server", ref)
    assert (row["id"], row["started_at"], row["ended"]) == (first["id"], first["started_at"], 0)

    hub.stop_server(user)  # through the hub's API, as a culler does
    stopped = datetime.now(timezone.utc)
    wait_for(lambda: intervals(hub, "server", ref)[0]["ended"], 60, message="the server's interval ended")
    hours = usage(hub, user=user)["totals"]["profile_hours"]
    assert 0 < hours <= (stopped - spawned).total_seconds() / 3600
    # Stopped: it accrues no more (the meter ticks on: another thing's interval moves meanwhile).
    other = unique("us-more")
    hub.new_user(other)
    hub.spawn(other, profile="cpu")
    wait_for(lambda: intervals(hub, "server", f"server {other}/"), 60, message="another server's interval")
    assert usage(hub, user=user)["totals"]["profile_hours"] == hours
    hub.stop_server(other)


def test_who_reads_whose_usage(hub, people):
    owner, other = people["owner"], people["other"]
    assert_error(hub.executor("GET", "usage", ""), 401, None)
    assert_error(hub.executor("GET", "usage", people["other_token"], params={"user": owner}), 403, "user")
    assert_error(hub.executor("GET", "usage", people["owner_token"], params={"group": people["group"]}), 403, "group")
    assert_error(hub.executor("GET", "usage", people["owner_token"], params={"by": "group"}), 403, "by")
    for params in ({}, {"user": owner}):  # their own, named or not
        mine = usage(hub, people["owner_token"], **params)
        assert {r["user"] for r in mine["rows"]} <= {owner}
    assert usage(hub, people["other_token"])["rows"] == []  # ran nothing
    everyone = {r["user"] for r in usage(hub)["rows"]}  # an admin
    assert owner in everyone and len(everyone) > 1
    assert {r["user"] for r in usage(hub, user=owner)["rows"]} == {owner}
    team = usage(hub, group=people["group"])
    assert {r["user"] for r in team["rows"]} == {owner}
    by_group = usage(hub, by="group", group=people["group"])
    assert {(r["group"], tuple(r["users"])) for r in by_group["rows"]} == {(people["group"], (owner,))}
    assert usage(hub, user=other)["rows"] == []


def test_csv_export(hub, people):
    for how in ({"params": {"since": "2000-01-01", "format": "csv"}},
                {"params": {"since": "2000-01-01"}, "headers": {"Accept": "text/csv"}}):
        headers = {"Authorization": f"token {hub.admin_token}", **how.get("headers", {})}
        import requests

        r = requests.get(f"{hub.url}/services/executor/api/usage", params=how["params"], headers=headers, timeout=60)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv"), r.text
        table = list(csv.DictReader(io.StringIO(r.text)))
        assert list(table[0]) == ["day", "user", "groups", "profile", "profile_hours", "cpu_seconds_requested",
                                  "cpu_seconds_used", "memory_gb_hours", "gpu_hours", "cost", "currency"]
        rows = usage(hub)["rows"]
        assert [(t["day"], t["user"], t["profile"]) for t in table] == [(x["day"], x["user"], x["profile"]) for x in rows]
        owner_row = next(t for t in table if t["user"] == people["owner"])
        assert owner_row["groups"] == people["group"] and owner_row["cpu_seconds_used"] == ""


@pytest.mark.parametrize("params,field", [
    ({"since": "yesterday"}, "since"), ({"until": "2026-13-01"}, "until"),
    ({"since": "2026-12-05", "until": "2026-12-04"}, "since"), ({"until": "0001-01-01"}, "until"),
    ({"since": "0001-01-01T00:00:00+05:00"}, "since"), ({"until": "9999-12-31T23:00:00-05:00"}, "until"), ({"by": "profile"}, "by"), ({"format": "xml"}, "format"),
    ({"who": "ada"}, "who"),
])
def test_bad_input_names_the_field(hub, params, field):
    assert_error(hub.executor("GET", "usage", None, params=params), 400, field)


def cli(hub, token, *args):
    env = {"NOTEBENCH_URL": hub.url, "NOTEBENCH_TOKEN": token, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "notebench.hub.cli", "admin", "usage", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_the_cli(hub, people):
    owner = unique("us-cli")
    job_counted(hub, owner, "cpu")
    r = cli(hub, hub.admin_token, "--since", "2000-01-01", "--user", owner)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["DAY", "USER", "PROFILE"] and lines[-1].startswith("total")
    assert [line.split()[1:3] for line in lines[1:-1]] == [[owner, "cpu"]], r.stdout
    r = cli(hub, hub.admin_token, "--since", "2000-01-01", "--csv")
    assert r.returncode == 0 and r.stdout.startswith("day,user,groups,profile,"), r.stderr
    r = cli(hub, hub.admin_token, "--since", "last week")
    assert r.returncode == 2 and "--since" in r.stderr and "not a date" in r.stderr
    r = cli(hub, people["other_token"], "--user", owner)  # refused by the API: its message and field
    assert r.returncode == 2 and "HTTP 403" in r.stderr and "field: user" in r.stderr, r.stderr
