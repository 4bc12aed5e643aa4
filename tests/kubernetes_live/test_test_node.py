"""The test node (kubelet_double.py, a test double of the kubelet) under the real control plane:
what the other live tests rely on. Pods go through the real scheduler, admission (Pod Security
``restricted``) and controllers; the node runs them as local processes."""

from __future__ import annotations

import json
import os
import sys
import urllib.request

import psutil
import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.kubernetes_live.cluster import wait_until
from tests.kubernetes_live.kubelet_double import NODE_NAME

pytestmark = pytest.mark.kubernetes_live

UID = 4321  # no account on this machine has it: the node runs processes by number, as a runtime does


def container(name: str, code: str, **extra) -> dict:
    """A container that runs Python ``code``, meeting Pod Security ``restricted``."""
    return {"name": name, "image": "python:3.11-slim", "command": [sys.executable, "-c", code],
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                "runAsNonRoot": True, "runAsUser": UID, "seccompProfile": {"type": "RuntimeDefault"}},
            **extra}


def pod(name: str, *containers: dict, restart: str = "Never") -> dict:
    return {"metadata": {"name": name}, "spec": {"restartPolicy": restart, "containers": list(containers),
                                                 "terminationGracePeriodSeconds": 5}}


def phase(cluster, namespace: str, name: str, *phases: str):
    found = cluster.core.read_namespaced_pod(name, namespace)
    return found if found.status.phase in phases else None


def test_the_node_is_registered_ready_with_cpu_memory_and_gpus(kube_cluster, kube_node):
    node = kube_cluster.core.read_node(NODE_NAME)
    assert node.status.allocatable == {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "2", "pods": "110"}
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    assert not node.spec.taints  # TaintNodesByCondition's not-ready taint is lifted


