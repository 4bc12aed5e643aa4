"""The Kubernetes objects the executor's backends make, built by pure functions (no cluster needed).

As kubespawner's objects.py does: every manifest is a plain dict made here from its inputs, so
tests validate and inspect exactly what the backends send. ``EXECUTOR_RULES`` lists the API calls
the backends make; the chart's Role for the executor lists the same (tests/unit/test_helm_chart.py
checks they are equal; docs/kubernetes.md).

Every user workload pod (job, Dask scheduler and workers, model server) gets the trust boundary of
docs/kubernetes.md: the contract's labels (``notebench.io/workload: user`` selects it for the
chart's deny-by-default NetworkPolicy), non-root, no privilege escalation, no capabilities,
RuntimeDefault seccomp, no service-account token, and the profile's resources.
"""

from __future__ import annotations

from dataclasses import dataclass

from dask_kubernetes.operator import make_cluster_spec
from kubespawner.slugs import is_valid_label, safe_slug

from notebench.hub.platform.home_storage import (
    ACCESS_MODES,
    SINGLEUSER_COMPONENT,
    HomeStorage,
    kubespawner_common_labels,
)

# Exactly the verbs the Kubernetes backends (jobs.py, endpoints.py) call.
EXECUTOR_RULES = [
    # Notebook jobs: made, watched, found again after a restart, deleted (with their pods).
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "delete", "get", "list"]},
    # Why a Job has no pod (FailedCreate: a quota, an admission rule).
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    # The pods of jobs and model servers: found by label for their logs and why they fail.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    # The owner's home, made as KubeSpawner makes it when a job's owner never started a server.
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["create", "get"]},
    # A job's or model server's secrets (upload token, the owner's MLflow token), owned by its
    # Job or Deployment (deleted with it); patched when a model server is started again. A model
    # server's is deleted with it too: left for the garbage collector, it would still be there
    # when the server is started again, and moving a Secret to a new owner needs delete on it
    # where OwnerReferencesPermissionEnforcement is on.
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete", "patch"]},
    # A distributed job's pods may talk to each other (owned by the Job).
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create"]},
    # A distributed job's Dask cluster (dask-kubernetes operator; owned by the Job, deleted at its end).
    {"apiGroups": ["kubernetes.dask.org"], "resources": ["daskclusters"], "verbs": ["create", "delete"]},
    # Model servers: a Deployment and a Service per model version.
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create", "delete", "get", "patch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "delete", "patch"]},
]

HOME = "/home/jovyan"
NOTEBOOK_CONTAINER = "notebook"
MODEL_SERVER_PORT = 8080
DASK_SCHEDULER_PORT = 8786
# Kubernetes names are DNS labels (63 characters); a DaskCluster's longest child name is
# "<cluster>-default-worker-<10 hex>" (dask-kubernetes), so names leave room for that suffix.
MAX_NAME = 63 - len("-default-worker-0123456789")

# Label keys (docs/kubernetes.md); JOB_ID and SERVER_ID find one job's or server's objects.
COMPONENT = "app.kubernetes.io/component"
INSTANCE = "app.kubernetes.io/instance"
WORKLOAD = "notebench.io/workload"
OWNER = "notebench.io/owner"
EXECUTOR = "notebench.io/executor"
JOB_ID = "notebench.io/job-id"
SERVER_ID = "notebench.io/server-id"


def object_name(release: str, kind: str, number: int) -> str:
    """``<release>-<kind>-<number>``, short enough for every object named after it."""
    suffix = f"-{kind}-{number}"
    return release[: MAX_NAME - len(suffix)].rstrip("-") + suffix


def owner_slug(user_name: str) -> str:
    """The user's name in labels and PVC names: KubeSpawner's ``{username}`` (docs/kubernetes.md)."""
    return safe_slug(user_name, max_length=48)


def labels(release: str, component: str, owner_slug: str | None = None, **extra: str) -> dict:
    """The contract's labels; with ``owner_slug``, those of a user workload."""
    result = {"app.kubernetes.io/name": "notebench", INSTANCE: release, COMPONENT: component}
    if owner_slug is not None:
        result |= {WORKLOAD: "user", OWNER: owner_slug}
    return result | extra


def selector(**match: object) -> str:
    """A labelSelector query value."""
    return ",".join(f"{key}={value}" for key, value in match.items())


