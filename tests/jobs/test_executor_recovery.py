"""kill -9 of the executor: running jobs are re-attached or failed with their partial output,
queued jobs run, no job runs twice and none is lost."""

import os
import pwd
import signal
import uuid

import psutil
import pytest

from tests.support.launcher import IS_ROOT, executor_process, notebook, running_hub, wait_for

pytestmark = pytest.mark.slow

CONFIG = """
c.Notebench.mlflow_enabled = False
c.Executor.max_running_jobs_per_user = 1
"""


@pytest.fixture(scope="module")
def rhub(tmp_path_factory):
    with running_hub(tmp_path_factory, "recovery", CONFIG) as h:
        yield h


def runner_of(hub, job_id: int) -> psutil.Process:
    """The runner process of a job: the one writing that job's log."""
    log = str(hub.data_dir / "executor" / "jobs" / str(job_id) / "log.txt")

    def find():
        for p in psutil.process_iter(["cmdline"]):
            try:
                if "notebench.executor.runtime.runner" in " ".join(p.info["cmdline"] or []) and any(
                    f.path == log for f in p.open_files()
                ):
                    return p
            except psutil.Error:
                continue

    return wait_for(find, 60, message=f"runner of job {job_id}")


RUN = uuid.uuid4().hex[:8]  # homes outlive test runs (they are real OS accounts): names are per run
RUNS_FILE, RELEASE_FILE = f"runs-{RUN}.txt", f"release-{RUN}"


def marker_cell(job_tag: str) -> str:
    # Appends one line per execution: a job that ran twice would leave two.
    return f"with open({RUNS_FILE!r}, 'a') as f: f.write('{job_tag}\\n')"


def test_kill_9_of_the_executor_loses_nothing_and_runs_nothing_twice(rhub):
    hub = rhub
    token = hub.new_user("survivor")
    other = hub.new_user("unlucky")

    def submit(owner_token, *cells, name):
        r = hub.executor("POST", "jobs", owner_token, json={"notebook": notebook(*cells), "name": name})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    # Runs across the crash; its process lives on, so it is re-attached.
    long_job = submit(
        token,
        marker_cell("long"),
        f"import os, time\nwhile not os.path.exists({RELEASE_FILE!r}): time.sleep(0.1)",
        "print('long job done')",
        name="long",
    )
    hub.wait_job(long_job, token, until=("running",))
    # Queued behind it (one running job per user): must run after the restart, once.
    queued_job = submit(token, marker_cell("queued"), name="queued")
    # Another user's job whose process dies together with the executor: failed, partial output kept.
    doomed_job = submit(other, "print('first cell ran')", "import time; time.sleep(600)", name="doomed")
    wait_for(
        lambda: hub.executor("GET", f"jobs/{doomed_job}", other).json()["progress"]["cells_completed"] >= 1,
        120,
        message="doomed job past its first cell",
    )
    doomed_runner = runner_of(hub, doomed_job)
    doomed_tree = [doomed_runner, *doomed_runner.children(recursive=True)]

    old = executor_process(hub)
    old.send_signal(signal.SIGKILL)
    for p in doomed_tree:
        os.killpg(os.getpgid(p.pid), signal.SIGKILL)
    # JupyterHub restarts its managed service; the new executor recovers.
    wait_for(lambda: (p := executor_process(hub)) and p.pid != old.pid, 120, message="executor restarted")
    wait_for(lambda: hub.executor("GET", "jobs", token).status_code == 200, 120, message="executor answering")

    doomed = hub.wait_job(doomed_job, other)
    assert doomed["status"] == "failed"
    assert doomed["error"]["evalue"] == "executor restarted"
    partial = hub.executor("GET", f"jobs/{doomed_job}/output", other)
    assert partial.status_code == 200 and "first cell ran" in partial.text

    assert hub.executor("GET", f"jobs/{long_job}", token).json()["status"] == "running"  # re-attached
    hub_home = pwd.getpwnam("nb-survivor").pw_dir if IS_ROOT else str(hub.data_dir / "homes" / "survivor")
    with open(os.path.join(hub_home, RELEASE_FILE), "w"):
        pass
    assert hub.wait_job(long_job, token)["status"] == "succeeded"
    assert hub.wait_job(queued_job, token)["status"] == "succeeded"
    with open(os.path.join(hub_home, RUNS_FILE)) as f:
        assert sorted(f.read().split()) == ["long", "queued"]  # each exactly once


def test_a_restart_survives_any_content_in_job_directories(rhub):
    """Job directories are their owners': whatever they hold, recovery goes on and only those jobs fail."""
    hub = rhub
    tokens = {name: hub.new_user(name) for name in ("garbler", "scribbler")}
    jobs = {}
    for name, token in tokens.items():
        r = hub.executor("POST", "jobs", token, json={"notebook": notebook("print('up')", "import time; time.sleep(600)")})
        assert r.status_code == 201, r.text
        jobs[name] = r.json()["id"]
        wait_for(lambda: "up" in hub.executor("GET", f"jobs/{jobs[name]}/log", token).text, 120, message=f"{name}'s job running")
    gone_runner = runner_of(hub, jobs["garbler"])
    gone_tree = [gone_runner, *gone_runner.children(recursive=True)]
    executor = executor_process(hub)
    executor.send_signal(signal.SIGSTOP)  # nothing reads the job directories while they are written
    try:
        job_dirs = {name: hub.data_dir / "executor" / "jobs" / str(job_id) for name, job_id in jobs.items()}
        with open(job_dirs["garbler"] / "events.jsonl", "a") as f:
            f.write("\x00\xff not json at all\n")
        with open(job_dirs["scribbler"] / "events.jsonl", "a") as f:
            f.write('{"event": "finished", "status": "queued"}\n')
        (job_dirs["scribbler"] / "output.ipynb").write_text("[]")
        for p in gone_tree:  # the garbler's job ends while the executor is down
            os.killpg(os.getpgid(p.pid), signal.SIGKILL)
    finally:
        executor.send_signal(signal.SIGKILL)
    wait_for(lambda: (p := executor_process(hub)) and p.pid != executor.pid, 120, message="executor restarted")
    for name, token in tokens.items():
        job = hub.wait_job(jobs[name], token, timeout=120)
        assert job["status"] == "failed" and job["error"]["ename"] == "MalformedReport", job
    # The executor carries on: a new job runs.
    r = hub.executor("POST", "jobs", tokens["garbler"], json={"notebook": notebook("print('after')")})
    assert r.status_code == 201, r.text
    assert hub.wait_job(r.json()["id"], tokens["garbler"])["status"] == "succeeded"
