"""GPU jobs lease from the same inventory as servers: a server and a job never share a GPU."""

import json
import uuid

from tests.support.kernels import server_env
from tests.support.launcher import notebook, wait_for

DONE = f"done-{uuid.uuid4().hex[:8]}"  # homes outlive test runs (real OS accounts)
PRINT_GPUS = "import os; print('GPUS=' + os.environ['CUDA_VISIBLE_DEVICES'])"


def gpus_of(hub, job_id, token):
    log = hub.executor("GET", f"jobs/{job_id}/log", token).text
    return next(line.split("=", 1)[1].strip() for line in log.splitlines() if line.startswith("GPUS="))


def test_gpu_job_waits_for_a_gpu_held_by_a_server_and_never_shares_it(hub):
    token = hub.new_user("gpu-jobs")
    # The session hub has two (fake) GPUs: a server takes one ...
    hub.new_user("gpu-server")
    hub.spawn("gpu-server", "gpu")
    # ... a long GPU job takes the other ...
    hold = hub.executor(
        "POST", "jobs", token,
        json={"notebook": notebook(PRINT_GPUS, f"import os, time\nwhile not os.path.exists({DONE!r}): time.sleep(0.1)"), "profile": "gpu", "name": "hold"},
    ).json()["id"]
    wait_for(lambda: "GPUS=" in hub.executor("GET", f"jobs/{hold}/log", token).text, 120, message="first GPU job running")
    # ... so the next GPU job waits in the queue rather than share a GPU.
    waiting = hub.executor("POST", "jobs", token, json={"notebook": notebook(PRINT_GPUS), "profile": "gpu", "name": "wait"}).json()["id"]
    cpu_job = hub.executor("POST", "jobs", token, json={"notebook": notebook(PRINT_GPUS), "profile": "cpu"}).json()["id"]
    assert hub.wait_job(cpu_job, token)["status"] == "succeeded"
    assert gpus_of(hub, cpu_job, token) == ""  # CPU jobs never see a GPU
    assert hub.executor("GET", f"jobs/{waiting}", token).json()["status"] == "queued"

    server_gpu = server_env(hub, "gpu-server")["CUDA_VISIBLE_DEVICES"]
    job_gpu = gpus_of(hub, hold, token)
    assert {server_gpu, job_gpu} == {"0", "1"}

    # When the server stops, its GPU goes to the waiting job.
    hub.stop_server("gpu-server")
    assert hub.wait_job(waiting, token)["status"] == "succeeded"
    assert gpus_of(hub, waiting, token) == server_gpu
    # Release the first job; then no lease is left behind.
    home = json.loads(hub.executor("GET", f"jobs/{hold}", token).text)["cwd"]
    open(f"{home}/{DONE}", "w").close()
    assert hub.wait_job(hold, token)["status"] == "succeeded"
    import sqlite3

    with sqlite3.connect(hub.data_dir / "notebench.sqlite") as db:
        assert db.execute("select count(*) from gpu_leases").fetchone()[0] == 0


WORKER_GPUS = """
import os
from distributed import Client
with Client(dask_scheduler_address) as client:
    seen = client.run(lambda: os.environ["CUDA_VISIBLE_DEVICES"])
print("WORKER_GPUS=" + ",".join(sorted(seen.values())))
print("GPUS=" + os.environ["CUDA_VISIBLE_DEVICES"])
"""


def test_dask_workers_of_a_gpu_worker_profile_each_lease_their_own_gpu(hub):
    token = hub.new_user("gpu-workers")
    body = {"notebook": notebook(WORKER_GPUS, parameters="dask_scheduler_address = ''"), "profile": "cpu",
            "workers": 2, "worker_profile": "gpu", "name": "gpu-workers"}
    job = hub.executor("POST", "jobs", token, json=body).json()
    done = hub.wait_job(job["id"], token, timeout=300)
    assert done["status"] == "succeeded", hub.executor("GET", f"jobs/{job['id']}/log", token).text
    log = hub.executor("GET", f"jobs/{job['id']}/log", token).text
    worker_gpus = next(line.split("=", 1)[1].strip() for line in log.splitlines() if line.startswith("WORKER_GPUS="))
    assert worker_gpus == "0,1"  # one GPU each, none shared
    assert gpus_of(hub, job["id"], token) == ""  # the notebook's own kernel is on the CPU profile


def test_a_job_needing_more_gpus_than_the_machine_has_is_refused(hub):
    token = hub.new_user("gpu-greedy")
    body = {"notebook": notebook("print(1)"), "workers": 3, "worker_profile": "gpu"}
    r = hub.executor("POST", "jobs", token, json=body)
    assert r.status_code == 400 and r.json()["field"] == "worker_profile", r.text
    assert "3 GPU(s)" in r.json()["message"]
