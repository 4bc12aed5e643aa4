"""Chaos tier (issue 13): kill -9 each component with work in flight, then check that nothing is
lost, nothing runs twice, and the stack recovers by itself within RECOVERY_S.

One hub of the module's own with MLflow, an endpoint under client traffic (a background thread),
and for each kill: a running job, a job queued behind it, and a schedule whose tick falls in the
outage. Each job's notebook appends one line to a file in its owner's home, so a job that ran
twice leaves two. Each kill's recovery time (kill -> the whole stack answers again: hub API,
executor API, MLflow API, an invocation) is printed (-s) and recorded (record_property).

Processes are found by program and this hub's data dir (environment or command line), so other
hubs on the machine are never touched.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import psutil
import pytest
import requests

from tests.support.endpoints import deploy, invoke, pid_of, wait_status
from tests.support.jobs import home_of
from tests.support.launcher import notebook, running_hub, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

CONFIG = """
c.Executor.max_running_jobs_per_user = 1
c.Notebench.cull_idle_timeout = 3600
c.Notebench.cull_every = 60
"""

RUN = uuid.uuid4().hex[:6]  # OS accounts outlive test runs: names are per run
USER = f"chaos-{RUN}"
RUNS_FILE = f"runs-{RUN}.txt"
RECOVERY_S = 180  # the bound each kill must recover within (the measured figures are far below)
FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """Overrides the session hub for this module (and for the imported endpoint fixtures)."""
    with running_hub(tmp_path_factory, "chaos", CONFIG) as h:
        yield h
    print("\nchaos recovery times (s):", {k: round(v, 1) for k, v in FIGURES.items()})


@pytest.fixture(scope="module")
def people(hub):  # the owner of the jobs, the schedules and the endpoint
    return {"owner": USER, "owner_token": hub.new_user(USER)}


@pytest.fixture(scope="module")
def endpoint(hub, people, model):
    name = f"chaos-{RUN}"
    deploy(hub, people["owner_token"], name, [{"model": model["name"], "version": "1", "weight": 100}])
    wait_status(hub, name, people["owner_token"])
    return name


class Traffic(threading.Thread):
    """Client traffic against the endpoint: one request at a time, bounded in number; records
    (phase, time, ok) for each."""

    MAX_REQUESTS = 20000

    def __init__(self, hub, name, token, payload):
        super().__init__(daemon=True)
        self.args_ = (hub, name, token, payload)
        self.phase = "warm-up"
        self.results: list[tuple[str, float, bool]] = []
        self.stopped = threading.Event()

    def run(self):
        with requests.Session() as session:
            while not self.stopped.is_set() and len(self.results) < self.MAX_REQUESTS:
                try:
                    ok = invoke(*self.args_, session=session).status_code == 200
                except requests.RequestException:
                    ok = False
                    session.close()  # a dead proxy leaves broken pooled connections
                self.results.append((self.phase, time.monotonic(), ok))
                self.stopped.wait(0.1)  # leave the 2 CI cores to the stack

    def counts(self, phase):
        ok = [r for r in self.results if r[0] == phase]
        return sum(r[2] for r in ok), sum(not r[2] for r in ok)

    def succeeded_since(self, t):
        return sum(1 for _, when, ok in self.results if ok and when > t)


@pytest.fixture(scope="module")
def traffic(hub, people, model, endpoint):
    t = Traffic(hub, endpoint, people["owner_token"], model["input"])
    t.start()
    wait_for(lambda: t.succeeded_since(0) >= 3, 60, message="traffic flowing")
    yield t
    t.stopped.set()
    t.join(30)


# --- processes of this hub ------------------------------------------------------------------------


def processes(hub, program: str) -> list[psutil.Process]:
    """This hub's processes whose command line contains ``program`` as a word (so that
    "notebench.hub.mlflow_service" does not match its ".backend")."""
    pattern = re.compile(rf"(^|[\s/]){re.escape(program)}($|\s)")
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if not pattern.search(cmd):
                continue
            env = p.environ()
            ours = env.get("NOTEBENCH_DATA_DIR") == str(hub.data_dir) or str(hub.data_dir) in cmd or (
                # managed services get the hub's API URL, whose port this data dir keeps
                env.get("JUPYTERHUB_SERVICE_NAME") and env.get("JUPYTERHUB_API_URL") == hub_api_url(hub)
            )
            if ours and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


def hub_api_url(hub) -> str:
    import json

    return f"http://127.0.0.1:{json.loads((hub.data_dir / 'ports.json').read_text())['hub']}/hub/api"


def one(hub, program) -> psutil.Process:
    return wait_for(lambda: (ps := processes(hub, program)) and len(ps) == 1 and ps[0], 120, message=f"one {program}")


# --- work in flight ---------------------------------------------------------------------------------


def marker(tag: str) -> str:
    return f"with open({RUNS_FILE!r}, 'a') as f: f.write('{tag}\\n')"


class InFlight:
    """A running job, a job queued behind it (one running job per user), and a schedule that is made
    due during the outage."""

    def __init__(self, hub, token, phase):
        self.hub, self.token, self.phase = hub, token, phase
        self.release = f"release-{RUN}-{phase}"
        self.running = self.submit(marker(f"{phase}-running"),
                                   f"import os, time\nwhile not os.path.exists({self.release!r}): time.sleep(0.1)")
        # Past its marker cell: its runner and kernel are up (a job still starting is another case).
        wait_for(lambda: hub.executor("GET", f"jobs/{self.running}", token).json()["progress"]["cells_completed"] >= 1,
                 300, interval=0.2, message=f"job {self.running} running its cells")
        self.queued = self.submit(marker(f"{phase}-queued"))
        # Daily at a time far from now: only the tick written below makes it due.
        body = {"name": f"{phase}", "cron": "0 3 * * *", "timezone": "UTC",
                "job": {"notebook": notebook(marker(f"{phase}-scheduled")), "name": f"{phase}-scheduled"}}
        r = hub.executor("POST", "schedules", token, json=body)
        assert r.status_code == 201, r.text
        self.schedule = r.json()["id"]

    def submit(self, *cells):
        r = self.hub.executor("POST", "jobs", self.token, json={"notebook": notebook(*cells), "name": self.phase})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def tick_now(self):
        """The schedule's tick falls in the outage (written in the executor's database, which
        works whether or not the executor is up)."""
        value = (datetime.now(timezone.utc) - timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
        with sqlite3.connect(self.hub.data_dir / "executor.sqlite", timeout=60) as db:
            assert db.execute("UPDATE schedules SET next_run_at = ? WHERE id = ?", (value, self.schedule)).rowcount == 1
        db.close()

    def check(self, user):
        """Nothing lost, nothing run twice."""
        hub, token = self.hub, self.token
        (home_of(hub, user) / self.release).touch()
        scheduled = wait_for(lambda: [j for j in hub.executor("GET", "jobs?limit=200", token).json()["jobs"]
                                      if j["schedule_id"] == self.schedule], RECOVERY_S, interval=0.5,
                             message=f"the job of schedule {self.schedule}")
        jobs = {"running": self.running, "queued": self.queued, "scheduled": scheduled[0]["id"]}
        for kind, job_id in jobs.items():
            job = hub.wait_job(job_id, token, timeout=300, interval=0.5)
            assert job["status"] == "succeeded", (kind, job)
        assert hub.executor("DELETE", f"schedules/{self.schedule}", token).status_code == 204
        later = [j for j in hub.executor("GET", "jobs?limit=200", token).json()["jobs"] if j["name"] == f"{self.phase}-scheduled"]
        assert len(later) == 1, later  # the missed tick ran once
        lines = (home_of(hub, user) / RUNS_FILE).read_text().split()
        assert sorted(x for x in lines if x.startswith(f"{self.phase}-")) == sorted(f"{self.phase}-{k}" for k in jobs)


# --- the kills --------------------------------------------------------------------------------------


def stack_answers(hub, token, endpoint, payload) -> bool:
    """Everything a user reaches answers: hub API and executor API through the proxy, MLflow, an invocation."""
    mlflow = requests.get(f"{hub.url}/services/mlflow/api/2.0/mlflow/experiments/search?max_results=1",
                          headers={"Authorization": f"token {token}"}, timeout=10)
    return (hub.api("GET", "/users").status_code == 200
            and hub.executor("GET", "jobs?limit=1", token).status_code == 200
            and mlflow.status_code == 200
            and invoke(hub, endpoint, token, payload).status_code == 200)


def kill_and_recover(hub, people, model, endpoint, traffic, record_property, phase, kill, replaced=None):
    """Start work, ``kill()`` (returns what was killed), wait until the stack answers again (and,
    if given, ``replaced(killed)``), then check the work and the traffic."""
    token = people["owner_token"]
    work = InFlight(hub, token, phase)
    traffic.phase = phase
    start = time.monotonic()
    killed = kill()
    work.tick_now()
    wait_for(lambda: (replaced is None or replaced(killed)) and stack_answers(hub, token, endpoint, model["input"]),
             RECOVERY_S, interval=0.2, message=f"recovery after the kill -9 of the {phase}")
    recovered = time.monotonic()
    FIGURES[phase] = recovered - start
    record_property(f"recovery_s_{phase}", round(FIGURES[phase], 1))
    work.check(people["owner"])
    # Client traffic succeeds again after recovery (a few requests, not just the probe above).
    wait_for(lambda: traffic.succeeded_since(recovered) >= 3, 60, message="traffic succeeding after recovery")
    ok, failed = traffic.counts(phase)
    record_property(f"invocations_{phase}", f"{ok} ok, {failed} failed")
    print(f"\nkill -9 {phase}: recovered in {FIGURES[phase]:.1f} s; invocations during the phase: {ok} ok, {failed} failed")


def kill_one(hub, program):
    def kill():
        p = one(hub, program)
        p.send_signal(signal.SIGKILL)
        return p.pid

    def replaced(old_pid):
        return any(p.pid != old_pid for p in processes(hub, program))

    return kill, replaced


@pytest.fixture
def chaos(hub, people, model, endpoint, traffic, record_property):
    return lambda phase, kill, replaced=None: kill_and_recover(
        hub, people, model, endpoint, traffic, record_property, phase, kill, replaced)


def test_kill_9_of_the_executor(hub, chaos):
    chaos("executor", *kill_one(hub, "notebench.executor"))


def test_kill_9_of_the_mlflow_front(hub, chaos):
    chaos("mlflow-front", *kill_one(hub, "notebench.hub.mlflow_service"))


def test_kill_9_of_the_mlflow_backend(hub, chaos):
    chaos("mlflow-backend", *kill_one(hub, "notebench.hub.mlflow_service.backend"))


def test_kill_9_of_the_idle_culler(hub, chaos):
    chaos("idle-culler", *kill_one(hub, "notebench.hub.culling"))  # jupyterhub-idle-culler with Notebench's arbiter


def test_kill_9_of_a_scoring_server(hub, chaos, endpoint):
    def kill():
        pid = pid_of(hub, endpoint, "1")
        psutil.Process(pid).send_signal(signal.SIGKILL)
        return pid

    chaos("scoring-server", kill, lambda old: (pid_of(hub, endpoint, "1") or old) != old)


def test_kill_9_of_the_proxy(hub, chaos):
    chaos("proxy", *kill_one(hub, "configurable-http-proxy"))


def test_kill_9_of_the_hub(hub, chaos):
    # `notebench up` starts it again (hub/supervisor.py).
    chaos("hub", *kill_one(hub, "jupyterhub"))


def test_kill_9_of_notebench_up(hub, chaos):
    """The hub stops with its parent; a new `notebench up` on the data dir cleans up what is left
    and carries on (the recovery time includes the new start, made at once, as an operator's
    service manager would)."""

    def kill():
        old_hub = one(hub, "jupyterhub")
        hub.proc.send_signal(signal.SIGKILL)
        hub.proc.wait()
        hub.log_file.close()
        hub.start(timeout=RECOVERY_S)  # its health check may still meet the old hub, stopping
        return old_hub.pid

    _, new_hub = kill_one(hub, "jupyterhub")
    chaos("notebench-up", kill, new_hub)
