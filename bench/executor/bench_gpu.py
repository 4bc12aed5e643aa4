"""GPU job benchmark: examples/gpu-training.ipynb as a `gpu` job against the same notebook run directly.

    python bench/executor/bench_gpu.py [--runs 3] [--epochs 4] [--steps 150] [--out DIR]

Needs a machine with an NVIDIA GPU (CI has none: this is a benchmark, not a test). It starts a
real `notebench up` (tests/support/launcher.py's Hub; MLflow off unless `mlflow` is importable), makes a
user, and alternates --runs times:
  job:    POST the notebook to the executor API with profile `gpu`, poll until it succeeded, read
          its output notebook through the API;
  direct: the `papermill` CLI on the same notebook, same parameters, on GPU 0, as this account.
While each job runs, `nvidia-smi` is sampled to record which process (and OS account) held the GPU,
and once more when the job is seen succeeded: its lease is free then, so nothing may be left on the GPU.
Then one `cpu` job checks that a CPU job sees no GPU.

Prints, per mode, medians of: training throughput measured inside the notebook (samples/s after
the first epoch), train seconds, and wall time (job: submit -> succeeded as the client sees it;
direct: papermill CLI start -> exit); the ratio job/direct of throughput (goal >= 0.95); what torch
saw (device name, CUDA_VISIBLE_DEVICES). Figures only, no pass/fail; results also in DIR/gpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))  # tests.support (the helpers the tests use too)

from tests.support.launcher import Hub  # noqa: E402

NOTEBOOK = REPO / "examples" / "gpu-training.ipynb"
MARKER = "NOTEBENCH_GPU_RESULT "


def result_from(nb: dict) -> dict:
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            for line in "".join(out.get("text", "")).splitlines():
                if line.startswith(MARKER):
                    return json.loads(line[len(MARKER):])
    raise RuntimeError("the notebook printed no result line")


def gpu_processes() -> list[dict]:
    """The processes holding GPU memory now, with their OS account, parent and state (Z: zombie)."""
    out = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
        capture_output=True, text=True,
    ).stdout
    found = []
    for line in out.splitlines():
        pid, mem = (part.strip() for part in line.split(","))
        ps = subprocess.run(["ps", "-o", "user=,ppid=,stat=,args=", "-p", pid], capture_output=True, text=True).stdout.split(None, 3)
        user, ppid, stat, cmd = (ps + ["?"] * 4)[:4]
        found.append({"pid": int(pid), "user": user, "ppid": ppid, "stat": stat, "used_memory_mib": int(mem), "command": cmd.strip()[:100]})
    return found


class GPUProcessSampler(threading.Thread):
    """Polls nvidia-smi for the processes on the GPU and the OS account each one runs as."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen: dict[int, dict] = {}
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            for process in gpu_processes():
                self.seen[process["pid"]] = process
            self.stopping.wait(0.5)

    def stop(self) -> list[dict]:
        self.stopping.set()
        self.join()
        return [{"pid": pid, **info} for pid, info in self.seen.items()]


def run_job(hub: Hub, token: str, nb: dict, profile: str, parameters: dict) -> dict:
    sampler = GPUProcessSampler()
    sampler.start()
    start = time.perf_counter()
    r = hub.executor("POST", "/jobs", token, json={
        "notebook": nb, "parameters": parameters, "profile": profile, "timeout_seconds": 1200, "name": f"gpu-bench-{profile}",
    })
    r.raise_for_status()
    job = hub.wait_job(r.json()["id"], token, timeout=1200)
    wall = time.perf_counter() - start
    left = gpu_processes()  # the job's GPU lease is free now: nothing of it may hold the GPU
    seen = sampler.stop()
    if job["status"] != "succeeded":
        log = hub.executor("GET", f"/jobs/{job['id']}/log", token).text
        raise RuntimeError(f"job {job['id']} {job['status']}: {job.get('error')}\n{log[-3000:]}")
    output = hub.executor("GET", f"/jobs/{job['id']}/output", token).json()
    return {"mode": "job", "profile": profile, "job_id": job["id"], "wall_seconds": wall,
            "gpu_processes": seen, "gpu_processes_left_at_success": left, **result_from(output)}


