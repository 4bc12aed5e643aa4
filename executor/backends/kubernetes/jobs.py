"""Jobs as Kubernetes Jobs, distributed jobs with a dask-kubernetes DaskCluster (docs/kubernetes.md).

A job is a batch/v1 Job, named after the job (``<release>-job-<id>``: creating it twice fails, so
a job never runs twice), running ``python -m notebench.executor.runtime.pod_runner`` in the owner's
image, with the profile's resources, the owner's home PVC and the user-workload boundary. The
executor's data PVC is ReadWriteOnce, so job pods never mount it; instead:

- the pod writes its events (started, finished) and its log on stdout: the executor follows the
  pod log and writes them into the job directory (``events.jsonl``, ``log.txt``);
- the pod fetches its input notebook and hands back its output notebook (while it runs, and at
  its end before saying 'finished') through the executor's API (``api/jobs/<id>/files/...``),
  with a token only that job has (derived from the executor's secret; it reaches the pod in a
  Secret owned by the Job).

So the dispatcher reads the job directory as it does for local jobs. After an executor restart
the Jobs are found again by their labels, and their pod logs read again from the start.
A job with workers also gets a DaskCluster and a NetworkPolicy letting only its own pods talk to
each other, all owned by the Job: deleting the Job (its end, a cancel) deletes them with its pods.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import aiohttp
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import load_incluster_config, load_kube_config
from traitlets import Float, Integer, List, Unicode, default
from traitlets.config import Config, LoggingConfigurable

from notebench.executor.backends.base import Backend, JobSpec, JobState, RecordedJob
from notebench.executor.backends.kubernetes.objects import (
    COMPONENT,
    EXECUTOR,
    HOME,
    INSTANCE,
    JOB_ID,
    NOTEBOOK_CONTAINER,
    PodSettings,
    dask_cluster,
    env_secret,
    home_claim,
    job_network_policy,
    labels,
    notebook_job,
    object_name,
    owner_reference,
    owner_slug,
    scheduler_address,
    selector,
)
from notebench.executor.runtime.events import EVENT_PREFIX, MalformedReport, malformed, parse_event
from notebench.hub.platform.chart_values import image_name, load_values
from notebench.hub.platform.home_storage import HOME_CLAIM, HomeStorage

DASK_CLUSTER = "notebench.io/dask-cluster"  # on a distributed job's Job: its cluster's name
FAILED_WAITING = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff", "CreateContainerError"}


class KubernetesAPIError(Exception):
    """A Kubernetes API call that failed, as it reaches users (a job's error, an endpoint's):
    ``<status> <reason>: <message>``, at most 300 characters; never the response's headers."""

    MAX_LENGTH = 300

    def __init__(self, status: int, reason: str, message: str = ""):
        self.status, self.reason, self.message = status, reason, message
        text = " ".join(f"{status} {reason}: {message}".split()).rstrip(":")
        super().__init__(text if len(text) <= self.MAX_LENGTH else text[: self.MAX_LENGTH - 1] + "…")

    @classmethod
    def of(cls, error: ApiException) -> "KubernetesAPIError":
        """From kubernetes_asyncio's exception: its status, and the API's Status message."""
        body = error.body.decode("utf-8", "replace") if isinstance(error.body, bytes) else str(error.body or "")
        try:
            status = json.loads(body)
            message, reason = str(status.get("message") or ""), str(status.get("reason") or "")
        except (ValueError, AttributeError):  # not the API server's JSON (a proxy in between)
            message, reason = body, ""
        return cls(error.status or 0, error.reason or reason, message)


