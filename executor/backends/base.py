"""The interface every executor backend implements (local processes now, Kubernetes next).

As in dask-gateway, a backend is a small configurable class: the executor decides *what* runs
and when (queue, limits, records); the backend only knows *how* to run one job and how to find
it again after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from traitlets.config import LoggingConfigurable


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


class Backend(LoggingConfigurable):
    async def start(self, spec: JobSpec) -> int:
        """Start the job; returns the pid (or another handle) to record for re-attaching."""
        raise NotImplementedError

    def is_running(self, handle: int) -> bool:
        """Whether the job started with ``handle`` still runs (also after an executor restart)."""
        raise NotImplementedError

    def prewarm(self, owner: str, kernel: str, profile: str, env: dict) -> None:
        """Get ready for a job of this owner/kernel/profile that is likely to come (optional)."""

    def kill(self, handle: int) -> None:
        """Stop the job and everything it started (kernel, Dask workers), at once."""
        raise NotImplementedError

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


class EndpointBackend(LoggingConfigurable):
    """Runs scoring servers. The executor decides which versions serve an endpoint, and the
    router splits traffic between them; the backend only starts, finds, reaches and stops them.

    A handle is a JSON-able dict, recorded in the store, that finds a server again after an
    executor restart.
    """

    async def start(self, spec: ScoringServerSpec) -> dict:
        """Start serving; returns the handle (at once: the server loads its model meanwhile)."""
        raise NotImplementedError

    async def wait_ready(self, handle: dict, timeout: float) -> None:
        """Return once the server answers; raise ScoringServerFailed if it will not."""
        raise NotImplementedError

    def is_running(self, handle: dict) -> bool:
        """Whether the server still runs (also one started before an executor restart)."""
        raise NotImplementedError

    async def open_connection(self, handle: dict):
        """A new (reader, writer) stream pair to the server's HTTP port, for the router's pool."""
        raise NotImplementedError

    async def stop(self, handle: dict) -> None:
        """Stop the server and anything it started."""
        raise NotImplementedError

    async def close(self) -> None:
        """Let go of idle resources. Running servers are left running."""
