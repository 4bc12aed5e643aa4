"""The job queue: records jobs, starts them fairly within limits, watches them, finishes them.

Nothing is lost: every job is a row before it is anything else; a job is claimed with a
compare-and-set on its status (so two executors on one database never both run it); running
jobs report to files in their job directory, so a restarted executor re-attaches to them or,
when their process is gone, marks them failed ("executor restarted") keeping partial output.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

import nbformat
import sqlalchemy as sa

from notebench.hub.gpus import NoFreeGPUs
from notebench.hub.profiles import ProfileError

from .backends.base import JobSpec, RecordedJob
from .db import Job, utcnow
from .jobfiles import read_job_file
from .models import JobRequest

log = logging.getLogger("notebench.executor")


class JobError(Exception):
    """A request the executor refuses: ``status`` (HTTP), ``field`` and a message."""

    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


MAX_EVENTS_BYTES = 1024 * 1024
MAX_NOTEBOOK_BYTES = 256 * 1024 * 1024


def read_events(path: Path, offset: int) -> tuple[list[dict], int]:
    try:
        raw = read_job_file(path, offset, MAX_EVENTS_BYTES)
    except (PermissionError, OverflowError):
        return [], offset  # not a plain file, or absurdly large: not the runner's
    if raw is None:
        return [], offset
    data = raw.decode(errors="replace")
    complete = data[: data.rfind("\n") + 1]  # a line still being written waits for the next read
    return [json.loads(line) for line in complete.splitlines() if line.strip()], offset + len(complete)


def gpus_needed(profile, worker, workers: int) -> int:
    """GPUs a job leases: its kernel's, and each Dask worker's (in one lease, all or none)."""
    return profile.gpus + workers * worker.gpus


def notebook_progress(path: Path) -> tuple[int, int] | None:
    try:
        nb = json.loads(read_job_file(path, limit=MAX_NOTEBOOK_BYTES) or b"")
    except (OSError, OverflowError, ValueError):
        return None
    # papermill adds marker cells on errors: they are not the user's cells.
    cells = [c for c in nb.get("cells", []) if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
    done = sum(1 for c in cells if c.get("metadata", {}).get("papermill", {}).get("status") == "completed")
    return done, len(cells)


class Dispatcher:
    def __init__(self, app):
        self.app = app
        self.sessions = app.sessions
        self.backend = app.backend
        # Stable across restarts, so a restarted executor recognises (only) its own running jobs.
        self.executor_id = app.executor_id
        self.jobs_dir = Path(app.data_dir) / "executor" / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        for d in (self.jobs_dir.parent, self.jobs_dir):
            os.chmod(d, 0o711)  # traversable, not listable: each user reaches only their own job dirs
        if app.accounts.isolate_users:
            closed = [str(d) for d in self.jobs_dir.parents if not d.stat().st_mode & 0o001]
            if closed:
                log.error("Jobs cannot run as their users: %s must be traversable by others (chmod o+x)", closed[0])
        self._lock = asyncio.Lock()
        self._starting: dict[int, asyncio.Task] = {}  # claimed, runner not handed the job yet
        self._watchers: dict[int, asyncio.Task] = {}
        self._cancel_requested: set[int] = set()

    # --- submitting ------------------------------------------------------------------------

    def job_dir(self, job_id: int) -> Path:
        return self.jobs_dir / str(job_id)

    def resolve(self, owner: str, request: JobRequest) -> tuple[str, str, str]:
        try:
            profile = self.app.profiles.get(request.profile)
        except ProfileError as e:
            raise JobError(400, "profile", str(e))
        try:
            worker = self.app.profiles.get(request.worker_profile or profile.name)
        except ProfileError as e:
            raise JobError(400, "worker_profile", str(e))
        if self.backend.leases_gpus:
            # A job that needs more GPUs than the machine has would wait in the queue forever.
            have = len(self.app.gpus.all_devices())
            if profile.gpus > have:
                raise JobError(400, "profile", f"profile {profile.name!r} needs {profile.gpus} GPU(s); this machine has {have}")
            need = gpus_needed(profile, worker, request.workers)
            if need > have:
                raise JobError(400, "worker_profile", f"{request.workers} worker(s) of profile {worker.name!r} and the job's "
                               f"own {profile.gpus} need {need} GPU(s); this machine has {have}")
        kernel = request.kernel or request.notebook.get("metadata", {}).get("kernelspec", {}).get("name") or "python3"
        if kernel not in self.app.kernel_names():
            raise JobError(400, "kernel", f"unknown kernel {kernel!r}; available: {', '.join(sorted(self.app.kernel_names()))}")
        home = Path(self.backend.home(owner)).resolve()
        cwd = (home / request.cwd).resolve() if request.cwd else home
        if cwd != home and home not in cwd.parents:
            raise JobError(400, "cwd", "cwd must stay inside your home directory")
        return profile.name, kernel, str(cwd)

    async def submit(self, owner: str, request: JobRequest, schedule_id: int | None = None) -> Job:
        profile, kernel, cwd = self.resolve(owner, request)
        notebook_path = request.notebook.get("metadata", {}).get("notebench", {}).get("path")
        if not isinstance(notebook_path, str) or not notebook_path:
            notebook_path = None
        job = Job(
            name=request.name or Path(notebook_path or "notebook.ipynb").stem,
            notebook_path=notebook_path[:1024] if notebook_path else None,
            owner=owner,
            status="queued",
            parameters=request.parameters,
            profile=profile,
            kernel=kernel,
            cwd=cwd,
            workers=request.workers,
            worker_profile=request.worker_profile,
            timeout_seconds=request.timeout_seconds,
            cells_total=len(request.notebook.get("cells", [])),
            schedule_id=schedule_id,
        )
        with self.sessions() as s:
            s.add(job)
            s.commit()
        job_dir = self.job_dir(job.id)
        job_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbformat.from_dict(request.notebook), str(job_dir / "input.ipynb"))
        self.backend.prepare(owner, str(job_dir))
        asyncio.ensure_future(self.dispatch())
        return job

    async def prewarm(self, owner: str, kernel: str = "python3", profile_name: str | None = None) -> None:
        """Have a runner ready for the owner's next job (e.g. while they fill in the job form).
        CPU profiles only: a warm GPU runner would hold a GPU nobody uses."""
        try:
            profile = self.app.profiles.get(profile_name)
            if not profile.gpus:
                self.backend.prewarm(owner, kernel, profile.name, await self.app.runner_env(owner, profile, []))
        except Exception:
            log.exception("could not prewarm a runner for %s", owner)

    def _update(self, job_id: int, *conditions, **values) -> int:
        """UPDATE one job (only if ``conditions`` hold: a compare-and-set); returns rows changed."""
        with self.sessions() as s:
            changed = s.execute(sa.update(Job).where(Job.id == job_id, *conditions).values(**values)).rowcount
            s.commit()
        return changed

    # --- starting --------------------------------------------------------------------------

    async def dispatch(self) -> None:
        """Start queued jobs while limits allow, fairly: the owner with the fewest running jobs first.

        Jobs are claimed here, under the lock (so the counts hold); each claimed job then starts in
        a task of its own, so a slow start (an MLflow call, a runner still warming up) never holds
        up the queue for everyone else."""
        async with self._lock:
            with self.sessions() as s:
                running = Counter(o for (o,) in s.execute(sa.select(Job.owner).where(Job.status == "running")))
                queued = s.scalars(sa.select(Job).where(Job.status == "queued").order_by(Job.id)).all()
            total = sum(running.values())
            for job in sorted(queued, key=lambda j: (running[j.owner], j.id)):
                if total >= self.app.max_running_jobs:
                    break
                if running[job.owner] >= self.app.max_running_jobs_per_user:
                    continue
                claim = self._claim(job)
                if claim is not None:
                    self._starting[job.id] = asyncio.ensure_future(self._start(job, *claim))
                    running[job.owner] += 1
                    total += 1

    def _claim(self, job: Job) -> tuple | None:
        """Take a queued job for this executor and lease its GPUs: (profile, gpus), or None when
        it was cancelled meanwhile, another executor took it, or its GPUs are busy (it waits)."""
        claimed = self._update(
            job.id, Job.status == "queued", status="running", started_at=utcnow(), executor_id=self.executor_id
        )
        if not claimed:
            return None
        try:
            profile = self.app.profiles.get(job.profile)
            worker = self.app.profiles.get(job.worker_profile or job.profile)
            if not self.backend.leases_gpus:
                return profile, []
            return profile, self.app.gpus.acquire(f"job:{job.id}", gpus_needed(profile, worker, job.workers))  # split in _spec
        except Exception as e:
            if not isinstance(e, NoFreeGPUs):
                log.exception("could not lease GPUs for job %s; it stays queued", job.id)
            self._update(  # wait in the queue for a GPU
                job.id,
                Job.status == "running",
                Job.executor_id == self.executor_id,
                status="queued",
                started_at=None,
                executor_id=None,
            )
            return None

    async def _start(self, job: Job, profile, gpus: list[str]) -> None:
        try:
            spec = await self._spec(job, profile, gpus)
            handle = await self.backend.start(spec)
        except Exception as e:
            log.exception("job %s could not start", job.id)
            # _finish releases the GPUs too.
            await self._finish(job.id, "failed", {"ename": type(e).__name__, "evalue": str(e), "cell_index": None})
            return
        finally:
            self._starting.pop(job.id, None)
        pid = self.backend.pid(handle)
        if pid is not None:
            self.app.gpus.set_pid(f"job:{job.id}", pid)
        self._update(job.id, runner_pid=pid)
        self._watchers[job.id] = asyncio.ensure_future(self._watch(job.id, handle))

    async def _spec(self, job: Job, profile, leased: list[str]) -> JobSpec:
        worker = self.app.profiles.get(job.worker_profile or job.profile)
        gpus, rest = leased[: profile.gpus], leased[profile.gpus :]
        worker_gpus = [rest[i * worker.gpus : (i + 1) * worker.gpus] for i in range(job.workers)] if worker.gpus else []
        env = await self.app.runner_env(job.owner, profile, gpus)
        kernel_env = {"NOTEBENCH_JOB_ID": str(job.id)}
        if self.app.mlflow:
            job.mlflow_run_id = await self.app.mlflow.start(job, job.notebook_path or "input.ipynb")
            kernel_env["MLFLOW_RUN_ID"] = job.mlflow_run_id
            self._update(job.id, mlflow_run_id=job.mlflow_run_id)
        return JobSpec(
            job_id=job.id,
            owner=job.owner,
            job_dir=str(self.job_dir(job.id)),
            kernel=job.kernel,
            profile=job.profile,
            cwd=job.cwd,
            parameters=job.parameters,
            timeout_seconds=job.timeout_seconds,
            workers=job.workers,
            worker_threads=int(worker.cpu_limit) if worker.cpu_limit else 1,
            worker_memory=worker.mem_limit,
            env=env,
            kernel_env=kernel_env,
            gpus=gpus,
            worker_gpus=worker_gpus,
            worker_profile=worker.name,
        )

    # --- watching --------------------------------------------------------------------------

    async def _watch(self, job_id: int, handle) -> None:
        job_dir = self.job_dir(job_id)
        offset, kernel_pid, last_mtime = 0, None, 0.0
        with self.sessions() as s:
            job = s.get(Job, job_id)
        deadline = job.started_at.timestamp() + job.timeout_seconds
        try:
            while True:
                events, offset = read_events(job_dir / "events.jsonl", offset)
                for event in events:
                    if event["event"] == "started":
                        kernel_pid = event.get("kernel_pid")
                    elif event["event"] == "finished":
                        self._update_progress(job_id, job_dir)
                        await self._finish(job_id, event["status"], event.get("error"), handle)
                        return
                try:
                    mtime = (job_dir / "output.ipynb").stat().st_mtime
                except FileNotFoundError:
                    mtime = last_mtime
                if mtime != last_mtime:
                    last_mtime = mtime
                    self._update_progress(job_id, job_dir)
                if job_id in self._cancel_requested or time.time() > deadline:
                    status = "cancelled" if job_id in self._cancel_requested else "timed_out"
                    await self.backend.kill(handle, [kernel_pid] if kernel_pid else [])
                    self._update_progress(job_id, job_dir)
                    error = None
                    if status == "timed_out":
                        error = {"ename": "Timeout", "evalue": f"the job ran longer than {job.timeout_seconds} s", "cell_index": None}
                    await self._finish(job_id, status, error)
                    return
                if not await self.backend.is_running(handle):
                    events, offset = read_events(job_dir / "events.jsonl", offset)
                    if any(e["event"] == "finished" for e in events):
                        continue  # it finished between our two reads: handle it above
                    await self.backend.kill(handle, [kernel_pid] if kernel_pid else [])
                    await self._finish(
                        job_id, "failed", {"ename": "RunnerDied", "evalue": "the job's process ended unexpectedly", "cell_index": None}
                    )
                    return
                await asyncio.sleep(0.05)
        finally:
            self._watchers.pop(job_id, None)
            self._cancel_requested.discard(job_id)

    def _update_progress(self, job_id: int, job_dir: Path) -> None:
        progress = notebook_progress(job_dir / "output.ipynb")
        if progress:
            self._update(job_id, cells_completed=progress[0], cells_total=progress[1])

    async def _finish(self, job_id: int, status: str, error: dict | None, handle=None) -> None:
        """Record the job's end; ``handle``: it ended by itself, let the backend clean up after it."""
        with self.sessions() as s:
            job = s.get(Job, job_id)
        self.app.gpus.release(f"job:{job_id}")
        if handle is not None:
            try:
                await self.backend.clean_up(handle)
            except Exception:
                log.exception("could not clean up after job %s", job_id)
        if job.status in ("running", "queued") and job.mlflow_run_id and self.app.mlflow:
            # The MLflow run is closed first, so whoever sees the job finished also finds its run complete.
            job.status = status
            try:
                await self.app.mlflow.finish(job, self.job_dir(job_id) / "output.ipynb")
            except Exception:
                log.exception("could not record job %s's end in MLflow run %s", job_id, job.mlflow_run_id)
        self._update(job_id, Job.status.in_(("running", "queued")), status=status, error=error, finished_at=utcnow())
        asyncio.ensure_future(self.dispatch())

    # --- acting on jobs ---------------------------------------------------------------------

    async def cancel(self, job_id: int) -> None:
        # A queued job never starts: cancel it in the database, atomically.
        queued = self._update(job_id, Job.status == "queued", status="cancelled", finished_at=utcnow())
        if queued:
            return
        if job_id in self._starting:  # claimed, still being handed to its runner: its watcher cancels it
            self._cancel_requested.add(job_id)
            await asyncio.wait([self._starting[job_id]], timeout=30)
        if job_id in self._watchers:
            self._cancel_requested.add(job_id)
            await asyncio.wait([self._watchers[job_id]], timeout=10)
        elif job_id not in self._starting:
            self._cancel_requested.discard(job_id)  # it ended (or failed to start) meanwhile

    # --- recovery ----------------------------------------------------------------------------

    async def recover(self) -> None:
        """After a (re)start: re-attach to running jobs whose process lives, fail the others."""
        with self.sessions() as s:
            running = s.scalars(
                sa.select(Job).where(Job.status == "running", Job.executor_id == self.executor_id)
            ).all()
        handles = await self.backend.find([RecordedJob(j.id, str(self.job_dir(j.id)), j.runner_pid) for j in running])
        for job in running:
            if job.id in handles:
                log.info("re-attaching to job %s (%s)", job.id, handles[job.id])
                self._watchers[job.id] = asyncio.ensure_future(self._watch(job.id, handles[job.id]))
                continue
            events, _ = read_events(self.job_dir(job.id) / "events.jsonl", 0)
            finished = [e for e in events if e["event"] == "finished"]
            self._update_progress(job.id, self.job_dir(job.id))
            if finished:  # it ended while we were down
                await self._finish(job.id, finished[-1]["status"], finished[-1].get("error"))
            else:
                await self._finish(job.id, "failed", {"ename": "ExecutorRestarted", "evalue": "executor restarted", "cell_index": None})
        self.app.gpus.reap("job:", keep={f"job:{j}" for j in self._watchers})
        await self.dispatch()

    async def close(self) -> None:
        for task in list(self._watchers.values()):
            task.cancel()
        await self.backend.close()

