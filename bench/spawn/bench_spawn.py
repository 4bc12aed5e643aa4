"""Spawn benchmark: how long from "start my server" to a JupyterLab that answers through the proxy.

    .venv/bin/python bench/spawn/bench_spawn.py [--spawns 10] [--concurrent 20] [--variants product,cold]
    .venv/bin/python bench/spawn/bench_spawn.py --knobs product,fastwait,nolsp,norfc,noyarn,recommended

For each hub variant (a real `notebench up` started with tests/support/launcher.py's Hub and a config
text; see VARIANTS) it prints:

(a) spawn-to-ready through the proxy over --spawns sequential spawns of one user's `cpu` server:
    POST /hub/api/users/<u>/server (the user's token) until GET /user/<u>/api/status through the
    public port, with that token, answers 200 (polled every 20 ms); then the server is stopped.
(b) interleaved with (a) (hub, bare, hub, bare, ...: same noise for both), the bare start of
    `jupyter-lab --no-browser --port P --IdentityProvider.token=T` from the same venv as the same
    OS account, until its own /api/status answers 200; and the ratio hub/bare.
(b') for variants that change the server itself, the bare start with the same change too, so
    that hub/(b') is the hub's own overhead.
(c) --concurrent users spawning at once: p50/p95 spawn-to-ready and failures; then all stopped.
Then where the time goes (hub-side timestamps from hub_probe.py, medians over (a)) and the
import-time profile of the single-user server.

--knobs compares settings interleaved in ONE hub instead (one user per setting), so that every
setting sees the same machine noise.

Figures only, no pass/fail. Numbers on a shared machine are noisy: compare within one run.
See bench/README.md for the latest figures and what they mean.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import pwd
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))  # tests.support (the helpers the tests use too)

from tests.support.launcher import Hub, free_port, wait_for  # noqa: E402

VENV_BIN = Path(sys.prefix) / "bin"
PY = str(VENV_BIN / "python")
IS_ROOT = os.geteuid() == 0
POLL_S = 0.02  # client polling of the user's /api/status
READY_TIMEOUT_S = 180
BARE_LOG: Path | None = None  # the bare servers' output (kept with --keep or on failure)

# --- server-side tweaks (applied identically to the hub's server and to the bare baseline) -------
# jsonschema imports rfc3987_syntax, which builds ~35 Lark Earley parsers at import (~1 s here);
# None in sys.modules makes `import rfc3987_syntax` fail, and jsonschema then skips only its
# iri/iri-reference format checks (no Jupyter event schema uses them).
SKIP_RFC3987_SYNTAX = "sys.modules['rfc3987_syntax'] = None\n"
# Importing jupyterlab.labapp runs `node yarn.js config --json` (get_app_version -> AppOptions.registry)
# synchronously when node is on PATH (~0.3-0.5 s); the registry only matters for building source
# extensions, which a managed user server never does.
SKIP_YARN_CONFIG = (
    "import jupyterlab.commands as _jc\n"
    "_jc._yarn_config = lambda logger=None: {'yarn config': {}, 'npm config': {}}\n"
)
NO_LSP = ["--ServerApp.jpserver_extensions=jupyter_lsp=False"]

SINGLEUSER_MAIN = "from jupyterhub.singleuser import main\nsys.argv[0] = 'jupyterhub-singleuser'\nsys.exit(main())\n"
LAB_MAIN = "from jupyterlab.labapp import main\nsys.argv[0] = 'jupyter-lab'\nsys.exit(main())\n"


@dataclass
class Variant:
    name: str
    about: str
    fast_wait: bool = False  # hub side: start() waits for the server itself (hub_probe.BenchSpawner)
    preamble: str = ""  # server side: python run before the server's main (sys imported)
    server_args: list = field(default_factory=list)  # server side: extra command-line flags
    hub_extra: list = field(default_factory=list)  # more hub config lines (hub side only)

    def hub_config(self, events_file: Path, per_user: dict | None = None) -> str:
        lines = [
            "# Written by bench/spawn/bench_spawn.py: hub_probe only records timestamps unless fast_wait.",
            "import sys",
            f"sys.path.insert(0, {str(HERE)!r})",
            "from hub_probe import install",
            f"c.JupyterHub.spawner_class = install({str(events_file)!r}, fast_wait={self.fast_wait}, per_user={per_user!r})",
        ]
        if self.preamble:
            lines.append(f"c.Spawner.cmd = {self.hub_cmd()!r}")
        if self.server_args:
            lines.append(f"c.Spawner.args = {self.server_args!r}")
        lines += self.hub_extra
        return "\n".join(lines) + "\n"

    @property
    def server_tweaks(self) -> bool:
        return bool(self.preamble or self.server_args)

    def hub_cmd(self) -> list[str] | None:
        """The single-user command with this variant's preamble (None: the product's default)."""
        if not self.preamble:
            return None
        return [PY, "-c", "import sys\n" + self.preamble + SINGLEUSER_MAIN]

    def knobs(self) -> dict:
        return {"fast_wait": self.fast_wait, "cmd": self.hub_cmd(), "args": list(self.server_args)}

    def bare_cmd(self) -> list[str]:
        if self.preamble:
            return [PY, "-c", "import sys\n" + self.preamble + LAB_MAIN]
        return [str(VENV_BIN / "jupyter-lab")]


VARIANTS = {
    v.name: v
    for v in [
        Variant("product", "Notebench as shipped (hub/config.py defaults, NotebenchSpawner)"),
        Variant("cold", "as shipped, but every server a new Python (c.NotebenchSpawner.fork_servers = False)",
                hub_extra=["c.NotebenchSpawner.fork_servers = False"]),
        Variant("fastwait", "spawner waits for its server itself (20 ms connects), not JupyterHub's backoff", fast_wait=True),
        Variant("nolsp", "--ServerApp.jpserver_extensions=jupyter_lsp=False", server_args=NO_LSP),
        Variant("norfc", "server skips rfc3987_syntax (Lark grammar build at import)", preamble=SKIP_RFC3987_SYNTAX),
        Variant("noyarn", "server skips `node yarn.js config` at jupyterlab import", preamble=SKIP_YARN_CONFIG),
        Variant(
            "recommended",
            "fastwait + norfc + noyarn + nolsp",
            fast_wait=True,
            preamble=SKIP_RFC3987_SYNTAX + SKIP_YARN_CONFIG,
            server_args=NO_LSP,
        ),
    ]
}


# --- small helpers ---------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def fmt(x: float | None) -> str:
    return "   -  " if x is None else f"{x:6.2f}"


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    versions = []
    for dist in ("jupyterhub", "jupyterlab", "jupyter_server"):
        try:
            versions.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    return {
        "versions": ", ".join(versions),
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --- OS accounts and the bare baseline ---------------------------------------------------------


class Account:
    """Who a server runs as, from the product's own UserAccounts (notebench.hub.platform.accounts): the
    user's OS account and 0700 home when root, else us with a home under the data dir."""

    def __init__(self, hub_user: str, shared_homes: Path):
        from notebench.hub.platform.accounts import UserAccounts

        self.accounts = UserAccounts(shared_homes_dir=str(shared_homes))
        self.hub_user = hub_user
        self.accounts.prepare(hub_user)  # creates the OS account now, outside any timing
        self.home = self.accounts.home(hub_user)
        self.name = self.accounts.os_user(hub_user)
        self.uid = pwd.getpwnam(self.name).pw_uid

    def env(self) -> dict:
        # What NotebenchSpawner gives a server's environment (USER, HOME, SHELL, PATH), CPU profile.
        return {**self.accounts.env(self.hub_user), "CUDA_VISIBLE_DEVICES": ""}

    def preexec(self):
        return self.accounts.preexec(self.hub_user)


