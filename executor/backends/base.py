"""The interface every executor backend implements (local processes: local/; Kubernetes: kubernetes/).

As in dask-gateway, a backend is a small configurable class: the executor decides *what* runs
and when (queue, limits, records); the backend only knows *how* to run one job and how to find
it again after a restart.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, TypeVar

from traitlets import Instance
from traitlets.config import LoggingConfigurable

from notebench.hub.platform.accounts import UserAccounts
from notebench.hub.platform.profiles import Profiles

_T = TypeVar("_T")


def _given(value: _T | None, what: str) -> _T:
    """A backend's ``accounts`` or ``profiles``: set by the executor (executor/app.py), which makes
    every backend with both; only tests make backends without those they do not use."""
    assert value is not None, f"the backend was made without {what}"
    return value


@dataclass
class JobSpec:
    """Everything a backend needs to run one job (the notebook is already in ``job_dir``)."""

    job_id: int
    owner: str
    job_dir: str
    kernel: str
    profile: str
    cwd: str  # absolute, inside the owner's home
    parameters: dict
    timeout_seconds: int
    workers: int = 0
    worker_threads: int | None = None
    worker_memory: int | None = None
    env: dict = field(default_factory=dict)  # for the runner process (and so the kernel)
    kernel_env: dict = field(default_factory=dict)  # set inside the kernel before the notebook runs
    gpus: list = field(default_factory=list)  # the kernel's (CUDA_VISIBLE_DEVICES)
    worker_gpus: list = field(default_factory=list)  # each Dask worker's devices, when its profile has GPUs
    worker_profile: str = ""  # the Dask workers' profile (the job's when empty)


@dataclass
class RecordedJob:
    """A job the store says is running on this executor, as a restarted executor finds it."""

    job_id: int
    job_dir: str
    pid: int | None  # what ``Backend.pid`` gave for its handle
    pid_started: float | None = None  # ... and the start time it gave with it
    owner: str = ""


@dataclass(frozen=True)
class JobState:
    """Where a started job is, as its backend sees it (``Backend.state``)."""

    # Waiting for resources that other work holds now (Kubernetes: busy GPUs): shown as queued.
    queued: bool = False
    # When its work began (epoch seconds): its timeout counts from then. None: not begun yet (its
    # pod is being scheduled, or pulls its image), so no timeout runs.
    running_since: float | None = None


class UsersBackend(LoggingConfigurable):
    """What both kinds of backend are given by the executor: the users' OS accounts and the profiles."""

    accounts = Instance(UserAccounts, allow_none=True)
    profiles = Instance(Profiles, allow_none=True)

    @property
    def _accounts(self) -> UserAccounts:
        """``accounts``, where a backend needs them (the executor always gives its backends both)."""
        return _given(self.accounts, "accounts")

    @property
    def _profiles(self) -> Profiles:
        """``profiles``, where a backend needs them."""
        return _given(self.profiles, "profiles")


