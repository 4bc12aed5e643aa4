"""The chart's hub, run by the test as a local process against the live cluster.

What it runs is the hub pod of an installed release: hub/jupyterhub_config.py in Kubernetes mode,
the values file of the release's ConfigMap, and the hub container's env as the kubelet would
resolve it from the live Deployment and Secret. KubeSpawner talks to the API server with a token
of the release's hub ServiceAccount (TokenRequest), so the chart's Role is what authorises it.
configurable-http-proxy runs beside it, as the proxy pod would, with the release's proxy token.

Changed from the pod, because there are no Services, DNS or pod network here (and no executor): the
hub and proxy listen on loopback ports, spawns are not quota-checked, user pods reach the hub at
127.0.0.1 (NOTEBENCH_HUB_URL), the hub's database is SQLite (no PostgreSQL pod runs), and the test
drives it with an admin API token (NOTEBENCH_ADMIN_TOKEN, which the chart does not set).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import requests

from tests.kubernetes_live.chart import FULLNAME
from tests.kubernetes_live.cluster import Cluster, wait_until
from tests.kubernetes_live.control_plane import free_port
from tests.kubernetes_live.kubelet_double import KubeletDouble

HUB_CONFIG = Path(__file__).resolve().parents[2] / "hub" / "jupyterhub_config.py"
# The hub's start on a busy 2-core machine (JupyterHub, KubeSpawner's reflectors).
START_TIMEOUT = 120


class LiveHub:
    """``start()``: CHP and the hub; ``api()``: the hub's REST API as admin; ``stop()``."""

    def __init__(self, cluster: Cluster, node: KubeletDouble, namespace: str, directory: Path):
        self.cluster, self.node, self.namespace, self.dir = cluster, node, namespace, directory
        self.hub_port, self.proxy_port, self.api_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.proxy_port}"
        self.admin_token = secrets.token_hex(16)
        self.processes: list[subprocess.Popen] = []

    def pod_env(self) -> dict[str, str]:
        """The hub container's env, resolved from the live Deployment as the kubelet would."""
        deployment = self.cluster.apps.read_namespaced_deployment(f"{FULLNAME}-hub", self.namespace)
        template = self.cluster.api.sanitize_for_serialization(deployment.spec.template)
        pod = {"metadata": {"name": f"{FULLNAME}-hub-live", "namespace": self.namespace, "uid": "-"},
               "spec": template["spec"]}
        return self.node.container_env(pod, template["spec"]["containers"][0], "127.0.0.1")

    def start(self) -> LiveHub:
        self.dir.mkdir(parents=True, exist_ok=True)
        values = self.cluster.core.read_namespaced_config_map(f"{FULLNAME}-values", self.namespace).data
        (self.dir / "values.yaml").write_text(values["values.yaml"])
        config = self.dir / "jupyterhub_config.py"
        config.write_text(
            "# The chart's hub configuration; only where it listens differs (no Services here).\n"
            f"load_subconfig({str(HUB_CONFIG)!r})\n"
            f"c.JupyterHub.bind_url = 'http://127.0.0.1:{self.proxy_port}'\n"
            f"c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{self.hub_port}'\n"
            "# No executor runs beside this hub: spawns are not quota-checked (that check, shared with local\n"
            "# mode's spawner, is tested there), rather than each waiting for an executor that never answers.\n"
            "c.NotebenchKubeSpawner.executor_url = ''\n")
        env = {
            **{k: v for k, v in self.pod_env().items() if not k.startswith("KUBERNETES_")},
            "HOME": str(self.dir),
            "KUBECONFIG": str(self.cluster.service_account_kubeconfig(self.namespace, f"{FULLNAME}-hub",
                                                                      self.dir / "hub.kubeconfig")),
            "NOTEBENCH_VALUES": str(self.dir / "values.yaml"),
            "NOTEBENCH_DATA_DIR": str(self.dir),
            "NOTEBENCH_HUB_DB_URL": f"sqlite:///{self.dir}/jupyterhub.sqlite",
            "NOTEBENCH_HUB_URL": f"http://127.0.0.1:{self.hub_port}",
            "NOTEBENCH_PROXY_API_URL": f"http://127.0.0.1:{self.api_port}",
            "NOTEBENCH_PROXY_PUBLIC_URL": self.url,
            "NOTEBENCH_ADMIN_TOKEN": self.admin_token,
        }
        chp = Path(sys.prefix) / "bin" / "configurable-http-proxy"
        self._spawn("proxy", [str(chp), "--ip", "127.0.0.1", "--port", str(self.proxy_port),
                              "--api-ip", "127.0.0.1", "--api-port", str(self.api_port),
                              "--default-target", f"http://127.0.0.1:{self.hub_port}",
                              "--error-target", f"http://127.0.0.1:{self.hub_port}/hub/error"],
                    {"PATH": env["PATH"], "CONFIGPROXY_AUTH_TOKEN": env["CONFIGPROXY_AUTH_TOKEN"]})
        self._spawn("hub", [sys.executable, "-m", "jupyterhub", "-f", str(config)], env)
        wait_until(self.healthy, START_TIMEOUT, what=f"the hub to answer through the proxy (log: {self.dir}/hub.log)",
                   every=0.5)
        return self

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        with open(self.dir / f"{name}.log", "wb") as log:
            self.processes.append(subprocess.Popen(args, env=env, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL))

    def healthy(self) -> bool:
        for process in self.processes:
            assert process.poll() is None, f"{process.args[:3]} exited:\n{self.log()}"
        try:
            return requests.get(f"{self.url}/hub/health", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    def log(self) -> str:
        return "\n".join((self.dir / "hub.log").read_text(errors="replace").splitlines()[-40:])

    def api(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.url}/hub/api{path}", timeout=30,
                                headers={"Authorization": f"token {token or self.admin_token}"}, **kwargs)

    def spawn(self, user: str, profile: str) -> dict:
        """Start ``user``'s server with ``profile`` and wait until the hub says it is ready."""
        self.api("POST", f"/users/{user}")  # 201, or 409 when the user exists
        started = self.api("POST", f"/users/{user}/server", data=json.dumps({"profile": profile}))
        assert started.status_code in (201, 202), started.text

        def ready():
            server = self.api("GET", f"/users/{user}").json()["servers"].get("")
            assert server, f"{user}'s spawn failed:\n{self.log()}"  # a failed spawn removes the server
            return server if server.get("ready") else None
        return wait_until(ready, START_TIMEOUT, what=f"{user}'s server to be ready", every=0.5)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def token_for(hub: LiveHub, user: str) -> str:
    made = hub.api("POST", f"/users/{user}/tokens", data=json.dumps({"note": "kubernetes live test"}))
    assert made.status_code == 201, made.text
    return made.json()["token"]

