"""Distributed jobs: the example hyper-parameter search as a job with 2 Dask workers vs 1.

    .venv/bin/python bench/executor/bench_distributed.py [--runs 3] [--n-samples 10000] [--n-candidates 24] [--out DIR] ...

Starts its own Notebench (tests/support/launcher.Hub, executor + MLflow) unless --url/--admin-token name a
running one, submits examples/distributed-training.ipynb through the executor API as one user, with
the same parameters, alternately with workers=1 and workers=2 (one unmeasured warm-up job first), and
prints for each run and as medians:

- job: the job's wall time as the executor records it (finished_at - started_at: runner, Dask
  cluster start, the whole notebook, MLflow logging), and how much of it was outside the notebook's
  cells (cluster start, kernel set-up, papermill: the runner's share);
- search: the distributed part alone, ``search_seconds`` as the notebook logs it to the job's MLflow
  run (RandomizedSearchCV.fit over the cluster, including the final refit in the kernel), and the
  cores it kept busy on average (CPU time of the workers and the kernel / wall time): at best 1 with
  one worker, 2 with two; less means other programs took the cores.

Each worker gets one thread (a worker profile with cpu_limit 1, added to the default profiles in the
hub this script starts; --worker-profile names another), so workers=2 means twice the threads. With
one thread in the cluster, joblib's Dask backend runs the fits in the kernel, one after another: the
workers=1 figure is the plain sequential search, with no distribution overhead at all.
The speed-up is median(workers=1) / median(workers=2); the goal is >= 1.7x. Figures depend on the
machine and on what else runs on it: the script prints nproc and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # tests.support (the helpers the tests use too)

from bench_jobs import ts  # noqa: E402  (ISO time -> epoch seconds)

from tests.support.launcher import Hub  # noqa: E402

EXAMPLE = REPO / "examples" / "distributed-training.ipynb"
WORKER_PROFILE = "dask-1cpu"
CONFIG = f"""
from notebench.hub.platform.profiles import DEFAULT_PROFILES
c.Profiles.profiles = DEFAULT_PROFILES + [
    {{"name": "{WORKER_PROFILE}", "display_name": "Dask worker (1 CPU)", "description": "1 CPU, 2 GiB memory",
      "cpu_limit": 1, "mem_limit": "2G"}},
]
c.GPUInventory.devices = []
"""


def seconds(job: dict) -> float:
    return ts(job["finished_at"]) - ts(job["started_at"])


def runner_seconds(job: dict, output: dict) -> float:
    """The job's time outside its cells: from started_at to the first cell (cluster start, kernel
    set-up, papermill) plus from the last cell to finished_at (papermill's last save)."""
    cells = [c["metadata"]["papermill"] for c in output["cells"] if c["metadata"].get("papermill", {}).get("start_time")]
    return (ts(cells[0]["start_time"]) - ts(job["started_at"])) + (
        ts(job["finished_at"]) - ts(cells[-1]["end_time"])
    )


def run_job(hub: Hub, token: str, notebook: dict, workers: int, args) -> dict:
    body = {
        "notebook": notebook,
        "name": "bench-distributed",
        "workers": workers,
        "parameters": {"n_samples": args.n_samples, "n_candidates": args.n_candidates, "cv": args.cv, "seed": args.seed},
        "timeout_seconds": 1800,
    }
    if args.worker_profile:
        body["worker_profile"] = args.worker_profile
    r = hub.executor("POST", "jobs", token, json=body)
    r.raise_for_status()
    # The times are the executor's (started_at, finished_at): a poll a second is enough, and 20 a
    # second (the tests' pace) took ~5 % of a core from the workers on 2 cores.
    job = hub.wait_job(r.json()["id"], token, timeout=1800, interval=1.0)
    if job["status"] != "succeeded":
        log = hub.executor("GET", f"jobs/{job['id']}/log", token).text
        raise SystemExit(f"job {job['id']} {job['status']}: {job['error']}\n{log[-3000:]}")
    run = requests.get(
        f"{hub.url}/services/mlflow/api/2.0/mlflow/runs/get",
        params={"run_id": job["mlflow_run_id"]},
        headers={"Authorization": f"token {token}"},
        timeout=60,
    ).json()["run"]
    output = hub.executor("GET", f"jobs/{job['id']}/output", token).json()
    if args.out:  # each cell's start and end time are in its papermill metadata
        (args.out / f"job-{job['id']}-workers-{workers}.ipynb").write_text(json.dumps(output))
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    result = {
        "job": job["id"],
        "workers": workers,
        "threads": int(params["dask_threads"]),
        "workers_used": int(metrics["workers_used"]),
        "job_s": seconds(job),
        "runner_s": runner_seconds(job, output),
        "search_s": metrics["search_seconds"],
        "cores_busy": metrics["search_cpu_seconds"] / metrics["search_seconds"],
    }
    if int(params["dask_workers"]) != workers:
        raise SystemExit(f"job {job['id']} saw {params['dask_workers']} workers, not {workers}")
    return result


def one_fit(seed: int) -> None:
    from sklearn.datasets import make_classification
    from sklearn.svm import SVC

    X, y = make_classification(n_samples=5000, n_features=20, n_informative=10, n_redundant=2, class_sep=0.8, random_state=seed)
    SVC(C=10, gamma=0.01).fit(X, y)


def machine_ceiling(fits: int = 8, rounds: int = 3) -> float:
    """What two processes gain over one on this machine now, with no Dask: the same SVC fits in a
    pool of 1 process, then of 2 (median of rounds). The distributed job cannot beat it."""
    from concurrent.futures import ProcessPoolExecutor

    ratios = []
    with ProcessPoolExecutor(1) as one, ProcessPoolExecutor(2) as two:
        list(one.map(one_fit, range(2)))
        list(two.map(one_fit, range(2)))
        for _ in range(rounds):
            t = time.perf_counter()
            list(one.map(one_fit, range(fits)))
            alone = time.perf_counter() - t
            t = time.perf_counter()
            list(two.map(one_fit, range(fits)))
            ratios.append(alone / (time.perf_counter() - t))
    return statistics.median(ratios)


def median(rows: list[dict], workers: int, key: str) -> float:
    return statistics.median(r[key] for r in rows if r["workers"] == workers)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="measured runs per worker count (default 3)")
    p.add_argument("--n-samples", type=int, default=10000)
    p.add_argument("--n-candidates", type=int, default=24)
    p.add_argument("--cv", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker-profile", default=None, help=f"profile of each worker (default: {WORKER_PROFILE} in our own hub)")
    p.add_argument("--url", help="use this running Notebench instead of starting one")
    p.add_argument("--admin-token", help="an admin API token of the hub given with --url")
    p.add_argument("--json", action="store_true", help="also print the rows as JSON")
    p.add_argument("--out", type=Path, help="save each job's output notebook (per-cell times) in this folder")
    args = p.parse_args()

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    hub, tmp = None, None
    if args.url:
        hub = Hub.__new__(Hub)
        hub.url, hub.admin_token = args.url.rstrip("/"), args.admin_token
    else:
        tmp = Path(tempfile.mkdtemp(prefix="nb-bench-dask-"))
        hub = Hub(tmp / "data", config=CONFIG).start()
        args.worker_profile = args.worker_profile or WORKER_PROFILE
    try:
        notebook = nbformat.read(str(EXAMPLE), as_version=4)
        token = hub.new_user(f"bench-dask-{secrets.token_hex(3)}")
        print(f"nproc {os.cpu_count()}; load average before {os.getloadavg()}")
        print(
            f"example: n_samples={args.n_samples} n_candidates={args.n_candidates} cv={args.cv} "
            f"({args.n_candidates * args.cv} fits); worker profile: {args.worker_profile or 'the job profile'}"
        )
        warm = run_job(hub, token, notebook, 2, args)
        print(f"warm-up (not counted): job {warm['job']} workers=2 job {warm['job_s']:.1f} s search {warm['search_s']:.1f} s")
        rows = []
        for i in range(args.runs):
            for workers in (1, 2) if i % 2 == 0 else (2, 1):  # alternate, so drift hits both alike
                row = run_job(hub, token, notebook, workers, args)
                rows.append(row)
                used = f"{row['workers_used']} used" if row["workers_used"] else "fits in the kernel"
                print(
                    f"run {i + 1} job {row['job']:>3}: workers={workers} ({row['threads']} threads, {used})  "
                    f"job {row['job_s']:6.1f} s (outside the cells {row['runner_s']:4.1f} s)  "
                    f"search {row['search_s']:6.1f} s ({row['cores_busy']:.2f} cores busy)",
                    flush=True,
                )
        print(f"load average after {os.getloadavg()}")
        print(f"{'':>10} {'job (median s)':>15} {'outside the cells':>18} {'search (median s)':>18} {'cores busy (median)':>20}")
        for w in (1, 2):
            print(
                f"workers={w:<2} {median(rows, w, 'job_s'):15.1f} {median(rows, w, 'runner_s'):18.1f} "
                f"{median(rows, w, 'search_s'):18.1f} {median(rows, w, 'cores_busy'):20.2f}"
            )
        job_ratio = median(rows, 1, "job_s") / median(rows, 2, "job_s")
        search_ratio = median(rows, 1, "search_s") / median(rows, 2, "search_s")
        print(f"speed-up workers=2 vs 1: job {job_ratio:.2f}x, search {search_ratio:.2f}x (goal >= 1.7x)")
        print(f"machine ceiling now (2 plain processes vs 1, same kind of SVC fits, no Dask): {machine_ceiling():.2f}x")
        if args.json:
            print(json.dumps({"rows": rows, "job_speedup": job_ratio, "search_speedup": search_ratio}))
    finally:
        if not args.url:
            hub.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
