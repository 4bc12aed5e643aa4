"""A model endpoint on the live cluster, invoked through the executor's router, with a real MLflow.

A Notebench hub runs here (local mode: its MLflow, its executor), except that its executor serves
models with the Kubernetes endpoint backend against the live cluster, as the executor's
ServiceAccount (the chart's Role). Deploying makes the version's Deployment, Secret and Service; the
Deployment controller, the scheduler and Pod Security admission put the pod on the test node, which
runs ``mlflow models serve`` as a local process at the pod's own loopback address, loading the model
from MLflow with the owner's token; its readiness probe makes it Ready. An invocation goes through
the hub's proxy to the executor's router and on to the scoring server.

The edge: with no cluster DNS and no kube-proxy here, the router cannot reach the Service's name
(``connect_to = "service"``, the in-cluster default); it connects to the ready pod by its IP
(``c.KubernetesEndpointBackend.connect_to = "pods"``, what an executor outside a cluster uses).
"""

from __future__ import annotations

import pytest

from tests.kubernetes_live.cluster import wait_until
from tests.kubernetes_live.live_executor import executor_account
from tests.support.endpoints import RUN, deploy, invoke, wait_status
from tests.support.launcher import BASE_CONFIG, Hub
from tests.support.registry import register_model

pytestmark = pytest.mark.kubernetes_live


@pytest.fixture(scope="module")
def k8s_hub(kube_cluster, kube_node, tmp_path_factory):
    namespace = kube_cluster.create_namespace()
    directory = tmp_path_factory.mktemp("endpoint-hub")
    kubeconfig = executor_account(kube_cluster, namespace, directory)
    kubeconfig.chmod(0o644)
    config = BASE_CONFIG + f"""
c.Executor.endpoint_backend_class = "kubernetes"
c.KubernetesSettings.namespace = {namespace!r}
c.KubernetesSettings.release = "nb"
c.KubernetesSettings.kubeconfig = {str(kubeconfig)!r}
c.KubernetesSettings.poll_seconds = 0.5
c.KubernetesEndpointBackend.image = "notebench/model-server:test"
c.KubernetesEndpointBackend.connect_to = "pods"
"""
    hub = Hub(directory / "data", config=config).start()
    hub.namespace = namespace
    yield hub
    hub.stop()
    kube_cluster.delete_namespace(namespace)


def test_an_endpoint_on_kubernetes_is_invoked_through_the_router(k8s_hub, kube_cluster):
    owner = f"k8s-ep-{RUN}"
    token = k8s_hub.new_user(owner)
    model = f"k8s-clf-{RUN}"
    payload = register_model(k8s_hub.url, token, model)
    name = f"k8s-{RUN}"
    deploy(k8s_hub, token, name, [{"model": model, "version": "1", "weight": 100}])
    wait_status(k8s_hub, name, token, timeout=300)
    (deployment,) = kube_cluster.apps.list_namespaced_deployment(k8s_hub.namespace).items
    (pod,) = [p for p in kube_cluster.core.list_namespaced_pod(k8s_hub.namespace).items if p.status.phase == "Running"]
    assert pod.spec.node_name == "notebench-test-node" and pod.metadata.labels["notebench.io/workload"] == "user"
    r = invoke(k8s_hub, name, token, payload)
    assert r.status_code == 200, r.text
    assert r.headers["X-Notebench-Model-Version"] == f"{model}/1"
    assert len(r.json()["predictions"]) == 3
    r = k8s_hub.executor("DELETE", f"endpoints/{name}", token)
    assert r.status_code in (200, 204), r.text
    # The Deployment, its Service and its Secret are deleted (the Secret explicitly: see endpoints.py).
    wait_until(lambda: not kube_cluster.apps.list_namespaced_deployment(k8s_hub.namespace).items
               and not kube_cluster.core.list_namespaced_service(k8s_hub.namespace).items
               and not [s for s in kube_cluster.core.list_namespaced_secret(k8s_hub.namespace).items
                        if s.metadata.name == deployment.metadata.name], what="the server's objects to go")
