"""Scoring servers as local processes: one per model version, as the owner's OS account.

Each server is MLflow's pyfunc scoring server in this environment (executor/runtime/scoring_host.py),
listening on a Unix socket in a directory of its own (``servers_dir/<id>``, the owner's, mode
0700): other users cannot reach it, the executor (root) can. As that directory is the owner's,
the socket in it could be swapped for a link to somebody else's; connections are therefore
accepted only when the process at the other end runs as the owner (SO_PEERCRED).

Processes are started ahead of deploys (a warm one per owner, with MLflow and the flavours
imported) so a deploy only waits for the model to load. Servers run in sessions of their own and
outlive an executor restart: the handle (pid, start time, socket) finds them again.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import struct
import sys
import time
from pathlib import Path

import psutil
from traitlets import Integer, List, Unicode

from notebench.executor.backends.base import EndpointBackend, ScoringServerFailed, ScoringServerSpec
from notebench.executor.backends.local.jobs import runs_module
from notebench.executor.backends.local.limits import ProfileLimits
from notebench.executor.backends.local.warm_pool import WarmPool
from notebench.executor.background import BackgroundTasks
from notebench.executor.user_files import read_job_file

HOST_MODULE = "notebench.executor.runtime.scoring_host"
HOST_MODULES = (HOST_MODULE, "notebench.executor.scoring_host")  # and hosts started before executor/runtime/
LOG_TAIL_BYTES = 4096
# Unix socket paths are limited to 108 bytes (sun_path).
MAX_SOCKET_PATH = 107


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class WarmHost:
    """A scoring host that has done its imports and waits for a model."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.ready = asyncio.ensure_future(self._wait_ready())

    async def _wait_ready(self) -> bool:
        assert self.proc.stdout is not None  # started with stdout=PIPE (_spawn_host)
        line = await self.proc.stdout.readline()
        return bool(line) and json.loads(line).get("event") == "ready"

    def alive(self) -> bool:
        return self.proc.returncode is None