class PortTaken(Exception):
    pass


def bare_start(variant: Variant, account: Account) -> float:
    """Seconds from Popen of a bare JupyterLab until its /api/status answers 200 (then stopped).
    A port taken between free_port() and the server's bind (busy machine) is retried with another."""
    for _attempt in range(5):
        try:
            return _bare_start_once(variant, account)
        except PortTaken:
            continue
    raise RuntimeError("bare server: no free port in 5 tries")


def _bare_start_once(variant: Variant, account: Account) -> float:
    port = free_port()
    token = secrets.token_hex(16)
    cmd = variant.bare_cmd() + [
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={account.home}",
        "--ServerApp.port_retries=0",  # never drift to another port than the one we poll
        *variant.server_args,
    ]
    if account.uid == 0:
        cmd.append("--allow-root")
    url = f"http://127.0.0.1:{port}/api/status"
    headers = {"Authorization": f"token {token}"}
    session = requests.Session()
    log = open(BARE_LOG, "ab") if BARE_LOG else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=account.env(),
        cwd=account.home,
        preexec_fn=account.preexec(),
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        while True:
            if proc.poll() is not None:
                if time.perf_counter() - t0 < 60 and _port_in_use(port):
                    raise PortTaken(port)
                raise RuntimeError(f"bare server exited with {proc.returncode}: {cmd}")
            try:
                if session.get(url, headers=headers, timeout=30).status_code == 200:
                    return time.perf_counter() - t0
            except requests.ConnectionError:
                pass
            if time.perf_counter() - t0 > READY_TIMEOUT_S:
                raise TimeoutError(f"bare server not up in {READY_TIMEOUT_S}s")
            time.sleep(POLL_S)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if log is not subprocess.DEVNULL:
            log.close()


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# --- spawning through the hub --------------------------------------------------------------------