class KubeAPI:
    """The backends' Kubernetes REST calls, through kubernetes_asyncio's ApiClient (its in-cluster
    credentials, TLS and errors); objects go and come as plain dicts (objects.py)."""

    def __init__(self, client: ApiClient | None = None, kubeconfig: str = ""):
        self.client, self.kubeconfig = client, kubeconfig

    @classmethod
    def in_cluster(cls) -> "KubeAPI":
        configuration = Configuration()
        load_incluster_config(client_configuration=configuration)
        return cls(ApiClient(configuration))

    async def _client(self) -> ApiClient:
        if self.client is None:  # a kubeconfig is read at the first call (kubernetes_asyncio reads it async)
            configuration = Configuration()
            await load_kube_config(config_file=self.kubeconfig, client_configuration=configuration)
            self.client = ApiClient(configuration)
        return self.client

    async def _call(self, method: str, path: str, query: dict | None, body, content_type: str, **options):
        client = await self._client()
        try:
            return await client.call_api(
                path, method, query_params=list((query or {}).items()),
                header_params={"Accept": "application/json", "Content-Type": content_type}, body=body,
                auth_settings=["BearerToken"], **options,
            )
        except ApiException as e:  # its text holds the response's headers: users get the short reason
            raise KubernetesAPIError.of(e) from None

    async def call(self, method: str, path: str, query: dict | None = None, body=None,
                   content_type: str = "application/json") -> dict:
        return await self._call(method, path, query, body, content_type, _return_http_data_only=True,
                                response_types_map={200: "object", 201: "object", 202: "object"})

    async def get(self, path: str, query: dict | None = None) -> dict | None:
        """The object, or None if there is none."""
        try:
            return await self.call("GET", path, query)
        except KubernetesAPIError as e:
            if e.status == 404:
                return None
            raise

    async def delete(self, path: str) -> None:
        """Delete with its dependents (pods, owned objects) in the background; gone already is fine."""
        try:
            await self.call("DELETE", path, {"propagationPolicy": "Background"})
        except KubernetesAPIError as e:
            if e.status != 404:
                raise

    async def apply(self, collection: str, obj: dict) -> dict:
        """Create ``obj`` in ``collection``; if it exists (left from before), make it ``obj``."""
        try:
            return await self.call("POST", collection, body=obj)
        except KubernetesAPIError as e:
            if e.status != 409:
                raise
        path = f"{collection}/{obj['metadata']['name']}"
        return await self.call("PATCH", path, body=obj, content_type="application/merge-patch+json")

    async def stream(self, path: str, query: dict):
        """The raw response (aiohttp), for reading a log as it is written."""
        response = await self._call("GET", path, query, None, "application/json", _preload_content=False)
        if response.status != 200:
            error = ApiException(status=response.status, reason=response.reason)
            error.body = await response.read()
            response.release()
            raise KubernetesAPIError.of(error)
        return response

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


def config_from_values(env: dict) -> Config:
    """The executor's configuration on Kubernetes, from the chart's values (NOTEBENCH_VALUES) and
    the pod's environment (docs/kubernetes.md says which)."""
    values = load_values(env.get("NOTEBENCH_VALUES", "/etc/notebench/values.yaml"))
    singleuser = values.get("singleuser") or {}
    executor = values.get("executor") or {}
    model_server_image = (executor.get("modelServer") or {}).get("image") or {}
    c = Config()
    c.Executor.backend_class = "kubernetes"
    c.Executor.endpoint_backend_class = "kubernetes"
    if env.get("POD_NAME"):
        c.Executor.executor_id = env["POD_NAME"]
    if env.get("NOTEBENCH_EXECUTOR_DB_URL"):
        c.Executor.db_url = env["NOTEBENCH_EXECUTOR_DB_URL"]
    if env.get("NOTEBENCH_MLFLOW_URL"):
        # The MLflow Service serves under the hub's prefix; the executor and its pods use it directly.
        mlflow = env["NOTEBENCH_MLFLOW_URL"].rstrip("/") + "/services/mlflow"
        c.Executor.mlflow_url = c.Executor.job_mlflow_url = mlflow
    for key, trait in (("maxRunningJobs", "max_running_jobs"), ("maxRunningJobsPerUser", "max_running_jobs_per_user")):
        if key in executor:
            c.Executor[trait] = int(executor[key])
    if executor.get("quotaDefaults"):
        c.Quotas.defaults = dict(executor["quotaDefaults"])
    usage = executor.get("usage") or {}
    for key, trait in (("intervalSeconds", "interval_seconds"), ("prices", "prices"), ("currency", "currency")):
        if key in usage:
            c.Usage[trait] = usage[key]
    monitoring = executor.get("monitoring") or {}
    if monitoring.get("windows"):  # a list in the values (Helm merges maps): a dict, in order, here
        c.Monitoring.windows = {w["name"]: int(w["seconds"]) for w in monitoring["windows"]}
    for key, section, trait in (("psiThreshold", "Monitoring", "psi_threshold"),
                                ("pValueThreshold", "Monitoring", "p_value_threshold"),
                                ("firstRequests", "Monitoring", "first_requests"),
                                ("samplesPerSecond", "Endpoints", "samples_per_second"),
                                ("maxSamples", "Endpoints", "max_samples"),
                                ("predictionRetentionDays", "Endpoints", "prediction_retention_days")):
        if key in monitoring:
            c[section][trait] = monitoring[key]
    alerts = executor.get("alerts") or {}
    for key, trait in (("checkSeconds", "check_seconds"), ("allowedWebhookHosts", "allowed_webhook_hosts"),
                       ("maxAttempts", "max_attempts"), ("retrySeconds", "retry_seconds"),
                       ("maxRetrySeconds", "max_retry_seconds")):
        if key in alerts:
            c.Alerts[trait] = alerts[key]
    if singleuser.get("profiles"):
        c.Profiles.profiles = singleuser["profiles"]
    # Both backends (c.KubernetesSettings): where, as whom, with which pull settings.
    c.KubernetesSettings.namespace = env.get("POD_NAMESPACE", "default")
    c.KubernetesSettings.release = env.get("NOTEBENCH_RELEASE", "notebench")
    c.KubernetesSettings.uid = int(singleuser.get("uid", 1000))
    c.KubernetesSettings.gid = int(singleuser.get("fsGid", 100))
    c.KubernetesSettings.image_pull_secrets = list(values.get("imagePullSecrets") or [])
    user_image = singleuser.get("image") or {}
    c.KubernetesBackend.image = image_name(user_image, "singleuser.image")
    c.KubernetesBackend.image_pull_policy = user_image.get("pullPolicy", "IfNotPresent")
    if env.get("NOTEBENCH_EXECUTOR_URL"):
        c.KubernetesBackend.executor_url = env["NOTEBENCH_EXECUTOR_URL"]
    home = HomeStorage.from_values(values)  # as the hub's KubeSpawner has it (hub/kubernetes.py)
    c.KubernetesBackend.home_storage_size = home.size
    c.KubernetesBackend.home_storage_class = home.storage_class or ""
    c.KubernetesEndpointBackend.image = (  # the user image serves models when no model-server image is set
        image_name(model_server_image, "executor.modelServer.image") if model_server_image.get("repository")
        else c.KubernetesBackend.image
    )
    c.KubernetesEndpointBackend.image_pull_policy = model_server_image.get("pullPolicy", "IfNotPresent")
    return c


