"""A job's own reports steer nothing but its own end (issue 13, items 1-3).

A job's directory is its owner's: the notebook can write anything into ``events.jsonl``. These
tests are that attacker. A forged pid never makes the executor signal another process; a report
that is not one fails that job alone, promptly, with the reason; a job can only say it succeeded
or failed, so it can never put itself back in the queue.
"""

from __future__ import annotations

import asyncio
import json
import pwd
import subprocess

import psutil
import pytest

from notebench.executor.backends.local.jobs import JobProcess, LocalBackend
from notebench.hub.platform.accounts import UserAccounts
from tests.support.jobs import alive, home_of, job_dir, started_event, submit, unique
from tests.support.launcher import IS_ROOT, notebook, wait_for

WRITE_REPORT = (
    "import json, os\n"
    "def report(line):\n"
    "    with open(os.path.join(jobs_dir, os.environ['NOTEBENCH_JOB_ID'], 'events.jsonl'), 'a') as f:\n"
    "        f.write(line + '\\n')\n"
)


@pytest.fixture(scope="module")
def attacker(hub):
    name = unique("forger")
    return {"name": name, "token": hub.new_user(name), "jobs_dir": str(hub.data_dir / "executor" / "jobs")}


@pytest.fixture(scope="module")
def victim_account(hub):
    """Another user's OS account (root); without isolation every process is ours anyway."""
    if not IS_ROOT:
        return {}
    other = unique("victim")
    hub.new_user(other)
    accounts = UserAccounts(isolate_users=True)
    accounts.prepare(other)
    return {"user": accounts.os_user(other)}


@pytest.fixture()
def victim(victim_account):
    """A process in a process group of its own, as another user."""
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True, **victim_account)
    yield proc
    proc.kill()
    proc.wait()


def forged_started(victim_pid: int) -> str:
    return json.dumps({"event": "started", "kernel_pid": victim_pid, "runner_pid": victim_pid})


@pytest.mark.parametrize("how", ["cancelled", "timed_out", "runner killed"])
def test_a_forged_pid_never_makes_the_executor_kill_another_process(hub, attacker, victim, how):
    cells = [WRITE_REPORT + f"report({forged_started(victim.pid)!r})"]
    if how == "runner killed":  # the kernel's parent is the runner: the executor sees it die
        cells.append("import os, signal, time; os.kill(os.getppid(), signal.SIGKILL); time.sleep(600)")
    else:
        cells.append("import time; time.sleep(600)")
    job = submit(hub, attacker["token"], *cells, parameters_cell="jobs_dir = ''",
                 parameters={"jobs_dir": attacker["jobs_dir"]}, timeout_seconds=20 if how == "timed_out" else 600)
    kernel = started_event(hub, job["id"])["kernel_pid"]
    events = job_dir(hub, job["id"]) / "events.jsonl"
    wait_for(lambda: f'"kernel_pid": {victim.pid}' in events.read_text(), 120, message="the forged report written")
    if how == "cancelled":
        assert hub.executor("POST", f"jobs/{job['id']}/cancel", attacker["token"]).status_code in (200, 202)
    done = hub.wait_job(job["id"], attacker["token"], timeout=120)
    assert done["status"] == ("failed" if how == "runner killed" else how), done
    assert alive(victim.pid), "the executor killed a process the job named"
    assert victim.poll() is None
    # The job's own kernel went, as before: the executor found it itself.
    wait_for(lambda: not alive(kernel), 30, message="the job's own kernel to be gone")


BAD_REPORTS = {
    "not JSON": "this is not json",
    "a JSON list": "[1, 2, 3]",
    "nested 20000 deep": "[" * 20000 + "]" * 20000,
    "a line of 100 kB": json.dumps({"event": "started", "time": 1.0, "kernel_pid": 1}) + " " * 100_000,
    "an unknown event": json.dumps({"event": "exploded"}),
    "finished as queued": json.dumps({"event": "finished", "status": "queued"}),
    "finished as running": json.dumps({"event": "finished", "status": "running"}),
    "finished as cancelled": json.dumps({"event": "finished", "status": "cancelled"}),
    "a string error": json.dumps({"event": "finished", "status": "failed", "error": "boom"}),
    "a pid that is a string": json.dumps({"event": "started", "kernel_pid": "1"}),
}