@dataclass
class Spawn:
    user: str
    t_post: float = 0.0  # wall clock, comparable with hub_probe's events
    seconds: float | None = None  # POST -> first 200 through the proxy; None if it failed
    status: int = 0  # the POST's answer
    error: str = ""


def wait_progress_ready(hub: Hub, user: str, token: str, timeout: float) -> None:
    """Block on the hub's progress event stream until the server is ready (one connection, no polling)."""
    url = f"{hub.url}/hub/api/users/{user}/server/progress"
    with requests.get(url, headers={"Authorization": f"token {token}"}, stream=True, timeout=timeout) as r:
        r.raise_for_status()
        for line in r.iter_lines(decode_unicode=True):
            if not line or not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event.get("failed"):
                raise RuntimeError(f"spawn failed: {event.get('message')}")
            if event.get("ready"):
                return


def spawn_to_ready(hub: Hub, user: str, token: str, profile: str = "cpu") -> Spawn:
    """POST the spawn, then GET /user/<u>/api/status through the proxy every 20 ms until 200.

    The POST itself returns when the spawn has finished (201) unless it takes longer than
    JupyterHub's slow_spawn_timeout (202): then we wait on the progress stream rather than
    hammering the hub with 50 requests/s per user, and poll the proxy from there on."""
    result = Spawn(user)
    headers = {"Authorization": f"token {token}"}
    session = requests.Session()
    status_url = f"{hub.url}/user/{user}/api/status"
    result.t_post = time.time()
    t0 = time.perf_counter()
    try:
        r = session.post(
            f"{hub.url}/hub/api/users/{user}/server",
            headers=headers,
            json={"profile": profile},  # the body IS the user_options (JupyterHub REST API)
            timeout=READY_TIMEOUT_S,
        )
        result.status = r.status_code
        if r.status_code not in (201, 202):
            result.error = f"POST answered {r.status_code}: {r.text[:200]}"
            return result
        if r.status_code == 202:
            wait_progress_ready(hub, user, token, READY_TIMEOUT_S)
        while True:
            got = session.get(status_url, headers=headers, allow_redirects=False, timeout=30)
            if got.status_code == 200:
                result.seconds = time.perf_counter() - t0
                return result
            if time.perf_counter() - t0 > READY_TIMEOUT_S:
                result.error = f"/api/status still {got.status_code} after {READY_TIMEOUT_S}s"
                return result
            time.sleep(POLL_S)
    except Exception as e:  # noqa: BLE001 - a failure is a figure here
        result.error = f"{type(e).__name__}: {e}"
        return result


