"""How `notebench up` supervises the hub, and with it the proxy and the hub-managed services.

- The data dir is locked (flock on ``<data>/notebench.lock``) for the life of `notebench up`: a
  second one on the same data dir is refused. The kernel drops the lock when the process dies,
  however it dies, so a kill -9 never leaves a stale lock.
- The hub is started with PR_SET_PDEATHSIG=SIGTERM: if `notebench up` is killed, the hub stops
  cleanly, and stops its proxy and services with it.
- `notebench up` is a child subreaper (PR_SET_CHILD_SUBREAPER): what a dead hub or executor leaves
  running (the proxy and services, users' servers, job runners, scoring servers) is re-parented to
  it and reaped when it exits, instead of lingering as a zombie that a restarted hub or executor
  would take for a live process.
- The hub itself restarts its proxy (checked every 5 s) and its managed services when they exit;
  the MLflow front restarts its backend. A hub that dies (a signal, a non-zero status) is restarted
  here, at most MAX_CRASHES times within CRASH_WINDOW_S; after that everything is stopped, with a
  message. A hub that exits with status 0 was asked to stop (SIGTERM, the admin's shutdown API):
  `notebench up` stops too.
- Before each start of the hub, the infrastructure a dead hub of this data dir left running (its
  hub, proxy, managed services and MLflow backend: see ``infrastructure``) is stopped. Users' servers,
  job runners and scoring servers are never touched: the restarted hub and executor take them over.
"""

from __future__ import annotations

import collections
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

LOCK_FILE = "notebench.lock"
PROXY_PID_FILE = "jupyterhub-proxy.pid"  # c.ConfigurableHTTPProxy.pid_file (hub/config.py)
MAX_CRASHES = 5
CRASH_WINDOW_S = 600
STOP_TIMEOUT_S = 10
HEALTH_TIMEOUT_S = 120

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

# What the hub starts with NOTEBENCH_DATA_DIR in its environment (the hub itself, its proxy, which
# inherits the hub's environment, and the MLflow backend, which inherits the MLflow front's). The
# managed services are recognised by the variables JupyterHub gives them instead.
INFRASTRUCTURE_PROGRAMS = {"jupyterhub", "configurable-http-proxy", "notebench.hub.mlflow_service.backend"}


class DataDirInUse(Exception):
    """Another `notebench up` holds the data dir's lock (its pid is ``args[0]``, if known)."""


def say(message: str) -> None:
    print(f"notebench: {message}", file=sys.stderr, flush=True)


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _prctl(option: int, value: int) -> None:
    if _libc is not None:
        _libc.prctl(option, value, 0, 0, 0)


def lock_data_dir(data_dir: Path):
    """Take the data dir's lock, held until this process exits; returns the open lock file (keep
    a reference to it). Raises DataDirInUse if another `notebench up` holds it."""
    lock = open(data_dir / LOCK_FILE, "a+")  # not inherited by children (Python's default)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip()
        lock.close()
        raise DataDirInUse(holder) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")  # only to name the holder in the refusal
    lock.flush()
    return lock


def _hub_api_url(data_dir: Path) -> str | None:
    """The URL the hub of ``data_dir`` gives its services (its port is kept in ports.json)."""
    try:
        return f"http://127.0.0.1:{json.loads((data_dir / 'ports.json').read_text())['hub']}/hub/api"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _program(cmdline: list[str]) -> str:
    """``jupyterhub`` for ``python -m jupyterhub ...``, ``configurable-http-proxy`` for ``node
    .../configurable-http-proxy ...``."""
    if "-m" in cmdline[1:2]:
        return cmdline[2] if len(cmdline) > 2 else ""
    return next((os.path.basename(arg) for arg in cmdline[:2] if arg.endswith("configurable-http-proxy")), "")


def infrastructure(data_dir: Path) -> list[psutil.Process]:
    """The hub infrastructure of ``data_dir`` that is running: the hub, its proxy, its managed
    services (executor, MLflow front, culler, any the operator added) and the MLflow backend.

    Only processes of this account qualify (users' servers, job runners and scoring servers run as
    the users' accounts when Notebench runs as root), and only those that carry this data dir in
    the environment the hub gave them: NOTEBENCH_DATA_DIR with one of the hub's own programs, or
    JUPYTERHUB_SERVICE_NAME with this hub's API URL (which only hub-managed services get; users'
    servers get the URL without the name, and the executor starts runners and scoring servers with
    a fresh environment).
    """
    hub_api = _hub_api_url(data_dir)
    found = []
    for p in psutil.process_iter(["uids", "cmdline", "environ"]):
        info = p.info
        if p.pid == os.getpid() or not info["uids"] or info["uids"].real != os.getuid():
            continue
        env, cmdline = info["environ"] or {}, info["cmdline"] or []
        ours = env.get("NOTEBENCH_DATA_DIR") == str(data_dir) and _program(cmdline) in INFRASTRUCTURE_PROGRAMS
        service = env.get("JUPYTERHUB_SERVICE_NAME") and hub_api and env.get("JUPYTERHUB_API_URL") == hub_api
        if ours or service:
            found.append(p)
    return found


