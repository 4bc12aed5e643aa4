"""Notebook-job benchmark: how fast the executor turns a submitted notebook into a succeeded job.

    .venv/bin/python bench/executor/bench_jobs.py [--jobs 200] [--latency-runs 15] [--cli-runs 5]
        [--users 4] [--pause 2] [--config 'c.LocalBackend.warm_runners = 2'] [--variants mlflow,no-mlflow]

Each variant is a real `notebench up` (tests/support/launcher.py's Hub) with its own data dir:
``mlflow`` is the default config (every job is an MLflow run); ``no-mlflow`` adds
``c.Notebench.mlflow_enabled = False``; ``warm2`` sets ``c.LocalBackend.warm_runners = 2``.
``--config`` text is appended to every variant's config (to try knobs). For each variant it prints:

(a) [first variant only unless --latency-all] a trivial notebook (a ``parameters`` cell and
    ``print(x)``) submitted with a user's API token through the public proxy, then its job polled
    every --poll s (10 ms) until it succeeded: latency submit -> succeeded as the client sees it.
    The user's first job (cold: no warm runner yet) is reported on its own; then --latency-runs
    jobs back to back, and --latency-runs jobs with --pause s (2 s) between one's success and the
    next submission (time for the warm pool to refill: the warm-kernel path). p50/p95 of each,
    and where the time goes (server-side timestamps and the runner's events.jsonl, medians):
    submit = POST until 201; to-runner = job created until the runner reports 'started' (queue,
    MLflow run creation, waiting for a warm runner to be ready or starting one cold); run = the
    runner's 'started' to 'finished' (papermill on the kernel, kernel shutdown); report = runner
    'finished' until the client saw 'succeeded' (the executor's 50 ms watcher, closing the MLflow
    run, which the executor now does before marking the job finished, and the client's poll). "warm" counts jobs whose runner started within
    0.5 s of the job's creation.
    Then the `papermill` CLI on the same notebook (`-p x 1`), as the same OS account when root
    (runuser -u nb-<user>), --cli-runs times: p50, and the ratio CLI p50 / job p50.
(b) --users users (each with a warm-up job first, not counted) submit --jobs jobs in all, as fast
    as they can, concurrently (one thread per user, POSTs back to back). Each job's notebook
    appends "<NOTEBENCH_JOB_ID> <tag>" to ~/notebench-bench-runs.txt in its owner's home (tag: a
    per-submission parameter), so a job lost or run twice shows. The jobs are listed every 0.25 s.
    Prints sustained jobs/s (first submit until the last job's finished_at), succeeded / lost /
    failed counts, run-file lines (duplicates, missing), p50/p95 latency (client submit until the
    job's finished_at), and the CPU seconds the whole Notebench process tree used per job (all
    processes under `notebench up`, runners and kernels included): ``nproc / cpu_per_job`` bounds
    the jobs/s this machine can sustain, whatever the scheduling.

Figures only, no pass/fail. The machine is shared and noisy: compare within one run (ratios).
(b) takes --jobs / (jobs/s): with today's executor (~0.45 jobs/s on 2 shared cores) the default
run takes ~18 min; `--jobs 60 --latency-runs 15` takes ~6 min.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil
import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))  # tests.support (the helpers the tests use too)

from notebench.hub.platform.statuses import FINAL  # noqa: E402
from tests.support.launcher import Hub, notebook  # noqa: E402

VENV_BIN = Path(sys.prefix) / "bin"
IS_ROOT = os.geteuid() == 0
RUNS_FILE = "notebench-bench-runs.txt"
BASE_CONFIG = "c.Notebench.cull_idle_timeout = 0\n"  # no culler: it only slows the hub's shutdown

VARIANTS = {
    "mlflow": "",
    "no-mlflow": "c.Notebench.mlflow_enabled = False\n",
    # knobs
    "warm2": "c.LocalBackend.warm_runners = 2\n",
}

TRIVIAL = dict(sources=("print(x)",), parameters="x = 0")
MARKED = dict(
    sources=(
        "import os\n"
        f"with open(os.path.expanduser('~/{RUNS_FILE}'), 'a') as f:\n"
        "    f.write(f\"{os.environ.get('NOTEBENCH_JOB_ID')} {tag}\\n\")\n"
        "print(x)",
    ),
    parameters="x = 0\ntag = ''",
)


# --- small helpers ---------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(x: float | None, unit: str = "s") -> str:
    return "  n/a" if x is None else f"{x:.3f} {unit}".rstrip()


def ts(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else None


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"nproc {os.cpu_count()} ({len(os.sched_getaffinity(0))} usable), CPU {model!r}, Python {platform.python_version()}, {'root (jobs as nb-<user>)' if IS_ROOT else 'not root (no isolation)'}"


ROLES = (
    ("notebench.executor.runtime.runner", "runners"),
    ("ipykernel", "kernels"),
    ("notebench.executor", "executor"),
    ("mlflow", "mlflow"),
    ("configurable-http-proxy", "proxy"),
    ("jupyterhub", "hub"),
)


def role_of(p: psutil.Process) -> str:
    try:
        cmd = " ".join(p.cmdline())
    except psutil.ZombieProcess:
        return "ended, not yet reaped"  # a runner that just finished, most likely
    except psutil.Error:
        return "other"
    return next((role for needle, role in ROLES if needle in cmd), "other")


def tree_cpu(root_pid: int) -> dict[str, float]:
    """CPU seconds of the process tree under ``root_pid`` by role: each live process's own time,
    plus the time of its exited (reaped) children under "<role>'s exited children" (for the
    executor: the runners and kernels of finished jobs)."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}
    out: dict[str, float] = {}
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        role = role_of(p)
        out[role] = out.get(role, 0.0) + t.user + t.system
        if t.children_user + t.children_system:
            key = "runners+kernels (exited)" if role == "executor" else f"{role} (exited children)"
            out[key] = out.get(key, 0.0) + t.children_user + t.children_system
    return out