def run_direct(notebook: Path, parameters: dict, workdir: Path) -> dict:
    out = workdir / "direct-output.ipynb"
    args = [sys.executable, "-m", "papermill", str(notebook), str(out), "--no-progress-bar", "-k", "python3"]
    for key, value in parameters.items():
        args += ["-p", key, str(value)]
    start = time.perf_counter()
    subprocess.run(args, check=True, env=dict(os.environ, CUDA_VISIBLE_DEVICES="0"), capture_output=True)
    wall = time.perf_counter() - start
    return {"mode": "direct", "wall_seconds": wall, **result_from(json.loads(out.read_text()))}


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--notebook", type=Path, default=NOTEBOOK, help="another notebook printing the same result line")
    ap.add_argument("--config", default="", help="appended to the hub's config (to try knobs)")
    args = ap.parse_args()
    if not shutil.which("nvidia-smi"):
        print("bench_gpu: this machine has no NVIDIA GPU (nvidia-smi not found)", file=sys.stderr)
        return 2
    parameters = {"epochs": args.epochs, "steps_per_epoch": args.steps, "batch_size": 256}
    nb = json.loads(args.notebook.read_text())
    try:
        import mlflow  # noqa: F401
        config = ""
    except ImportError:
        config = "c.Notebench.mlflow_enabled = False\n"
    config += "c.Notebench.cull_idle_timeout = 0\n" + args.config + "\n"

    gpu_name = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True).stdout.strip()
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, GPU: {gpu_name}, as uid {os.geteuid()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-gpu-", dir="/srv" if os.path.isdir("/srv") else None))
    os.chmod(workdir, 0o755)
    hub = Hub(workdir / "data", config=config)
    rows = []
    try:
        t = time.perf_counter()
        hub.start()
        print(f"notebench up: healthy after {time.perf_counter() - t:.1f} s", flush=True)
        token = hub.new_user("gpuuser")
        for i in range(args.runs):
            for mode in ("job", "direct") if i % 2 == 0 else ("direct", "job"):
                row = run_job(hub, token, nb, "gpu", parameters) if mode == "job" else run_direct(args.notebook, parameters, workdir)
                rows.append(row)
                print(f"run {i} {mode:6}: {row['samples_per_second']:9.0f} samples/s, train {row['train_seconds']:.2f} s, "
                      f"wall {row['wall_seconds']:.2f} s, device {row['device_name']!r}, "
                      f"CUDA_VISIBLE_DEVICES={row['CUDA_VISIBLE_DEVICES']!r}, accuracy {row['accuracy']:.3f}", flush=True)
                if mode == "job":
                    print(f"         GPU processes during the job: {row['gpu_processes']}", flush=True)
                    print(f"         GPU processes left when it was reported succeeded: {row['gpu_processes_left_at_success']}", flush=True)
        cpu = run_job(hub, token, nb, "cpu", {"epochs": 2, "steps_per_epoch": 3, "batch_size": 16})
        print(f"cpu job: cuda_available={cpu['cuda_available']}, CUDA_VISIBLE_DEVICES={cpu['CUDA_VISIBLE_DEVICES']!r}, "
              f"device_count={cpu['device_count']}", flush=True)
    finally:
        hub.stop()
    jobs = [r for r in rows if r["mode"] == "job"]
    direct = [r for r in rows if r["mode"] == "direct"]
    summary = {
        "gpu": gpu_name,
        "runs": args.runs,
        "parameters": parameters,
        "job_samples_per_second": median(jobs, "samples_per_second"),
        "direct_samples_per_second": median(direct, "samples_per_second"),
        "throughput_ratio_job_vs_direct": median(jobs, "samples_per_second") / median(direct, "samples_per_second"),
        "job_train_seconds": median(jobs, "train_seconds"),
        "direct_train_seconds": median(direct, "train_seconds"),
        "job_wall_seconds": median(jobs, "wall_seconds"),
        "direct_wall_seconds": median(direct, "wall_seconds"),
        "wall_ratio_direct_vs_job": median(direct, "wall_seconds") / median(jobs, "wall_seconds"),
        "cpu_job_saw_gpu": cpu["cuda_available"],
        "gpu_processes_left_at_success": sum(len(r["gpu_processes_left_at_success"]) for r in jobs),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu.json").write_text(json.dumps({"summary": summary, "rows": rows, "cpu_job": cpu}, indent=2))
        shutil.copy(hub.log_path, args.out / "notebench.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
