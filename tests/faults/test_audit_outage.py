"""The executor down (stopped, then kill -9) while the hub logs users in: their logins wait in the
hub's outbox and reach the audit log once the executor is back, none lost and none twice."""

from __future__ import annotations

import signal
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone

import pytest

from tests.support.jobs import unique
from tests.support.launcher import executor_process, running_hub, wait_for

CONFIG = "c.Notebench.mlflow_enabled = False\n"
PASSWORD = "outage-pass-1"


@pytest.fixture(scope="module")
def ohub(tmp_path_factory):
    with running_hub(tmp_path_factory, "audit-outage", CONFIG) as h:
        yield h


def waiting(hub) -> int:
    with closing(sqlite3.connect(hub.data_dir / "audit-outbox.sqlite", timeout=30)) as db:
        return db.execute("SELECT count(*) FROM outbox").fetchone()[0]


def test_logins_while_the_executor_is_down_arrive_once_it_is_back(ohub):
    hub = ohub
    people = [unique("out") for _ in range(5)]
    for name in people:
        assert hub.signup(name, PASSWORD).status_code == 200
        hub.approve(name)
    since = datetime.now(timezone.utc) - timedelta(seconds=1)

    executor = executor_process(hub)
    executor.send_signal(signal.SIGSTOP)  # down: it takes connections and answers nothing
    try:
        for name in people:
            assert hub.browser_login(name, PASSWORD).login_response.status_code == 302
        wait_for(lambda: waiting(hub) >= len(people), 60, message="the logins kept in the hub's outbox")
    finally:
        executor.send_signal(signal.SIGKILL)  # kill -9 (a stopped process dies of it too)
    wait_for(lambda: (p := executor_process(hub)) and p.pid != executor.pid, 120, message="executor restarted")

    def arrived():
        r = hub.executor("GET", "audit", None, params={"action": "user.login", "since": since.isoformat(), "limit": "200"})
        found = [e["actor"] for e in r.json()["entries"] if e["actor"] in people] if r.status_code == 200 else []
        return found if set(found) == set(people) else None

    found = wait_for(arrived, 180, interval=0.5, message="every login in the audit log")
    wait_for(lambda: waiting(hub) == 0, 60, message="the hub's outbox empty")
    assert sorted(found) == sorted(people)  # each once
