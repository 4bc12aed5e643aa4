"""Distributed (Dask) jobs: examples/distributed-training.ipynb as a job with `workers: 2`.

The executor's runner starts a ``distributed.LocalCluster`` for the job (its scheduler and nannies
live in the runner process, each worker is a process of its own, all as the job's OS account) and
passes its address to the notebook as ``dask_scheduler_address``. These tests check that the
notebook's search really runs on that cluster, that its model lands in the job's MLflow run, and
that no process of the cluster outlives the job, however it ends: succeeded, cancelled, timed out;
and that the scheduler has the notebook's libraries before its first graph, but never the user's code.

Each test uses a user of its own with a fresh name, so its OS account (``nb-<user>``) holds only
this job's processes (and the executor's warm runners), even when other hubs run at the same time.
"""

import json
import os
import pwd
import re
import secrets
import subprocess
import sys

import nbformat
import psutil
import pytest
import requests

from notebench.hub.platform.accounts import os_username
from tests.support.launcher import IS_ROOT, REPO, notebook, wait_for

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "distributed-training.ipynb"
# A few seconds of fits: the whole job takes about 20 s on an idle 2-core machine.
SMALL = {"n_samples": 1500, "n_candidates": 4, "cv": 2}
# Hours of fits on two cores: only ever ended by a cancel or a timeout.
ENDLESS = {"n_samples": 20000, "n_candidates": 1000, "cv": 5}
# Command lines of processes that belong to a Dask cluster started from Python (LocalCluster workers
# are multiprocessing children; the `dask` command line tools for good measure).
DASK_MARKERS = ("multiprocessing", "distributed", "dask-worker", "dask-scheduler", "dask worker", "dask scheduler")


def example() -> dict:
    return nbformat.read(str(EXAMPLE), as_version=4)


def fresh_user(hub) -> tuple[str, str]:
    name = f"dtrain-{secrets.token_hex(3)}"
    return name, hub.new_user(name)


def submit(hub, token, nb, **body) -> int:
    r = hub.executor("POST", "jobs", token, json={"notebook": nb, **body})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def os_uid(user: str) -> int | None:
    """The uid of the user's OS account (None when the hub does not isolate users: not root)."""
    return pwd.getpwnam(os_username("nb-", user)).pw_uid if IS_ROOT else None


def started_event(hub, job_id: int) -> dict:
    """The runner's 'started' event: the runner's and the kernel's pids."""
    path = hub.data_dir / "executor" / "jobs" / str(job_id) / "events.jsonl"

    def read():
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event["event"] == "started":
                return event

    return wait_for(read, 120, interval=0.05, message=f"job {job_id} started")


def cluster_processes(hub, job_id: int, token: str) -> list[psutil.Process]:
    """Every process of the running job, once its 2 Dask workers are up: the runner (which hosts
    the scheduler and the nannies), the kernel, and all the runner's descendants (the workers and
    multiprocessing's resource tracker)."""
    event = started_event(hub, job_id)
    runner, kernel = psutil.Process(event["runner_pid"]), psutil.Process(event["kernel_pid"])

    def up():
        try:
            children = runner.children(recursive=True)
            if len([c for c in children if "spawn_main" in " ".join(c.cmdline())]) >= 2:
                return children
        except psutil.Error:
            pass
        job = hub.executor("GET", f"jobs/{job_id}", token).json()
        return None if job["status"] == "running" else job

    found = wait_for(up, 120, interval=0.1, message=f"job {job_id}'s 2 Dask workers")
    assert isinstance(found, list), f"job {job_id} ended before its 2 Dask workers were seen: {found}"
    return [runner, kernel, *found]


def alive(p: psutil.Process) -> bool:
    try:  # is_running() also checks the start time: a reused pid is not our process
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def dask_processes_of(uid: int | None) -> list[psutil.Process]:
    if uid is None:
        return []
    found = []
    for p in psutil.process_iter(["uids", "cmdline", "status"]):
        if p.info["uids"] is None or p.info["uids"].real != uid or p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(marker in " ".join(p.info["cmdline"] or []) for marker in DASK_MARKERS):
            found.append(p)
    return found


def assert_no_orphans(job_procs: list[psutil.Process], uid: int | None, timeout=30.0) -> None:
    """None of the job's processes lives on, nor any Dask process of the job's OS account."""

    def leftovers():
        left = {p.pid: p for p in job_procs if alive(p)}
        left.update({p.pid: p for p in dask_processes_of(uid)})
        return left

    try:
        wait_for(lambda: not leftovers(), timeout, interval=0.05, message="the job's processes to end")
    except TimeoutError:
        described = []
        for pid, p in leftovers().items():
            try:
                described.append(f"{pid} {p.username()} {' '.join(p.cmdline())[:150]}")
            except psutil.Error:
                continue
        if described:
            pytest.fail("processes outlived the job:\n" + "\n".join(described))


