"""Fixtures of the live Kubernetes tier.

``kube_cluster`` is NOTEBENCH_KUBECONFIG's cluster when that is set (any real cluster: kind, k3d,
managed), else the tier's own control plane started from ../shared/k8s (control_plane.py). Without
either the tier skips and says what is missing; where CI is set it fails instead, since CI runs
from a clone with ../shared beside it.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import pytest
from kubernetes import client

from tests.kubernetes_live.chart import relaxed_chart
from tests.kubernetes_live.cluster import Cluster, StaticStorage
from tests.kubernetes_live.control_plane import ControlPlane, ControlPlaneUnavailable


def start_control_plane(directory: Path, admission_plugins: tuple[str, ...] = ()) -> Cluster:
    try:
        control_plane = ControlPlane(directory, admission_plugins).start()
    except ControlPlaneUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"the live Kubernetes tier cannot start its control plane: {e}")
        pytest.skip(f"no live Kubernetes cluster: {e}")
    return Cluster(control_plane.kubeconfig, control_plane)


def checkout_closed_to_pods() -> Path | None:
    """The first directory above this interpreter that other uids cannot search, if any. The test
    node runs pods' processes as their runAsUser with this interpreter (a clone made in a 0700
    directory, as `mktemp -d` makes them, fails every pod with a bare exit code)."""
    for directory in Path(sys.executable).parents:
        if not directory.stat().st_mode & stat.S_IXOTH:
            return directory
    return None


def require_pods_can_run_this_python() -> None:
    closed = checkout_closed_to_pods()
    if closed is not None:
        why = (f"the test node runs pods as other uids with {sys.executable}, but {closed} is closed to "
               f"them (mode {closed.stat().st_mode & 0o777:o}): `chmod o+x {closed}` or clone elsewhere")
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="session")
def node_dir():
    """Where test nodes keep pods' volumes, homes and logs: outside pytest's tmp dirs (0700),
    since pods run as other uids (e.g. 1000) and must reach their own directories."""
    path = Path(tempfile.mkdtemp(prefix="notebench-test-node-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory, node_dir):  # node_dir first: removed only once the cluster and its node are stopped
    if os.environ.get("NOTEBENCH_KUBECONFIG"):
        yield Cluster(Path(os.environ["NOTEBENCH_KUBECONFIG"]))
        return
    cluster = start_control_plane(tmp_path_factory.mktemp("kube"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def kube_node(kube_cluster, node_dir):
    """The test node (kubelet_double.py: a test double of the kubelet alone) of the tier's own control plane."""
    if kube_cluster.control_plane is None:
        pytest.skip("the test node runs pods as local processes: only on the tier's own control plane, "
                    "not on NOTEBENCH_KUBECONFIG's cluster")
    require_pods_can_run_this_python()
    return kube_cluster.start_node(node_dir / "main")


@pytest.fixture
def kube_namespace(kube_cluster):
    """A fresh namespace enforcing Pod Security ``restricted``, deleted afterwards."""
    name = kube_cluster.create_namespace()
    yield name
    kube_cluster.delete_namespace(name)


@pytest.fixture
def static_storage(kube_cluster, kube_namespace):
    """StaticStorage (cluster.py) for ``kube_namespace``: its ``class_name`` and ``add(claims)``."""
    storage = StaticStorage(kube_cluster, kube_namespace)
    yield storage
    storage.close()


@pytest.fixture(scope="session")
def live_chart(kube_cluster, tmp_path_factory) -> Path:
    """helm/notebench with its kubeVersion floor relaxed to the live cluster's version (chart.py)."""
    version = client.VersionApi(kube_cluster.api).get_code().git_version
    return relaxed_chart(tmp_path_factory.mktemp("chart"), version)


@pytest.fixture(scope="session")
def kube_cluster_owner_references_enforced(tmp_path_factory, node_dir):
    """A second control plane of its own, with OwnerReferencesPermissionEnforcement on (as OpenShift
    has it: setting blockOwnerDeletion needs `update` on the owner's finalizers), and its own test
    node. Started only by the tests that ask for it."""
    if os.environ.get("NOTEBENCH_KUBECONFIG"):
        pytest.skip("needs an admission plugin on the API server: only on the tier's own control plane")
    require_pods_can_run_this_python()
    cluster = start_control_plane(tmp_path_factory.mktemp("kube-owner-references"),
                                  ("OwnerReferencesPermissionEnforcement",))
    cluster.start_node(node_dir / "owner-references")
    yield cluster
    cluster.stop()