def stop_leftovers(data_dir: Path, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM what ``infrastructure`` finds, and SIGKILL what is still there after ``timeout``."""
    procs = infrastructure(data_dir)
    if procs:
        _stop(procs, timeout)
    # No proxy of this data dir runs now, so its pid file is stale. Left there, the next hub would
    # signal whatever process has that pid now, or give up on a zombie init has not reaped yet.
    (data_dir / PROXY_PID_FILE).unlink(missing_ok=True)


def _stop(procs: list[psutil.Process], timeout: float) -> None:
    names = [_program(p.info["cmdline"] or []) or " ".join(p.info["cmdline"] or [])[:60] for p in procs]
    say("stopping what a dead hub of this data dir left running: " + ", ".join(
        f"{name} (pid {p.pid})" for name, p in zip(names, procs)
    ))
    for p in procs:
        try:
            p.terminate()  # psutil checks that the pid still is that process (create time)
        except psutil.NoSuchProcess:
            pass
    alive = _wait_gone(procs, timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _wait_gone(alive, timeout)


def _running(p: psutil.Process) -> bool:
    """Not yet exited. A zombie counts as gone: it holds no port or file any more, and its parent
    (this process, for orphans re-parented here, or init) reaps it in its own time."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until none of ``procs`` is running, at most ``timeout`` seconds; returns those left."""
    end = time.monotonic() + timeout
    while (alive := [p for p in procs if _running(p)]) and time.monotonic() < end:
        time.sleep(0.05)
    return alive


def _reap_orphans(hub: subprocess.Popen, block: bool) -> None:
    """Reap the orphans re-parented here that have exited, never the hub (Popen reaps it): a
    zombie would look alive to the hub and the executor, which check pids with kill(pid, 0).
    ``block``: until the hub exits."""
    while True:
        try:
            # WNOWAIT: only look at which child exited.
            exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT | (0 if block else os.WNOHANG))
        except ChildProcessError:
            return
        if exited is None or exited.si_pid == hub.pid:
            return
        os.waitpid(exited.si_pid, 0)


def wait_healthy(url: str, proc: subprocess.Popen, deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and proc.poll() is None:
        _reap_orphans(proc, block=False)
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def supervise(cmd: list[str], env: dict, cwd: Path, health_url: str, announce) -> int:
    """Run the hub (``cmd``) until `notebench up` is told to stop; restart it when it dies.

    ``announce()`` is called once, when the hub first answers ``health_url``. Returns the exit code
    of `notebench up`.
    """
    data_dir = Path(env["NOTEBENCH_DATA_DIR"])
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    parent = os.getpid()

    def die_with_parent():  # runs in the hub's process, before exec
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # `notebench up` died before the prctl: nothing would signal us
            os._exit(1)

    hub = None
    stopping = False
    crashes: collections.deque[float] = collections.deque()

    def forward(signum, _frame):
        nonlocal stopping
        stopping = True
        # The hub's pid stays ours until Popen reaps it (and then sets returncode).
        if hub is not None and hub.returncode is None:
            os.kill(hub.pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    ever_healthy = False
    while True:
        hub = subprocess.Popen(cmd, env=env, cwd=cwd, preexec_fn=die_with_parent)
        if stopping:  # told to stop while it was being started
            hub.terminate()
        if wait_healthy(health_url, hub, HEALTH_TIMEOUT_S):
            if ever_healthy:
                say("the hub is running again")
            else:
                ever_healthy = True
                announce()
        if hub.returncode is None:  # else wait_healthy has reaped it already: nothing to wait for
            _reap_orphans(hub, block=True)
        code = hub.wait()
        stop_leftovers(data_dir)
        _reap_orphans(hub, block=False)
        # Status 0: the hub was asked to stop (SIGTERM, the admin's shutdown API). A hub that never
        # started is not restarted either: its log says why (e.g. a bad configuration).
        if stopping or code == 0 or not ever_healthy:
            return code
        now = time.monotonic()
        crashes.append(now)
        while crashes[0] < now - CRASH_WINDOW_S:
            crashes.popleft()
        if len(crashes) > MAX_CRASHES:
            say(f"error: the hub exited {len(crashes)} times within {CRASH_WINDOW_S} s; giving up "
                "(everything is stopped)")
            return 1
        say(f"the hub exited unexpectedly (status {code}); starting it again")
