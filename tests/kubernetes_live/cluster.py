"""The live cluster as the tests see it: a kubeconfig, API clients built from it, and waiting."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, TypeVar

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.kubernetes_live.control_plane import ControlPlane, kubeconfig
from tests.kubernetes_live.kubelet_double import KubeletDouble

T = TypeVar("T")
# Generous: the machine running the tier may be shared and slow.
DEFAULT_TIMEOUT = 60


def wait_until(condition: Callable[[], T], timeout: float = DEFAULT_TIMEOUT, what: str = "the condition",
               every: float = 0.2) -> T:
    """Poll ``condition`` until it returns something truthy (returned); AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


@dataclass
class Cluster:
    """A live cluster: the tier's own control plane (``control_plane`` set), or NOTEBENCH_KUBECONFIG's."""

    kubeconfig: Path
    control_plane: ControlPlane | None = None
    node: KubeletDouble | None = field(default=None, repr=False)

    @cached_property
    def api(self) -> client.ApiClient:
        return config.new_client_from_config(str(self.kubeconfig))

    @cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @cached_property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @cached_property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    @cached_property
    def rbac(self) -> client.RbacAuthorizationV1Api:
        return client.RbacAuthorizationV1Api(self.api)

    @cached_property
    def networking(self) -> client.NetworkingV1Api:
        return client.NetworkingV1Api(self.api)

    @cached_property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def start_node(self, directory: Path) -> KubeletDouble:
        """The test node (a double of the kubelet) on the tier's own control plane, started once."""
        assert self.control_plane is not None, "the test node runs only on the tier's own control plane"
        if self.node is None:
            self.node = KubeletDouble(self.api, self.control_plane.ca.issue, directory).start()
        return self.node

    def service_account_kubeconfig(self, namespace: str, account: str, path: Path) -> Path:
        """A kubeconfig with a TokenRequest token of ``account``: authorised exactly as its Roles say."""
        token = self.core.create_namespaced_service_account_token(
            account, namespace, {"spec": {"expirationSeconds": 3600}}).status.token
        path.write_text(kubeconfig(self.api.configuration.host, Path(self.api.configuration.ssl_ca_cert), token, account))
        return path

    def create_namespace(self, prefix: str = "nb", pod_security: str = "restricted") -> str:
        """A fresh namespace enforcing a Pod Security level, with its default ServiceAccount made
        (pods are refused until the controller manager has made it)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace({"metadata": {"name": name, "labels": {
            "pod-security.kubernetes.io/enforce": pod_security, "notebench.io/test": "kubernetes-live"}}})
        wait_until(lambda: self.exists(lambda: self.core.read_namespaced_service_account("default", name)),
                   what=f"the default ServiceAccount of namespace {name}")
        return name

    def delete_namespace(self, name: str) -> None:
        try:
            self.core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise

    @staticmethod
    def exists(read: Callable[[], object]) -> bool:
        try:
            read()
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
        if self.control_plane is not None:
            self.control_plane.stop()


class StaticStorage:
    """Volumes for the claims a test expects, since there is no provisioner on the tier's own control
    plane: a StorageClass of the namespace (no provisioner, expansion allowed) and a PersistentVolume
    bound ahead to each claim. Claims of that class bind to them on any cluster, also one with a
    default StorageClass of its own. ``close()`` removes them (they are cluster-wide)."""

    def __init__(self, cluster: Cluster, namespace: str):
        self.cluster, self.namespace = cluster, namespace
        self.storage = client.StorageV1Api(cluster.api)
        self.class_name = f"{namespace}-static"
        self.storage.create_storage_class({
            "metadata": {"name": self.class_name, "labels": {"notebench.io/test": "kubernetes-live"}},
            "provisioner": "kubernetes.io/no-provisioner", "allowVolumeExpansion": True,
            "volumeBindingMode": "Immediate"})
        self.volumes: list[str] = []

    def add(self, claims: dict[str, str]) -> None:
        """A volume for each claim name, of the given size (e.g. {"home-ada": "10Gi"})."""
        for claim, size in claims.items():
            name = f"{self.namespace}-{claim}"[:63]
            self.cluster.core.create_persistent_volume({
                "metadata": {"name": name, "labels": {"notebench.io/test": "kubernetes-live"}},
                "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                         "storageClassName": self.class_name, "persistentVolumeReclaimPolicy": "Retain",
                         # never mounted: the test node gives each claim a directory of its own
                         "hostPath": {"path": f"/nonexistent/{name}"},
                         "claimRef": {"namespace": self.namespace, "name": claim}}})
            self.volumes.append(name)

    def close(self) -> None:
        for name in self.volumes:
            self.ignore_missing(lambda: self.cluster.core.delete_persistent_volume(name))
        self.ignore_missing(lambda: self.storage.delete_storage_class(self.class_name))

    @staticmethod
    def ignore_missing(delete: Callable[[], object]) -> None:
        try:
            delete()
        except ApiException as e:
            if e.status != 404:
                raise