def stdout_of(output_notebook: str) -> str:
    nb = nbformat.reads(output_notebook, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def mlflow_api(hub, token, method, path, **kwargs) -> dict:
    r = requests.request(
        method,
        f"{hub.url}/services/mlflow/api/2.0/mlflow/{path}",
        headers={"Authorization": f"token {token}"},
        timeout=60,
        **kwargs,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_example_is_a_parameterised_notebook():
    """A valid notebook whose parameters cell papermill overrides (the executor injects the address)."""
    nb = example()
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name in ("dask_scheduler_address = None", "n_samples", "n_candidates", "cv", "seed"):
        assert name in tagged[0].source
    nbformat.validate(nb)


def test_example_runs_alone_on_a_cluster_of_its_own(tmp_path):
    """Without a scheduler address or an MLflow run it starts both itself (as on a laptop)."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    for name in ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_TOKEN", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    params = [arg for k, v in SMALL.items() for arg in ("-p", k, str(v))]
    subprocess.run(
        [sys.executable, "-m", "papermill", str(EXAMPLE), str(tmp_path / "out.ipynb"), *params, "--cwd", str(tmp_path)],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    out = stdout_of((tmp_path / "out.ipynb").read_text())
    assert "workers: 2 " in out and "workers used: 2\n" in out, out
    run_id = re.search(r"^MLflow run (\w+): model models:/", out, re.M).group(1)
    import mlflow  # heavy: imported by this test only

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "best_cv_score" in run.data.metrics
    [model] = client.search_logged_models(experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    assert model.name == "model"


def test_distributed_job_trains_on_its_cluster_logs_the_model_and_leaves_nothing(hub):
    user, token = fresh_user(hub)
    job_id = submit(hub, token, example(), workers=2, parameters=SMALL, name="distributed-training")
    procs = cluster_processes(hub, job_id, token)
    job = hub.wait_job(job_id, token, timeout=120)
    log = hub.executor("GET", f"jobs/{job_id}/log", token).text
    assert job["status"] == "succeeded", f"{job['error']}\n{log[-4000:]}"
    assert job["workers"] == 2

    out = stdout_of(hub.executor("GET", f"jobs/{job_id}/output", token).text)
    # The notebook used the cluster the runner started (its address is in the runner's log), not one of its own.
    runner_scheduler = re.search(r"Scheduler at:\s+(\S+)", log).group(1)
    assert f"scheduler: {runner_scheduler}\n" in out, out
    assert "workers: 2 " in out, out
    assert "workers used: 2\n" in out, out  # the fits ran on both workers
    worker_pids = {int(pid) for pid in re.findall(r"^worker \S+ pid (\d+)$", out, re.M)}
    assert len(worker_pids) == 2 and worker_pids <= {p.pid for p in procs}, (worker_pids, procs)
    assert "best cv score: " in out and "best params: " in out

    # The job's MLflow run holds the search's figures and the best model (an MLflow 3 logged model:
    # its files live under the model, not among the run's own artifacts).
    run = mlflow_api(hub, token, "GET", "runs/get", params={"run_id": job["mlflow_run_id"]})["run"]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert metrics["workers_used"] == 2 and 0.5 < metrics["best_cv_score"] <= 1
    assert params["dask_workers"] == "2" and params["n_candidates"] == "4"
    assert any(p.startswith("best_svc__") for p in params)
    models = mlflow_api(
        hub,
        token,
        "POST",
        "logged-models/search",
        json={"experiment_ids": [run["info"]["experiment_id"]], "filter": f"source_run_id = '{job['mlflow_run_id']}'"},
    )["models"]
    assert [m["info"]["name"] for m in models] == ["model"]
    model = models[0]["info"]
    assert model["status"] == "LOGGED_MODEL_READY"
    assert model["model_id"] in {o["model_id"] for o in run["outputs"]["model_outputs"]}
    files = {f["path"] for f in mlflow_api(hub, token, "GET", f"logged-models/{model['model_id']}/artifacts/directories")["files"]}
    assert {"MLmodel", "input_example.json"} <= files, files

    assert_no_orphans(procs, os_uid(user))


def test_cancelled_distributed_job_leaves_no_dask_process(hub):
    user, token = fresh_user(hub)
    job_id = submit(hub, token, example(), workers=2, parameters=ENDLESS, name="distributed-cancelled")
    procs = cluster_processes(hub, job_id, token)
    # Cancel in the middle of the search: the data set is made, the fits are running on the workers.
    wait_for(
        lambda: "train (" in hub.executor("GET", f"jobs/{job_id}/log", token).text,
        120,
        interval=0.1,
        message="the search under way",
    )
    r = hub.executor("POST", f"jobs/{job_id}/cancel", token)
    assert r.status_code == 200, r.text
    job = hub.wait_job(job_id, token, timeout=60)
    assert job["status"] == "cancelled"
    assert_no_orphans(procs, os_uid(user))


def test_timed_out_distributed_job_leaves_no_dask_process(hub):
    user, token = fresh_user(hub)
    # Long enough for the cluster to be up first: the user's first runner starts cold (papermill, a
    # kernel), then 2 workers start; on a busy 2-core machine that has taken over 30 s.
    job_id = submit(hub, token, example(), workers=2, parameters=ENDLESS, timeout_seconds=60, name="distributed-timeout")
    procs = cluster_processes(hub, job_id, token)
    job = hub.wait_job(job_id, token, timeout=120)
    assert job["status"] == "timed_out", job
    assert job["error"]["ename"] == "Timeout"
    assert_no_orphans(procs, os_uid(user))


PROBE = """
import json, os, urllib.request
from distributed import Client

found, errors = [], []
try:  # a scheduler that takes our commands runs them on its workers, as its owner
    with Client(scheduler, timeout=60) as c:
        found.append({"scheduler": scheduler, "ran_as_uids": sorted(set(c.run(os.getuid).values()))})
except Exception as e:
    errors.append(repr(e))
for url in urls:  # the scheduler's HTTP server: its workers, their logs, the tasks
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            found.append({"url": url, "status": r.status})
    except Exception as e:
        errors.append(repr(e))
print("FOUND " + json.dumps(found))
print("ERRORS", errors)
"""


@pytest.mark.skipif(not IS_ROOT, reason="users are separate OS accounts only when the hub runs as root")
def test_another_users_job_cannot_use_a_jobs_dask_cluster(hub):
    owner, owner_token = fresh_user(hub)
    intruder, intruder_token = fresh_user(hub)
    job_id = submit(hub, owner_token, example(), workers=2, parameters=ENDLESS, name="distributed-victim")
    try:
        cluster_processes(hub, job_id, owner_token)
        # Found here in the owner's log; another account finds them as easily in /proc/net/tcp.
        log = hub.executor("GET", f"jobs/{job_id}/log", owner_token).text
        scheduler = re.search(r"Scheduler at:\s+(\S+)", log).group(1)
        urls = [f"{m}json/identity.json" for m in re.findall(r"dashboard at:\s+(\S+/)status", log)]
        probe = notebook(PROBE, parameters=f"scheduler = {scheduler!r}\nurls = {urls!r}")
        probe_id = submit(hub, intruder_token, probe, name="probe")
        job = hub.wait_job(probe_id, intruder_token, timeout=300)
        out = stdout_of(hub.executor("GET", f"jobs/{probe_id}/output", intruder_token).text)
        assert job["status"] == "succeeded", (job, out)
        found = json.loads(re.search(r"^FOUND (.*)$", out, re.M).group(1))
        assert found == [], f"{intruder}'s job reached {owner}'s Dask cluster (uid {os_uid(owner)}): {found}"
    finally:
        hub.executor("POST", f"jobs/{job_id}/cancel", owner_token)


# The user's own module, in the home the job runs in: it records the pid of every process importing it.
USER_MODULE = """import os
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "nb_warm_probe.pids"), "a") as f:
    f.write(f"{os.getpid()}\\n")
