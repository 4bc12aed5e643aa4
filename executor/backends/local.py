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
import sys
from collections import Counter, defaultdict
from dataclasses import asdict

import psutil
from traitlets import Instance, Integer

from notebench.hub.accounts import UserAccounts

from .base import Backend, JobSpec

RUNNER = [sys.executable, "-m", "notebench.executor.runner"]


class WarmRunner:
    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.ready = asyncio.ensure_future(self._wait_ready())

    async def _wait_ready(self) -> bool:
        line = await self.proc.stdout.readline()
        return bool(line) and json.loads(line).get("event") == "ready"

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def assign(self, spec: JobSpec) -> int:
        self.proc.stdin.write((json.dumps(asdict(spec)) + "\n").encode())
        await self.proc.stdin.drain()
        self.proc.stdin.close()
        return self.proc.pid


class LocalBackend(Backend):
    warm_runners = Integer(
        1, help="Runners (each with a started, never-used kernel) kept ready per owner, kernel and CPU profile."
    ).tag(config=True)

    warm_runner_idle_seconds = Integer(
        900, help="A warm runner nobody took within this time is let go (its memory back; the next job starts cold)."
    ).tag(config=True)

    accounts = Instance(UserAccounts)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._pools: dict[tuple, list[WarmRunner]] = defaultdict(list)
        self._spawning: Counter = Counter()  # runners being started, per pool
        self._children: dict[int, asyncio.subprocess.Process] = {}

    async def _spawn_runner(self, owner: str, kernel: str, env: dict) -> WarmRunner:
        self.accounts.prepare(owner)
        full_env = {**self.accounts.env(owner), **env}
        proc = await asyncio.create_subprocess_exec(
            *RUNNER,
            kernel,
            self.accounts.home(owner),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=full_env,
            cwd="/",
            preexec_fn=self.accounts.preexec(owner),
            start_new_session=True,  # its own process group: killed as a whole
        )
        self._children[proc.pid] = proc
        return WarmRunner(proc)

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
            if runner.alive():
                runner.proc.stdin.close()  # EOF: the runner shuts its kernel down and exits

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
                raise RuntimeError(f"the runner for kernel {spec.kernel!r} did not start (exit {runner.proc.returncode})")
        return await runner.assign(spec)

    def is_running(self, handle: int) -> bool:
        proc = self._children.get(handle)
        if proc is not None:
            return proc.returncode is None
        try:  # re-attached after an executor restart: not our child
            p = psutil.Process(handle)
            return p.status() != psutil.STATUS_ZOMBIE and "notebench.executor.runner" in " ".join(p.cmdline())
        except psutil.Error:
            return False

    def kill(self, handle: int, extra_pids=()) -> None:
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

    def forget(self, handle: int) -> None:
        self._children.pop(handle, None)

    async def close(self) -> None:
        for pool in self._pools.values():
            for runner in pool:
                if runner.alive():
                    runner.proc.stdin.close()  # EOF: the runner shuts its kernel down and exits
        runners = [r for pool in self._pools.values() for r in pool]
        if runners:
            _, late = await asyncio.wait([asyncio.ensure_future(r.proc.wait()) for r in runners], timeout=10)
            if late:
                for runner in runners:
                    if runner.alive():
                        self.kill(runner.proc.pid)
        self._pools.clear()