def cpu_delta(before: dict, after: dict) -> dict:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in sorted(set(before) | set(after))}


def home_of(hub_user: str, hub: Hub) -> Path:
    if IS_ROOT:
        return Path(pwd.getpwnam(f"nb-{hub_user}").pw_dir)
    return hub.data_dir / "homes" / hub_user


class Client:
    """One user's API client through the public proxy (keep-alive session, the user's token)."""

    def __init__(self, hub: Hub, name: str):
        self.hub, self.name = hub, name
        self.token = hub.new_user(name)
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"token {self.token}"
        self.base = f"{hub.url}/services/executor/api"

    def submit(self, nb: dict, parameters: dict, name: str = "bench") -> int:
        r = self.s.post(f"{self.base}/jobs", json={"notebook": nb, "parameters": parameters, "name": name}, timeout=120)
        if r.status_code != 201:
            raise RuntimeError(f"submit answered {r.status_code}: {r.text}")
        return r.json()["id"]

    def job(self, job_id: int) -> dict:
        return self.s.get(f"{self.base}/jobs/{job_id}", timeout=60).json()

    def jobs(self) -> list[dict]:
        out, cursor = [], None
        while True:
            r = self.s.get(f"{self.base}/jobs", params={"limit": 200, **({"cursor": cursor} if cursor else {})}, timeout=60)
            page = r.json()
            out += page["jobs"]
            cursor = page["next_cursor"]
            if not cursor:
                return out

    def wait(self, job_id: int, poll: float, timeout: float = 300) -> tuple[dict, float]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            job = self.job(job_id)
            if job["status"] in FINAL:
                return job, time.perf_counter()
            time.sleep(poll)
        raise TimeoutError(f"job {job_id} not finished after {timeout} s")


def events(hub: Hub, job_id: int) -> dict:
    path = hub.data_dir / "executor" / "jobs" / str(job_id) / "events.jsonl"
    try:
        return {e["event"]: e for e in map(json.loads, path.read_text().splitlines())}
    except (OSError, ValueError):
        return {}


# --- (a) latency -----------------------------------------------------------------------------


