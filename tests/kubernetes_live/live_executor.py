"""The executor's job dispatcher and Kubernetes backend, in this process, against the live cluster.

Everything the executor does on Kubernetes is real here: its calls go to the live API server as
the executor's ServiceAccount, authorised by exactly the chart's Role (EXECUTOR_RULES, which
tests/unit/test_helm_chart.py proves equal to the rendered Role); the job pods go through the
real scheduler, admission and Job controller to the test node (kubelet_double.py), which runs
them as local processes. Only the executor's process is not a pod: it runs here, and its job-files
API listens on loopback, where the job pods reach it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from notebench.executor.backends.kubernetes.jobs import KubeAPI, KubernetesBackend
from notebench.executor.backends.kubernetes.objects import EXECUTOR_RULES
from notebench.executor.db import Job
from notebench.executor.schemas import JobRequest
from notebench.hub.platform.profiles import Profiles
from tests.kubernetes_live.cluster import Cluster
from tests.support.dispatcher import DispatcherApp, serve_job_files

RELEASE = "nb"
PROFILES = [
    {"name": "cpu", "cpu_limit": 1, "mem_limit": "1G", "default": True},
    {"name": "gpu", "cpu_limit": 1, "mem_limit": "1G", "gpus": 1},
    # No node has this label: the scheduler can never place its pods.
    {"name": "nowhere", "cpu_limit": 1, "mem_limit": "1G", "node_selector": {"notebench.io/test-node": "none"}},
]
DEADLINE = 180  # seconds any awaited condition gets: the machine may be shared and slow


def executor_account(cluster: Cluster, namespace: str, directory: Path) -> Path:
    """The executor's ServiceAccount with the chart's Role for it; a kubeconfig with its token."""
    name = f"{RELEASE}-executor"
    cluster.core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    cluster.rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": EXECUTOR_RULES})
    cluster.rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}})
    return cluster.service_account_kubeconfig(namespace, name, directory / "executor.kubeconfig")


def notebook(*sources: str) -> dict:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@dataclass
class LiveExecutor:
    """One executor (its id, its store and job directories under ``data_dir``), started with ``start``."""

    namespace: str
    kubeconfig: Path
    data_dir: Path
    executor_id: str = "nb-executor-a"
    settings: dict = field(default_factory=dict)  # more KubernetesBackend traits
    port: int = 0  # of its job-files API: a restarted executor's is its predecessor's (its Service's, in a cluster)
    app: DispatcherApp | None = None

    async def start(self) -> LiveExecutor:
        backend = KubernetesBackend(
            profiles=Profiles(profiles=PROFILES), namespace=self.namespace, release=RELEASE, image="notebench/user:test",
            executor_id=self.executor_id, token_key="live-test-key", poll_seconds=0.5, **self.settings)
        backend.api = KubeAPI(kubeconfig=str(self.kubeconfig))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.app = DispatcherApp(self.data_dir, backend, self.executor_id)
        self.server, backend.executor_url = await serve_job_files(self.app, port=self.port)
        self.port = int(backend.executor_url.rsplit(":", 1)[1])
        self.app.start()
        return self

    @property
    def dispatcher(self):
        assert self.app is not None and self.app.dispatcher is not None, "start() first"
        return self.app.dispatcher

    async def submit(self, *sources: str, owner: str = "ada", **fields) -> int:
        request = JobRequest.model_validate({"notebook": notebook(*sources), **fields})
        return (await self.dispatcher.submit(owner, request)).id

    def job(self, job_id: int) -> Job:
        assert self.app is not None
        return self.app.job(job_id)

    async def until(self, condition, what: str, timeout: float = DEADLINE):
        deadline = time.monotonic() + timeout
        while not (result := condition()):
            assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
            await asyncio.sleep(0.2)
        return result

    async def ended(self, job_id: int, timeout: float = DEADLINE) -> Job:
        await self.until(lambda: self.job(job_id).status not in ("queued", "running"), f"job {job_id} to end", timeout)
        return self.job(job_id)

    async def stop(self) -> None:
        """As the executor process ends: its running jobs run on (a restart finds them)."""
        await self.dispatcher.close()
        self.server.stop()