@pytest.mark.parametrize("bad", list(BAD_REPORTS))
def test_a_malformed_report_fails_that_job_alone_with_the_reason(hub, attacker, bad):
    marker = f"runs-{unique('bad')}.txt"
    job = submit(
        hub, attacker["token"],
        f"with open({marker!r}, 'a') as f: f.write('ran\\n')",
        WRITE_REPORT + f"report({BAD_REPORTS[bad]!r})",
        "import time; time.sleep(600)",
        parameters_cell="jobs_dir = ''", parameters={"jobs_dir": attacker["jobs_dir"]},
    )
    done = hub.wait_job(job["id"], attacker["token"], timeout=120)
    assert done["status"] == "failed", done
    assert done["error"]["ename"] == "MalformedReport" and "report could not be read" in done["error"]["evalue"], done
    # The queue goes on: the same user's next job runs, and the bad one never ran again.
    after = submit(hub, attacker["token"], "print('next job ran')")
    assert hub.wait_job(after["id"], attacker["token"])["status"] == "succeeded"
    assert hub.executor("GET", f"jobs/{job['id']}", attacker["token"]).json()["status"] == "failed"
    home = home_of(hub, attacker["name"])
    assert (home / marker).read_text() == "ran\n", "the job ran more than once"


def test_a_job_that_reports_success_early_is_recorded_once(hub, attacker):
    """A job may end itself (its own outcome is its owner's to say); what it says after that is not read."""
    job = submit(
        hub, attacker["token"],
        WRITE_REPORT + "report(json.dumps({'event': 'finished', 'status': 'succeeded'}))\n"
        "report(json.dumps({'event': 'finished', 'status': 'queued'}))",
        "import time; time.sleep(600)",
        parameters_cell="jobs_dir = ''", parameters={"jobs_dir": attacker["jobs_dir"]},
    )
    done = hub.wait_job(job["id"], attacker["token"], timeout=120)
    assert done["status"] == "succeeded" and done["error"] is None


def test_the_kernel_name_python_is_the_python_kernel(hub, attacker):
    """Notebooks saved by other tools say 'python'; papermill takes it, and so does the executor."""
    nb = notebook("import sys; print(sys.version_info[0])", kernel="python")
    r = hub.executor("POST", "jobs", attacker["token"], json={"notebook": nb})
    assert r.status_code == 201, r.text
    assert r.json()["kernel"] == "python3"
    assert hub.wait_job(r.json()["id"], attacker["token"])["status"] == "succeeded"
    r = hub.executor("POST", "jobs", attacker["token"], json={"notebook": nb, "kernel": "python"})
    assert r.status_code == 201 and r.json()["kernel"] == "python3", r.text


@pytest.mark.skipif(not IS_ROOT, reason="signals as the owner need per-user accounts (root)")
def test_signals_go_out_with_the_owners_credentials(hub, attacker, victim):
    """Even a target the executor's own records got wrong could only be one of the owner's
    processes: the process that signals has become the owner."""
    accounts = UserAccounts(isolate_users=True)
    accounts.prepare(attacker["name"])
    backend = LocalBackend(accounts=accounts)
    target = psutil.Process(victim.pid)
    forged = JobProcess(attacker["name"], victim.pid, target.create_time())
    asyncio.run(backend._kill_as_owner(attacker["name"], [forged]))
    assert alive(victim.pid), "root's signal reached another user's process"
    assert pwd.getpwuid(target.uids().real).pw_name != f"nb-{attacker['name']}"
