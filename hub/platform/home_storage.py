"""Each user's home on Kubernetes: the PVC ``home-<slug>``, one definition for its two makers.

KubeSpawner makes it at a user's first spawn (hub/kubernetes.py configures it from this module);
the executor makes the same PVC for a job of a user who never started a server, whose pod would
otherwise wait for a claim that never comes (executor/backends/kubernetes/). Made either way, it
is the same object, so KubeSpawner finds and uses the one the executor made, and the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

from notebench.hub.platform.chart_values import required

# KubeSpawner's pvc_name_template ({username}: its safe slug of the user's name).
HOME_CLAIM = "home-{username}"
ACCESS_MODES = ("ReadWriteOnce",)
# KubeSpawner's component_label: its pods' app.kubernetes.io/component (and so its PVCs').
SINGLEUSER_COMPONENT = "singleuser"


def kubespawner_common_labels(release: str) -> dict:
    """KubeSpawner's common_labels: on the user pods and the home PVCs."""
    return {
        "app.kubernetes.io/name": "notebench",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/managed-by": "kubespawner",
    }


@dataclass(frozen=True)
class HomeStorage:
    """The home PVC's size and StorageClass (``singleuser.storage`` in the chart's values)."""

    size: str
    storage_class: str | None = None  # None: the cluster's default StorageClass

    @classmethod
    def from_values(cls, values: dict) -> "HomeStorage":
        storage = (values.get("singleuser") or {}).get("storage") or {}
        return cls(str(required(storage, "size", "singleuser.storage")), storage.get("storageClass") or None)