def owner_reference(kind: str, api_version: str, name: str, uid: str) -> dict:
    """Makes the object garbage-collected with its owner (a Job, a Deployment). Without
    blockOwnerDeletion (a foreground deletion waiting for it is not needed): setting it needs
    update on the owner's finalizers where OwnerReferencesPermissionEnforcement is on (OpenShift)."""
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True}


def container_security_context() -> dict:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


@dataclass(frozen=True)
class PodSettings:
    """What every user workload pod of an owner shares: who it runs as, their home, image pulls."""

    uid: int
    gid: int
    home_claim: str | None = None
    pull_policy: str = "IfNotPresent"
    pull_secrets: tuple = ()


def pod_security_context(uid: int, gid: int) -> dict:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": gid, "fsGroup": gid,
            "seccompProfile": {"type": "RuntimeDefault"}}


def profile_resources(profile) -> dict:
    """The profile's limits; requests are its requests where it has them, else its limits.
    GPUs only for profiles with GPUs."""
    limits, requests = {}, {}
    for key, limit, request in (("cpu", profile.cpu_limit, profile.cpu_request),
                                ("memory", profile.mem_limit, profile.mem_request)):
        if limit:
            limits[key] = str(limit)
        if request or limit:
            requests[key] = str(request or limit)
    if profile.gpus:
        limits["nvidia.com/gpu"] = requests["nvidia.com/gpu"] = str(profile.gpus)
    return {key: value for key, value in (("limits", limits), ("requests", requests)) if value}


def env_list(env: dict) -> list[dict]:
    return [{"name": key, "value": str(value)} for key, value in sorted(env.items())]


def user_pod_spec(*, containers: list[dict], profile, pod: PodSettings, restart_policy: str) -> dict:
    """A user workload's pod spec: the boundary, the profile's placement, the owner's home."""
    volumes, mounts = [], []
    if pod.home_claim:
        volumes.append({"name": "home", "persistentVolumeClaim": {"claimName": pod.home_claim}})
        mounts.append({"name": "home", "mountPath": HOME})
    no_gpus = env_list(profile.kubernetes_gpu_env())
    spec = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "restartPolicy": restart_policy,
        "securityContext": pod_security_context(pod.uid, pod.gid),
        "containers": [{**c, "imagePullPolicy": pod.pull_policy, "env": [*c.get("env", []), *no_gpus],
                        "securityContext": container_security_context(), "volumeMounts": mounts}
                       for c in containers],
    }
    if pod.pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in pod.pull_secrets]
    if volumes:
        spec["volumes"] = volumes
    if profile.node_selector:
        spec["nodeSelector"] = dict(profile.node_selector)
    if profile.tolerations:
        spec["tolerations"] = list(profile.tolerations)
    return spec


# --- notebook jobs -----------------------------------------------------------------------------


