"""Jobs as local processes, as the owner's OS account, on kernels started ahead of time.

Each job runs in a runner process (executor/runner.py) in a session of its own. Runners for CPU
profiles are started before jobs arrive and wait with a started kernel (the warm pool, per
owner, kernel and profile); a runner takes exactly one job, so a kernel is never reused. GPU
jobs start cold, after their GPUs are leased, so idle kernels never hold GPUs.

Which processes are a job's is root's own observation, never the job's word: a runner's pid is
accepted only when it is a child of the factory root started for that owner, running as the
owner, and is recorded with its start time (so a later process reusing the pid is not it); its
kernel and Dask workers are the runner's descendants, as root sees them. Signals are sent with
the owner's credentials (a short-lived process that became the owner), so even a wrong target
could only be one of the owner's own processes: the kernel refuses the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass

import psutil
from traitlets import Float, Integer

from notebench.executor.backends.base import Backend, JobSpec, RecordedJob
from notebench.executor.backends.local.limits import ProfileLimits, combined
from notebench.executor.backends.local.warm_pool import WarmPool
from notebench.executor.background import BackgroundTasks

log = logging.getLogger("notebench.executor")
RUNNER_MODULE = "notebench.executor.runtime.runner"
# Runners started by a Notebench from before the executor/runtime/ layout are still found after an upgrade.
RUNNER_MODULES = (RUNNER_MODULE, "notebench.executor.runner")
RUNNER = [sys.executable, "-m", RUNNER_MODULE]
# Sends SIGKILL to the pids and process groups (negative) in argv; run as the job's owner.
SIGNAL_AS_OWNER = [sys.executable, "-S", "-c",
                   "import os, sys\nfor t in sys.argv[2:]:\n    try: os.kill(int(t), int(sys.argv[1]))\n    except OSError: pass"]


def runs_module(process: psutil.Process, modules: tuple[str, ...]) -> bool:
    """Whether ``process`` is ``python -m <one of modules>``."""
    cmdline = process.cmdline()
    return len(cmdline) > 2 and cmdline[1] == "-m" and cmdline[2] in modules


def cgroup_name(runner: "JobProcess") -> str:
    """A job's cgroup, named by its runner as root recorded it (so a restarted executor finds it)."""
    return f"job-{runner.pid}-{int(runner.started)}"


@dataclass(frozen=True)
class JobProcess:
    """A process as root recorded it: pid and start time (psutil's create_time), and whose it is."""

    owner: str
    pid: int
    started: float

    def process(self) -> psutil.Process | None:
        """The process, if it is still this one (not a later process with the same pid)."""
        try:
            p = psutil.Process(self.pid)
            if abs(p.create_time() - self.started) < 0.05 and p.status() != psutil.STATUS_ZOMBIE:
                return p
        except psutil.Error:
            pass
        return None


class WarmRunner:
    """A runner (forked by its owner's factory) as seen from the executor: its channel, and the
    process root verified it to be (its own 'ready' message only says which pid to look at)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, owner: str, factory_pid: int, uid: int):
        self.reader, self.writer = reader, writer
        self.owner, self.factory_pid, self.uid = owner, factory_pid, uid
        self.process: JobProcess | None = None
        self.ready = asyncio.ensure_future(self._wait_ready())

    async def _wait_ready(self) -> bool:
        line = b""
        try:
            line = await self.reader.readline()
            message = json.loads(line)
            pid = message["pid"] if message.get("event") == "ready" else None
        except (ValueError, TypeError, KeyError, AttributeError, OSError, asyncio.LimitOverrunError):
            pid = None
        if type(pid) is not int:
            if line:
                log.warning("a runner of %s said %r instead of being ready", self.owner, line[:200])
            return False
        try:
            p = psutil.Process(pid)
            # The factory's own child, as the owner: nothing else the owner runs can pose as it.
            if p.ppid() != self.factory_pid or p.uids().real != self.uid:
                log.warning("a runner of %s named process %s, which is not its factory's child as the owner", self.owner, pid)
                return False
            self.process = JobProcess(self.owner, pid, p.create_time())
        except psutil.Error:
            return False
        return True

    def alive(self) -> bool:
        if self.ready.done() and not self.ready.result():
            return False
        return not self.reader.at_eof() and (self.process is None or self.process.process() is not None)

    async def assign(self, spec: JobSpec) -> JobProcess:
        process = self.process
        assert process is not None  # assigned only once ready, when root has found its process
        self.writer.write((json.dumps(asdict(spec)) + "\n").encode())
        await self.writer.drain()
        self.writer.close()
        return process

    def let_go(self) -> None:
        self.writer.close()  # EOF: the runner shuts its kernel down and exits


class RunnerFactory:
    """The owner's runner factory process (runner.py --factory), and its control socket."""

    def __init__(self, proc: asyncio.subprocess.Process, control: socket.socket):
        self.proc, self.control = proc, control

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def runner(self, kernel: str, cwd: str, env: dict, owner: str, uid: int) -> WarmRunner:
        ours, theirs = socket.socketpair()
        try:
            request = json.dumps({"kernel": kernel, "cwd": cwd, "env": env}).encode()
            socket.send_fds(self.control, [request], [theirs.fileno()])
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        return WarmRunner(reader, writer, owner, self.proc.pid, uid)

    def close(self) -> None:
        self.control.close()  # EOF: the factory exits (its runners live on)