class KubernetesSettings(LoggingConfigurable):
    """Traits both Kubernetes backends have (``c.KubernetesSettings`` sets them for both)."""

    namespace = Unicode(help="Namespace of the backend's objects (default: POD_NAMESPACE).").tag(config=True)

    @default("namespace")
    def _namespace(self):
        return os.environ.get("POD_NAMESPACE", "default")

    release = Unicode(help="The Helm release: objects' names and app.kubernetes.io/instance label.").tag(config=True)

    @default("release")
    def _release(self):
        return os.environ.get("NOTEBENCH_RELEASE", "notebench")

    image = Unicode(help="Image of the pods (a profile's image wins for jobs).").tag(config=True)
    image_pull_policy = Unicode("IfNotPresent", help="imagePullPolicy of the pods' containers.").tag(config=True)
    image_pull_secrets = List(Unicode(), help="Names of the Secrets the pods pull their images with.").tag(config=True)
    uid = Integer(1000, help="User id the pods run as (never root).").tag(config=True)
    gid = Integer(100, help="Group id the pods run as, and of their volumes (fsGroup).").tag(config=True)
    poll_seconds = Float(2.0, help="How often objects are looked at while waiting on them.").tag(config=True)
    kubeconfig = Unicode(
        help="A kubeconfig file to reach the API server with (an executor outside the cluster); '': the "
        "executor pod's in-cluster service account."
    ).tag(config=True)

    _api: KubeAPI | None = None

    @property
    def api(self) -> KubeAPI:
        if self._api is None:
            self._api = KubeAPI(kubeconfig=self.kubeconfig) if self.kubeconfig else KubeAPI.in_cluster()
        return self._api

    @api.setter
    def api(self, api: KubeAPI) -> None:
        self._api = api

    def pod_settings(self, home_claim: str | None = None) -> PodSettings:
        return PodSettings(self.uid, self.gid, home_claim, self.image_pull_policy, tuple(self.image_pull_secrets))

    def image_for(self, profile) -> str:
        image = profile.image or self.image
        if not image:
            raise RuntimeError(f"no image for profile {profile.name!r}: set the profile's image or the chart's singleuser.image")
        return image

    @staticmethod
    def without_device_mask(env: dict) -> dict:
        # Local jobs are given their leased GPUs in CUDA_VISIBLE_DEVICES ('' for none); in a pod
        # the device plugin exposes exactly the pod's GPUs, which '' would hide.
        return {k: v for k, v in env.items() if k != "CUDA_VISIBLE_DEVICES"}