def test_a_pod_runs_as_its_run_as_user_with_env_from_secrets_config_maps_and_fields(kube_cluster, kube_node, kube_namespace):
    core, ns = kube_cluster.core, kube_namespace
    core.create_namespaced_secret(ns, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "settings"}, "data": {"mode": "fast", "level": "3"}})
    code = ("import json, os; print(json.dumps({'uid': os.getuid(), 'groups': os.getgroups(), "
            "'env': {k: v for k, v in os.environ.items() if k.startswith('T_')}}))")
    env = [{"name": "T_TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
           {"name": "T_MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
           {"name": "T_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "T_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
           {"name": "T_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "T_URL", "value": "http://$(T_IP):8000/$(T_MODE)"}]
    env_from = [{"configMapRef": {"name": "settings"}, "prefix": "T_CM_"}]
    spec = pod("envs", container("main", code, env=env, envFrom=env_from))
    spec["spec"]["securityContext"] = {"runAsUser": 1, "fsGroup": 2000}  # the container's runAsUser wins
    core.create_namespaced_pod(ns, spec)

    done = wait_until(lambda: phase(kube_cluster, ns, "envs", "Succeeded", "Failed"), what="the pod to end")
    assert done.status.phase == "Succeeded", done.status
    assert done.spec.node_name == NODE_NAME
    terminated = done.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    # The log, read as `kubectl logs` does: API server -> the node's kubelet endpoint.
    seen = json.loads(core.read_namespaced_pod_log("envs", ns, container="main"))
    ip = done.status.pod_ip
    assert ip.startswith("127.") and ip != "127.0.0.1"
    assert seen["env"] == {"T_TOKEN": "s3cret", "T_MODE": "fast", "T_POD": "envs", "T_NAMESPACE": ns, "T_IP": ip,
                           "T_URL": f"http://{ip}:8000/fast", "T_CM_mode": "fast", "T_CM_level": "3"}
    if os.geteuid() == 0:
        assert seen["uid"] == UID
        assert 2000 in seen["groups"]  # fsGroup


def test_a_missing_secret_holds_the_container_until_it_exists(kube_cluster, kube_node, kube_namespace):
    core, ns = kube_cluster.core, kube_namespace
    env = [{"name": "T_TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}]
    core.create_namespaced_pod(ns, pod("waits", container("main", "import os; print(os.environ['T_TOKEN'])", env=env)))

    def waiting_reason():
        statuses = core.read_namespaced_pod("waits", ns).status.container_statuses or []
        return statuses and statuses[0].state.waiting and statuses[0].state.waiting.reason
    assert wait_until(waiting_reason, what="a waiting reason") == "CreateContainerConfigError"
    core.create_namespaced_secret(ns, {"metadata": {"name": "later"}, "stringData": {"token": "now"}})
    wait_until(lambda: phase(kube_cluster, ns, "waits", "Succeeded"), what="the pod to run once the Secret exists")
    assert core.read_namespaced_pod_log("waits", ns) == "now\n"


def test_jobs_complete_and_fail_with_the_exit_code(kube_cluster, kube_node, kube_namespace):
    """The real Job controller, fed by the node's reports."""
    ns = kube_namespace
    for name, code in (("ok", "print('done')"), ("fails", "import sys; sys.exit(3)")):
        kube_cluster.batch.create_namespaced_job(ns, {"metadata": {"name": name}, "spec": {
            "backoffLimit": 0, "template": pod(name, container("main", code))}})

    def condition(name):
        job = kube_cluster.batch.read_namespaced_job(name, ns)
        return next((c.type for c in job.status.conditions or [] if c.status == "True"), None)
    assert wait_until(lambda: condition("ok"), what="job ok to end") == "Complete"
    assert wait_until(lambda: condition("fails"), what="job fails to end") == "Failed"
    failed = kube_cluster.core.list_namespaced_pod(ns, label_selector="job-name=fails").items[0]
    assert failed.status.phase == "Failed"
    assert failed.status.container_statuses[0].state.terminated.exit_code == 3


def test_pods_serve_on_the_same_port_at_their_own_addresses_and_are_ready_by_their_probe(
        kube_cluster, kube_node, kube_namespace):
    core, ns = kube_cluster.core, kube_namespace
    serve = ("import http.server, os, sys\n"
             "class H(http.server.BaseHTTPRequestHandler):\n"
             "    def do_GET(self):\n"
             "        self.send_response(200); self.end_headers(); self.wfile.write(os.environ['HOSTNAME'].encode())\n"
             "http.server.HTTPServer((sys.argv[1], 8080), H).serve_forever()\n")
    probe = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}
    for name in ("web-a", "web-b"):
        c = container("web", serve, args=["0.0.0.0"], ports=[{"name": "http", "containerPort": 8080}],
                      readinessProbe=probe)
        core.create_namespaced_pod(ns, pod(name, c, restart="Always"))
    for name in ("web-a", "web-b"):
        ready = wait_until(lambda: [p for p in [core.read_namespaced_pod(name, ns)] if p.status.conditions and any(
            c.type == "Ready" and c.status == "True" for c in p.status.conditions)], what=f"{name} to be Ready")[0]
        with urllib.request.urlopen(f"http://{ready.status.pod_ip}:8080/", timeout=10) as answer:
            assert answer.read() == name.encode()


def test_logs_follow_and_tail_and_deletion_stops_the_process(kube_cluster, kube_node, kube_namespace):
    core, ns = kube_cluster.core, kube_namespace
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: (print('got SIGTERM', flush=True), sys.exit(0)))\n"
            "for i in range(5): print(f'line {i}', flush=True)\n"
            "while True: time.sleep(60)\n")
    core.create_namespaced_pod(ns, pod("talks", container("main", code)))
    wait_until(lambda: phase(kube_cluster, ns, "talks", "Running"), what="the pod to run")
    wait_until(lambda: core.read_namespaced_pod_log("talks", ns).count("\n") == 5, what="five lines of log")
    assert core.read_namespaced_pod_log("talks", ns, tail_lines=2) == "line 3\nline 4\n"

    stream = core.read_namespaced_pod_log("talks", ns, follow=True, _preload_content=False)
    run = kube_node.by_name[(ns, "talks")]
    core.delete_namespaced_pod("talks", ns, grace_period_seconds=5)
    # Following ends when the container does: here at its SIGTERM, well before the grace period.
    followed = stream.data.decode()
    assert followed == "".join(f"line {i}\n" for i in range(5)) + "got SIGTERM\n"
    wait_until(lambda: not kube_cluster.exists(lambda: core.read_namespaced_pod("talks", ns)),
               what="the pod object to go once its process is gone")
    assert run.containers[0].process.poll() == 0


def test_init_containers_run_first_and_share_an_empty_dir_at_their_working_dir(kube_cluster, kube_node, kube_namespace):
    """A volume cannot be mounted at its mountPath for a local process: a workingDir under it is its directory."""
    core, ns = kube_cluster.core, kube_namespace
    mount = {"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}], "workingDir": "/scratch/here"}
    spec = pod("shares",
               container("main", "print(open('note').read())", **mount))
    spec["spec"]["initContainers"] = [container("prepare", "open('note', 'w').write('from the init container')", **mount)]
    spec["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    core.create_namespaced_pod(ns, spec)
    done = wait_until(lambda: phase(kube_cluster, ns, "shares", "Succeeded", "Failed"), what="the pod to end")
    assert done.status.phase == "Succeeded", done.status
    assert done.status.init_container_statuses[0].state.terminated.exit_code == 0
    assert core.read_namespaced_pod_log("shares", ns, container="main") == "from the init container\n"


def test_processes_a_container_leaves_behind_end_with_it(kube_cluster, kube_node, kube_namespace):
    core, ns = kube_cluster.core, kube_namespace
    code = ("import subprocess, sys\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
            "print(child.pid)\n")
    core.create_namespaced_pod(ns, pod("leaves", container("main", code)))
    wait_until(lambda: phase(kube_cluster, ns, "leaves", "Succeeded"), what="the pod to end")
    child = int(core.read_namespaced_pod_log("leaves", ns))

    def gone():
        try:
            return psutil.Process(child).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
    wait_until(gone, what=f"the container's detached child {child} to be killed")


def test_the_owner_references_cluster_refuses_block_owner_deletion_without_finalizers_rights(
        kube_cluster_owner_references_enforced, tmp_path):
    """The second control plane (OwnerReferencesPermissionEnforcement, as on OpenShift) and its node."""
    cluster = kube_cluster_owner_references_enforced
    assert cluster.core.read_node(NODE_NAME).status.allocatable["nvidia.com/gpu"] == "2"
    ns = cluster.create_namespace()
    cluster.core.create_namespaced_service_account(ns, {"metadata": {"name": "maker"}})
    cluster.rbac.create_namespaced_role(ns, {"metadata": {"name": "maker"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get"]}]})
    cluster.rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": "maker"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "maker"},
        "subjects": [{"kind": "ServiceAccount", "name": "maker", "namespace": ns}]})
    maker = client.CoreV1Api(config.new_client_from_config(
        str(cluster.service_account_kubeconfig(ns, "maker", tmp_path / "maker.kubeconfig"))))
    owner = maker.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}})

    def child(name: str, block: bool) -> dict:
        return {"metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid,
            "blockOwnerDeletion": block}]}}
    with pytest.raises(ApiException) as refused:
        maker.create_namespaced_config_map(ns, child("blocking", True))
    assert refused.value.status == 403 and "blockOwnerDeletion" in refused.value.body
    maker.create_namespaced_config_map(ns, child("plain", False))
    cluster.delete_namespace(ns)