"""
SCHEDULER_PROBE = """
import json, os, time
import colorsys
import sqlparse
import nb_warm_probe
import distributed

client = distributed.Client(dask_scheduler_address)


def on_scheduler():
    import sys
    return sorted(m for m in ("colorsys", "sqlparse", "nb_warm_probe") if m in sys.modules)


# No graph has been sent: the runner imports in the background while this cell runs.
deadline = time.monotonic() + 120
while len(client.run_on_scheduler(on_scheduler)) < 2 and time.monotonic() < deadline:
    time.sleep(0.1)
print("ON SCHEDULER", json.dumps(client.run_on_scheduler(on_scheduler)))
print("IMPORTED BY", json.dumps([int(p) for p in open("nb_warm_probe.pids").read().split()]))
print("KERNEL", os.getpid())
"""


def test_a_jobs_scheduler_imports_the_notebooks_libraries_before_any_work_but_not_the_users_code(hub):
    # Cold, the scheduler would import them while unpickling the notebook's first graph, sending no
    # task to any worker meanwhile (1-2 s for scikit-learn).
    user, token = fresh_user(hub)
    writer = submit(hub, token, notebook(f"open('nb_warm_probe.py', 'w').write({USER_MODULE!r})"), name="write-module")
    assert hub.wait_job(writer, token, timeout=300)["status"] == "succeeded"
    job_id = submit(hub, token, notebook(SCHEDULER_PROBE, parameters="dask_scheduler_address = None"), workers=1, name="warm")
    job = hub.wait_job(job_id, token, timeout=300)
    out = stdout_of(hub.executor("GET", f"jobs/{job_id}/output", token).text)
    assert job["status"] == "succeeded", (job, out)
    assert json.loads(re.search(r"^ON SCHEDULER (.*)$", out, re.M).group(1)) == ["colorsys", "sqlparse"]
    kernel = int(re.search(r"^KERNEL (\d+)$", out, re.M).group(1))
    assert json.loads(re.search(r"^IMPORTED BY (.*)$", out, re.M).group(1)) == [kernel]  # run once, by the notebook
