"""The notebook execution service: a JupyterHub-managed tornado app (``python -m notebench.executor``).

Configured like JupyterHub, with traitlets: the operator's config file (the one given to
`notebench up --config`) is read too, so ``c.Profiles``, ``c.GPUInventory``, ``c.UserAccounts``
are the hub's own and ``c.Executor`` / ``c.LocalBackend`` tune the executor.

``c.Executor.backend_class`` and ``c.Executor.endpoint_backend_class`` choose where jobs and
scoring servers run ("local" processes, the default, or "kubernetes"). On Kubernetes
(``NOTEBENCH_MODE=kubernetes``) the chart's values file configures the executor
(executor/backends/kubernetes/jobs.py, ``config_from_values``; docs/kubernetes.md).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

from jupyter_client.kernelspec import KernelSpecManager
from jupyterhub.services.auth import HubOAuth
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Integer, Type, Unicode, default
from traitlets.config import Application

from notebench.executor import audit, db
from notebench.executor.api import routes
from notebench.executor.backends.base import Backend, EndpointBackend
from notebench.executor.background import BackgroundTasks
from notebench.executor.jobs.dispatcher import Dispatcher
from notebench.executor.jobs.fair_share import FairShare
from notebench.executor.metrics import Metrics
from notebench.executor.quotas import Quotas
from notebench.executor.schedules.due import submit_due
from notebench.executor.schedules.promotion import Promotions
from notebench.executor.services import HubTokens, MlflowRuns
from notebench.executor.serving.alerts import Alerts
from notebench.executor.serving.endpoints import Endpoints
from notebench.executor.serving.monitoring import Monitoring
from notebench.executor.usage import Usage
from notebench.hub.platform.accounts import UserAccounts
from notebench.hub.platform.environment import workload_env
from notebench.hub.platform.gpus import GPUInventory
from notebench.hub.platform.profiles import Profiles
from notebench.hub.platform.service_auth import TOKEN_CACHE_SECONDS


class NamedType(Type):
    """A class trait that also takes a short name for a class (as JupyterHub's spawner_class does)."""

    def __init__(self, names: dict[str, str], **kwargs):
        self.names = names
        super().__init__(**kwargs)

    def validate(self, obj, value):
        return super().validate(obj, self.names.get(value, value))


class Executor(Application):
    name = "notebench-executor"

    backend_class = NamedType(
        {"local": "notebench.executor.backends.local.LocalBackend",
         "kubernetes": "notebench.executor.backends.kubernetes.KubernetesBackend"},
        default_value="notebench.executor.backends.local.LocalBackend",
        klass=Backend,
        help="Where jobs run: 'local', 'kubernetes', or a Backend subclass (or its import name).",
    ).tag(config=True)

    endpoint_backend_class = NamedType(
        {"local": "notebench.executor.backends.local.LocalEndpointBackend",
         "kubernetes": "notebench.executor.backends.kubernetes.KubernetesEndpointBackend"},
        default_value="notebench.executor.backends.local.LocalEndpointBackend",
        klass=EndpointBackend,
        help="Where scoring servers run: 'local', 'kubernetes', or an EndpointBackend subclass.",
    ).tag(config=True)

    data_dir = Unicode(help="Notebench's data dir (NOTEBENCH_DATA_DIR).").tag(config=True)

    @default("data_dir")
    def _data_dir(self):
        return os.environ["NOTEBENCH_DATA_DIR"]

    db_url = Unicode(help="SQLAlchemy URL of the jobs database (default: SQLite in the data dir).").tag(config=True)

    @default("db_url")
    def _db_url(self):
        return f"sqlite:///{Path(self.data_dir) / 'executor.sqlite'}"

    executor_id = Unicode(
        help="Names this executor in the jobs it runs (default: POD_NAME on Kubernetes, else the host name)."
    ).tag(config=True)

    @default("executor_id")
    def _executor_id(self):
        return os.environ.get("POD_NAME") or socket.gethostname()

    max_running_jobs = Integer(4, help="Jobs running at once, in all.").tag(config=True)
    max_running_jobs_per_user = Integer(2, help="Jobs running at once per user.").tag(config=True)
    max_body_bytes = Integer(
        16 * 1024 * 1024,
        help="Largest request body, in bytes, on every executor API (jobs, endpoints, invocations): a larger one is "
        "answered with a JSON 413.",
    ).tag(config=True)
    schedule_check_seconds = Integer(5, help="How often due schedules are looked for.").tag(config=True)
    audit_retention_days = Integer(
        400, help="Days the audit log keeps an entry (GET /api/audit); older ones are dropped hourly."
    ).tag(config=True)

    public_url = Unicode(help="Public base URL (for MLFLOW_TRACKING_URI in jobs).").tag(config=True)

    @default("public_url")
    def _public_url(self):
        return os.environ.get("NOTEBENCH_PUBLIC_URL", "")

    mlflow_url = Unicode(help="MLflow service URL the executor itself talks to ('' : no MLflow runs).").tag(config=True)

    @default("mlflow_url")
    def _mlflow_url(self):
        return os.environ.get("NOTEBENCH_MLFLOW_URL", "")

    job_mlflow_url = Unicode(help="MLflow tracking URI given to jobs (default: the public URL's /services/mlflow).").tag(
        config=True
    )

    @default("job_mlflow_url")
    def _job_mlflow_url(self):
        return f"{self.public_url}/services/mlflow"

    def initialize(self, argv=None):
        super().initialize(argv)
        if os.environ.get("NOTEBENCH_MODE") == "kubernetes":
            from notebench.executor.backends.kubernetes.jobs import config_from_values

            self.update_config(config_from_values(os.environ))
        user_config = os.environ.get("NOTEBENCH_USER_CONFIG")
        if user_config:
            self.load_config_file(user_config)
        data = Path(self.data_dir)
        self.config.GPUInventory.setdefault("db_url", f"sqlite:///{data / 'notebench.sqlite'}")
        self.config.UserAccounts.setdefault("shared_homes_dir", str(data / "homes"))
        self.config.LocalEndpointBackend.setdefault("servers_dir", str(data / "executor" / "endpoints"))
        self.sessions = db.connect(self.db_url)
        # The one HubOAuth of the process (the API's, the router's, the OAuth callback's), configured
        # from the JUPYTERHUB_* environment the hub gives services; its cache bounds how long a
        # revoked token still works.
        self.hub_auth = HubOAuth.instance(cache_max_age=TOKEN_CACHE_SECONDS)
        self.profiles = Profiles(parent=self)
        self.gpus = GPUInventory(parent=self)
        self.accounts = UserAccounts(parent=self)
        self.backend = self.backend_class(parent=self, accounts=self.accounts, profiles=self.profiles)
        self.endpoint_backend = self.endpoint_backend_class(parent=self, accounts=self.accounts, profiles=self.profiles)
        self.tokens = HubTokens(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
        self.mlflow = MlflowRuns(self.mlflow_url, self.tokens) if self.mlflow_url else None
        self.dispatcher = Dispatcher(self)
        self.metrics = Metrics(self.sessions, self.gpus)
        self.quotas = Quotas(self.sessions, self.profiles, self.tokens, self.metrics, parent=self)
        self.fair_share = FairShare(self.sessions, self.profiles, parent=self)
        self.usage = Usage(self, parent=self)  # c.Usage: the meter's interval, prices per profile-hour
        self.service_prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/executor/")
        self.endpoints = Endpoints(self)
        self.monitoring = Monitoring(self)  # c.Monitoring: drift windows and thresholds (read on request)
        self.alerts = Alerts(self)  # c.Alerts: how often rules are checked, webhook hosts and retries
        self.promotions = Promotions(self)  # gated retraining: schedules' promotion decisions
        self._kernels: tuple[float, set] = (0.0, set())

    def kernel_names(self) -> set:
        checked, names = self._kernels
        if time.monotonic() - checked > 60:
            names = set(KernelSpecManager().find_kernel_specs())
            self._kernels = (time.monotonic(), names)
        return names

    async def runner_env(self, owner: str, profile, gpus: list[str]) -> dict:
        if not self.mlflow:
            return workload_env(profile, gpus=gpus)
        return workload_env(profile, gpus=gpus, mlflow_url=self.job_mlflow_url,
                            mlflow_token=await self.tokens.token_for(owner))

    async def adopt(self) -> None:
        """Take over the running jobs and the scoring servers of executors that are gone: on
        Kubernetes the executor pod this one replaced (a Deployment's new pod has a new POD_NAME)."""
        import sqlalchemy as sa

        with self.sessions() as s:
            others = set(s.scalars(sa.select(db.Job.executor_id).where(db.claimed()).distinct()))
            others |= set(s.scalars(sa.select(db.ScoringServer.executor_id).distinct()))
        others -= {None, self.executor_id}
        gone = await self.backend.gone_executors(others) if others else set()
        if gone:
            with self.sessions() as s:
                s.execute(sa.update(db.Job).where(db.claimed(), db.Job.executor_id.in_(gone))
                          .values(executor_id=self.executor_id))
                s.execute(sa.update(db.ScoringServer).where(db.ScoringServer.executor_id.in_(gone))
                          .values(executor_id=self.executor_id))
                s.commit()
            self.log.info("took over the jobs and scoring servers of executor(s) gone: %s", ", ".join(sorted(gone)))

    async def schedule_loop(self) -> None:
        while True:
            try:
                await submit_due(self.sessions, self.dispatcher)
                await self.dispatcher.dispatch()  # also retries jobs waiting for a GPU
            except Exception:
                self.log.exception("schedule check failed")
            await asyncio.sleep(self.schedule_check_seconds)

    async def serve(self) -> None:
        prefix = self.service_prefix
        url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8090"))
        app = web.Application(
            routes(prefix),
            executor=self,
            prefix=prefix,
            cookie_secret=os.urandom(32),
            xsrf_cookies=True,
        )
        server = HTTPServer(app, max_body_size=self.max_body_bytes + 1, xheaders=True)
        await self.adopt()
        await self.endpoints.recover()  # before listening: no invocation finds an endpoint unknown
        server.listen(url.port or 0, url.hostname)  # no port in the URL: any free one, as tornado did with None
        await self.dispatcher.recover()
        loops = BackgroundTasks()
        for loop in (self.schedule_loop(), self.endpoints.flush_loop(), self.endpoints.watch_loop(), self.endpoints.purge_loop(),
                     audit.purge_loop(self.sessions, self.audit_retention_days), self.usage.loop(), self.monitoring.keep_loop(),
                     self.alerts.check_loop(), self.alerts.deliver_loop(),
                     self.promotions.loop()):
            loops.start(loop)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        self.log.info("Notebench executor listening on %s%s", url.geturl().rstrip("/"), prefix)
        await stop.wait()
        await loops.close()
        server.stop()
        await self.dispatcher.close()  # running jobs keep running; a restart re-attaches to them
        await self.endpoints.close()  # so do scoring servers: a restart adopts them

    def start(self):
        asyncio.run(self.serve())


main = Executor.launch_instance
