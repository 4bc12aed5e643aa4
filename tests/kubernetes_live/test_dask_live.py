"""A distributed job on the live cluster, with the real dask-kubernetes operator (kopf, run out of
cluster in this process against the live API server), up to where the missing cluster DNS stops it.

What runs for real: the executor (live_executor.py) makes the job's Job, Secret, NetworkPolicy
and DaskCluster as its ServiceAccount; the operator makes the scheduler's Deployment and Service
and the worker group's Deployment from it; the Deployment and ReplicaSet controllers, the
scheduler and Pod Security admission place the pods on the test node, which runs ``dask
scheduler`` and ``dask worker`` as local processes, each at its own loopback address.

The edge: the workers and the job's runner reach the scheduler by its Service's DNS name
(``<cluster>-scheduler.<namespace>[.svc.cluster.local]``), and this control plane has no cluster DNS
and no kube-proxy; nor can its Service list the scheduler pod: the endpoints controller's Endpoints
and EndpointSlices refuse the test node's loopback pod addresses ("may not be in the loopback range"). So the test checks the scheduler answering at its pod's address, and that the
name the others are given does not resolve here; a worker joining it and the notebook computing on
the cluster are not run. Cancelling the job then deletes the DaskCluster and everything it made.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import dask_kubernetes
import kopf
import pytest
import yaml
from kubernetes.client.rest import ApiException

from tests.kubernetes_live.cluster import wait_until
from tests.kubernetes_live.live_executor import LiveExecutor, executor_account

pytestmark = pytest.mark.kubernetes_live

CRDS = Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm" / "dask-kubernetes-operator" / "crds"


def install_crds(cluster) -> None:
    from kubernetes import client

    extensions = client.ApiextensionsV1Api(cluster.api)
    for path in sorted(CRDS.glob("*.yaml")):
        try:
            extensions.create_custom_resource_definition(yaml.safe_load(path.read_text()))
        except ApiException as e:
            if e.status != 409:  # installed by an earlier test of the session
                raise
    wait_until(lambda: all(c.status.conditions and any(x.type == "Established" and x.status == "True"
                                                       for x in c.status.conditions)
                           for c in extensions.list_custom_resource_definition().items
                           if c.spec.group == "kubernetes.dask.org"), what="the Dask CRDs to be established")


@pytest.fixture
def dask_operator(kube_cluster, kube_namespace, monkeypatch):
    """dask-kubernetes' own operator (its kopf handlers, dask_kubernetes.operator.controller) for
    ``kube_namespace``, in a thread of this process, logged in with the cluster's admin kubeconfig."""
    install_crds(kube_cluster)
    # kopf's own login (its kubeconfig login) and kr8s (the operator's client) read it.
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    import dask_kubernetes.operator.controller  # noqa: F401  (registers the operator's handlers with kopf)

    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(kopf.operator(
        standalone=True, namespaces=[kube_namespace], stop_flag=stop, ready_flag=ready)),
        name="dask-operator", daemon=True)
    thread.start()
    assert ready.wait(60), "the Dask operator did not start"
    yield
    stop.set()
    thread.join(30)


def pods(cluster, namespace: str, component: str) -> list:
    return cluster.core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/component={component}").items


def test_a_distributed_jobs_cluster_runs_on_the_node_up_to_the_missing_cluster_dns(
        kube_cluster, kube_node, kube_namespace, static_storage, dask_operator, tmp_path):
    static_storage.add({"home-ada": "1Gi"})
    executor = LiveExecutor(kube_namespace, executor_account(kube_cluster, kube_namespace, tmp_path), tmp_path / "data",
                            settings={"home_storage_size": "1Gi", "home_storage_class": static_storage.class_name})
    ns = kube_namespace

    async def scenario():
        await executor.start()
        job_id = await executor.submit("from distributed import Client\nclient = Client(dask_scheduler_address)\n"
                                       "print(client.submit(sum, [1, 2]).result())", workers=2, timeout_seconds=600)

        def running(component: str, n: int):
            found = [p for p in pods(kube_cluster, ns, component) if p.status.phase == "Running"]
            return found if len(found) >= n else None

        schedulers = await executor.until(lambda: running("dask-scheduler", 1), "the scheduler pod to run")
        workers = await executor.until(lambda: running("dask-worker", 2), "two worker pods to run")
        service = kube_cluster.core.read_namespaced_service(f"nb-dask-{job_id}-scheduler", ns)
        scheduler_ip = schedulers[0].status.pod_ip
        info = await asyncio.to_thread(scheduler_answers, f"tcp://{scheduler_ip}:8786")
        state = executor.job(job_id).status
        await executor.dispatcher.cancel(job_id)
        ended = await executor.ended(job_id, timeout=60)
        await executor.stop()
        return job_id, schedulers[0], workers, service, scheduler_ip, info, state, ended

    job_id, scheduler, workers, service, scheduler_ip, info, state, ended = asyncio.run(scenario())
    # Made by the operator from the executor's DaskCluster: the job's labels, inside the user boundary.
    for pod in (scheduler, *workers):
        assert pod.metadata.labels["notebench.io/job-id"] == str(job_id)
        assert pod.metadata.labels["notebench.io/workload"] == "user"
        assert pod.spec.node_name == "notebench-test-node"
    assert service.spec.selector == {"dask.org/cluster-name": f"nb-dask-{job_id}", "dask.org/component": "scheduler"}
    assert info["type"] == "Scheduler"  # the scheduler itself, at its pod's address
    env = {e.name: e.value for e in workers[0].spec.containers[0].env}
    scheduler_name = env["DASK_SCHEDULER_ADDRESS"].split("://")[1].rsplit(":", 1)[0]
    assert scheduler_name == f"{service.metadata.name}.{kube_namespace}.svc.cluster.local"
    with pytest.raises(socket.gaierror):  # the edge: no cluster DNS here, so no worker reaches it
        socket.getaddrinfo(scheduler_name, 8786)
    assert state == "running"  # its runner waits for the scheduler it cannot resolve
    assert ended.status == "cancelled"
    # The job's end deletes its DaskCluster: the operator's Deployments and their pods go with it.
    wait_until(lambda: not kube_cluster.custom.list_namespaced_custom_object(
        "kubernetes.dask.org", "v1", kube_namespace, "daskclusters")["items"], what="the DaskCluster to go")
    wait_until(lambda: not kube_cluster.core.list_namespaced_pod(kube_namespace).items, timeout=120, what="the pods to go")


def scheduler_answers(address: str) -> dict:
    from distributed import Client

    with Client(address, timeout=30) as client:
        return client.scheduler_info()
