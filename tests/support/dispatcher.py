"""The executor as its job dispatcher sees it, without the rest of the executor: the store, the
data directory and the backend are real; no GPU leases (a Kubernetes backend's scheduler places
GPUs), no MLflow. Shared by the offline Kubernetes backend tests (tests/unit) and the live tier
(tests/kubernetes_live), which also serves the job pods' file API with ``serve_job_files``."""

from __future__ import annotations

import logging
from pathlib import Path

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from notebench.executor import db
from notebench.executor.api.job_files import JobFilesHandler
from notebench.executor.app import Executor
from notebench.executor.jobs.dispatcher import Dispatcher
from notebench.executor.jobs.fair_share import FairShare
from notebench.executor.metrics import Metrics
from notebench.executor.quotas import Quotas
from notebench.hub.platform.accounts import UserAccounts
from notebench.hub.platform.gpus import GPUInventory


class DispatcherApp:
    """What the dispatcher (and the job-files handler) read of the executor (executor/app.py)."""

    max_running_jobs, max_running_jobs_per_user, mlflow = 4, 2, None
    log = logging.getLogger("notebench.executor")

    def __init__(self, data_dir: Path, backend, executor_id: str, kernels: tuple = ("python3",)):
        self.data_dir, self.executor_id, self.backend = str(data_dir), executor_id, backend
        self.sessions = db.connect(f"sqlite:///{data_dir / 'executor.sqlite'}")
        self.profiles = backend.profiles
        self.accounts = UserAccounts(isolate_users=False)
        self.gpus = GPUInventory(db_url=f"sqlite:///{data_dir / 'gpus.sqlite'}", devices=[])
        self.kernels = set(kernels)
        self.metrics = Metrics(self.sessions, self.gpus)
        self.quotas = Quotas(self.sessions, self.profiles)
        self.fair_share = FairShare(self.sessions, self.profiles)
        self.dispatcher: Dispatcher | None = None  # the one ``start`` makes

    def start(self) -> Dispatcher:
        self.dispatcher = Dispatcher(self)
        return self.dispatcher

    async def adopt(self) -> None:
        """What the executor does at its start before recovering: take over the work of executors
        that are gone (Executor.adopt, run on this app)."""
        await Executor.adopt(self)  # type: ignore[arg-type]

    def kernel_names(self) -> set:
        return self.kernels

    async def runner_env(self, owner, profile, gpus) -> dict:
        return {"NOTEBENCH_PROFILE": profile.name, "CUDA_VISIBLE_DEVICES": ",".join(gpus)}

    def job(self, job_id: int) -> db.Job:
        with self.sessions() as s:
            job = s.get(db.Job, job_id)
            assert job is not None, f"no job {job_id}"
            return job


async def serve_job_files(app, host: str = "127.0.0.1", port: int = 0) -> tuple[HTTPServer, str]:
    """The executor's job-files API (what job pods fetch their input from and hand their output
    to) for ``app`` (its store, backend and dispatcher) on ``host`` (``port``, else a free one): the
    server and the executor's URL, as KubernetesBackend.executor_url takes it."""
    (sock,) = bind_sockets(port, host)
    server = HTTPServer(web.Application([(r"/services/executor/api/jobs/([0-9]+)/files/(input|output)", JobFilesHandler)],
                                        executor=app, xsrf_cookies=True))
    server.add_sockets([sock])
    return server, f"http://{host}:{sock.getsockname()[1]}"
