"""Jobs as local processes, as the owner's OS account, on kernels started ahead of time.

Each job runs in a runner process (executor/runner.py) in a session of its own. Runners for CPU
profiles are started before jobs arrive and wait with a started kernel (the warm pool, per
owner, kernel and profile); a runner takes exactly one job, so a kernel is never reused. GPU
jobs start cold, after their GPUs are leased, so idle kernels never hold GPUs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections import Counter, defaultdict
from dataclasses import asdict

import psutil
from traitlets import Integer

from .base import Backend, JobSpec, RecordedJob

RUNNER = [sys.executable, "-m", "notebench.executor.runner"]


class WarmRunner:
    """A runner (forked by its owner's factory) as seen from the executor: its channel and pid."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.pid: int | None = None
        self.ready = asyncio.ensure_future(self._wait_ready())

    async def _wait_ready(self) -> bool:
        line = await self.reader.readline()
        if not line:
            return False
        event = json.loads(line)
        self.pid = event.get("pid")
        return event.get("event") == "ready"

    def alive(self) -> bool:
        if self.ready.done() and not self.ready.result():
            return False
        return not self.reader.at_eof() and (self.pid is None or psutil.pid_exists(self.pid))

    async def assign(self, spec: JobSpec) -> int:
        self.writer.write((json.dumps(asdict(spec)) + "\n").encode())
        await self.writer.drain()
        self.writer.close()
        return self.pid

    def let_go(self) -> None:
        self.writer.close()  # EOF: the runner shuts its kernel down and exits


class RunnerFactory:
    """The owner's runner factory process (runner.py --factory), and its control socket."""

    def __init__(self, proc: asyncio.subprocess.Process, control: socket.socket):
        self.proc, self.control = proc, control

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def runner(self, kernel: str, cwd: str, env: dict) -> WarmRunner:
        ours, theirs = socket.socketpair()
        try:
            request = json.dumps({"kernel": kernel, "cwd": cwd, "env": env}).encode()
            socket.send_fds(self.control, [request], [theirs.fileno()])
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        return WarmRunner(reader, writer)

    def close(self) -> None:
        self.control.close()  # EOF: the factory exits (its runners live on)


class LocalBackend(Backend):
    warm_runners = Integer(
        1, help="Runners (each with a started, never-used kernel) kept ready per owner, kernel and CPU profile."
    ).tag(config=True)

    warm_runner_idle_seconds = Integer(
        900, help="A warm runner nobody took within this time is let go (its memory back; the next job starts cold)."
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._pools: dict[tuple, list[WarmRunner]] = defaultdict(list)
        self._spawning: Counter = Counter()  # runners being started, per pool
        self._factories: dict[str, RunnerFactory] = {}

    async def _factory(self, owner: str) -> RunnerFactory:
        factory = self._factories.get(owner)
        if factory is not None and factory.alive():
            return factory
        self.accounts.prepare(owner)
        # SOCK_SEQPACKET keeps each request one message, with the runner's channel attached.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = await asyncio.create_subprocess_exec(
                *RUNNER,
                "--factory",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                env=self.accounts.env(owner),
                cwd="/",
                preexec_fn=self.accounts.preexec(owner),
                start_new_session=True,
            )
        finally:
            theirs.close()
        self._factories[owner] = factory = RunnerFactory(proc, ours)
        return factory

    async def _spawn_runner(self, owner: str, kernel: str, env: dict) -> WarmRunner:
        home = self.accounts.home(owner)
        factory = await self._factory(owner)
        try:
            return await factory.runner(kernel, home, env)
        except OSError:  # the factory died (it is restarted once)
            factory.close()
            return await (await self._factory(owner)).runner(kernel, home, env)

    def _refill(self, key: tuple, env: dict) -> None:
        owner, kernel, _profile = key
        pool = self._pools[key]
        pool[:] = [r for r in pool if r.alive()]

        async def add():
            try:
                runner = await self._spawn_runner(owner, kernel, env)
            finally:
                self._spawning[key] -= 1
            pool.append(runner)
            asyncio.get_running_loop().call_later(self.warm_runner_idle_seconds, self._retire, key, runner)

        for _ in range(self.warm_runners - len(pool) - self._spawning[key]):
            self._spawning[key] += 1
            asyncio.ensure_future(add())

    def _retire(self, key: tuple, runner: WarmRunner) -> None:
        if runner in self._pools[key]:
            self._pools[key].remove(runner)
            runner.let_go()

    def prewarm(self, owner: str, kernel: str, profile: str, env: dict) -> None:
        """Start warm runners for this owner/kernel/profile if there are not enough."""
        self._refill((owner, kernel, profile), env)

    async def start(self, spec: JobSpec) -> int:
        key = (spec.owner, spec.kernel, spec.profile)
        runner = None
        if not spec.gpus:
            pool = self._pools[key]
            while pool and runner is None:
                candidate = pool.pop(0)
                if candidate.alive() and await candidate.ready:
                    runner = candidate
            self._refill(key, spec.env)
        if runner is None:  # nothing warm (first job, GPU job, or the pool is drained): start cold
            runner = await self._spawn_runner(spec.owner, spec.kernel, spec.env)
            if not await runner.ready:
                raise RuntimeError(f"the runner for kernel {spec.kernel!r} did not start (see the executor's log)")
        return await runner.assign(spec)

    def prepare(self, owner: str, job_dir: str) -> None:
        self.accounts.prepare(owner)
        uid, gid = self.accounts.uid_gid(owner)
        for path in (job_dir, os.path.join(job_dir, "input.ipynb")):
            os.chown(path, uid, gid)  # the runner, as the owner, writes its output here
        os.chmod(job_dir, 0o700)

    def pid(self, handle: int) -> int:
        return handle

    async def find(self, jobs: list[RecordedJob]) -> dict[int, int]:
        return {job.job_id: job.pid for job in jobs if job.pid and self._runs(job.pid)}

    async def is_running(self, handle: int) -> bool:
        return self._runs(handle)

    def _runs(self, pid: int) -> bool:
        # Runners are the factories' children (and live on after an executor restart).
        try:
            p = psutil.Process(pid)
            return p.status() != psutil.STATUS_ZOMBIE and "notebench.executor.runner" in " ".join(p.cmdline())
        except psutil.Error:
            return False

    async def kill(self, handle: int, extra_pids=()) -> None:
        self._kill(handle, extra_pids)

    def _kill(self, handle: int, extra_pids=()) -> None:
        """SIGKILL the runner, its kernel, Dask workers and anything they started, by process group."""
        procs = []
        for pid in (handle, *extra_pids):
            try:
                p = psutil.Process(pid)
                procs += [p, *p.children(recursive=True)]
            except psutil.Error:
                pass
        groups = set()
        for p in procs:
            try:
                groups.add(os.getpgid(p.pid))
            except OSError:
                pass
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except OSError:
                pass
        for p in procs:
            try:
                p.kill()
            except psutil.Error:
                pass

    async def close(self) -> None:
        runners = [r for pool in self._pools.values() for r in pool]
        procs = []
        for runner in runners:
            if runner.pid and self._runs(runner.pid):
                procs.append(psutil.Process(runner.pid))
            runner.let_go()
        for factory in self._factories.values():
            factory.close()
        _, late = await asyncio.to_thread(psutil.wait_procs, procs, timeout=10)
        for p in late:  # did not shut down in time: stop them
            self._kill(p.pid)
        self._pools.clear()
        self._factories.clear()