def one_job(hub: Hub, client: Client, nb: dict, x: int, poll: float) -> dict:
    wall0 = time.time()
    t0 = time.perf_counter()
    job_id = client.submit(nb, {"x": x})
    t_submit = time.perf_counter() - t0
    job, t_end = client.wait(job_id, poll)
    total = t_end - t0
    ev = events(hub, job_id)
    created = ts(job["created_at"])
    started_ev = ev.get("started", {}).get("time")
    finished_ev = ev.get("finished", {}).get("time")
    return {
        "id": job_id,
        "status": job["status"],
        "total": total,
        "submit": t_submit,
        "to_runner": started_ev - created if started_ev and created else None,
        "run": finished_ev - started_ev if finished_ev and started_ev else None,
        "report": (wall0 + total) - finished_ev if finished_ev else None,
        "warm": bool(started_ev and created and started_ev - created < 0.5),
    }


def summarize(label: str, rows: list[dict]) -> dict:
    totals = [r["total"] for r in rows]
    bad = [r for r in rows if r["status"] != "succeeded"]
    p50, p95 = pct(totals, 50), pct(totals, 95)
    print(
        f"  {label:<22} n={len(rows):<3} p50 {p50:.3f} s  p95 {p95:.3f} s  min {min(totals):.3f} s"
        f"  warm {sum(r['warm'] for r in rows)}/{len(rows)}{'  NOT SUCCEEDED: ' + str(len(bad)) if bad else ''}"
    )
    print(
        "  {:<22} medians: submit {}  to-runner {}  run {}  report {}".format(
            "", *(fmt(med([r[k] for r in rows])) for k in ("submit", "to_runner", "run", "report"))
        )
    )
    return {"p50": p50, "p95": p95}


