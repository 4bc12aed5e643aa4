"""The job queue: records jobs, starts them fairly within limits, watches them, finishes them.

Nothing is lost: every job is a row before it is anything else; a job is claimed with a
compare-and-set on its status (so two executors on one database never both run it); running
jobs report to files in their job directory, so a restarted executor re-attaches to them or,
when their process is gone, marks them failed ("executor restarted") keeping partial output.

Those reports are the job owner's words (runtime/events.py): a job can end itself, succeeded or
failed, and nothing else; a report that is not one fails that job alone. A dependency that is
down (MLflow, the hub API, the Kubernetes API) holds jobs in the queue and is retried with
backoff: it never fails them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import Counter, deque
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import sqlalchemy as sa

from notebench.executor.backends.base import JobSpec, JobState, RecordedJob
from notebench.executor.background import BackgroundTasks
from notebench.executor.db import Job, Schedule, claimed, utcnow
from notebench.executor.errors import NotebenchError
from notebench.executor.quotas import holds
from notebench.executor.runtime.events import (  # noqa: F401
    MAX_EVENTS_BYTES,
    MalformedReport,
    malformed,
    notebook_progress,
    read_events,
)
from notebench.executor.runtime.mlflow_plugins import JOB_EXPERIMENT
from notebench.executor.schemas import JobRequest
from notebench.executor.services import is_outage, job_experiment
from notebench.hub.platform.gpus import NoFreeGPUs
from notebench.hub.platform.profiles import ProfileError
from notebench.hub.platform.statuses import FINAL

log = logging.getLogger("notebench.executor")


MAX_NOTEBOOK_BYTES = 256 * 1024 * 1024
# Waiting for a dependency that is down: the first retry after this, doubling up to the most.
OUTAGE_FIRST_RETRY_SECONDS = 1.0
OUTAGE_MOST_RETRY_SECONDS = 30.0


def gpus_needed(profile, worker, workers: int) -> int:
    """GPUs a job leases: its kernel's, and each Dask worker's (in one lease, all or none)."""
    return profile.gpus + workers * worker.gpus


class Backoff:
    """When to try a dependency again after it was found down: doubling waits, reset when it answers."""

    def __init__(self):
        self.until, self.wait = 0.0, 0.0

    def held(self) -> float:
        """Seconds still to wait (0: go ahead)."""
        return max(0.0, self.until - time.monotonic())

    def failed(self) -> float:
        self.wait = min(max(self.wait * 2, OUTAGE_FIRST_RETRY_SECONDS), OUTAGE_MOST_RETRY_SECONDS)
        self.until = time.monotonic() + self.wait
        return self.wait

    def answered(self) -> None:
        self.until, self.wait = 0.0, 0.0


class Dispatcher:
    def __init__(self, app):
        self.app = app
        self.tasks = BackgroundTasks()  # dispatch rounds, prewarming, closing MLflow runs
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
        self._outage = Backoff()  # MLflow, the hub or the backend's API was down: starts wait
        self._waited: set[int] = set()  # jobs whose start met an outage (their MLflow run may exist)
        self._outage_retry: asyncio.TimerHandle | None = None
        self._mlflow_backoff = Backoff()  # closing runs of jobs that ended while MLflow was down
        self._closing_runs: asyncio.Task | None = None

    # --- submitting ------------------------------------------------------------------------

    def job_dir(self, job_id: int) -> Path:
        return self.jobs_dir / str(job_id)

    def resolve(self, owner: str, request: JobRequest) -> tuple[str, str, str]:
        try:
            profile = self.app.profiles.get(request.profile)
        except ProfileError as e:
            raise NotebenchError(400, "profile", str(e))
        try:
            worker = self.app.profiles.get(request.worker_profile or profile.name)
        except ProfileError as e:
            raise NotebenchError(400, "worker_profile", str(e))
        if self.backend.leases_gpus:
            # A job that needs more GPUs than the machine has would wait in the queue forever.
            have = len(self.app.gpus.all_devices())
            if profile.gpus > have:
                raise NotebenchError(400, "profile", f"profile {profile.name!r} needs {profile.gpus} GPU(s); this machine has {have}")
            need = gpus_needed(profile, worker, request.workers)
            if need > have:
                raise NotebenchError(400, "worker_profile", f"{request.workers} worker(s) of profile {worker.name!r} and the job's "
                               f"own {profile.gpus} need {need} GPU(s); this machine has {have}")
        kernel = request.kernel or request.notebook.get("metadata", {}).get("kernelspec", {}).get("name") or "python3"
        if kernel == "python" and "python" not in self.app.kernel_names():
            kernel = "python3"  # what papermill and Jupyter call the native Python kernel too
        if kernel not in self.app.kernel_names():
            raise NotebenchError(400, "kernel", f"unknown kernel {kernel!r}; available: {', '.join(sorted(self.app.kernel_names()))}")
        home = Path(self.backend.home(owner)).resolve()
        cwd = (home / request.cwd).resolve() if request.cwd else home
        if cwd != home and home not in cwd.parents:
            raise NotebenchError(400, "cwd", "cwd must stay inside your home directory")
        return profile.name, kernel, str(cwd)

    async def submit(self, owner: str, request: JobRequest, schedule_id: int | None = None,
                     groups: list[str] | None = None) -> Job:
        """Queue a job, within the owner's quotas. ``groups``: the owner's, when they submit it
        themselves; else (a schedule's tick) asked of the hub (none while it is down)."""
        if groups is None:
            groups = await self.app.quotas.groups_of(owner) or []
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
        # No await from this check to the commit: no other submission comes between.
        self.app.quotas.check_job(owner, groups, profile, request.worker_profile, request.workers)
        with self.sessions() as s:
            s.add(job)
            s.commit()
        job_dir = self.job_dir(job.id)
        job_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbformat.from_dict(request.notebook), str(job_dir / "input.ipynb"))
        self.backend.prepare(owner, str(job_dir))
        self.tasks.start(self.dispatch())
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
        """Start queued jobs while limits and their owners' quotas allow, fairly: the owner with the
        least recent usage first (jobs/fair_share.py), each owner's jobs in the order they came.

        Jobs are claimed here, under the lock (so the counts hold); each claimed job then starts in
        a task of its own, so a slow start (an MLflow call, a runner still warming up) never holds
        up the queue for everyone else. A job its owner's quota does not let start now waits."""
        async with self._lock:
            if self._outage.held():  # a dependency is down: starting now would only fail
                self._retry_dispatch_in(self._outage.held())
                return
            with self.sessions() as s:
                running = Counter(o for (o,) in s.execute(sa.select(Job.owner).where(claimed())))
                queued = s.scalars(sa.select(Job).where(Job.status == "queued", Job.executor_id.is_(None))
                                   .order_by(Job.id)).all()
            if not queued:
                self.app.metrics.jobs_waiting_for_quota.clear()
                return
            quotas = self.app.quotas
            groups = {owner: await quotas.groups_of(owner) for owner in {j.owner for j in queued}}
            if any(g is None for g in groups.values()):  # the hub is down: whose quotas apply is unknown
                self._retry_dispatch_in(OUTAGE_MOST_RETRY_SECONDS)
            limits = {owner: quotas.applying(owner, g)[0] for owner, g in groups.items() if g is not None}
            for owner, mine in limits.items():  # their servers hold what these count too
                if any(mine[q] is not None for q in ("cpu", "memory", "gpus")):
                    await quotas.fresh_servers(owner)
            held = quotas.held_by_owner()
            fair = self.app.fair_share
            score = fair.recent_usage()
            if fair.by == "group":  # the groups of everyone who used something lately, and of who waits
                known = {o: await quotas.groups_of(o) or [] for o in set(score) | set(limits)}
                score = fair.by_group(score, known)
            waiting = {owner: deque(j for j in queued if j.owner == owner) for owner in limits}
            waiting_for: Counter = Counter()
            total = sum(running.values())
            while waiting and total < self.app.max_running_jobs:
                owner = min(waiting, key=lambda o: (score[o], waiting[o][0].id))
                job = waiting[owner][0]
                wanted = holds(self.app.profiles, job.profile, job.worker_profile, job.workers)
                mine = held.setdefault(owner, Counter())
                if wanted["gpus"] and limits[owner]["gpu_hours_per_day"] is not None and "gpu_hours_per_day" not in mine:
                    mine["gpu_hours_per_day"] = quotas.gpu_hours_last_day(owner)
                over = quotas.blocking(limits[owner], mine, wanted)
                if running[owner] >= self.app.max_running_jobs_per_user or over:
                    if over:
                        waiting_for[over] += len(waiting[owner])
                    del waiting[owner]  # their jobs start in the order they came: the first waits, all wait
                    continue
                waiting[owner].popleft()
                if not waiting[owner]:
                    del waiting[owner]
                claim = self._claim(job)
                if claim is not None:
                    self._starting[job.id] = asyncio.ensure_future(self._start(job, *claim))
                    running[owner] += 1
                    total += 1
                    mine.update(wanted)
                    score[owner] += fair.charge(wanted)
            if waiting_for:  # what they wait for may end without a job ending (a server stopped)
                self._retry_dispatch_in(quotas.servers_seconds)
            gauge = self.app.metrics.jobs_waiting_for_quota
            gauge.clear()
            for quota, count in waiting_for.items():
                gauge.labels(quota).set(count)

    def _retry_dispatch_in(self, seconds: float) -> None:
        if self._outage_retry is None or self._outage_retry.when() < asyncio.get_running_loop().time():
            self._outage_retry = asyncio.get_running_loop().call_later(seconds, lambda: self.tasks.start(self.dispatch()))

    def _unclaim(self, job_id: int) -> None:
        """Back to the queue, as if never claimed (its GPUs go back too)."""
        self._update(
            job_id,
            claimed(),
            Job.executor_id == self.executor_id,
            status="queued",
            started_at=None,
            executor_id=None,
        )
        self.app.gpus.release(f"job:{job_id}")

    def _claim(self, job: Job) -> tuple | None:
        """Take a queued job for this executor and lease its GPUs: (profile, gpus), or None when
        it was cancelled meanwhile, another executor took it, or its GPUs are busy (it waits)."""
        taken = self._update(
            job.id, Job.status == "queued", Job.executor_id.is_(None), status="running", started_at=utcnow(),
            executor_id=self.executor_id,
        )
        if not taken:
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
            self._unclaim(job.id)  # wait in the queue for a GPU
            return None

    async def _start(self, job: Job, profile, gpus: list[str]) -> None:
        try:
            spec = await self._spec(job, profile, gpus)
            handle = await self.backend.start(spec)
        except Exception as e:
            if is_outage(e) or self.backend.is_outage(e):
                if job.id in self._cancel_requested:
                    await self._finish(job.id, "cancelled", None)
                    return
                wait = self._outage.failed()
                log.warning("job %s waits in the queue: a service it needs is down (%s: %s); trying again in %.0f s",
                            job.id, type(e).__name__, e, wait)
                self._waited.add(job.id)
                self._unclaim(job.id)
                self._retry_dispatch_in(wait)
                return
            log.exception("job %s could not start", job.id)
            # _finish releases the GPUs too.
            await self._finish(job.id, "failed", {"ename": type(e).__name__, "evalue": str(e)[:2000], "cell_index": None})
            return
        finally:
            self._starting.pop(job.id, None)
        self._outage.answered()
        self._waited.discard(job.id)
        process = self.backend.pid(handle)
        if process is not None:
            self.app.gpus.set_pid(f"job:{job.id}", process[0])
            self._update(job.id, runner_pid=process[0], runner_started=process[1])
        self._watchers[job.id] = asyncio.ensure_future(self._watch(job.id, handle))

    async def _spec(self, job: Job, profile, leased: list[str]) -> JobSpec:
        worker = self.app.profiles.get(job.worker_profile or job.profile)
        gpus, rest = leased[: profile.gpus], leased[profile.gpus :]
        worker_gpus = [rest[i * worker.gpus : (i + 1) * worker.gpus] for i in range(job.workers)] if worker.gpus else []
        env = await self.app.runner_env(job.owner, profile, gpus)
        kernel_env = {"NOTEBENCH_JOB_ID": str(job.id)}
        if self.app.mlflow:
            if not job.mlflow_run_id:  # made once: a start retried after an outage keeps its run
                job.mlflow_run_id = await self.app.mlflow.create_run(
                    job, job.notebook_path or "input.ipynb", look_first=job.id in self._waited
                )
                self._update(job.id, mlflow_run_id=job.mlflow_run_id)
            await self.app.mlflow.log_parameters(job)
            kernel_env["MLFLOW_RUN_ID"] = job.mlflow_run_id
            kernel_env[JOB_EXPERIMENT] = job_experiment(job)  # where the notebook's other runs go
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
        """Follow a running job to its end. Whatever its reports hold, this ends with the job
        ended: a report that is not one stops the job and fails it, with the reason."""
        try:
            await self._follow(job_id, handle)
        except MalformedReport as e:
            log.warning("job %s: %s", job_id, e)
            await self._stop(job_id, handle, "failed", malformed(str(e)))
        except asyncio.CancelledError:
            raise  # the executor is stopping: the job runs on, a restart re-attaches to it
        except Exception as e:  # never leave a job running with nobody watching it
            log.exception("watching job %s failed", job_id)
            await self._stop(job_id, handle, "failed", {"ename": type(e).__name__, "evalue": str(e)[:2000], "cell_index": None})
        finally:
            self._watchers.pop(job_id, None)
            self._cancel_requested.discard(job_id)

    async def _stop(self, job_id: int, handle, status: str, error: dict | None) -> None:
        try:
            # Cancelled or out of time: the output so far is kept (the running cell's too).
            await (self.backend.stop(handle) if status in ("cancelled", "timed_out") else self.backend.kill(handle))
        except Exception:
            log.exception("could not stop job %s", job_id)
        self._update_progress(job_id, self.job_dir(job_id))
        await self._finish(job_id, status, error)

    async def _follow(self, job_id: int, handle) -> None:
        job_dir = self.job_dir(job_id)
        offset, last_mtime = 0, 0.0
        with self.sessions() as s:
            job = s.get(Job, job_id)
        deadline = job.started_at.timestamp() + job.timeout_seconds if job.started_at else math.inf
        shown = None
        while True:
            events, offset = read_events(job_dir / "events.jsonl", offset)
            for event in events:
                if event["event"] == "finished":
                    self._update_progress(job_id, job_dir)
                    await self._finish(job_id, event["status"], event["error"], handle)
                    return
            try:
                mtime = (job_dir / "output.ipynb").stat().st_mtime
            except FileNotFoundError:
                mtime = last_mtime
            if mtime != last_mtime:
                last_mtime = mtime
                self._update_progress(job_id, job_dir)
            if job_id in self._cancel_requested:
                await self._stop(job_id, handle, "cancelled", None)
                return
            state = await self.backend.state(handle)
            if state is not None:
                if state != shown:
                    self._show(job_id, state)
                    shown = state
                deadline = math.inf if state.running_since is None else state.running_since + job.timeout_seconds
            if time.time() > deadline:
                timeout = {"ename": "Timeout", "evalue": f"the job ran longer than {job.timeout_seconds} s", "cell_index": None}
                await self._stop(job_id, handle, "timed_out", timeout)
                return
            if not await self.backend.is_running(handle):
                events, offset = read_events(job_dir / "events.jsonl", offset)
                finished = next((e for e in events if e["event"] == "finished"), None)
                if finished:  # it finished between our two reads
                    self._update_progress(job_id, job_dir)
                    await self._finish(job_id, finished["status"], finished["error"], handle)
                    return
                await self._stop(job_id, handle, "failed",
                                 {"ename": "RunnerDied", "evalue": "the job's process ended unexpectedly", "cell_index": None})
                return
            await asyncio.sleep(0.05)

    def _show(self, job_id: int, state: JobState) -> None:
        """What its backend says of a started job: queued while it waits for busy resources (it
        stays this executor's), running from when its work began (as in local mode, a job's
        started_at and timeout never include its wait)."""
        values: dict
        if state.queued:
            values = {"status": "queued", "started_at": None}
        else:
            values = {"status": "running"}
            if state.running_since is not None:
                values["started_at"] = datetime.fromtimestamp(state.running_since, timezone.utc)
        self._update(job_id, claimed(), Job.executor_id == self.executor_id, **values)

    def _update_progress(self, job_id: int, job_dir: Path) -> None:
        progress = notebook_progress(job_dir / "output.ipynb", MAX_NOTEBOOK_BYTES)
        if progress:
            self._update(job_id, cells_completed=progress[0], cells_total=progress[1])

    async def _finish(self, job_id: int, status: str, error: dict | None, handle=None) -> None:
        """Record the job's end; ``handle``: it ended by itself, let the backend clean up after it.
        Only the ends are legal (running or queued → one of FINAL), whoever asks."""
        if status not in FINAL:
            raise ValueError(f"not a job's end: {status!r}")
        with self.sessions() as s:
            job = s.get(Job, job_id)
        self.app.gpus.release(f"job:{job_id}")
        if handle is not None:
            try:
                await self.backend.clean_up(handle)
            except Exception:
                log.exception("could not clean up after job %s", job_id)
        pending = False
        if job.status in ("running", "queued") and job.mlflow_run_id and self.app.mlflow:
            # The MLflow run is closed first, so whoever sees the job finished also finds its run complete.
            job.status = status
            try:
                run_id = await self.app.mlflow.finish(job, self.job_dir(job_id) / "output.ipynb")
                if run_id != job.mlflow_run_id:
                    self._update(job_id, mlflow_run_id=run_id)  # the notebook moved it to its own experiment
            except Exception as e:
                pending = is_outage(e)  # MLflow is down: the run is closed once it is back
                log.log(logging.WARNING if pending else logging.ERROR, "could not record job %s's end in MLflow run %s%s",
                        job_id, job.mlflow_run_id, " yet (MLflow is down; retrying)" if pending else "", exc_info=not pending)
        # A succeeded job of a schedule with a promotion policy waits for its decision (schedules/promotion.py),
        # marked in the update that ends it: a restart in between finds it either running or pending.
        promote = status == "succeeded" and self._promotion_wanted(job)
        self._update(job_id, Job.status.in_(("running", "queued")), status=status, error=error, finished_at=utcnow(),
                     mlflow_pending=pending, promotion_pending=promote)
        if pending:
            self._close_pending_runs()
        if promote:
            self.app.promotions.wake()
        self.tasks.start(self.dispatch())

    def _promotion_wanted(self, job: Job) -> bool:
        """Whether the job's schedule has a promotion policy (its success then waits for a decision)."""
        if job.schedule_id is None:
            return False
        with self.sessions() as s:
            return s.scalar(sa.select(Schedule.promotion).where(Schedule.id == job.schedule_id)) is not None

    def _close_pending_runs(self) -> None:
        if self._closing_runs is None or self._closing_runs.done():
            self._closing_runs = self.tasks.start(self._close_runs_loop())

    async def _close_runs_loop(self) -> None:
        """Close the MLflow runs of jobs that ended while MLflow was down (kept in the store, so a
        restarted executor does it too), once MLflow answers again."""
        while True:
            with self.sessions() as s:
                jobs = s.scalars(sa.select(Job).where(Job.mlflow_pending).order_by(Job.id)).all()
            if not jobs or not self.app.mlflow:
                return
            try:
                for job in jobs:
                    run_id = await self.app.mlflow.finish(job, self.job_dir(job.id) / "output.ipynb")
                    self._update(job.id, mlflow_pending=False, mlflow_run_id=run_id)
                    if job.promotion_pending:  # its decision waited for its run: it can be made now
                        self.app.promotions.wake()
                self._mlflow_backoff.answered()
            except Exception as e:
                if not is_outage(e):
                    log.exception("could not close MLflow run %s of job %s; giving up on it", job.mlflow_run_id, job.id)
                    self._update(job.id, mlflow_pending=False)
                    continue
                await asyncio.sleep(self._mlflow_backoff.failed())

    # --- acting on jobs ---------------------------------------------------------------------

    async def cancel(self, job_id: int) -> None:
        # A queued job never starts: cancel it in the database, atomically. (One that its backend
        # holds for busy resources has an executor: that executor's watcher stops it.)
        queued = self._update(job_id, Job.status == "queued", Job.executor_id.is_(None), status="cancelled",
                              finished_at=utcnow())
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
            running = s.scalars(sa.select(Job).where(claimed(), Job.executor_id == self.executor_id)).all()
        handles = await self.backend.find(
            [RecordedJob(j.id, str(self.job_dir(j.id)), j.runner_pid, j.runner_started, j.owner) for j in running]
        )
        for job in running:
            if job.id in handles:
                log.info("re-attaching to job %s (%s)", job.id, handles[job.id])
                self._watchers[job.id] = asyncio.ensure_future(self._watch(job.id, handles[job.id]))
                continue
            if job.runner_pid is None and not (self.job_dir(job.id) / "events.jsonl").exists():
                # Claimed, but the executor went down before any runner or pod had the job: none
                # of it ran, so it goes back to the queue (its MLflow run, if made, is kept).
                log.info("job %s never reached its runner: back to the queue", job.id)
                self._update(job.id, claimed(), Job.executor_id == self.executor_id,
                             status="queued", started_at=None, executor_id=None)
                continue
            try:  # whatever the job directory holds: recovery goes on with the other jobs
                events, _ = read_events(self.job_dir(job.id) / "events.jsonl", 0)
                finished = [e for e in events if e["event"] == "finished"]
                self._update_progress(job.id, self.job_dir(job.id))
                if finished:  # it ended while we were down
                    await self._finish(job.id, finished[0]["status"], finished[0]["error"])
                else:
                    await self._finish(job.id, "failed", {"ename": "ExecutorRestarted", "evalue": "executor restarted", "cell_index": None})
            except MalformedReport as e:
                await self._finish(job.id, "failed", malformed(str(e)))
        self.app.gpus.reap("job:", keep={f"job:{j}" for j in self._watchers})
        self._close_pending_runs()
        await self.dispatch()

    async def close(self) -> None:
        watchers = [*self._watchers.values(), *self._starting.values()]  # a restart re-attaches or re-queues
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await self.tasks.close()
        await self.backend.close()


    # --- deleting (at the end: the rest of the class is the lead's) -------------------------

    def delete(self, job_id: int) -> bool:
        """Forget an ended job: its row (a compare-and-set on a final status, so a job that is
        queued or running is never deleted under its runner), then its directory and its cached
        HTML. False when the job is not final (or gone). Its MLflow run stays: it is MLflow's record."""
        with self.sessions() as s:
            deleted = s.execute(sa.delete(Job).where(Job.id == job_id, Job.status.in_(FINAL))).rowcount
            s.commit()
        if not deleted:
            return False
        import shutil  # here, so this method stays one block at the end of the class

        # The directory is the owner's (they may have put links in it): rmtree removes links, it
        # never follows them out of the directory.
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        for cached in (self.jobs_dir.parent / "html").glob(f"{job_id}-*.html"):
            cached.unlink(missing_ok=True)
        return True
