"""helm/notebench installed into the live cluster with Helm's own Go SDK (helm-python-sdk), as
`helm install/upgrade/uninstall` would.

The chart's ``kubeVersion`` floor (>=1.28) excludes the tier's own control plane (1.24.0-alpha,
the newest Kubernetes that builds on these machines). The tests install a copy of the chart whose
floor is relaxed to what the cluster reports; the chart itself keeps its floor, and what ran here
ran on 1.24 (README "On Kubernetes").
"""

from __future__ import annotations

import shutil
from pathlib import Path

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "notebench"
RELEASE = "nb"
FULLNAME = f"{RELEASE}-notebench"
# The platform's own pods (hub, proxy, executor, MLflow, PostgreSQL) need the chart's images, which
# are not here: pinned to a node that does not exist they stay Pending, and the test node never
# tries to run them. Everything else about them is real: admission, the controllers, the volumes.
NO_NODE = {"notebench.io/test-node": "none"}
PLATFORM = ("hub", "proxy", "executor", "mlflow", "postgresql")


def relaxed_chart(directory: Path, kube_version: str) -> Path:
    """A copy of the chart whose kubeVersion admits ``kube_version`` (e.g. "1.24.0-alpha.1")."""
    target = directory / "notebench"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(CHART, target)
    chart_yaml = target / "Chart.yaml"
    metadata = yaml.safe_load(chart_yaml.read_text())
    major, minor = kube_version.lstrip("v").split(".")[:2]
    metadata["kubeVersion"] = f">={major}.{minor}.0-0"
    chart_yaml.write_text(yaml.safe_dump(metadata, sort_keys=False))
    return target


def live_values(*layers: dict, **overrides) -> dict:
    """Values for a live install: the platform pinned to no node, then each layer and the keyword
    values merged on top (dicts merge, anything else replaces)."""
    values: dict = {component: {"nodeSelector": NO_NODE} for component in PLATFORM}
    for layer in [*layers, overrides]:
        values = merge(values, layer)
    return values


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class Release:
    """One release of the chart in one namespace."""

    def __init__(self, kubeconfig: Path, chart: Path, namespace: str, name: str = RELEASE):
        self.config = helm.Config(kubeconfig_path=kubeconfig, namespace=namespace)
        self.chart = chart
        self.namespace = namespace
        self.name = name

    def install(self, values: dict) -> dict:
        return self.config.install(self.chart, self.name, values, namespace=self.namespace, timeout=120)

    def upgrade(self, values: dict) -> dict:
        return self.config.upgrade(self.chart, self.name, values, namespace=self.namespace, timeout=120)

    def uninstall(self) -> dict:
        return self.config.uninstall(self.name, timeout=120)

    def close(self) -> None:
        self.config.close()
