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
    gpus: list = field(default_factory=list)


class Backend(LoggingConfigurable):
    async def start(self, spec: JobSpec) -> int:
        """Start the job; returns the pid (or another handle) to record for re-attaching."""
        raise NotImplementedError

    def is_running(self, handle: int) -> bool:
        """Whether the job started with ``handle`` still runs (also after an executor restart)."""
        raise NotImplementedError

    def kill(self, handle: int) -> None:
        """Stop the job and everything it started (kernel, Dask workers), at once."""
        raise NotImplementedError

    async def close(self) -> None:
        """Let go of idle resources (warm kernels). Running jobs are left running."""