class LocalBackend(Backend, ProfileLimits):
    warm_runners = Integer(
        1, help="Runners (each with a started, never-used kernel) kept ready per owner, kernel and CPU profile."
    ).tag(config=True)

    warm_runner_idle_seconds = Integer(
        900, help="A warm runner nobody took within this time is let go (its memory back; the next job starts cold)."
    ).tag(config=True)

    stop_grace_seconds = Float(
        10, help="A cancelled or timed-out job's runner gets this long to save the output so far before it is killed."
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._tasks = BackgroundTasks()  # warm runners being started
        # Per (owner, kernel, profile): runners with a started kernel, let go when unused.
        self._pool: WarmPool[WarmRunner] = WarmPool(self._tasks, self.warm_runner_idle_seconds, WarmRunner.let_go)
        self._factories: dict[str, RunnerFactory] = {}
        self._factory_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Each running job's processes as root last saw them (the runner's descendants), so its
        # kernel is found even after its runner died; and when they were last looked at.
        self._tree: dict[JobProcess, set[JobProcess]] = {}
        self._tree_seen: dict[JobProcess, float] = {}

    def _uid(self, owner: str) -> int:
        return self._accounts.uid_gid(owner)[0] if self._accounts.isolate_users else os.getuid()

    async def _factory(self, owner: str) -> RunnerFactory:
        # One at a time per owner: a second factory would replace the first, whose runners being
        # started would then be orphans (and fail the check that they are their factory's).
        async with self._factory_locks[owner]:
            factory = self._factories.get(owner)
            if factory is not None and factory.alive():
                return factory
            return await self._start_factory(owner)

    async def _start_factory(self, owner: str) -> RunnerFactory:
        self._accounts.prepare(owner)
        # SOCK_SEQPACKET keeps each request one message, with the runner's channel attached.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = await asyncio.create_subprocess_exec(
                *RUNNER,
                "--factory",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                env=self._accounts.env(owner),
                cwd="/",
                preexec_fn=self._accounts.preexec(owner),
                start_new_session=True,
            )
        finally:
            theirs.close()
        self._factories[owner] = factory = RunnerFactory(proc, ours)
        return factory

    async def _spawn_runner(self, owner: str, kernel: str, env: dict) -> WarmRunner:
        home = self._accounts.home(owner)
        factory = await self._factory(owner)
        try:
            return await factory.runner(kernel, home, env, owner, self._uid(owner))
        except OSError:  # the factory died (it is restarted once)
            factory.close()
            if self._factories.get(owner) is factory:
                del self._factories[owner]
            return await (await self._factory(owner)).runner(kernel, home, env, owner, self._uid(owner))

    def _refill(self, key: tuple, env: dict) -> None:
        owner, kernel, _profile = key
        self._pool.refill(key, self.warm_runners, lambda: self._spawn_runner(owner, kernel, env))

    def prewarm(self, owner: str, kernel: str, profile: str, env: dict) -> None:
        """Start warm runners for this owner/kernel/profile if there are not enough."""
        self._refill((owner, kernel, profile), env)

    async def start(self, spec: JobSpec) -> JobProcess:
        key = (spec.owner, spec.kernel, spec.profile)
        runner = None
        if not spec.gpus:
            runner = await self._pool.take(key)
            self._refill(key, spec.env)
        if runner is None:  # nothing warm (first job, GPU job, or the pool is drained): start cold
            runner = await self._spawn_runner(spec.owner, spec.kernel, spec.env)
            if not await runner.ready:
                raise RuntimeError(f"the runner for kernel {spec.kernel!r} did not start (see the executor's log)")
        process = runner.process
        assert process is not None  # the runner is ready: root has found its process
        self._observe(process)  # its kernel, already started
        self._confine(spec, process)
        handle = await runner.assign(spec)
        return handle

    def _confine(self, spec: JobSpec, runner: JobProcess) -> None:
        """The job's profiles' limits on its runner and kernel (its Dask workers, started later, follow)."""
        job = self._profiles.get(spec.profile)
        worker = self._profiles.get(spec.worker_profile or spec.profile)
        pids = [runner.pid, *(p.pid for p in self._tree.get(runner, ()))]
        self.confine(cgroup_name(runner), combined(job.cpu_limit, spec.workers, worker.cpu_limit),
                     combined(job.mem_limit, spec.workers, worker.mem_limit), pids)

    def prepare(self, owner: str, job_dir: str) -> None:
        self._accounts.prepare(owner)
        uid, gid = self._accounts.uid_gid(owner)
        for path in (job_dir, os.path.join(job_dir, "input.ipynb")):
            os.chown(path, uid, gid)  # the runner, as the owner, writes its output here
        os.chmod(job_dir, 0o700)

    def pid(self, handle: JobProcess) -> tuple[int, float]:
        return handle.pid, handle.started

    def cpu_seconds(self, pid: int, started: float) -> float | None:
        """The runner's CPU time, its exited children's (a kernel it waited for) and its live
        descendants' (the kernel, Dask workers), as /proc has them."""
        runner = JobProcess("", pid, started).process()
        if runner is None:
            return None
        try:
            times = runner.cpu_times()
            used = times.user + times.system + times.children_user + times.children_system
            for child in runner.children(recursive=True):
                try:
                    t = child.cpu_times()
                    used += t.user + t.system
                except psutil.Error:  # it ended meanwhile: its parent counts it once it waits for it
                    pass
        except psutil.Error:
            return None
        return used

    async def find(self, jobs: list[RecordedJob]) -> dict[int, JobProcess]:
        found = {}
        for job in jobs:
            if not job.pid or not job.owner:
                continue
            try:
                p = psutil.Process(job.pid)
                started, uid = p.create_time(), p.uids().real
            except psutil.Error:
                continue
            # The recorded start time tells the runner from a later process with its pid; rows from
            # before it was recorded have the owner's uid and the runner's command line to go on.
            same = abs(started - job.pid_started) < 0.05 if job.pid_started else runs_module(p, RUNNER_MODULES)
            if same and uid == self._uid(job.owner):
                handle = JobProcess(job.owner, job.pid, started)
                self._observe(handle)
                found[job.job_id] = handle
        return found

    async def is_running(self, handle: JobProcess) -> bool:
        if time.monotonic() - self._tree_seen.get(handle, 0) > 5:
            self._observe(handle)  # processes a job started later in sessions of their own
        return handle.process() is not None

    def _observe(self, handle: JobProcess) -> None:
        """Remember the runner's descendants as they are now (the kernel lives in its own session)."""
        self._tree_seen[handle] = time.monotonic()
        runner = handle.process()
        if runner is None:
            return
        seen = self._tree.setdefault(handle, set())
        try:
            children = runner.children(recursive=True)
        except psutil.Error:
            return
        for child in children:
            try:
                seen.add(JobProcess(handle.owner, child.pid, child.create_time()))
            except psutil.Error:
                pass

    async def kill(self, handle: JobProcess) -> None:
        """SIGKILL the runner, its kernel, Dask workers and anything they started, by process group."""
        self._observe(handle)
        await self._kill_as_owner(handle.owner, [handle, *self._tree.pop(handle, ())])
        self._tree_seen.pop(handle, None)

    async def stop(self, handle: JobProcess) -> None:
        """SIGTERM the runner alone (it saves the output so far and exits: runner.save_and_exit),
        wait ``stop_grace_seconds`` at most, then kill the whole job."""
        runner = handle.process()
        if runner is not None:
            proc = await asyncio.create_subprocess_exec(
                *SIGNAL_AS_OWNER, str(int(signal.SIGTERM)), str(handle.pid), env={}, stdin=asyncio.subprocess.DEVNULL,
                preexec_fn=self._accounts.preexec(handle.owner),
            )
            await proc.wait()
            deadline = time.monotonic() + self.stop_grace_seconds
            while handle.process() is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        await self.kill(handle)

    async def clean_up(self, handle: JobProcess) -> None:
        self.release(cgroup_name(handle))
        self._tree.pop(handle, None)
        self._tree_seen.pop(handle, None)

    async def _kill_as_owner(self, owner: str, recorded: list[JobProcess]) -> None:
        targets = set()
        for job_process in recorded:
            p = job_process.process()
            if p is None:
                continue
            targets.add(str(job_process.pid))
            try:
                targets.add(str(-os.getpgid(job_process.pid)))
            except OSError:
                pass
        if not targets:
            return
        # As the owner: whatever these pids have become, only the owner's own processes can be hit.
        proc = await asyncio.create_subprocess_exec(
            *SIGNAL_AS_OWNER, str(int(signal.SIGKILL)), *sorted(targets), env={}, stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=self._accounts.preexec(owner),
        )
        await proc.wait()

    async def close(self) -> None:
        await self._tasks.close()  # runners being started: a runner let go before its job stops its kernel
        runners = self._pool.drain()
        waiting: dict[psutil.Process, JobProcess] = {}
        for runner in runners:
            process = runner.process
            p = process.process() if process is not None else None
            if process is not None and p is not None:
                waiting[p] = process
                self._observe(process)
            runner.let_go()
        for factory in self._factories.values():
            factory.close()
        _, late = await asyncio.to_thread(psutil.wait_procs, list(waiting), timeout=10)
        for p in late:  # did not shut down in time: stop them
            await self.kill(waiting[p])
        self._factories.clear()