def cli_runs(hub: Hub, user: str, nb: dict, n: int) -> list[float]:
    """`papermill in.ipynb out.ipynb -p x 1` as the user's OS account, in their home."""
    import nbformat

    home = home_of(user, hub)
    home.mkdir(parents=True, exist_ok=True)
    src, out = home / "bench-cli-in.ipynb", home / "bench-cli-out.ipynb"
    nbformat.write(nbformat.from_dict(nb), str(src))
    cmd = [str(VENV_BIN / "papermill"), str(src), str(out), "-p", "x", "1", "--no-progress-bar", "--log-level", "WARNING"]
    env = {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": os.environ.get("LANG", "C.UTF-8")}
    if IS_ROOT:
        account = f"nb-{user}"
        entry = pwd.getpwnam(account)
        os.chown(src, entry.pw_uid, entry.pw_gid)
        env["USER"] = account
        cmd = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", account, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *cmd]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=home, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"papermill CLI failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return times


def bench_latency(hub: Hub, args) -> dict:
    nb = notebook(*TRIVIAL["sources"], parameters=TRIVIAL["parameters"])
    client = Client(hub, "bench-lat")
    print(f"(a) submit -> succeeded, trivial notebook, user {client.name}, polled every {args.poll * 1000:.0f} ms", flush=True)
    first = one_job(hub, client, nb, 0, args.poll)
    summarize("first job (cold)", [first])
    time.sleep(args.pause)
    b2b = [one_job(hub, client, nb, i, args.poll) for i in range(args.latency_runs)]
    res = {"b2b": summarize("back to back", b2b)}
    paused = []
    for i in range(args.latency_runs):
        time.sleep(args.pause)
        paused.append(one_job(hub, client, nb, i, args.poll))
    res["paused"] = summarize(f"{args.pause:g} s pause", paused)
    time.sleep(args.pause)  # the CLI does not compete with the pool's refill
    cli = cli_runs(hub, client.name, nb, args.cli_runs)
    cli_p50 = statistics.median(cli)
    res["cli"] = cli_p50
    print(f"  {'papermill CLI':<22} n={len(cli):<3} p50 {cli_p50:.3f} s  min {min(cli):.3f} s  max {max(cli):.3f} s ({'as nb-' + client.name if IS_ROOT else 'as this account'})")
    print(
        f"  speed-up CLI p50 / job p50: back to back {cli_p50 / res['b2b']['p50']:.2f}x, "
        f"with {args.pause:g} s pause {cli_p50 / res['paused']['p50']:.2f}x   (goal: job <= 0.5 s and >= 6x)",
        flush=True,
    )
    return res


# --- (b) throughput --------------------------------------------------------------------------


def bench_throughput(hub: Hub, args, label: str) -> dict:
    nb = notebook(*MARKED["sources"], parameters=MARKED["parameters"])
    clients = [Client(hub, f"bench-tp{i}") for i in range(args.users)]
    per_user = [args.jobs // args.users + (1 if i < args.jobs % args.users else 0) for i in range(args.users)]
    print(f"(b) {args.jobs} jobs by {args.users} users at once ({'/'.join(map(str, per_user))}), {label}", flush=True)

    # Warm-up: each user's first job starts cold (no runner yet) and creates their MLflow experiment.
    warm_ids = {c.name: c.submit(nb, {"x": -1, "tag": "warmup"}) for c in clients}
    for c in clients:
        job, _ = c.wait(warm_ids[c.name], 0.1)
        if job["status"] != "succeeded":
            raise RuntimeError(f"warm-up job of {c.name}: {job['status']} {job.get('error')}")
    time.sleep(args.pause)
    for c in clients:
        (home_of(c.name, hub) / RUNS_FILE).unlink(missing_ok=True)

    submitted: dict[str, list[tuple[int, str, float]]] = {c.name: [] for c in clients}
    errors: list[str] = []
    cpu0, load0 = tree_cpu(hub.proc.pid), loadavg()
    barrier = threading.Barrier(len(clients) + 1)

    def submitter(c: Client, n: int):
        barrier.wait()
        for k in range(n):
            tag = f"{c.name}-{k}"
            t = time.time()
            try:
                submitted[c.name].append((c.submit(nb, {"x": k, "tag": tag}), tag, t))
            except Exception as e:  # counted, not fatal: the benchmark goes on
                errors.append(f"{tag}: {e}")

    threads = [threading.Thread(target=submitter, args=(c, n), daemon=True) for c, n in zip(clients, per_user)]
    for t in threads:
        t.start()
    barrier.wait()
    t_first = time.time()
    for t in threads:
        t.join()
    t_submitted = time.time()

    expected = {c.name: {jid for jid, _, _ in submitted[c.name]} for c in clients}
    final: dict[int, dict] = {}
    deadline = time.monotonic() + args.throughput_timeout
    while time.monotonic() < deadline:
        for c in clients:
            for job in c.jobs():
                if job["id"] in expected[c.name] and job["status"] in FINAL:
                    final[job["id"]] = job
        if len(final) == sum(map(len, expected.values())):
            break
        time.sleep(0.25)
    cpu1, load1 = tree_cpu(hub.proc.pid), loadavg()

    n_sub = sum(map(len, expected.values()))
    succeeded = [j for j in final.values() if j["status"] == "succeeded"]
    t_last = max((ts(j["finished_at"]) for j in final.values()), default=time.time())
    span = t_last - t_first
    submit_time = {jid: t for c in clients for jid, _, t in submitted[c.name]}
    lat = [ts(j["finished_at"]) - submit_time[j["id"]] for j in succeeded]
    # Exactly once: every job's line once, and no other line.
    lines = []
    for c in clients:
        try:
            lines += (home_of(c.name, hub) / RUNS_FILE).read_text().split("\n")[:-1]
        except FileNotFoundError:
            pass
    want = {f"{jid} {tag}" for c in clients for jid, tag, _ in submitted[c.name]}
    seen: dict[str, int] = {}
    for line in lines:
        seen[line] = seen.get(line, 0) + 1
    dupes = sum(n - 1 for n in seen.values() if n > 1)
    missing = len(want - set(seen))
    strangers = len(set(seen) - want)
    rate = len(succeeded) / span if span > 0 else 0.0
    cpu = cpu_delta(cpu0, cpu1)
    cpu_total = sum(cpu.values())
    cpu_per_job = cpu_total / max(1, len(final))
    print(f"  submitted {n_sub}/{args.jobs} (errors {len(errors)}) in {t_submitted - t_first:.2f} s; {errors[:3] if errors else ''}")
    print(
        f"  succeeded {len(succeeded)}  other final {len(final) - len(succeeded)}  lost/unfinished {n_sub - len(final)}"
        f"  | runs file: {len(lines)} lines, missing {missing}, run twice {dupes}, unknown {strangers}"
    )
    if lat:
        print(f"  sustained {rate:.2f} jobs/s over {span:.1f} s; latency p50 {pct(lat, 50):.2f} s  p95 {pct(lat, 95):.2f} s  max {max(lat):.2f} s   (goal >= 2 jobs/s)")
    print(
        f"  Notebench CPU {cpu_total:.1f} s = {cpu_per_job:.2f} CPU-s/job -> at most {os.cpu_count() / cpu_per_job:.2f} jobs/s on {os.cpu_count()} cores;"
        f" load {load0} -> {load1}"
    )
    n = max(1, len(final))
    print("  CPU-s/job by process: " + ", ".join(f"{k} {v / n:.3f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if abs(v) >= 0.0005), flush=True)
    bad = [j for j in final.values() if j["status"] != "succeeded"][:3]
    for j in bad:
        print(f"  e.g. job {j['id']} {j['status']}: {j.get('error')}")
    return {"rate": rate, "p50": pct(lat, 50) if lat else None, "cpu_per_job": cpu_per_job, "succeeded": len(succeeded)}


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=200, help="jobs in (b), in all")
    ap.add_argument("--users", type=int, default=4, help="users submitting at once in (b)")
    ap.add_argument("--latency-runs", type=int, default=15, help="jobs in each (a) series")
    ap.add_argument("--cli-runs", type=int, default=5, help="papermill CLI runs in (a)")
    ap.add_argument("--pause", type=float, default=2.0, help="seconds between jobs in (a)'s paused series")
    ap.add_argument("--poll", type=float, default=0.01, help="seconds between polls of a job in (a)")
    ap.add_argument("--variants", default="mlflow,no-mlflow", help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--latency-all", action="store_true", help="run (a) on every variant, not only the first")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: a, b")
    ap.add_argument("--config", default="", help="config text appended to every variant's (try knobs)")
    ap.add_argument("--throughput-timeout", type=float, default=600, help="give up (b) after this many seconds")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs (and logs)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    print(machine())
    print(f"load average at start: {loadavg()}   config extra: {args.config!r}", flush=True)
    results = {}
    workdir = Path(tempfile.mkdtemp(prefix="nb-bench-jobs-"))
    t_all = time.monotonic()
    os.chmod(workdir, 0o711)
    try:
        for i, name in enumerate(filter(None, args.variants.split(","))):
            config = BASE_CONFIG + VARIANTS[name] + args.config + "\n"
            shown = config.strip() if len(config) < 300 else f"{len(config)} characters of config (see VARIANTS)"
            print(f"\n=== variant {name}: {shown!r}", flush=True)
            t0 = time.monotonic()
            (workdir / name).mkdir()
            hub = Hub(workdir / name / "data", config=config).start()
            print(f"hub up in {time.monotonic() - t0:.1f} s", flush=True)
            try:
                res = {}
                if "a" not in skip and (i == 0 or args.latency_all):
                    res["a"] = bench_latency(hub, args)
                if "b" not in skip:
                    res["b"] = bench_throughput(hub, args, f"variant {name}")
                results[name] = res
            finally:
                hub.stop()
                if args.keep:
                    print(f"log: {hub.log_path}")
        if "mlflow" in results and "no-mlflow" in results and "b" in results["mlflow"] and "b" in results["no-mlflow"]:
            m, n = results["mlflow"]["b"], results["no-mlflow"]["b"]
            print(
                f"\nMLflow's cost in (b): {m['rate']:.2f} vs {n['rate']:.2f} jobs/s ({n['rate'] / m['rate']:.2f}x without), "
                f"{m['cpu_per_job']:.2f} vs {n['cpu_per_job']:.2f} CPU-s/job, p50 {fmt(m['p50'])} vs {fmt(n['p50'])}"
            )
        print(f"\ntotal {time.monotonic() - t_all:.0f} s; load average at end: {loadavg()}")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