@dataclass
class JobRun:
    """A job's Job as the executor follows it: its pod log goes to the job directory."""

    name: str
    job_id: int
    job_dir: Path
    dask_cluster: str | None
    task: asyncio.Task | None = None
    consumed: int = 0  # bytes of the pod log already in the job directory
    finished: bool = False  # its 'finished' event was read
    done: bool = False  # the Job has ended and its log is read to the end
    state: JobState | None = None  # what its pod was last seen doing (None: not looked at yet)
    # What keeps its pod from starting (a kind of problem_kind's) and since when (monotonic).
    problem: tuple[str, float] | None = None


class KubernetesBackend(KubernetesSettings, Backend):
    leases_gpus = False

    home_claim = Unicode(
        HOME_CLAIM,
        help="PVC mounted as the owner's home in job and Dask pods: KubeSpawner's pvc_name_template "
        "({username}, or {owner}: KubeSpawner's safe slug of the owner's name); '' for none.",
    ).tag(config=True)

    home_storage_size = Unicode(
        help="Size of the home PVC the executor makes, as KubeSpawner would, for a job's owner who never "
        "started a server (KubeSpawner's storage_capacity: the chart's singleuser.storage.size); '': it makes none.",
    ).tag(config=True)

    home_storage_class = Unicode(
        help="StorageClass of the home PVCs the executor makes (KubeSpawner's storage_class); '': the cluster's default.",
    ).tag(config=True)

    unschedulable_grace_seconds = Float(
        10,
        help="A job whose pod cannot be placed or made (no node may take it, an admission rule refuses it) "
        "fails after this long, with the scheduler's or the Job controller's reason. A pod waiting for "
        "resources other pods hold (GPUs, CPUs, memory, a quota) is not failed: its job is queued.",
    ).tag(config=True)

    volume_binding_seconds = Float(
        120, help="A job whose pod waits this long for its volumes (the home PVC) to be bound fails, with the reason."
    ).tag(config=True)

    executor_url = Unicode(help="The executor's URL inside the cluster, for job pods (NOTEBENCH_EXECUTOR_URL).").tag(config=True)

    @default("executor_url")
    def _executor_url(self):
        return os.environ.get("NOTEBENCH_EXECUTOR_URL", "")

    service_prefix = Unicode(help="The executor's URL prefix.").tag(config=True)

    @default("service_prefix")
    def _service_prefix(self):
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/executor/")

    token_key = Unicode(help="Secret that jobs' tokens are derived from (default: the executor's hub API token).").tag(
        config=True
    )

    @default("token_key")
    def _token_key(self):
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    executor_id = Unicode(help="This executor's id, on its Jobs' notebench.io/executor label.").tag(config=True)

    @default("executor_id")
    def _executor_id(self):
        return getattr(self.parent, "executor_id", "") or os.environ.get("POD_NAME", "")

    deadline_margin_seconds = Integer(
        600,
        help="A job pod's activeDeadlineSeconds is the job's timeout plus this: a backstop, should the "
        "executor be down when the job's time is up (it stops the job itself at its timeout).",
    ).tag(config=True)

    finished_ttl_seconds = Integer(
        7 * 24 * 3600, help="An ended Job the executor did not delete (it was down) is deleted after this long."
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._runs: dict[str, JobRun] = {}

    # --- names and tokens ---------------------------------------------------------------------------

    def _collection(self, group: str, resource: str) -> str:
        return f"/{group}/namespaces/{self.namespace}/{resource}"

    def _jobs(self) -> str:
        return self._collection("apis/batch/v1", "jobs")

    def _dask_clusters(self) -> str:
        return self._collection("apis/kubernetes.dask.org/v1", "daskclusters")

    def job_token(self, job_id: int) -> str:
        if not self.token_key:
            raise RuntimeError("no key for jobs' tokens: set c.KubernetesBackend.token_key (or JUPYTERHUB_API_TOKEN)")
        return hmac.new(self.token_key.encode(), f"notebench-job:{job_id}".encode(), hashlib.sha256).hexdigest()

    def check_job_token(self, job_id: int, token: str) -> bool:
        return bool(self.token_key) and hmac.compare_digest(self.job_token(job_id), token)

    def home(self, owner: str) -> str:
        return HOME

    # --- starting ----------------------------------------------------------------------------------

    def objects(self, spec: JobSpec) -> dict:
        """What ``start`` creates for ``spec``, in order (the Job first: the others are its)."""
        profile = self._profiles.get(spec.profile)
        worker = self._profiles.get(spec.worker_profile or spec.profile)
        name = object_name(self.release, "job", spec.job_id)
        cluster = object_name(self.release, "dask", spec.job_id) if spec.workers else None
        slug = owner_slug(spec.owner)
        job_labels = labels(self.release, "job", slug, **{JOB_ID: str(spec.job_id), EXECUTOR: self.executor_id})
        if cluster:
            job_labels[DASK_CLUSTER] = cluster
        home = self.home_claim.format(username=slug, owner=slug) if self.home_claim else None
        pod_spec = {
            # The working directory relative to the home: the pod finds its home by its HOME.
            "job_id": spec.job_id, "kernel": spec.kernel, "cwd": os.path.relpath(spec.cwd, HOME), "parameters": spec.parameters,
            "workers": spec.workers, "kernel_env": spec.kernel_env,
            "dask_scheduler_address": scheduler_address(cluster, self.namespace) if cluster else None,
        }
        if not self.executor_url:
            raise RuntimeError("job pods cannot reach the executor: set NOTEBENCH_EXECUTOR_URL (c.KubernetesBackend.executor_url)")
        files_url = f"{self.executor_url.rstrip('/')}{self.service_prefix}api/jobs/{spec.job_id}/files"
        pod = self.pod_settings(home)
        job = notebook_job(
            name=name, labels=job_labels, image=self.image_for(profile),
            args=["python", "-m", "notebench.executor.runtime.pod_runner"],
            env={"NOTEBENCH_JOB_SPEC": json.dumps(pod_spec), "NOTEBENCH_JOB_FILES_URL": files_url, "HOME": HOME},
            secret_name=name, profile=profile, deadline_seconds=spec.timeout_seconds + self.deadline_margin_seconds,
            ttl_seconds=self.finished_ttl_seconds, namespace=self.namespace, pod=pod,
        )
        secret_env = {**self.without_device_mask(spec.env), "NOTEBENCH_JOB_TOKEN": self.job_token(spec.job_id)}

        def owned(job_uid: str) -> list[tuple[str, dict]]:
            owner = owner_reference("Job", "batch/v1", name, job_uid)
            made = [(self._collection("api/v1", "secrets"),
                     env_secret(name=name, namespace=self.namespace, labels=job_labels, env=secret_env, owner=owner))]
            if cluster:
                made.append((self._collection("apis/networking.k8s.io/v1", "networkpolicies"),
                             job_network_policy(name=name, namespace=self.namespace, labels=job_labels,
                                                job_id=spec.job_id, owner=owner)))
                made.append((self._dask_clusters(), dask_cluster(
                    name=cluster, labels=job_labels, image=self.image_for(worker), env={**spec.kernel_env, "HOME": HOME},
                    secret_name=name, workers=spec.workers, worker_threads=spec.worker_threads or 1,
                    worker_profile=worker, scheduler_profile=without_gpus(profile), owner=owner,
                    namespace=self.namespace, pod=pod)))
            return made

        home_pvc = None
        if home and self.home_storage_size:
            home_pvc = home_claim(name=home, namespace=self.namespace, user_name=spec.owner, release=self.release,
                                  storage=HomeStorage(self.home_storage_size, self.home_storage_class or None))
        return {"name": name, "cluster": cluster, "job": job, "owned": owned, "home": home_pvc}

    async def _ensure_home(self, pvc: dict) -> None:
        """Make the owner's home PVC if they never started a server (KubeSpawner makes it at their
        first spawn): else the job's pod would wait for it until its timeout. Looked for first, as
        KubeSpawner does, so a quota on PVCs that is used up does not fail an owner who has one."""
        claims = self._collection("api/v1", "persistentvolumeclaims")
        if await self.api.get(f"{claims}/{pvc['metadata']['name']}") is not None:
            return
        try:
            await self.api.call("POST", claims, body=pvc)
        except KubernetesAPIError as e:
            if e.status != 409:  # 409: made meanwhile (a spawn, another job): the same PVC
                raise

    async def start(self, spec: JobSpec) -> str:
        made = self.objects(spec)
        if made["home"]:
            await self._ensure_home(made["home"])
        created = await self.api.call("POST", self._jobs(), body=made["job"])
        try:
            for collection, obj in made["owned"](created["metadata"]["uid"]):
                await self.api.call("POST", collection, body=obj)
        except BaseException:
            await self._delete(made["name"], made["cluster"])
            raise
        self._attach(made["name"], spec.job_id, Path(spec.job_dir), made["cluster"])
        return made["name"]

    def _attach(self, name: str, job_id: int, job_dir: Path, cluster: str | None) -> None:
        # The pod log is read from its start: what an earlier executor wrote is written again.
        for report in ("events.jsonl", "log.txt"):
            (job_dir / report).write_bytes(b"")
        run = self._runs[name] = JobRun(name, job_id, job_dir, cluster)
        run.task = asyncio.ensure_future(self._follow(run))

    # --- following a job --------------------------------------------------------------------------

    async def _pod(self, run: JobRun) -> dict | None:
        pods = await self.api.call("GET", self._collection("api/v1", "pods"),
                                   {"labelSelector": selector(**{INSTANCE: self.release, COMPONENT: "job", JOB_ID: run.job_id})})
        return pods["items"][0] if pods.get("items") else None

    async def _follow(self, run: JobRun) -> None:
        """Bring the pod log to the job directory until the Job has ended and its log is read;
        meanwhile say where its pod is (``state``). A pod that will not start fails the job within
        seconds, with the reason. The API failing now and then (a restarting API server) is
        waited out: the job's own timeout ends a job whose pod can never be read."""
        pod = None
        try:
            while True:
                try:
                    pod = await self._pod(run)
                    phase = (pod or {}).get("status", {}).get("phase")
                    if phase in ("Running", "Succeeded", "Failed"):
                        assert pod is not None  # it has a phase
                        run.state = JobState(running_since=container_started(pod) or time.time())
                        before = run.consumed
                        await self._read_log(run, pod["metadata"]["name"], final=phase != "Running")
                        if phase != "Running":
                            break
                        if run.consumed == before:  # the container ended, its phase not yet updated
                            await asyncio.sleep(self.poll_seconds)
                        continue
                    error = await self._not_started(run, pod)
                    if error:  # fail now, not at the job's timeout
                        self._write_event(run, {"event": "finished", "status": "failed", "error": error})
                        break
                    job = await self.api.get(f"{self._jobs()}/{run.name}")
                    if job is None or job_ended(job):
                        break
                except (KubernetesAPIError, OSError, asyncio.TimeoutError, aiohttp.ClientError) as e:
                    self.log.warning("job %s: reading its pod failed (trying again): %s", run.job_id, e)
                await asyncio.sleep(self.poll_seconds)
            if not run.finished:
                job = await self.api.get(f"{self._jobs()}/{run.name}")
                self._write_event(run, {"event": "finished", "status": "failed", "error": why_failed(job, pod)})
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("following job %s's pod failed", run.job_id)
        finally:
            run.done = True

    async def _not_started(self, run: JobRun, pod: dict | None) -> dict | None:
        """For a pod not running yet (or not made yet): the job's error if it will not start, else
        None, with ``run.state`` set: queued while it waits for resources that are busy."""
        stuck = cannot_start(pod)  # its image cannot be pulled, its container not made: at once
        if stuck:
            return stuck
        message = unschedulable(pod) if pod else await self._failed_create(run)
        if not message:  # being placed, made or started
            run.state, run.problem = JobState(), None
            return None
        kind = problem_kind(message, made=pod is not None)
        run.state = JobState(queued=kind == "busy")
        if kind == "busy":
            run.problem = None
            return None
        if run.problem is None or run.problem[0] != kind:
            run.problem = (kind, time.monotonic())
        grace = self.volume_binding_seconds if kind == "volume" else self.unschedulable_grace_seconds
        if time.monotonic() - run.problem[1] < grace:
            return None
        return {"ename": PROBLEMS[kind], "evalue": message[:1000], "cell_index": None}

    async def _failed_create(self, run: JobRun) -> str | None:
        """Why the Job controller could not make the Job's pod (its latest FailedCreate event), if it tried."""
        events = await self.api.call("GET", self._collection("api/v1", "events"),
                                     {"fieldSelector": f"involvedObject.kind=Job,involvedObject.name={run.name}"})
        failed = [e for e in events.get("items", []) if e.get("reason") == "FailedCreate"]
        if not failed:
            return None
        latest = max(failed, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return latest.get("message") or "the Job's pod could not be made"

    async def _read_log(self, run: JobRun, pod: str, final: bool) -> None:
        """Read the pod log on from ``run.consumed`` (its bytes already in the job directory), as
        it is written; ``final``: the container has ended."""
        path = f"{self._collection('api/v1', 'pods')}/{pod}/log"
        response = await self.api.stream(path, {"container": NOTEBOOK_CONTAINER, "follow": "true"})
        skip, pending = run.consumed, b""
        try:
            async for chunk in response.content.iter_any():
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                pending += chunk
                if b"\n" in pending:  # whole lines only: a line being written waits for its end
                    complete, _, pending = pending.rpartition(b"\n")
                    self._write_lines(run, complete + b"\n")
                    run.consumed += len(complete) + 1
        finally:
            response.release()
        if final and pending:  # its last line has no newline
            self._write_lines(run, pending + b"\n")
            run.consumed += len(pending)

    def _write_lines(self, run: JobRun, data: bytes) -> None:
        prefix = EVENT_PREFIX.encode()
        log, events = [], []
        for line in data.splitlines(keepends=True):
            if line.startswith(prefix):
                events.append(line[len(prefix):])
            else:
                log.append(line)
        with open(run.job_dir / "log.txt", "ab") as f:
            f.write(b"".join(log))
        for line in events:
            if run.finished:
                break  # the job's end is in: nothing it says afterwards counts
            try:
                self._write_event(run, parse_event(line))
            except MalformedReport as e:  # the pod log is the owner's words: the job fails, with the reason
                self.log.warning("job %s: malformed report %r: %s", run.job_id, line[:200], e)
                self._write_event(run, {"event": "finished", "status": "failed", "error": malformed(str(e))})

    def _write_event(self, run: JobRun, event: dict) -> None:
        run.finished = run.finished or event.get("event") == "finished"
        with open(run.job_dir / "events.jsonl", "a") as f:
            f.write(json.dumps(event) + "\n")

    # --- the rest of the interface ------------------------------------------------------------------

    async def state(self, handle: str) -> JobState | None:
        run = self._runs.get(handle)
        return run.state if run is not None else None

    async def is_running(self, handle: str) -> bool:
        run = self._runs.get(handle)
        return run is not None and not run.done

    async def _live_executors(self) -> set[str]:
        """The executor pods of this release that exist (this one too)."""
        pods = await self.api.call("GET", self._collection("api/v1", "pods"),
                                   {"labelSelector": selector(**{INSTANCE: self.release, COMPONENT: "executor"})})
        return {pod["metadata"]["name"] for pod in pods.get("items", [])} | {self.executor_id}

    async def gone_executors(self, executor_ids: set[str]) -> set[str]:
        return executor_ids - await self._live_executors()

    async def find(self, jobs: list[RecordedJob]) -> dict[int, str]:
        """The store says which jobs are this executor's (ones it adopted too): their Jobs are
        found by labels. Jobs of ended jobs, left by this executor or a gone one, are deleted."""
        wanted = {job.job_id: job for job in jobs}
        live = await self._live_executors()
        listed = await self.api.call("GET", self._jobs(), {"labelSelector": selector(**{INSTANCE: self.release, COMPONENT: "job"})})
        handles = {}
        for item in listed.get("items", []):
            meta = item["metadata"]
            job_id, cluster = int(meta["labels"][JOB_ID]), meta["labels"].get(DASK_CLUSTER)
            if job_id in wanted and not meta.get("deletionTimestamp"):
                self._attach(meta["name"], job_id, Path(wanted[job_id].job_dir), cluster)
                handles[job_id] = meta["name"]
            elif meta["labels"].get(EXECUTOR) == self.executor_id or meta["labels"].get(EXECUTOR) not in live:
                await self._delete(meta["name"], cluster)  # its job ended while its executor went down
        return handles

    async def _delete(self, name: str, cluster: str | None) -> None:
        if cluster:  # at once: the Job's garbage collection would get there too, later
            await self.api.delete(f"{self._dask_clusters()}/{cluster}")
        await self.api.delete(f"{self._jobs()}/{name}")

    def is_outage(self, error: Exception) -> bool:
        # The API server restarting, overloaded or unreachable: not the job's fault.
        if isinstance(error, KubernetesAPIError):
            return error.status in (429, 500, 502, 503, 504) or not error.status
        return isinstance(error, (aiohttp.ClientConnectionError, asyncio.TimeoutError, ConnectionError))

    async def kill(self, handle: str) -> None:
        run = self._runs.pop(handle, None)
        if run is not None and run.task is not None:
            run.task.cancel()
        await self._delete(handle, run.dask_cluster if run else None)

    async def clean_up(self, handle: str) -> None:
        await self.kill(handle)

    async def close(self) -> None:
        for run in self._runs.values():
            if run.task is not None:
                run.task.cancel()
        await asyncio.gather(*(r.task for r in self._runs.values() if r.task), return_exceptions=True)
        if self._api is not None:
            await self._api.close()


def without_gpus(profile):
    """The profile's CPUs and memory only (a Dask scheduler computes nothing: no GPU, no GPU node)."""
    return replace(profile, gpus=0, node_selector={}, tolerations=[])


# problem_kind's kinds that fail a job (after a grace), and the error's name each gives.
PROBLEMS = {"create": "FailedCreate", "volume": "VolumeNotBound", "unschedulable": "Unschedulable"}
# Messages of resources other pods (or a quota) hold now: the scheduler's "Insufficient
# nvidia.com/gpu" or "Too many pods" on a node, the API server's "exceeded quota".
BUSY = re.compile(r"Insufficient |Too many pods|exceeded quota")


def problem_kind(message: str, made: bool) -> str:
    """What keeps a pod from starting, from the scheduler's message (PodScheduled, ``made``) or
    the Job controller's (FailedCreate: the pod was not made):

    - "busy": some node lacks only free resources, or a quota is used up. That frees up by itself
      (jobs end; a cluster autoscaler adds a node): the job waits, queued, its timeout not running.
      So does a GPU job on a cluster with no GPU node at all: to the scheduler, that node's GPUs
      are "Insufficient" too, and it may be added later.
    - "volume": its volumes are not bound yet (a PVC being provisioned);
    - "create": the pod was refused (an admission rule), "unschedulable": no node may ever take it
      (a node selector, a taint): both fail the job after a short grace.
    """
    placing = message.split("preemption:")[0]  # what the scheduler adds about evicting others is no reason
    if BUSY.search(placing):
        return "busy"
    if "volume" in placing.lower():  # "unbound immediate PersistentVolumeClaims", "persistent volumes to bind"
        return "volume"
    return "unschedulable" if made else "create"


def unschedulable(pod: dict) -> str | None:
    """The scheduler's message for a pod it cannot place now, or None."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False" \
                and condition.get("reason") == "Unschedulable":
            return condition.get("message") or "no node can take the job's pod"
    return None


def container_started(pod: dict) -> float | None:
    """When the job's container started (epoch seconds), as its node says."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        started = (state.get("running") or state.get("terminated") or {}).get("startedAt")
        if status.get("name") == NOTEBOOK_CONTAINER and started:
            return datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
    return None


def cannot_start(pod: dict | None) -> dict | None:
    """The error of a pod that will never start (its image cannot be pulled, its container not
    made), or None."""
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in FAILED_WAITING:
            return {"ename": waiting["reason"], "evalue": waiting.get("message") or "the job's pod cannot start", "cell_index": None}
    return None


def job_ended(job: dict) -> bool:
    status = job.get("status") or {}
    conditions = {c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"}
    return bool(conditions & {"Complete", "Failed"}) or bool(status.get("succeeded") or status.get("failed"))


def why_failed(job: dict | None, pod: dict | None) -> dict:
    """The error of a job whose pod ended without saying 'finished' (killed, out of memory, deadline)."""
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return {"ename": terminated.get("reason") or "PodFailed",
                    "evalue": f"the job's container ended with exit code {terminated.get('exitCode')}", "cell_index": None}
    if job is None:
        return {"ename": "JobDeleted", "evalue": "the job's Kubernetes Job was deleted", "cell_index": None}
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return {"ename": condition.get("reason") or "JobFailed", "evalue": condition.get("message") or "", "cell_index": None}
    return {"ename": "PodFailed", "evalue": "the job's pod ended without a result", "cell_index": None}