def env_secret(*, name: str, namespace: str, labels: dict, env: dict, owner: dict) -> dict:
    """A pod's secret environment (a job's upload token, the owner's MLflow token), owned by the
    object whose pods read it (a Job, a Deployment): deleted with it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]},
        "type": "Opaque",
        "stringData": {key: str(value) for key, value in env.items()},
    }


def home_claim(*, name: str, namespace: str, user_name: str, release: str, storage: HomeStorage) -> dict:
    """The user's home PVC exactly as KubeSpawner makes it with the hub's settings (its
    get_pvc_manifest; hub/kubernetes.py), but for KubeSpawner's and JupyterHub's version annotations."""
    labels = {
        "hub.jupyter.org/username": safe_slug(user_name, is_valid=is_valid_label),
        **kubespawner_common_labels(release),
        "app.kubernetes.io/component": SINGLEUSER_COMPONENT,
        "component": "singleuser-storage",
    }
    annotations = {"hub.jupyter.org/username": user_name}
    spec: dict = {"accessModes": list(ACCESS_MODES), "resources": {"requests": {"storage": storage.size}}}
    if storage.storage_class:
        annotations["volume.beta.kubernetes.io/storage-class"] = storage.storage_class
        spec["storageClassName"] = storage.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": spec,
    }


def notebook_job(*, name: str, namespace: str, labels: dict, image: str, args: list[str], env: dict,
                 secret_name: str, profile, pod: PodSettings, deadline_seconds: int, ttl_seconds: int) -> dict:
    """The batch/v1 Job running the notebook once (no retries: a notebook is not idempotent).
    ``deadline_seconds`` is its pod's (counted from when a node took the pod, so time spent
    waiting for the scheduler does not count, as with the executor's own timeout)."""
    container = {
        "name": NOTEBOOK_CONTAINER,
        "image": image,
        "args": args,  # args, not command: the image's entrypoint (tini) stays PID 1
        "workingDir": HOME,
        "env": env_list(env),
        "envFrom": [{"secretRef": {"name": secret_name}}],
        "resources": profile_resources(profile),
    }
    pod_spec = user_pod_spec(containers=[container], profile=profile, pod=pod, restart_policy="Never")
    pod_spec["activeDeadlineSeconds"] = deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": ttl_seconds,  # a backstop: the executor deletes it once read
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def dask_cluster(*, name: str, namespace: str, labels: dict, image: str, env: dict, secret_name: str,
                 workers: int, worker_threads: int, worker_profile, scheduler_profile, pod: PodSettings,
                 owner: dict) -> dict:
    """The job's DaskCluster (dask-kubernetes operator): dask-kubernetes' own spec, made into user
    workloads. No TLS: the job's NetworkPolicy lets only its own pods reach the scheduler."""
    # distributed ships only the ``dask`` command now (no ``dask-scheduler``/``dask-worker``).
    cluster = make_cluster_spec(name=name, image=image, n_workers=workers, worker_command="dask worker")
    cluster["metadata"] |= {"namespace": namespace, "labels": labels, "ownerReferences": [owner]}
    scheduler_args = cluster["spec"]["scheduler"]["spec"]["containers"][0]["args"]
    if scheduler_args[0] == "dask-scheduler":
        scheduler_args[:1] = ["dask", "scheduler"]
    parts = {
        "scheduler": ("dask-scheduler", scheduler_profile, []),
        "worker": ("dask-worker", worker_profile, ["--nthreads", str(worker_threads),
                                                   "--memory-limit", str(worker_profile.mem_limit or "auto")]),
    }
    for part, (component, profile, extra_args) in parts.items():
        (container,) = cluster["spec"][part]["spec"]["containers"]
        container["args"] = [*container["args"], *extra_args]
        container["env"] = env_list(env)
        container["envFrom"] = [{"secretRef": {"name": secret_name}}]
        container["resources"] = profile_resources(profile)
        cluster["spec"][part]["metadata"] = {"labels": {**labels, COMPONENT: component}}
        cluster["spec"][part]["spec"] = user_pod_spec(containers=[container], profile=profile, pod=pod,
                                                      restart_policy="Always")
    return cluster


def scheduler_address(cluster_name: str, namespace: str) -> str:
    return f"tcp://{cluster_name}-scheduler.{namespace}:{DASK_SCHEDULER_PORT}"


def job_network_policy(*, name: str, namespace: str, labels: dict, job_id: int, owner: dict) -> dict:
    """Lets one distributed job's pods (its notebook, scheduler, workers) reach each other; the
    chart's deny-by-default policy forbids everything else between user pods."""
    pods = {"matchLabels": {INSTANCE: labels[INSTANCE], JOB_ID: str(job_id)}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]},
        "spec": {
            "podSelector": pods,
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": pods}]}],
            "egress": [{"to": [{"podSelector": pods}]}],
        },
    }


# --- model servers -----------------------------------------------------------------------------


def model_server_deployment(*, name: str, namespace: str, labels: dict, image: str, model_uri: str, env: dict,
                            secret_name: str, profile, pod: PodSettings) -> dict:
    """One model version behind MLflow's scoring server (``mlflow models serve``), one replica."""
    container = {
        "name": "model-server",
        "image": image,
        "args": ["mlflow", "models", "serve", "--model-uri", model_uri, "--host", "0.0.0.0",
                    "--port", str(MODEL_SERVER_PORT), "--env-manager", "local"],
        "env": env_list(env),
        "envFrom": [{"secretRef": {"name": secret_name}}],
        "ports": [{"name": "http", "containerPort": MODEL_SERVER_PORT}],
        "readinessProbe": {"httpGet": {"path": "/ping", "port": "http"}, "periodSeconds": 2},
        "resources": profile_resources(profile),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {INSTANCE: labels[INSTANCE], SERVER_ID: labels[SERVER_ID]}},
            "template": {
                "metadata": {"labels": labels},
                "spec": user_pod_spec(containers=[container], profile=profile, pod=pod, restart_policy="Always"),
            },
        },
    }


def model_server_service(*, name: str, namespace: str, labels: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": {INSTANCE: labels[INSTANCE], SERVER_ID: labels[SERVER_ID]},
            "ports": [{"name": "http", "port": MODEL_SERVER_PORT, "targetPort": "http"}],
        },
    }
