"""The hub with KubeSpawner on the live cluster (hub.py): with the chart's ServiceAccount and Role,
it spawns a cpu and a gpu server as pods in a namespace enforcing Pod Security ``restricted``; the
scheduler places them on the test node by their requests (the gpu one takes an ``nvidia.com/gpu``),
each home PVC binds, the test node runs jupyterhub-singleuser as the chart's uid, and the servers
answer through configurable-http-proxy."""

from __future__ import annotations

import os

import pytest
import requests

from tests.kubernetes_live.chart import Release, live_values
from tests.kubernetes_live.cluster import StaticStorage, wait_until
from tests.kubernetes_live.hub import LiveHub, token_for
from tests.kubernetes_live.kubelet_double import NODE_NAME
from tests.kubernetes_live.network_policies import Allowed, allowed

pytestmark = [pytest.mark.kubernetes_live, pytest.mark.slow]  # it starts a hub of its own

USERS = {"ada": "cpu", "grace": "gpu"}
HOME_SIZE = "10Gi"  # singleuser.storage.size


@pytest.fixture(scope="module")
def namespace(kube_cluster):
    name = kube_cluster.create_namespace("nb-hub")
    yield name
    kube_cluster.delete_namespace(name)


@pytest.fixture(scope="module")
def homes(kube_cluster, namespace):
    """A volume for each user's home claim (no provisioner here)."""
    storage = StaticStorage(kube_cluster, namespace)
    storage.add({f"home-{user}": HOME_SIZE for user in USERS})
    yield storage
    storage.close()


@pytest.fixture(scope="module")
def live_hub(kube_cluster, kube_node, live_chart, namespace, homes, tmp_path_factory):
    release = Release(kube_cluster.kubeconfig, live_chart, namespace)
    # no culler (nothing idles here); the homes on the test's volumes
    release.install(live_values(cull={"enabled": False}, singleuser={"storage": {"storageClass": homes.class_name}}))
    release.close()
    hub = LiveHub(kube_cluster, kube_node, namespace, tmp_path_factory.mktemp("hub")).start()
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def servers(live_hub):
    """Each user's server started with their profile (the hub says ready)."""
    return {user: live_hub.spawn(user, profile) for user, profile in USERS.items()}


def test_the_hub_spawns_the_cpu_and_gpu_profiles_with_the_charts_role(kube_cluster, kube_node, namespace, live_hub,
                                                                       servers):
    core = kube_cluster.core
    for user, profile in USERS.items():
        pod = core.read_namespaced_pod(f"jupyter-{user}", namespace)
        assert pod.spec.node_name == NODE_NAME and pod.status.phase == "Running"
        limits = pod.spec.containers[0].resources.limits
        assert limits.get("nvidia.com/gpu") == ("1" if profile == "gpu" else None), limits
        claim = core.read_namespaced_persistent_volume_claim(f"home-{user}", namespace)
        assert claim.status.phase == "Bound"
        assert [v.persistent_volume_claim.claim_name for v in pod.spec.volumes if v.persistent_volume_claim] == [f"home-{user}"]
        # the server process runs as the chart's singleuser.uid
        if os.geteuid() == 0:
            process = kube_node.by_name[(namespace, f"jupyter-{user}")].containers[0].process
            assert os.stat(f"/proc/{process.pid}").st_uid == 1000

        # The user's server answers through the proxy, with the user's own token.
        answer = requests.get(f"{live_hub.url}/user/{user}/api/status", timeout=30,
                              headers={"Authorization": f"token {token_for(live_hub, user)}"})
        assert answer.status_code == 200, answer.text
        assert "started" in answer.json()

    # The scheduler counted the gpu server's GPU on the node.
    gpu_pods = [p for p in core.list_namespaced_pod(namespace).items
                if (p.spec.containers[0].resources.limits or {}).get("nvidia.com/gpu")]
    assert [p.metadata.name for p in gpu_pods] == ["jupyter-grace"]


def test_the_network_policies_let_user_servers_talk_only_to_the_platform(kube_cluster, namespace, servers):
    """Evaluated on the live objects: the chart's stored policies, KubeSpawner's pods with the labels
    they got, and the platform's (Pending) pods. Not enforced: no network plugin here."""
    api = kube_cluster.api
    policies = [api.sanitize_for_serialization(p)
                for p in kube_cluster.networking.list_namespaced_network_policy(namespace).items]
    pods = [api.sanitize_for_serialization(p) for p in kube_cluster.core.list_namespaced_pod(namespace).items]
    platform = {p["metadata"]["labels"]["app.kubernetes.io/component"]: p["metadata"]["name"] for p in pods
                if p["metadata"]["labels"].get("app.kubernetes.io/managed-by") == "Helm"}
    assert set(platform) == {"hub", "proxy", "executor", "mlflow", "postgresql"}
    for user in USERS:
        pod = next(p for p in pods if p["metadata"]["name"] == f"jupyter-{user}")
        assert allowed(policies, pods, pod, "ingress") == {
            Allowed(platform["hub"], 8888), Allowed(platform["proxy"], 8888)}
        egress = allowed(policies, pods, pod, "egress")
        to_pods = {a for a in egress if a.peer in platform.values() or a.peer.startswith("jupyter-")}
        assert to_pods == {Allowed(platform["hub"], 8081), Allowed(platform["proxy"], 8000),
                           Allowed(platform["executor"], 8090), Allowed(platform["mlflow"], 5000)}
        # the rest is DNS: port 53 only (wherever the cluster's resolver is)
        assert {a.port for a in egress - to_pods} == {53}


def test_stopping_a_server_deletes_its_pod_and_keeps_its_home(kube_cluster, namespace, live_hub, servers):
    core = kube_cluster.core
    stopped = live_hub.api("DELETE", "/users/ada/server")
    assert stopped.status_code in (202, 204), stopped.text
    wait_until(lambda: not kube_cluster.exists(lambda: core.read_namespaced_pod("jupyter-ada", namespace)),
               what="ada's pod to go (the test node ends its process)")
    assert core.read_namespaced_persistent_volume_claim("home-ada", namespace).status.phase == "Bound"