class LocalEndpointBackend(EndpointBackend, ProfileLimits):
    servers_dir = Unicode(help="Where each scoring server gets its directory (socket, log, downloads).").tag(config=True)
    warm_hosts = Integer(1, help="Scoring processes kept ready (imports done) per owner with endpoints.").tag(config=True)
    warm_idle_seconds = Integer(900, help="An unused warm scoring process exits after this long.").tag(config=True)
    stop_grace_seconds = Integer(10, help="Time a stopping server has to finish what it serves before SIGKILL.").tag(config=True)
    preload_modules = List(
        Unicode(),
        ["mlflow.pyfunc.scoring_server", "uvicorn", "mlflow.sklearn", "sklearn.linear_model", "sklearn.ensemble", "skops.io"],
        help="Modules a warm scoring process imports before it gets its model (missing ones are skipped).",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._tasks = BackgroundTasks()
        self._warm: WarmPool[WarmHost] = WarmPool(self._tasks)  # per owner; an unused host exits by itself

    # --- warm processes ------------------------------------------------------------------------

    async def _spawn_host(self, owner: str) -> WarmHost:
        self._accounts.prepare(owner)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            HOST_MODULE,
            str(self.warm_idle_seconds),
            *self.preload_modules,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=self._accounts.env(owner),
            cwd="/",
            preexec_fn=self._accounts.preexec(owner),
            start_new_session=True,  # its own process group, and it outlives the executor
        )
        self._children[proc.pid] = proc
        self._tasks.start(self._reap(proc))
        return WarmHost(proc)

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        self._children.pop(proc.pid, None)

    def prewarm(self, owner: str) -> None:
        """Start warm processes for ``owner`` if there are not enough."""
        self._warm.refill(owner, self.warm_hosts, lambda: self._spawn_host(owner))

    async def _take_host(self, owner: str) -> WarmHost:
        host = await self._warm.take(owner)
        if host is not None:
            return host
        host = await self._spawn_host(owner)
        if not await host.ready:
            raise ScoringServerFailed(f"the scoring process did not start (exit {host.proc.returncode})")
        return host

    # --- the interface -------------------------------------------------------------------------

    def _server_dir(self, server_id: int) -> Path:
        return Path(self.servers_dir) / str(server_id)

    async def start(self, spec: ScoringServerSpec) -> dict:
        directory = self._server_dir(spec.server_id)
        sock = directory / "server.sock"
        if len(str(sock)) > MAX_SOCKET_PATH:
            raise ScoringServerFailed(f"socket path {sock} is too long for a Unix socket: use a shorter data dir")
        self._accounts.prepare(spec.owner)
        Path(self.servers_dir).mkdir(parents=True, exist_ok=True)
        os.chmod(self.servers_dir, 0o711)  # owners reach their server's directory, and list nothing
        shutil.rmtree(directory, ignore_errors=True)
        (directory / "tmp").mkdir(mode=0o700, parents=True)
        if self._accounts.isolate_users:
            uid, gid = self._accounts.uid_gid(spec.owner)
            for path in (directory, directory / "tmp"):
                os.chown(path, uid, gid)
        else:
            uid = os.getuid()
        host = await self._take_host(spec.owner)
        profile = self._profiles.get(spec.profile)
        self.confine(f"scoring-{spec.server_id}", profile.cpu_limit, profile.mem_limit, [host.proc.pid])
        self.prewarm(spec.owner)  # the next deploy of this owner finds one ready
        env = {**spec.env, "TMPDIR": str(directory / "tmp")}  # model downloads, removed with the directory
        message = {"model_uri": spec.model_uri, "socket": str(sock), "log": str(directory / "server.log"), "env": env}
        stdin = host.proc.stdin
        assert stdin is not None  # started with stdin=PIPE (_spawn_host)
        stdin.write((json.dumps(message) + "\n").encode())
        await stdin.drain()
        stdin.close()
        started = psutil.Process(host.proc.pid).create_time()
        return {"pid": host.proc.pid, "started": started, "socket": str(sock), "uid": uid, "dir": str(directory)}

    def _process(self, handle: dict) -> psutil.Process | None:
        """The server's process, if it still runs (and is the one started, not a reused pid)."""
        try:
            p = psutil.Process(handle["pid"])
            if p.status() == psutil.STATUS_ZOMBIE or abs(p.create_time() - handle["started"]) > 0.5:
                return None
            return p if runs_module(p, HOST_MODULES) else None
        except psutil.Error:
            return None

    async def is_running(self, handle: dict) -> bool:
        return self._process(handle) is not None

    def log_tail(self, handle: dict, lines: int = 15, max_bytes: int = LOG_TAIL_BYTES) -> str:
        # The log is in the owner's directory: read as a plain file only (no link), bounded.
        try:
            data = read_job_file(Path(handle["dir"]) / "server.log", tail=max_bytes) or b""
        except (OSError, PermissionError):
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    async def logs(self, handle: dict, lines: int, max_bytes: int) -> str:
        return self.log_tail(handle, lines, max_bytes)

    async def wait_ready(self, handle: dict, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._process(handle) is None:
                raise ScoringServerFailed(f"the scoring server exited:\n{self.log_tail(handle)}")
            if os.path.exists(handle["socket"]) and await self.ping(handle):
                return
            if time.monotonic() > deadline:
                raise ScoringServerFailed(f"the scoring server was not ready within {timeout:.0f} s:\n{self.log_tail(handle)}")
            await asyncio.sleep(0.05)

    async def open_connection(self, handle: dict):
        reader, writer = await asyncio.open_unix_connection(handle["socket"])
        sock = writer.get_extra_info("socket")
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        if uid != handle["uid"]:
            writer.close()
            raise ConnectionRefusedError(f"the process behind {handle['socket']} is not the owner's (uid {uid})")
        return reader, writer

    async def stop(self, handle: dict) -> None:
        process = self._process(handle)
        if process is not None:
            # uvicorn finishes the requests it has on SIGTERM.
            self._signal_group(process, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_grace_seconds
            while _alive(process) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            self._signal_group(process, signal.SIGKILL)
        child = self._children.get(handle["pid"])
        if child is not None:
            await child.wait()
        shutil.rmtree(handle["dir"], ignore_errors=True)
        self.release(f"scoring-{Path(handle['dir']).name}")

    @staticmethod
    def _signal_group(process: psutil.Process, sig: int) -> None:
        try:
            os.killpg(os.getpgid(process.pid), sig)
        except OSError:
            pass

    async def close(self) -> None:
        await self._tasks.close()
        for host in self._warm.drain():
            if host.alive():
                host.proc.kill()
                await host.proc.wait()