def stop_servers(hub: Hub, users: list[str]) -> float:
    t0 = time.perf_counter()

    def delete(user):
        # Each DELETE may hold its answer up to JupyterHub's slow_stop_timeout: send them at once.
        r = hub.api("DELETE", f"/users/{user}/server")
        if r.status_code not in (202, 204, 400, 404):
            print(f"  warning: DELETE {user}'s server answered {r.status_code}", file=sys.stderr)

    threads = [threading.Thread(target=delete, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(
        lambda: not any(u["servers"] for u in hub.api("GET", "/users").json() if u["name"] in users),
        120,
        interval=0.05,
        message="servers stopped",
    )
    return time.perf_counter() - t0


# --- hub-side breakdown ---------------------------------------------------------------------------

SEGMENTS = [
    ("api->spawner.start", "post", "start", "hub: API request, DB, spawn bookkeeping"),
    ("spawner prep+fork", "start", "process", "profile, OS account, GPU lease, cgroup; fork of the warm process (cold: fork/setuid/exec)"),
    ("server boot", "process", "popen", "single-user server: (cold: imports,) config, extensions, until it answers"),
    ("hub notices", "popen", "hub_saw_up", "JupyterHub _wait_up: its first poll"),
    ("proxy route", "hub_saw_up", "route_added", "add_route to configurable-http-proxy"),
    ("to client 200", "route_added", "ready", "API answer + GET through proxy (token check with hub)"),
]


def read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def breakdown(spawns: list[Spawn], events: list[dict]) -> dict[str, list[float]]:
    """Per segment, the durations over the given (sequential) spawns."""
    out: dict[str, list[float]] = {name: [] for name, *_ in SEGMENTS}
    for s in spawns:
        if s.seconds is None:
            continue
        t_ready = s.t_post + s.seconds
        marks = {"post": s.t_post, "ready": t_ready}
        for e in events:
            if e["user"] == s.user and s.t_post - 0.01 <= e["t"] <= t_ready + 0.5 and e["event"] not in marks:
                marks[e["event"]] = e["t"]
        for name, a, b, _ in SEGMENTS:
            if a in marks and b in marks:
                out[name].append(marks[b] - marks[a])
    return out


# --- one hub variant -----------------------------------------------------------------------------


def run_variant(variant: Variant, args, workdir: Path) -> dict:
    data_dir = workdir / variant.name / "data"
    data_dir.parent.mkdir(parents=True)
    events_file = workdir / variant.name / "events.jsonl"
    print(f"\n== {variant.name}: {variant.about}", flush=True)
    t_hub = time.perf_counter()
    hub = Hub(data_dir, config=variant.hub_config(events_file)).start()
    print(f"   hub up in {time.perf_counter() - t_hub:.1f}s at {hub.url} (log: {hub.log_path})", flush=True)
    result: dict = {"variant": variant.name, "about": variant.about}
    try:
        settle(hub)
        result["load_before"] = loadavg()
        seq_user = "bench-seq"
        seq_token = hub.new_user(seq_user)
        account = Account(seq_user, data_dir / "homes")

        # warm-up (not counted): first spawn of a fresh hub, cold caches
        warm = spawn_to_ready(hub, seq_user, seq_token)
        if warm.seconds is None:
            raise RuntimeError(f"warm-up spawn failed: {warm.error}\n--- hub log tail ---\n{hub.log()[-3000:]}")
        stop_servers(hub, [seq_user])
        if not args.no_bare:
            bare_start(variant, account)

        hub_s: list[Spawn] = []
        bare_s: list[float] = []  # stock `jupyter-lab`: the brief's baseline
        tuned_s: list[float] = []  # the same server tweaks as the variant: the hub's own overhead
        stop_s: list[float] = []
        for i in range(args.spawns):
            s = spawn_to_ready(hub, seq_user, seq_token)
            hub_s.append(s)
            stop_s.append(stop_servers(hub, [seq_user]))
            line = f"   {i + 1:2d}/{args.spawns} hub {fmt(s.seconds)} s"
            if not args.no_bare:
                bare_s.append(bare_start(VARIANTS["product"], account))
                line += f"   bare {bare_s[-1]:5.2f} s"
                if variant.server_tweaks:
                    tuned_s.append(bare_start(variant, account))
                    line += f"   bare+same tweaks {tuned_s[-1]:5.2f} s"
            if s.seconds is None:
                line += f"   FAILED: {s.error}"
            print(line, flush=True)
        ok = [s.seconds for s in hub_s if s.seconds is not None]
        result["seq"] = {
            "n": len(hub_s),
            "failures": len(hub_s) - len(ok),
            "median": statistics.median(ok) if ok else None,
            "p95": pct(ok, 95) if ok else None,
            "min": min(ok) if ok else None,
            "stop_median": statistics.median(stop_s) if stop_s else None,
        }
        if bare_s:
            result["bare"] = {"n": len(bare_s), "median": statistics.median(bare_s), "min": min(bare_s)}
            if ok:
                result["ratio"] = result["seq"]["median"] / result["bare"]["median"]
        if tuned_s:
            result["bare_tuned"] = {"n": len(tuned_s), "median": statistics.median(tuned_s), "min": min(tuned_s)}
            if ok:
                result["ratio_tuned"] = result["seq"]["median"] / result["bare_tuned"]["median"]
        result["breakdown"] = {k: statistics.median(v) for k, v in breakdown(hub_s, read_events(events_file)).items() if v}

        if args.concurrent:
            users = [f"bench-c{i:02d}" for i in range(args.concurrent)]
            tokens = {}
            for u in users:
                tokens[u] = hub.new_user(u)
                Account(u, data_dir / "homes")  # OS accounts exist beforehand (first-ever spawn adds useradd)
            results: list[Spawn] = []
            lock = threading.Lock()
            gate = threading.Barrier(len(users))

            def one(u):
                gate.wait()
                s = spawn_to_ready(hub, u, tokens[u])
                with lock:
                    results.append(s)

            print(f"   {len(users)} concurrent spawns ...", flush=True)
            t0 = time.perf_counter()
            threads = [threading.Thread(target=one, args=(u,)) for u in users]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            stop_all = stop_servers(hub, users)
            ok = [s.seconds for s in results if s.seconds is not None]
            fails = [s for s in results if s.seconds is None]
            result["concurrent"] = {
                "n": len(users),
                "failures": len(fails),
                "p50": pct(ok, 50) if ok else None,
                "p95": pct(ok, 95) if ok else None,
                "max": max(ok) if ok else None,
                "wall": wall,
                "stop_all": stop_all,
                "http_202": sum(1 for s in results if s.status == 202),
                "errors": sorted({s.error for s in fails})[:5],
            }
            c = result["concurrent"]
            print(
                f"   concurrent: p50 {fmt(c['p50'])} p95 {fmt(c['p95'])} max {fmt(c['max'])} s, "
                f"failures {c['failures']}, stop-all {stop_all:.1f}s",
                flush=True,
            )
        result["load_after"] = loadavg()
    finally:
        t_stop = time.perf_counter()
        hub.stop()
        print(f"   hub stopped in {time.perf_counter() - t_stop:.1f}s", flush=True)
    return result


# --- knob mode: several settings interleaved in ONE hub -------------------------------------------


def run_knobs(names: list[str], args, workdir: Path) -> dict:
    """Each setting gets its own user (bench-k-<name>) in one hub; rounds spawn every user once,
    in rotating order, plus one stock bare start: all settings share the same machine noise.
    Reported per setting: median and min spawn-to-ready, and the paired ratio to 'product'
    (median over rounds of setting/product in that round)."""
    variants = [VARIANTS[n] for n in names]
    if "product" not in names:
        variants.insert(0, VARIANTS["product"])
    users = {v.name: f"bench-k-{v.name}" for v in variants}
    per_user = {users[v.name]: v.knobs() for v in variants}
    data_dir = workdir / "knobs" / "data"
    data_dir.parent.mkdir(parents=True)
    events_file = workdir / "knobs" / "events.jsonl"
    print(f"\n== knobs, interleaved in one hub: {', '.join(users)}", flush=True)
    hub = Hub(data_dir, config=VARIANTS["product"].hub_config(events_file, per_user)).start()
    out: dict = {"mode": "knobs", "settings": {}}
    try:
        settle(hub)
        out["load_before"] = loadavg()
        tokens = {name: hub.new_user(u) for name, u in users.items()}
        accounts = {name: Account(u, data_dir / "homes") for name, u in users.items()}
        for v in variants:  # warm-up, not counted
            warm = spawn_to_ready(hub, users[v.name], tokens[v.name])
            if warm.seconds is None:
                raise RuntimeError(f"warm-up spawn of {v.name} failed: {warm.error}")
            stop_servers(hub, [users[v.name]])
        spawns: dict[str, list[Spawn]] = {v.name: [] for v in variants}
        bare_s: list[float] = []
        for r in range(args.spawns):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            line = []
            for v in order:
                s = spawn_to_ready(hub, users[v.name], tokens[v.name])
                spawns[v.name].append(s)
                stop_servers(hub, [users[v.name]])
                line.append(f"{v.name} {fmt(s.seconds).strip()}")
            if not args.no_bare:
                bare_s.append(bare_start(VARIANTS["product"], accounts["product"]))
                line.append(f"bare {bare_s[-1]:.2f}")
            print(f"   {r + 1:2d}/{args.spawns} " + "  ".join(line), flush=True)
        events = read_events(events_file)
        base = [s.seconds for s in spawns["product"]]
        for v in variants:
            ok = [s.seconds for s in spawns[v.name] if s.seconds is not None]
            paired = [s.seconds / b for s, b in zip(spawns[v.name], base) if s.seconds and b]
            out["settings"][v.name] = {
                "about": v.about,
                "n": len(spawns[v.name]),
                "failures": len(spawns[v.name]) - len(ok),
                "median": statistics.median(ok) if ok else None,
                "min": min(ok) if ok else None,
                "paired_ratio": statistics.median(paired) if paired else None,
                "breakdown": {k: statistics.median(x) for k, x in breakdown(spawns[v.name], events).items() if x},
            }
        if bare_s:
            out["bare"] = {"n": len(bare_s), "median": statistics.median(bare_s), "min": min(bare_s)}
        out["load_after"] = loadavg()
    finally:
        hub.stop()
    return out


def report_knobs(k: dict) -> None:
    print("\nknobs, interleaved in one hub (same noise): sequential spawn-to-ready through the proxy, seconds")
    bare = k.get("bare", {}).get("median")
    print(f"{'setting':<12} {'median':>6} {'min':>6} {'fail':>4} {'vs product':>10} {'hub/bare':>8} "
          f"{'boot':>6} {'notice':>6}   what")
    for name, r in k["settings"].items():
        b = r["breakdown"]
        ratio = f"{r['paired_ratio']:9.2f}x" if r["paired_ratio"] else "        - "
        hb = f"{r['median'] / bare:7.2f}x" if bare and r["median"] else "      - "
        print(f"{name:<12} {fmt(r['median'])} {fmt(r['min'])} {r['failures']:>4} {ratio} {hb} "
              f"{fmt(b.get('server boot'))} {fmt(b.get('hub notices'))}   {r['about']}")
    if bare:
        print(f"bare `jupyter-lab` (stock), interleaved: median {bare:.2f}s (n={k['bare']['n']})")
    print(f"load before / after: {k.get('load_before')} / {k.get('load_after')}")



def settle(hub: Hub, timeout: float = 60.0) -> None:
    """Wait until the hub-managed MLflow service has booted (its imports eat CPU on a small
    machine), then a moment for the idle culler's first pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if "MLflow service ready" in hub.log() or "mlflow" not in hub.log().lower():
            break
        time.sleep(0.25)
    else:
        print("   note: MLflow did not say it was ready; measuring anyway", flush=True)
    time.sleep(1.0)


# --- import-time profile of the single-user server --------------------------------------------------


def import_profile() -> dict:
    """`python -X importtime` of what jupyterhub-singleuser imports, with its main costs."""
    code = "import jupyterhub.singleuser.extension, jupyterlab.labapp"
    t0 = time.perf_counter()
    proc = subprocess.run([PY, "-X", "importtime", "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cumulative: dict[str, float] = {}
    own: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line[len("import time:") :].split("|")
        try:
            self_us, cum_us, name = int(parts[0]), int(parts[1]), parts[2].strip()
        except ValueError:
            continue
        cumulative[name] = max(cumulative.get(name, 0), cum_us / 1e6)
        own[name] = max(own.get(name, 0), self_us / 1e6)
    return {
        "wall": wall,
        "rfc3987_syntax": cumulative.get("rfc3987_syntax", 0.0),
        "jupyterlab.labapp (own: runs `node yarn.js config`)": own.get("jupyterlab.labapp", 0.0),
        "jupyterhub.orm (sqlalchemy, alembic)": cumulative.get("jupyterhub.orm", 0.0),
        "jupyter_server.serverapp": cumulative.get("jupyter_server.serverapp", 0.0),
    }


# --- report --------------------------------------------------------------------------------------


def report(results: list[dict], profile: dict | None, info: dict, args) -> None:
    print("\n" + "=" * 100)
    print(
        f"spawn benchmark  {info['date']}  nproc={info['nproc']}  cpu={info['cpu']}  "
        f"python {info['python']}  spawns={args.spawns} concurrent={args.concurrent}"
    )
    print(info["versions"])
    print("(a) sequential spawn-to-ready through the proxy, seconds  (b) bare `jupyter-lab` start, interleaved with (a)")
    print("    (b') bare start with the variant's own server tweaks, interleaved: hub/(b') is the hub's overhead alone")
    print("(c) concurrent spawn-to-ready, seconds")
    print(f"{'variant':<12} {'median':>6} {'p95':>6} {'min':>6} {'fail':>4} | {'(b)med':>6} {'hub/(b)':>7} | "
          f"{'(b`)med':>7} {'hub/(b`)':>8} | {'(c)p50':>6} {'p95':>6} {'fail':>4} | load before / after")
    for r in results:
        if "error" in r:
            print(f"{r['variant']:<12} FAILED: {r['error'][:80]}")
            continue
        s, c = r.get("seq", {}), r.get("concurrent", {})
        ratio, ratio_t = r.get("ratio"), r.get("ratio_tuned")
        print(
            f"{r['variant']:<12} {fmt(s.get('median'))} {fmt(s.get('p95'))} {fmt(s.get('min'))} {s.get('failures', '-'):>4} | "
            f"{fmt(r.get('bare', {}).get('median'))} {('%6.2fx' % ratio) if ratio else '     - '} | "
            f" {fmt(r.get('bare_tuned', {}).get('median'))} {('%7.2fx' % ratio_t) if ratio_t else '      - '} | "
            f"{fmt(c.get('p50'))} {fmt(c.get('p95'))} {c.get('failures', '-'):>4} | "
            f"{r.get('load_before', '')} / {r.get('load_after', '')}"
        )
    print("\nwhere the time of one sequential spawn goes (medians, seconds):")
    names = [r["variant"] for r in results]
    print(f"{'segment':<20}" + "".join(f"{n:>13}" for n in names) + "   what")
    for name, _a, _b, what in SEGMENTS:
        print(f"{name:<20}" + "".join(f"{fmt(r.get('breakdown', {}).get(name)):>13}" for r in results) + f"   {what}")
    for r in results:
        c = r.get("concurrent")
        if c and "seq" in r:
            print(f"  {r['variant']}: concurrent wall {c['wall']:.1f}s, {c['http_202']} POSTs answered 202 (slow spawn), "
                  f"stop-all {c['stop_all']:.1f}s; sequential stop median {fmt(r['seq'].get('stop_median'))}s"
                  + (f"; errors: {c['errors']}" if c["errors"] else ""))
    if profile:
        print("\nsingle-user server import profile (python -X importtime, cumulative unless 'own'):")
        for k, v in profile.items():
            print(f"  {k:<55} {v:6.2f} s")
    print("=" * 100, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spawns", type=int, default=10, help="sequential spawns per variant (default 10)")
    parser.add_argument("--concurrent", type=int, default=20, help="users spawning at once (0: skip; default 20)")
    parser.add_argument(
        "--variants",
        default="product,cold",
        help=f"comma-separated hub variants, of: {', '.join(VARIANTS)} (default product,cold)",
    )
    parser.add_argument(
        "--knobs",
        default="",
        help="instead of --variants: compare these settings interleaved in ONE hub (one user each), "
        "e.g. product,fastwait,nolsp,norfc,noyarn,recommended",
    )
    parser.add_argument("--no-bare", action="store_true", help="skip the bare baseline")
    parser.add_argument("--no-profile", action="store_true", help="skip the import-time profile")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the hubs' data dirs and logs")
    args = parser.parse_args(argv)
    knobs = [v.strip() for v in args.knobs.split(",") if v.strip()]
    chosen = [] if knobs else [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in chosen + knobs if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    if not shutil.which("configurable-http-proxy", path=str(VENV_BIN) + os.pathsep + os.environ.get("PATH", "")):
        parser.error("configurable-http-proxy not found (npm install -g configurable-http-proxy)")

    info = machine()
    print(f"spawn benchmark on {info['nproc']} CPUs ({info['cpu']}), {'root: per-user OS accounts' if IS_ROOT else 'not root: no isolation'}, "
          f"load {loadavg()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="nb-bench-spawn-"))
    os.chmod(workdir, 0o755)
    global BARE_LOG
    BARE_LOG = workdir / "bare-servers.log"
    t_all = time.perf_counter()
    results = []
    knob_results = None
    try:
        if knobs:
            try:
                knob_results = run_knobs(knobs, args, workdir)
            except Exception as e:  # noqa: BLE001
                print(f"   knobs FAILED: {str(e)[:3000]}", flush=True)
                results.append({"variant": "knobs", "error": str(e)[:300]})
        for name in chosen:
            try:
                results.append(run_variant(VARIANTS[name], args, workdir))
            except Exception as e:  # noqa: BLE001 - report it, go on with the other variants
                print(f"   variant {name} FAILED: {str(e)[:3000]}", flush=True)
                results.append({"variant": name, "about": VARIANTS[name].about, "error": str(e)[:300]})
        profile = None if args.no_profile else import_profile()
    finally:
        failed = any("error" in r for r in results)
        if args.keep or failed:
            print(f"kept {workdir} (hub logs: */data-notebench.log, hub-side timestamps: */events.jsonl, "
                  "bare servers: bare-servers.log)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if chosen or results:
        report(results, profile, info, args)
    if knob_results:
        print("\n" + "=" * 100)
        print(f"spawn benchmark (knobs)  {info['date']}  nproc={info['nproc']}  cpu={info['cpu']}  {info['versions']}")
        report_knobs(knob_results)
        if profile:
            print("single-user server import profile (python -X importtime, cumulative unless 'own'):")
            for key, v in profile.items():
                print(f"  {key:<55} {v:6.2f} s")
        print("=" * 100, flush=True)
    print(f"total {time.perf_counter() - t_all:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "args": vars(args), "results": results,
                                               "knobs": knob_results, "import_profile": profile}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