class Backend(UsersBackend):
    """Runs jobs. A handle (what ``start`` returns) is the backend's own: the dispatcher passes it
    back, and records ``pid(handle)`` to find the job again after a restart (``find``).

    A job reports to its job directory (``events.jsonl``: started, finished; ``log.txt``;
    ``output.ipynb``), where the dispatcher reads it, however the backend gets it there. Those
    reports are the owner's words (runtime/events.py parses them strictly); the backend acts only on
    what it recorded itself.
    """

    # Whether the executor leases this machine's GPUs to jobs (GPUInventory); else the backend's
    # scheduler places jobs on GPUs (Kubernetes: nvidia.com/gpu limits).
    leases_gpus = True

    def home(self, owner: str) -> str:
        """The owner's home, as the job sees it (jobs' working directories are inside it)."""
        return self._accounts.home(owner)

    def prepare(self, owner: str, job_dir: str) -> None:
        """Make the new job directory (with input.ipynb) ready for the job to report into."""

    async def start(self, spec: JobSpec) -> Any:
        """Start the job; returns its handle."""
        raise NotImplementedError

    def pid(self, handle: Any) -> tuple[int, float] | None:
        """The process to record for ``handle`` (GPU leases, ``find``), if the job is a local process:
        its pid and start time, as the backend itself found them (never as the job reported them)."""
        return None

    async def find(self, jobs: list[RecordedJob]) -> dict[int, Any]:
        """After an executor restart: the handles of those ``jobs`` that can still be watched (by job id)."""
        raise NotImplementedError

    def cpu_seconds(self, pid: int, started: float) -> float | None:
        """CPU-seconds a running job's processes used so far, measured by root (usage's "used"),
        given the pid and start time ``pid`` returned; None where the backend cannot measure it."""
        return None

    def is_outage(self, error: Exception) -> bool:
        """Whether ``start`` failed because what the backend calls is down for now (the job waits
        in the queue and is started again later) rather than because of the job."""
        return False

    async def gone_executors(self, executor_ids: set[str]) -> set[str]:
        """Those of these other executors that are known to be gone for good: a restarted executor
        takes over their jobs and scoring servers (Kubernetes: the pod this one replaces). Local
        executors are known by their host names, which stay: none."""
        return set()

    async def state(self, handle: Any) -> JobState | None:
        """Where the job is. None (local processes): it runs from its claim on, and its timeout
        counts from then; jobs wait for busy GPUs in the dispatcher's queue before they start."""
        return None

    async def is_running(self, handle: Any) -> bool:
        """Whether the job still runs, or has reports still to bring to its job directory."""
        raise NotImplementedError

    def prewarm(self, owner: str, kernel: str, profile: str, env: dict) -> None:
        """Get ready for a job of this owner/kernel/profile that is likely to come (optional)."""

    async def kill(self, handle: Any) -> None:
        """Stop the job and everything it started (kernel, Dask workers), at once. What to stop is
        the backend's own record, never what the job reported: it acts only on the owner's job."""
        raise NotImplementedError

    async def stop(self, handle: Any) -> None:
        """Stop a job that is cancelled or out of time: give its runner a moment to save the output
        produced so far (the running cell's too), then kill. By default: kill at once."""
        await self.kill(handle)

    async def clean_up(self, handle: Any) -> None:
        """The job ended by itself (its 'finished' event is in): let go of what is left of it (optional)."""

    def check_job_token(self, job_id: int, token: str) -> bool:
        """Whether ``token`` is job ``job_id``'s own (jobs that hand their files to the executor's API)."""
        return False

    async def close(self) -> None:
        """Let go of idle resources (warm kernels). Running jobs are left running."""


@dataclass
class ScoringServerSpec:
    """One model version to serve: MLflow's pyfunc scoring server for ``model_uri``, as ``owner``."""

    server_id: int
    endpoint: str
    owner: str
    model_uri: str  # models:/<name>/<version>
    profile: str
    env: dict = field(default_factory=dict)  # MLflow's URL and the owner's token, the profile's variables


class ScoringServerFailed(Exception):
    """The scoring server will not become ready; the message says why (e.g. its last log lines)."""


class EndpointBackend(UsersBackend):
    """Runs scoring servers. The executor decides which versions serve an endpoint, and the
    router splits traffic between them; the backend only starts, finds, reaches and stops them.

    A handle is a JSON-able dict, recorded in the store, that finds a server again after an
    executor restart.
    """

    def prewarm(self, owner: str) -> None:
        """Get ready for a deploy of ``owner`` that is likely to come (optional)."""

    async def start(self, spec: ScoringServerSpec) -> dict:
        """Start serving; returns the handle (at once: the server loads its model meanwhile)."""
        raise NotImplementedError

    async def wait_ready(self, handle: dict, timeout: float) -> None:
        """Return once the server answers; raise ScoringServerFailed if it will not."""
        raise NotImplementedError

    async def is_running(self, handle: dict) -> bool:
        """Whether the server still runs (also one started before an executor restart)."""
        raise NotImplementedError

    async def open_connection(self, handle: dict):
        """A new (reader, writer) stream pair to the server's HTTP port, for the router's pool."""
        raise NotImplementedError

    async def ping(self, handle: dict) -> bool:
        """Whether the server answers its health check (MLflow's ``/ping``)."""
        try:
            reader, writer = await self.open_connection(handle)
        except OSError:
            return False
        try:
            writer.write(b"GET /ping HTTP/1.1\r\nHost: scoring-server\r\nConnection: close\r\n\r\n")
            status = await asyncio.wait_for(reader.readline(), 10)
            return status.split(b" ")[1:2] == [b"200"]
        except (OSError, asyncio.TimeoutError, IndexError):
            return False
        finally:
            writer.close()

    async def logs(self, handle: dict, lines: int, max_bytes: int) -> str:
        """The server's last ``lines`` log lines, at most ``max_bytes`` of them: the owner's text,
        returned as it is (decoded, never interpreted)."""
        return ""

    async def stop(self, handle: dict) -> None:
        """Stop the server and anything it started."""
        raise NotImplementedError

    async def close(self) -> None:
        """Let go of idle resources. Running servers are left running."""
