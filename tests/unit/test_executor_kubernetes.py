"""The executor's Kubernetes backends, without a cluster.

Every object the backends build is validated against Kubernetes 1.37 (tests/support/kube.py, strict), the
DaskCluster's scheduler and worker pod specs as Pods (there is no CRD schema offline), and checked
for the trust boundary. The API calls are checked at the client boundary: kubernetes_asyncio's REST
client sends through a recorder (in place of its aiohttp session) that records method, path, query,
headers and body and answers with canned API responses queued by each test — no fake API server.
The job pod's runner (``pod_runner``) runs for real against the executor's job-files handler.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import nbformat
import pytest
from kubernetes_asyncio.client import ApiClient, Configuration
from kubespawner.slugs import safe_slug
from tornado.httpserver import HTTPServer

from notebench.executor import db
from notebench.executor.app import Executor
from notebench.executor.backends.base import JobSpec, JobState, RecordedJob, ScoringServerFailed, ScoringServerSpec
from notebench.executor.backends.kubernetes.endpoints import KubernetesEndpointBackend
from notebench.executor.backends.kubernetes.jobs import (
    KubeAPI,
    KubernetesBackend,
    config_from_values,
    problem_kind,
)
from notebench.executor.backends.kubernetes.objects import EXECUTOR_RULES
from notebench.executor.backends.local.endpoints import LocalEndpointBackend
from notebench.executor.backends.local.jobs import LocalBackend
from notebench.executor.jobs.dispatcher import Dispatcher, read_events
from notebench.executor.runtime.events import EVENT_PREFIX
from notebench.executor.schemas import JobRequest
from notebench.hub.platform.profiles import Profiles
from tests.support.dispatcher import DispatcherApp, serve_job_files
from tests.support.kube import validate

NS = "nb-test"
RELEASE = "nbrel"
EXECUTOR_ID = "nbrel-executor-0"
KEY = "executor-secret"
PROFILES = [
    {"name": "cpu", "cpu_limit": 2, "mem_limit": "4G", "default": True},
    {"name": "gpu", "cpu_limit": 4, "mem_limit": "16G", "gpus": 1, "image": "example.org/user-cuda:1",
     "node_selector": {"gpu": "nvidia"}, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
]
BOUNDARY_CONTAINER = {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                      "seccompProfile": {"type": "RuntimeDefault"}}
DEADLINE = 30  # seconds any awaited condition gets


# --- the client boundary ------------------------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str
    query: dict
    headers: dict
    body: object


class CannedResponse:
    """What aiohttp would return, for kubernetes_asyncio's REST client (status, headers, body)."""

    def __init__(self, status: int, body: bytes):
        self.status, self.reason, self._body = status, "canned", body
        self.headers = {"content-type": "application/json"}
        self.released = False

    async def read(self) -> bytes:
        return self._body

    async def text(self) -> str:
        return self._body.decode()

    @property
    def content(self):
        body = self._body

        class Content:
            async def iter_any(self):
                for i in range(0, len(body), 7):  # in small pieces: lines arrive split
                    yield body[i : i + 7]

        return Content()

    def release(self) -> None:
        self.released = True


class Recorder:
    """Stands in for the aiohttp session of kubernetes_asyncio's REST client: records every request
    and answers with the response queued for its method and path (and, if queued so, a text its
    query holds); the last one queued repeats."""

    def __init__(self):
        self.calls: list[Call] = []
        self.canned: dict[tuple, deque] = defaultdict(deque)
        self.unexpected: list[Call] = []

    def answer(self, method: str, path: str, status: int = 200, body=None, raw: bytes | None = None,
               when: str = "") -> None:
        data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
        self.canned[(method, path, when)].append((status, data))

    async def request(self, method, url, headers=None, data=None, **_options):
        parts = urlsplit(url)
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        query = dict(parse_qsl(parts.query))
        call = Call(method, parts.path, query, headers, json.loads(data) if data else None)
        self.calls.append(call)
        matching = [key for key in self.canned if key[:2] == (method, parts.path) and key[2] in json.dumps(query)]
        queue = self.canned[max(matching, key=lambda key: len(key[2]))] if matching else None
        if not queue:
            self.unexpected.append(call)
            return CannedResponse(500, b'{"message": "no canned answer"}')
        status, body = queue[0] if len(queue) == 1 else queue.popleft()
        return CannedResponse(status, body)

    async def close(self):
        pass

    def made(self, method: str, path_end: str = "") -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.endswith(path_end)]


async def kube_api() -> tuple[KubeAPI, Recorder]:
    """A KubeAPI on kubernetes_asyncio's own ApiClient and REST client, sending to a Recorder."""
    configuration = Configuration(host="https://kube.test", api_key={"BearerToken": "sa-token"},
                                  api_key_prefix={"BearerToken": "Bearer"})
    client = ApiClient(configuration)
    await client.rest_client.pool_manager.close()  # its aiohttp session, never used
    recorder = Recorder()
    client.rest_client.pool_manager = recorder
    return KubeAPI(client), recorder


def rule_for(call: Call) -> tuple[str, str, str]:
    """The RBAC (apiGroup, resource, verb) a recorded call needs."""
    parts = call.path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    assert rest[0] == "namespaces" and rest[1] == NS, call.path
    resource, named = rest[2], len(rest) > 3
    if len(rest) > 4:
        resource += "/" + rest[4]
    verb = {"POST": "create", "DELETE": "delete", "PATCH": "patch", "PUT": "update"}.get(call.method)
    return group, resource, verb or ("get" if named else "list")


def allowed() -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in EXECUTOR_RULES for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


async def until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


# --- what the backends are given ------------------------------------------------------------------


def job_backend(api: KubeAPI | None = None, **settings) -> KubernetesBackend:
    """The jobs backend as the values file configures it (``api``: the recorded client, when it calls)."""
    settings = {"namespace": NS, "release": RELEASE, "image": "example.org/user:1", "executor_id": EXECUTOR_ID,
                "token_key": KEY, "executor_url": "http://nbrel-executor:8090", "service_prefix": "/services/executor/",
                "poll_seconds": 0.01, **settings}
    backend = KubernetesBackend(profiles=Profiles(profiles=PROFILES), **settings)
    if api is not None:
        backend.api = api
    return backend


def job_spec(tmp_path: Path, job_id: int = 7, profile: str = "cpu", workers: int = 0, worker_profile: str = "") -> JobSpec:
    job_dir = tmp_path / str(job_id)
    job_dir.mkdir(exist_ok=True)
    return JobSpec(
        job_id=job_id, owner=OWNER, job_dir=str(job_dir), kernel="python3", profile=profile,
        cwd="/home/jovyan/work", parameters={"alpha": 0.5}, timeout_seconds=600, workers=workers,
        worker_threads=2, worker_memory=None, worker_profile=worker_profile,
        env={"NOTEBENCH_PROFILE": profile, "CUDA_VISIBLE_DEVICES": "", "MLFLOW_TRACKING_TOKEN": "owner-token",
             "MLFLOW_TRACKING_URI": "http://nbrel-mlflow:5000/services/mlflow"},
        kernel_env={"NOTEBENCH_JOB_ID": str(job_id), "MLFLOW_RUN_ID": "run-1"},
    )


def as_pod(name: str, template: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **template["metadata"]}, "spec": template["spec"]}


OWNER = "Alice@Example.org, of the data-science team in the north-west office"  # long: slugs are cut at 48


def assert_user_pod(pod: dict, owner: str = safe_slug(OWNER, max_length=48), gpus: int = 0, home: bool = True) -> None:
    validate(pod)
    labels, spec = pod["metadata"]["labels"], pod["spec"]
    assert labels["notebench.io/workload"] == "user" and labels["notebench.io/owner"] == owner
    assert labels["app.kubernetes.io/name"] == "notebench" and labels["app.kubernetes.io/instance"] == RELEASE
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"]:
        assert container["securityContext"] == BOUNDARY_CONTAINER
        limits = container.get("resources", {}).get("limits", {})
        assert limits.get("nvidia.com/gpu") == (str(gpus) if gpus else None)
    claims = [v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes", []) if "persistentVolumeClaim" in v]
    assert claims == ([f"home-{owner}"] if home else [])


def running_pod(phase: str, terminated: dict | None = None) -> dict:
    statuses = [{"name": "notebook", "state": {"terminated": terminated}}] if terminated else []
    return {"items": [{"metadata": {"name": "nbrel-job-7-abcde"}, "status": {"phase": phase, "containerStatuses": statuses}}]}


def event_line(**event) -> bytes:
    return (EVENT_PREFIX + json.dumps(event) + "\n").encode()


JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
PODS = f"/api/v1/namespaces/{NS}/pods"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"
POLICIES = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"
CLUSTERS = f"/apis/kubernetes.dask.org/v1/namespaces/{NS}/daskclusters"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
SERVICES = f"/api/v1/namespaces/{NS}/services"
LOG = f"{PODS}/nbrel-job-7-abcde/log"
EVENTS = f"/api/v1/namespaces/{NS}/events"
CLAIMS = f"/api/v1/namespaces/{NS}/persistentvolumeclaims"
HOME = f"{CLAIMS}/home-{safe_slug(OWNER, max_length=48)}"
NO_EVENTS = {"items": []}


# --- manifests ----------------------------------------------------------------------------------------


def test_a_distributed_gpu_jobs_objects_are_valid_and_inside_the_boundary(tmp_path):
    backend = job_backend()
    made = backend.objects(job_spec(tmp_path, profile="gpu", workers=3, worker_profile="cpu"))
    job = made["job"]
    validate(job)
    assert job["metadata"]["name"] == "nbrel-job-7"
    # The pod's deadline, not the Job's: time waiting for the scheduler does not count.
    assert "activeDeadlineSeconds" not in job["spec"]
    assert job["spec"]["template"]["spec"]["activeDeadlineSeconds"] == 600 + backend.deadline_margin_seconds
    assert job["spec"]["backoffLimit"] == 0
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "job"
    assert labels["notebench.io/executor"] == EXECUTOR_ID and labels["notebench.io/job-id"] == "7"
    pod = as_pod("job-pod", job["spec"]["template"])
    assert_user_pod(pod, gpus=1)
    assert pod["spec"]["nodeSelector"] == {"gpu": "nvidia"} and pod["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "example.org/user-cuda:1"  # the profile's image
    assert container["args"] == ["python", "-m", "notebench.executor.runtime.pod_runner"] and "command" not in container
    assert container["resources"]["limits"] == {"cpu": "4", "memory": str(16 * 1024**3), "nvidia.com/gpu": "1"}
    assert "NVIDIA_VISIBLE_DEVICES" not in {e["name"] for e in container["env"]}
    plain = {e["name"]: e["value"] for e in container["env"]}
    assert "owner-token" not in json.dumps(job), "secrets stay out of the Job"
    pod_spec = json.loads(plain["NOTEBENCH_JOB_SPEC"])
    assert pod_spec["dask_scheduler_address"] == f"tcp://nbrel-dask-7-scheduler.{NS}:8786"
    assert plain["NOTEBENCH_JOB_FILES_URL"] == "http://nbrel-executor:8090/services/executor/api/jobs/7/files"

    secret, policy, cluster = [obj for _, obj in made["owned"]("job-uid")]
    for obj in (secret, policy, cluster):
        validate(obj) if obj["kind"] != "DaskCluster" else None
        assert obj["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "nbrel-job-7",
                                                       "uid": "job-uid", "controller": True}]
    assert secret["stringData"]["MLFLOW_TRACKING_TOKEN"] == "owner-token"
    assert secret["stringData"]["NOTEBENCH_JOB_TOKEN"] == backend.job_token(7)
    assert "CUDA_VISIBLE_DEVICES" not in secret["stringData"], "'' would hide the pod's GPU"
    assert policy["spec"]["podSelector"]["matchLabels"]["notebench.io/job-id"] == "7"
    assert policy["spec"]["ingress"][0]["from"][0]["podSelector"] == policy["spec"]["podSelector"]

    assert (cluster["apiVersion"], cluster["kind"], cluster["metadata"]["name"]) == ("kubernetes.dask.org/v1", "DaskCluster", "nbrel-dask-7")
    assert cluster["spec"]["worker"]["replicas"] == 3
    scheduler = as_pod("scheduler", cluster["spec"]["scheduler"])
    worker = as_pod("worker", cluster["spec"]["worker"])
    assert_user_pod(scheduler, gpus=0)  # the job's CPUs and memory: no GPU, not on a GPU node
    assert "nodeSelector" not in scheduler["spec"] and scheduler["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "4"
    assert_user_pod(worker, gpus=0)  # the workers' (CPU) profile
    assert scheduler["metadata"]["labels"]["app.kubernetes.io/component"] == "dask-scheduler"
    assert worker["metadata"]["labels"]["app.kubernetes.io/component"] == "dask-worker"
    assert worker["metadata"]["labels"]["notebench.io/job-id"] == "7"  # inside the job's NetworkPolicy
    args = worker["spec"]["containers"][0]["args"]
    assert args[:2] == ["dask", "worker"] and args[args.index("--nthreads") + 1] == "2"
    assert scheduler["spec"]["containers"][0]["args"][:2] == ["dask", "scheduler"]  # the commands distributed has
    assert worker["spec"]["containers"][0]["image"] == "example.org/user:1"
    assert worker["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "nbrel-job-7"}}]


def test_a_cpu_jobs_pod_has_no_gpu_and_no_home_when_storage_is_off(tmp_path):
    backend = job_backend(home_claim="")
    made = backend.objects(job_spec(tmp_path))
    assert_user_pod(as_pod("p", made["job"]["spec"]["template"]), gpus=0, home=False)
    assert made["cluster"] is None and [obj["kind"] for _, obj in made["owned"]("u")] == ["Secret"]
    (container,) = made["job"]["spec"]["template"]["spec"]["containers"]
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in container["env"]  # a CUDA image sees no GPU
    assert container["resources"] == {"limits": {"cpu": "2", "memory": str(4 * 1024**3)},
                                      "requests": {"cpu": "2", "memory": str(4 * 1024**3)}}


def test_model_server_objects_are_valid_and_inside_the_boundary():
    backend = KubernetesEndpointBackend(profiles=Profiles(profiles=PROFILES), namespace=NS, release=RELEASE,
                                        image="example.org/model-server:1")
    made = backend.objects(ScoringServerSpec(12, "churn", "bob", "models:/churn/3", "cpu",
                                             {"MLFLOW_TRACKING_TOKEN": "bob-token", "CUDA_VISIBLE_DEVICES": ""}))
    deployment, service, secret = made["deployment"], made["service"], made["secret"]("dep-uid")
    for obj in (deployment, service, secret):
        validate(obj)
    assert_user_pod(as_pod("server", deployment["spec"]["template"]), owner="bob", home=False)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "example.org/model-server:1"
    assert "models:/churn/3" in container["args"] and "command" not in container and "bob-token" not in json.dumps(deployment)
    assert deployment["metadata"]["labels"]["app.kubernetes.io/component"] == "model-server"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert secret["stringData"] == {"MLFLOW_TRACKING_TOKEN": "bob-token"}


# --- jobs at the client boundary ----------------------------------------------------------------------


async def job_7_backend() -> tuple[KubernetesBackend, Recorder]:
    """The jobs backend on a recorded API server that accepts job 7's Job and its Secret."""
    api, recorder = await kube_api()
    recorder.answer("POST", JOBS, 201, {"metadata": {"name": "nbrel-job-7", "uid": "job-uid"}})
    recorder.answer("POST", SECRETS, 201)
    return job_backend(api), recorder


async def start_distributed_job(tmp_path: Path):
    """Start job 7 with 2 workers; its pod has run and said 'finished'. Returns backend, recorder, handle."""
    api, recorder = await kube_api()
    backend = job_backend(api)
    recorder.answer("POST", JOBS, 201, {"metadata": {"name": "nbrel-job-7", "uid": "job-uid"}})
    for path in (SECRETS, POLICIES, CLUSTERS):
        recorder.answer("POST", path, 201, {"metadata": {"uid": "x"}})
    recorder.answer("GET", PODS, body=running_pod("Succeeded"))
    recorder.answer("GET", LOG, raw=b"Executing cell 1\n" + event_line(event="started") + b"hello from the notebook\n"
                    + event_line(event="finished", status="succeeded"))
    handle = await backend.start(job_spec(tmp_path, workers=2))
    return backend, recorder, handle


def test_start_follow_and_clean_up_a_distributed_job(tmp_path):
    async def scenario():
        backend, recorder, handle = await start_distributed_job(tmp_path)
        assert handle == "nbrel-job-7"
        assert [(c.method, c.path) for c in recorder.calls[:4]] == [
            ("POST", JOBS), ("POST", SECRETS), ("POST", POLICIES), ("POST", CLUSTERS)]  # the Job first: the rest are its
        assert recorder.calls[0].body["kind"] == "Job" and recorder.calls[0].headers["authorization"] == "Bearer sa-token"
        assert recorder.calls[3].body["spec"]["worker"]["replicas"] == 2
        await until(lambda: backend._runs[handle].done, "the pod log to be read")
        assert await backend.is_running(handle) is False
        job_dir = tmp_path / "7"
        events, _ = read_events(job_dir / "events.jsonl", 0)
        assert [e["event"] for e in events] == ["started", "finished"] and events[1]["status"] == "succeeded"
        assert (job_dir / "log.txt").read_text() == "Executing cell 1\nhello from the notebook\n"
        (log_call,) = recorder.made("GET", "/log")
        assert log_call.query == {"container": "notebook", "follow": "true"}
        pods_call = recorder.made("GET", "/pods")[0]
        assert pods_call.query["labelSelector"] == "app.kubernetes.io/instance=nbrel,app.kubernetes.io/component=job,notebench.io/job-id=7"

        recorder.answer("DELETE", f"{CLUSTERS}/nbrel-dask-7")
        recorder.answer("DELETE", f"{JOBS}/nbrel-job-7")
        await backend.clean_up(handle)
        deletes = recorder.made("DELETE")
        assert [(c.path, c.query) for c in deletes] == [
            (f"{CLUSTERS}/nbrel-dask-7", {"propagationPolicy": "Background"}),
            (f"{JOBS}/nbrel-job-7", {"propagationPolicy": "Background"}),  # its pods, Secret, policy go with it
        ]
        assert not recorder.unexpected
        await backend.close()

    asyncio.run(scenario())


def test_a_failed_start_deletes_the_job_it_made(tmp_path):
    async def scenario():
        api, recorder = await kube_api()
        backend = job_backend(api)
        recorder.answer("POST", JOBS, 201, {"metadata": {"name": "nbrel-job-7", "uid": "job-uid"}})
        recorder.answer("POST", SECRETS, 403, {"message": "forbidden"})
        recorder.answer("DELETE", f"{JOBS}/nbrel-job-7")
        with pytest.raises(Exception, match="403"):
            await backend.start(job_spec(tmp_path))
        assert [(c.method, c.path) for c in recorder.calls] == [("POST", JOBS), ("POST", SECRETS), ("DELETE", f"{JOBS}/nbrel-job-7")]
        assert await backend.is_running("nbrel-job-7") is False

    asyncio.run(scenario())


def test_a_broken_log_stream_and_api_errors_lose_or_repeat_no_line(tmp_path):
    async def scenario():
        backend, recorder = await job_7_backend()
        recorder.answer("GET", PODS, 500, {"message": "the API server restarts"})  # waited out
        recorder.answer("GET", PODS, body=running_pod("Running"))
        recorder.answer("GET", PODS, body=running_pod("Succeeded"))
        recorder.answer("GET", LOG, raw=b"one\ntwo (half")  # the connection drops mid-line
        recorder.answer("GET", LOG, raw=b"one\ntwo (half) done\n" + event_line(event="finished", status="succeeded") + b"bye")
        handle = await backend.start(job_spec(tmp_path))
        await until(lambda: backend._runs[handle].done, "the pod log to be read")
        assert (tmp_path / "7" / "log.txt").read_text() == "one\ntwo (half) done\nbye\n"
        assert len(recorder.made("GET", "/log")) == 2 and len(recorder.made("GET", "/pods")) == 3
        assert not recorder.unexpected

    asyncio.run(scenario())


async def killed_pod_job(tmp_path: Path) -> Recorder:
    """Job 7's pod is killed (out of memory) before it says 'finished'."""
    backend, recorder = await job_7_backend()
    recorder.answer("GET", PODS, body=running_pod("Failed", {"reason": "OOMKilled", "exitCode": 137}))
    recorder.answer("GET", LOG, raw=event_line(event="started") + b"allocating\n")
    recorder.answer("GET", f"{JOBS}/nbrel-job-7", body={"metadata": {"name": "nbrel-job-7"}, "status": {"failed": 1}})
    handle = await backend.start(job_spec(tmp_path))
    await until(lambda: backend._runs[handle].done, "the pod log to be read")
    return recorder


def test_a_pod_killed_without_a_result_fails_the_job_with_the_reason(tmp_path):
    async def scenario():
        await killed_pod_job(tmp_path)
        events, _ = read_events(tmp_path / "7" / "events.jsonl", 0)
        assert events[-1]["event"] == "finished" and events[-1]["status"] == "failed"
        assert events[-1]["error"]["ename"] == "OOMKilled" and "137" in events[-1]["error"]["evalue"]

    asyncio.run(scenario())


def test_a_job_past_its_deadline_before_its_pod_ran_fails_with_the_jobs_reason(tmp_path):
    async def scenario():
        backend, recorder = await job_7_backend()
        recorder.answer("GET", PODS, body={"items": []})
        recorder.answer("GET", EVENTS, body=NO_EVENTS)
        failed = {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too long"}]}
        recorder.answer("GET", f"{JOBS}/nbrel-job-7", body={"metadata": {"name": "nbrel-job-7"}, "status": failed})
        handle = await backend.start(job_spec(tmp_path))
        await until(lambda: backend._runs[handle].done, "the Job's end to be seen")
        events, _ = read_events(tmp_path / "7" / "events.jsonl", 0)
        assert events[-1]["error"]["ename"] == "DeadlineExceeded"
        assert not recorder.made("GET", "/log")

    asyncio.run(scenario())


def test_a_job_whose_image_cannot_be_pulled_fails_at_once_with_the_reason(tmp_path):
    async def scenario():
        backend, recorder = await job_7_backend()
        waiting = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "example.org/user:nope"'}
        pending = {"items": [{"metadata": {"name": "nbrel-job-7-abcde"},
                              "status": {"phase": "Pending", "containerStatuses": [{"name": "notebook", "state": {"waiting": waiting}}]}}]}
        recorder.answer("GET", PODS, body=pending)
        handle = await backend.start(job_spec(tmp_path))
        await until(lambda: backend._runs[handle].done, "the stuck pod to be seen")
        events, _ = read_events(tmp_path / "7" / "events.jsonl", 0)
        assert events == [{"event": "finished", "status": "failed",
                           "error": {"ename": "ImagePullBackOff", "evalue": waiting["message"], "cell_index": None}}]
        assert not recorder.made("GET", "/log") and not recorder.unexpected
        recorder.answer("DELETE", f"{JOBS}/nbrel-job-7", 200, {})
        await backend.clean_up(handle)  # what the dispatcher does next: the Job goes, with its pod
        (delete,) = recorder.made("DELETE", f"{JOBS}/nbrel-job-7")
        assert delete.query == {"propagationPolicy": "Background"}

    asyncio.run(scenario())


def test_cancel_deletes_the_job_with_its_pods_and_stops_following(tmp_path):
    async def scenario():
        backend, recorder = await job_7_backend()
        recorder.answer("GET", PODS, body={"items": []})  # still being scheduled
        recorder.answer("GET", EVENTS, body=NO_EVENTS)
        recorder.answer("GET", f"{JOBS}/nbrel-job-7", body={"metadata": {"name": "nbrel-job-7"}, "status": {}})
        recorder.answer("DELETE", f"{JOBS}/nbrel-job-7")
        handle = await backend.start(job_spec(tmp_path))
        follower = backend._runs[handle].task
        assert await backend.is_running(handle) is True
        await backend.kill(handle)
        (delete,) = recorder.made("DELETE")
        assert (delete.path, delete.query) == (f"{JOBS}/nbrel-job-7", {"propagationPolicy": "Background"})
        assert await backend.is_running(handle) is False
        await asyncio.wait([follower], timeout=DEADLINE)
        assert follower.cancelled()  # no more polling of a deleted Job

    asyncio.run(scenario())


async def recover(tmp_path: Path):
    api, recorder = await kube_api()
    backend = job_backend(api)
    job_dir = tmp_path / "7"
    job_dir.mkdir()
    (job_dir / "log.txt").write_text("written before the restart\n")
    gone, other = "nbrel-executor-5d9f-old", "nbrel-executor-5d9f-other"
    listed = {"items": [
        # 7 ran under the executor pod this one replaced (the store says it is ours now: adopted)
        {"metadata": {"name": "nbrel-job-7", "labels": {"notebench.io/job-id": "7", "notebench.io/executor": gone}}},
        # 8 ended while that pod went down
        {"metadata": {"name": "nbrel-job-8", "labels": {"notebench.io/job-id": "8", "notebench.io/executor": gone,
                                                         "notebench.io/dask-cluster": "nbrel-dask-8"}}},
        # 10 is another executor's, which runs
        {"metadata": {"name": "nbrel-job-10", "labels": {"notebench.io/job-id": "10", "notebench.io/executor": other}}},
    ]}
    recorder.answer("GET", PODS, body={"items": [{"metadata": {"name": EXECUTOR_ID}}, {"metadata": {"name": other}}]},
                    when="component=executor")
    recorder.answer("GET", JOBS, body=listed)
    recorder.answer("DELETE", f"{CLUSTERS}/nbrel-dask-8")
    recorder.answer("DELETE", f"{JOBS}/nbrel-job-8")
    recorder.answer("GET", PODS, body=running_pod("Succeeded"))
    recorder.answer("GET", LOG, raw=b"whole log\n" + event_line(event="finished", status="succeeded"))
    handles = await backend.find([RecordedJob(7, str(job_dir), None), RecordedJob(9, str(tmp_path / "9"), None)])
    return backend, recorder, handles


def test_recovery_finds_jobs_by_labels_and_deletes_what_is_left_of_ended_ones(tmp_path):
    async def scenario():
        backend, recorder, handles = await recover(tmp_path)
        assert handles == {7: "nbrel-job-7"}  # 9 has no Job: the dispatcher fails it; none runs twice
        executors_call, list_call = recorder.calls[:2]
        assert executors_call.query == {"labelSelector": "app.kubernetes.io/instance=nbrel,app.kubernetes.io/component=executor"}
        assert (list_call.method, list_call.path) == ("GET", JOBS)
        assert list_call.query == {"labelSelector": "app.kubernetes.io/instance=nbrel,app.kubernetes.io/component=job"}
        assert await backend.gone_executors({"nbrel-executor-5d9f-old", "nbrel-executor-5d9f-other"}) == {"nbrel-executor-5d9f-old"}
        assert [c.path for c in recorder.made("DELETE")] == [f"{CLUSTERS}/nbrel-dask-8", f"{JOBS}/nbrel-job-8"]
        await until(lambda: backend._runs["nbrel-job-7"].done, "the pod log to be read again")
        assert (tmp_path / "7" / "log.txt").read_text() == "whole log\n"  # read again from the start, not doubled
        events, _ = read_events(tmp_path / "7" / "events.jsonl", 0)
        assert [e["status"] for e in events] == ["succeeded"]

    asyncio.run(scenario())


def test_a_restarted_executor_takes_over_the_work_of_the_pod_it_replaced(tmp_path):
    async def scenario():
        api, recorder = await kube_api()
        executor = Executor(executor_id=EXECUTOR_ID)
        executor.sessions = db.connect(f"sqlite:///{tmp_path / 'executor.sqlite'}")
        executor.backend = job_backend(api)
        gone, other = "nbrel-executor-5d9f-old", "nbrel-executor-5d9f-other"
        with executor.sessions() as s:
            for status, executor_id in (("running", gone), ("running", other), ("succeeded", gone)):
                s.add(db.Job(name="t", owner="alice", status=status, parameters={}, profile="cpu", kernel="python3",
                             cwd="/home/jovyan", workers=0, timeout_seconds=600, executor_id=executor_id))
            endpoint = db.Endpoint(name="churn", owner="alice", profile="cpu")
            s.add(endpoint)
            s.flush()
            s.add(db.ScoringServer(endpoint_id=endpoint.id, model="churn", version="1", weight=100, executor_id=gone))
            s.commit()
        recorder.answer("GET", PODS, body={"items": [{"metadata": {"name": EXECUTOR_ID}}, {"metadata": {"name": other}}]},
                        when="component=executor")
        await executor.adopt()
        with executor.sessions() as s:
            jobs = [(j.status, j.executor_id) for j in s.query(db.Job).order_by(db.Job.id)]
            servers = [x.executor_id for x in s.query(db.ScoringServer)]
        assert jobs == [("running", EXECUTOR_ID), ("running", other), ("succeeded", gone)]
        assert servers == [EXECUTOR_ID]

    asyncio.run(scenario())


def test_job_tokens_are_per_job_and_only_kubernetes_jobs_have_them(tmp_path):
    backend = job_backend()
    assert backend.check_job_token(7, backend.job_token(7))
    assert not backend.check_job_token(8, backend.job_token(7))
    assert not backend.check_job_token(7, "")
    assert not job_backend(token_key="").check_job_token(7, "")
    assert not LocalBackend().check_job_token(7, backend.job_token(7))


def answer_job_1(recorder: Recorder, log: bytes) -> None:
    """The API's answers for the dispatcher's job 1: its Job and Secret made, its pod done with ``log``."""
    recorder.answer("POST", JOBS, 201, {"metadata": {"name": "nbrel-job-1", "uid": "job-uid"}})
    recorder.answer("POST", SECRETS, 201)
    recorder.answer("GET", PODS, body=running_pod("Succeeded"))
    recorder.answer("GET", f"{PODS}/nbrel-job-7-abcde/log", raw=log)
    recorder.answer("DELETE", f"{JOBS}/nbrel-job-1")


def dispatcher_app(tmp_path: Path, api: KubeAPI, **settings) -> DispatcherApp:
    return DispatcherApp(tmp_path, job_backend(api, **settings), EXECUTOR_ID)


def test_the_dispatcher_runs_a_kubernetes_job_to_its_end_and_deletes_its_job(tmp_path):
    """The dispatcher's one code path with this backend: submit, claim, start, watch the job
    directory the pod log fills, finish, clean up."""

    async def scenario():
        api, recorder = await kube_api()
        app = dispatcher_app(tmp_path, api)
        dispatcher = Dispatcher(app)
        answer_job_1(recorder, event_line(event="started") + b"cell output\n" + event_line(event="finished", status="succeeded"))
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('cell output')")])
        job = await dispatcher.submit("alice", JobRequest.model_validate({"notebook": notebook, "profile": "gpu", "cwd": "work"}))

        def status():
            with app.sessions() as s:
                return s.get(db.Job, job.id).status

        await until(lambda: status() == "succeeded", "the job to succeed")
        created = recorder.made("POST", "/jobs")[0].body
        assert created["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert json.loads({e["name"]: e["value"] for e in created["spec"]["template"]["spec"]["containers"][0]["env"]}
                          ["NOTEBENCH_JOB_SPEC"])["cwd"] == "work"  # in the pod's home (its HOME), not the executor's
        assert (dispatcher.job_dir(job.id) / "log.txt").read_text() == "cell output\n"
        await until(lambda: recorder.made("DELETE"), "the ended job's Job to be deleted")
        assert not recorder.unexpected
        await dispatcher.close()

    asyncio.run(scenario())


def test_a_forged_report_in_the_pod_log_fails_the_job_and_deletes_its_job(tmp_path):
    """The pod log is the owner's words: a job that prints an end the runner never reports (here:
    back to the queue) fails with the reason, never re-runs, and its Job is deleted."""

    async def scenario():
        api, recorder = await kube_api()
        app = dispatcher_app(tmp_path, api)
        dispatcher = Dispatcher(app)
        answer_job_1(recorder, event_line(event="started") + event_line(event="finished", status="queued")
                        + event_line(event="finished", status="succeeded"))
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
        job = await dispatcher.submit("alice", JobRequest.model_validate({"notebook": notebook}))

        def row():
            with app.sessions() as s:
                return s.get(db.Job, job.id)

        await until(lambda: row().status == "failed", "the job to fail")
        assert row().error["ename"] == "MalformedReport" and "'queued'" in row().error["evalue"]
        await until(lambda: recorder.made("DELETE"), "its Job to be deleted")
        assert len(recorder.made("POST", "/jobs")) == 1  # never started again
        await dispatcher.close()

    asyncio.run(scenario())


def test_a_job_the_executor_went_down_while_starting_goes_back_to_the_queue(tmp_path):
    """Claimed (running, this executor's) but no Job was made for it and nothing reported: after a
    restart it is queued again and runs, rather than failing for a crash none of it saw."""

    async def scenario():
        api, recorder = await kube_api()
        app = dispatcher_app(tmp_path, api)
        with app.sessions() as s:
            s.add(db.Job(name="t", owner="alice", status="running", parameters={}, profile="cpu", kernel="python3",
                         cwd="/home/jovyan", workers=0, timeout_seconds=600, executor_id=EXECUTOR_ID))
            s.commit()
        dispatcher = Dispatcher(app)
        (tmp_path / "executor" / "jobs" / "1").mkdir(parents=True)  # its input is in; nothing else
        recorder.answer("GET", PODS, body={"items": [{"metadata": {"name": EXECUTOR_ID}}]}, when="component=executor")
        recorder.answer("GET", JOBS, body={"items": []})
        answer_job_1(recorder, event_line(event="started") + event_line(event="finished", status="succeeded"))
        (tmp_path / "executor" / "jobs" / "1" / "input.ipynb").write_text(
            nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])))
        await dispatcher.recover()

        def status():
            with app.sessions() as s:
                return s.get(db.Job, 1).status

        await until(lambda: status() == "succeeded", "the job to run after all")
        assert len(recorder.made("POST", "/jobs")) == 1
        await dispatcher.close()

    asyncio.run(scenario())


def test_an_api_server_down_at_start_keeps_the_job_queued_until_it_answers(tmp_path, monkeypatch):
    """The Kubernetes API briefly down (503, then up): the job waits in the queue and then runs."""
    monkeypatch.setattr("notebench.executor.jobs.dispatcher.OUTAGE_FIRST_RETRY_SECONDS", 0.05)

    async def scenario():
        api, recorder = await kube_api()
        app = dispatcher_app(tmp_path, api)
        dispatcher = Dispatcher(app)
        recorder.answer("POST", JOBS, 503, {"message": "the API server is restarting"})
        recorder.answer("POST", JOBS, 503, {"message": "the API server is restarting"})
        answer_job_1(recorder, event_line(event="started") + event_line(event="finished", status="succeeded"))
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
        job = await dispatcher.submit("alice", JobRequest.model_validate({"notebook": notebook}))
        statuses = []

        def status():
            with app.sessions() as s:
                statuses.append(s.get(db.Job, job.id).status)
            return statuses[-1]

        await until(lambda: status() == "succeeded", "the job to succeed once the API answers")
        assert len(recorder.made("POST", "/jobs")) == 3  # two refused, then made
        assert "failed" not in statuses
        await dispatcher.close()

    asyncio.run(scenario())


def iso(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_job_held_for_busy_gpus_is_queued_and_its_timeout_counts_from_its_containers_start(tmp_path):
    """D2, as the dispatcher shows it: a job claimed an hour ago (before an executor restart)
    whose pod still waits for a GPU is queued, this executor's, and not timed out; once its
    container starts it runs, started then, its timeout counting from then."""

    async def scenario():
        api, recorder = await kube_api()
        app = dispatcher_app(tmp_path, api)
        claimed_at = datetime.fromtimestamp(time.time() - 3600, timezone.utc)
        with app.sessions() as s:
            s.add(db.Job(name="t", owner="alice", status="running", parameters={}, profile="gpu", kernel="python3",
                         cwd="/home/jovyan", workers=0, timeout_seconds=600, executor_id=EXECUTOR_ID, started_at=claimed_at))
            s.commit()
        dispatcher = app.start()
        dispatcher.job_dir(1).mkdir(parents=True)
        recorder.answer("GET", PODS, body={"items": [{"metadata": {"name": EXECUTOR_ID}}]}, when="component=executor")
        recorder.answer("GET", JOBS, body={"items": [{"metadata": {"name": "nbrel-job-1", "labels": {
            "notebench.io/job-id": "1", "notebench.io/executor": EXECUTOR_ID}}}]})
        recorder.answer("GET", PODS, body=pending_pod(BUSY_GPUS))
        await dispatcher.recover()
        await until(lambda: app.job(1).status == "queued", "the job to be shown queued")
        held = app.job(1)
        assert (held.executor_id, held.started_at) == (EXECUTOR_ID, None)  # still this executor's; not started
        await dispatcher.dispatch()
        assert not recorder.made("POST", "/jobs")  # a held job is never claimed again

        started = time.time() - 5
        recorder.canned[("GET", PODS, "")] = deque([(200, json.dumps(pod_running_since(iso(started))).encode())])
        recorder.answer("GET", f"{PODS}/nbrel-job-7-abcde/log", raw=event_line(event="started"))
        await until(lambda: app.job(1).status == "running", "the job to run")
        assert abs(app.job(1).started_at.timestamp() - int(started)) < 1  # its container's start, not its claim
        recorder.canned[("GET", PODS, "")] = deque([(200, json.dumps(pod_running_since(iso(started), "Succeeded")).encode())])
        recorder.canned[("GET", f"{PODS}/nbrel-job-7-abcde/log", "")] = deque(
            [(200, event_line(event="started") + event_line(event="finished", status="succeeded"))])
        recorder.answer("DELETE", f"{JOBS}/nbrel-job-1")
        await until(lambda: app.job(1).status == "succeeded", "the job to succeed")  # an hour after its claim
        await dispatcher.close()

    asyncio.run(scenario())


def test_a_job_times_out_its_timeout_after_its_container_started(tmp_path):
    async def scenario():
        api, recorder = await kube_api()
        app = dispatcher_app(tmp_path, api)
        dispatcher = app.start()
        recorder.answer("POST", JOBS, 201, {"metadata": {"name": "nbrel-job-1", "uid": "job-uid"}})
        recorder.answer("POST", SECRETS, 201)
        recorder.answer("GET", PODS, body=pod_running_since(iso(time.time() - 61)))  # as if the executor was slow to see it
        recorder.answer("GET", f"{PODS}/nbrel-job-7-abcde/log", raw=event_line(event="started"))
        recorder.answer("DELETE", f"{JOBS}/nbrel-job-1")
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
        job = await dispatcher.submit("alice", JobRequest.model_validate({"notebook": notebook, "timeout_seconds": 60}))
        await until(lambda: app.job(job.id).status == "timed_out", "the job to time out")
        assert app.job(job.id).error["evalue"] == "the job ran longer than 60 s"
        assert recorder.made("DELETE", "/jobs/nbrel-job-1")
        await dispatcher.close()

    asyncio.run(scenario())


def test_cancelling_a_held_job_deletes_its_kubernetes_job(tmp_path):
    async def scenario():
        api, recorder = await kube_api()
        app = dispatcher_app(tmp_path, api)
        dispatcher = app.start()
        recorder.answer("POST", JOBS, 201, {"metadata": {"name": "nbrel-job-1", "uid": "job-uid"}})
        recorder.answer("POST", SECRETS, 201)
        recorder.answer("GET", PODS, body=pending_pod(BUSY_GPUS))
        recorder.answer("DELETE", f"{JOBS}/nbrel-job-1")
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
        job = await dispatcher.submit("alice", JobRequest.model_validate({"notebook": notebook, "profile": "gpu"}))
        await until(lambda: app.job(job.id).status == "queued" and app.job(job.id).executor_id, "the job to be held")
        await dispatcher.cancel(job.id)
        assert app.job(job.id).status == "cancelled"
        assert recorder.made("DELETE", "/jobs/nbrel-job-1")  # its pod does not wait on
        await dispatcher.close()

    asyncio.run(scenario())


# --- the job pod's runner, with the executor's job-files handler ------------------------------------


class FilesApp:
    """What JobFilesHandler reads of the executor: the store, the backend (tokens), job dirs."""

    def __init__(self, tmp_path: Path, backend):
        self.sessions = db.connect(f"sqlite:///{tmp_path / 'executor.sqlite'}")
        self.backend = backend
        self.jobs_dir = tmp_path / "jobs"
        self.dispatcher = self

    def job_dir(self, job_id: int) -> Path:
        return self.jobs_dir / str(job_id)

    def add_job(self, status: str = "running", executor_id: str | None = EXECUTOR_ID) -> int:
        with self.sessions() as s:
            job = db.Job(name="t", owner="alice", status=status, parameters={}, profile="cpu", kernel="python3",
                         cwd="/home/jovyan", workers=0, timeout_seconds=600, executor_id=executor_id)
            s.add(job)
            s.commit()
        self.job_dir(job.id).mkdir(parents=True)
        return job.id


async def serve_files(app: FilesApp) -> tuple[HTTPServer, str]:
    server, url = await serve_job_files(app)
    return server, f"{url}/services/executor/api/jobs"


def test_job_files_need_the_jobs_own_token_of_a_running_job(tmp_path):
    from tornado.httpclient import AsyncHTTPClient, HTTPClientError

    async def scenario():
        app = FilesApp(tmp_path, job_backend())
        running, ended = app.add_job(), app.add_job("succeeded")
        held, waiting = app.add_job("queued"), app.add_job("queued", executor_id=None)
        for job_id in (running, held, waiting):
            (app.job_dir(job_id) / "input.ipynb").write_text("{}")
        server, url = await serve_files(app)
        client = AsyncHTTPClient()

        async def status(method, job_id, name, token, body=None):
            try:
                r = await client.fetch(f"{url}/{job_id}/files/{name}", method=method, body=body,
                                       headers={"Authorization": f"token {token}"})
                return r.code
            except HTTPClientError as e:
                return e.code

        token = app.backend.job_token(running)
        assert await status("GET", running, "input", token) == 200
        assert await status("GET", running, "input", app.backend.job_token(ended)) == 403  # another job's
        assert await status("GET", ended, "input", app.backend.job_token(ended)) == 403  # not running
        # Shown queued while its pod waited for a GPU, its container may start before that is seen.
        assert await status("GET", held, "input", app.backend.job_token(held)) == 200
        assert await status("GET", waiting, "input", app.backend.job_token(waiting)) == 403  # no pod of it exists
        assert await status("PUT", running, "output", "nope", b"{}") == 403
        assert await status("PUT", running, "output", token, b'{"cells": []}') == 204
        assert (app.job_dir(running) / "output.ipynb").read_bytes() == b'{"cells": []}'
        assert not (app.job_dir(running) / "output.ipynb.part").exists()
        app.backend = LocalBackend()  # local jobs write their directory themselves: no token works
        assert await status("GET", running, "input", token) == 403
        server.stop()

    asyncio.run(scenario())


def test_the_pod_runner_reports_on_stdout_and_hands_back_its_output_before_finishing(tmp_path):
    async def scenario():
        app = FilesApp(tmp_path, job_backend())
        job_id = app.add_job()
        notebook = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_code_cell("alpha = 1", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("import os\nprint('alpha is', alpha, 'in', os.getcwd())"),
        ])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, str(app.job_dir(job_id) / "input.ipynb"))
        server, url = await serve_files(app)
        home = tmp_path / "home"
        (home / "work").mkdir(parents=True)
        spec = {"job_id": job_id, "kernel": "python3", "cwd": "work", "parameters": {"alpha": 42}, "workers": 0,
                "kernel_env": {"NOTEBENCH_JOB_ID": str(job_id)}, "dask_scheduler_address": None}
        env = {**os.environ, "HOME": str(home), "NOTEBENCH_JOB_SPEC": json.dumps(spec),
               "NOTEBENCH_JOB_FILES_URL": f"{url}/{job_id}/files", "NOTEBENCH_JOB_TOKEN": app.backend.job_token(job_id)}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "notebench.executor.runtime.pod_runner", env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        stdout, _ = await asyncio.wait_for(proc.communicate(), 180)
        server.stop()
        return app, job_id, proc.returncode, stdout

    app, job_id, code, stdout = asyncio.run(scenario())
    assert code == 0, stdout.decode()
    # The executor's side: the pod log split into the job directory's reports.
    job_dir = app.job_dir(job_id)
    run = type("Run", (), {"job_dir": job_dir, "job_id": job_id, "finished": False})()
    job_backend()._write_lines(run, stdout)
    events, _ = read_events(job_dir / "events.jsonl", 0)
    assert [e["event"] for e in events] == ["started", "finished"] and events[-1]["status"] == "succeeded", stdout.decode()
    assert EVENT_PREFIX not in (job_dir / "log.txt").read_text()
    output = nbformat.read(str(job_dir / "output.ipynb"), as_version=4)
    assert f"alpha is 42 in {tmp_path}/home/work" in json.dumps(output.cells[-1].outputs)  # in its home, by HOME


# --- pods that wait or will not start (D1, D2) ------------------------------------------------------


def pending_pod(scheduler_says: str | None = None) -> dict:
    """Job 7's pod, not running yet; ``scheduler_says``: the scheduler cannot place it, and why."""
    conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": scheduler_says}]
    status = {"phase": "Pending", "conditions": conditions if scheduler_says else []}
    return {"items": [{"metadata": {"name": "nbrel-job-7-abcde"}, "status": status}]}


def pod_running_since(started_at: str, phase: str = "Running") -> dict:
    state = {"running": {"startedAt": started_at}} if phase == "Running" else \
        {"terminated": {"startedAt": started_at, "exitCode": 0, "reason": "Completed"}}
    return {"items": [{"metadata": {"name": "nbrel-job-7-abcde"},
                       "status": {"phase": phase, "containerStatuses": [{"name": "notebook", "state": state}]}}]}


BUSY_GPUS = ("0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) didn't match Pod's node affinity/selector. "
             "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, "
             "1 Preemption is not helpful for scheduling.")
NO_NODE = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
REFUSED = ('Error creating: pods "nbrel-job-7-abcde" is forbidden: violates PodSecurity "restricted:latest": '
           'runAsNonRoot != true')


@pytest.mark.parametrize("message, made, kind", [
    (BUSY_GPUS, True, "busy"),  # a node has GPUs, all taken: it waits
    ("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.", True, "busy"),  # no GPU node (yet): waits too
    ("0/3 nodes are available: 3 Insufficient cpu, 3 Insufficient memory.", True, "busy"),
    ("0/1 nodes are available: 1 Too many pods.", True, "busy"),
    (NO_NODE, True, "unschedulable"),
    ("0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}. preemption: 0/1 nodes are "
     "available: 1 Preemption is not helpful for scheduling.", True, "unschedulable"),
    ("0/1 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims.", True, "volume"),
    ('persistentvolumeclaim "home-bob" not found', True, "volume"),
    ('Error creating: pods "x" is forbidden: exceeded quota: gpus, requested: requests.nvidia.com/gpu=1, '
     'used: requests.nvidia.com/gpu=2, limited: requests.nvidia.com/gpu=2', False, "busy"),
    (REFUSED, False, "create"),
])
def test_what_keeps_a_pod_from_starting_is_told_from_the_message(message, made, kind):
    assert problem_kind(message, made) == kind


def test_a_pod_waiting_for_busy_gpus_is_queued_and_runs_from_its_containers_start(tmp_path):
    async def scenario():
        api, recorder = await kube_api()
        backend = job_backend(api, unschedulable_grace_seconds=0)  # busy is no failure, however long
        recorder.answer("POST", JOBS, 201, {"metadata": {"name": "nbrel-job-7", "uid": "job-uid"}})
        recorder.answer("POST", SECRETS, 201)
        recorder.answer("GET", PODS, body=pending_pod(BUSY_GPUS))
        handle = await backend.start(job_spec(tmp_path, profile="gpu"))
        assert await backend.state(handle) is None  # not looked at yet: the dispatcher keeps its claim time
        await until(lambda: backend._runs[handle].state == JobState(queued=True), "the job to be held for a GPU")
        recorder.canned[("GET", PODS, "")] = deque([(200, json.dumps(pending_pod()).encode())])  # placed, pulling
        await until(lambda: backend._runs[handle].state == JobState(), "the pod to be placed")
        recorder.canned[("GET", PODS, "")] = deque([(200, json.dumps(pod_running_since("2026-12-05T21:30:05Z")).encode())])
        recorder.answer("GET", LOG, raw=event_line(event="started"))
        started = datetime(2026, 12, 5, 21, 30, 5, tzinfo=timezone.utc).timestamp()
        await until(lambda: backend._runs[handle].state == JobState(running_since=started), "the container's start")
        recorder.canned[("GET", PODS, "")] = deque([(200, json.dumps(pod_running_since("2026-12-05T21:30:05Z", "Succeeded")).encode())])
        recorder.canned[("GET", LOG, "")] = deque([(200, event_line(event="started") + event_line(event="finished", status="succeeded"))])
        await until(lambda: backend._runs[handle].done, "the pod log to be read")
        events, _ = read_events(tmp_path / "7" / "events.jsonl", 0)
        assert [e["event"] for e in events] == ["started", "finished"] and events[-1]["status"] == "succeeded"
        assert not recorder.made("GET", "/events")  # its pod was made: no need to ask why not
        await backend.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("grace", ["unschedulable_grace_seconds", "volume_binding_seconds"])
def test_a_pod_no_node_may_take_fails_the_job_after_the_grace_with_the_schedulers_reason(tmp_path, grace):
    """Unschedulable for a reason that will not pass (a node selector nothing matches; a volume
    not bound within its own, longer, grace): the job fails within seconds, not at its timeout."""
    message = NO_NODE if grace == "unschedulable_grace_seconds" else "0/1 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims."

    async def scenario():
        api, recorder = await kube_api()
        graces = {"unschedulable_grace_seconds": DEADLINE * 10, "volume_binding_seconds": DEADLINE * 10, grace: 0.2}
        backend = job_backend(api, **graces)
        recorder.answer("POST", JOBS, 201, {"metadata": {"name": "nbrel-job-7", "uid": "job-uid"}})
        recorder.answer("POST", SECRETS, 201)
        recorder.answer("GET", PODS, body=pending_pod(message))
        recorder.answer("GET", f"{JOBS}/nbrel-job-7", body={"metadata": {"name": "nbrel-job-7"}, "status": {}})
        began = time.monotonic()
        handle = await backend.start(job_spec(tmp_path))
        await until(lambda: backend._runs[handle].done, "the job to fail")
        assert time.monotonic() - began >= 0.2  # it had its grace
        assert backend._runs[handle].state == JobState()  # never shown as queued: nothing it waits for is busy
        events, _ = read_events(tmp_path / "7" / "events.jsonl", 0)
        ename = "Unschedulable" if grace == "unschedulable_grace_seconds" else "VolumeNotBound"
        assert events == [{"event": "finished", "status": "failed", "error": {"ename": ename, "evalue": message, "cell_index": None}}]
        assert not recorder.unexpected
        await backend.close()

    asyncio.run(scenario())


async def refused_pod(tmp_path: Path) -> tuple[Recorder, list]:
    """Job 7's pod is refused by an admission rule: the Job controller says so in a FailedCreate event."""
    api, recorder = await kube_api()
    backend = job_backend(api, unschedulable_grace_seconds=0.1)
    recorder.answer("POST", JOBS, 201, {"metadata": {"name": "nbrel-job-7", "uid": "job-uid"}})
    recorder.answer("POST", SECRETS, 201)
    recorder.answer("GET", PODS, body={"items": []})
    recorder.answer("GET", f"{JOBS}/nbrel-job-7", body={"metadata": {"name": "nbrel-job-7"}, "status": {}})
    recorder.answer("GET", EVENTS, body={"items": [
        {"reason": "SuccessfulCreate", "message": "Created pod: nbrel-job-7-zzzzz", "lastTimestamp": "2026-12-05T21:00:00Z"},
        {"reason": "FailedCreate", "message": "Error creating: an older reason", "lastTimestamp": "2026-12-05T21:00:01Z"},
        {"reason": "FailedCreate", "message": REFUSED, "lastTimestamp": "2026-12-05T21:00:02Z"},
    ]})
    handle = await backend.start(job_spec(tmp_path))
    await until(lambda: backend._runs[handle].done, "the job to fail")
    await backend.close()
    events, _ = read_events(tmp_path / "7" / "events.jsonl", 0)
    return recorder, events


def test_a_pod_that_cannot_be_made_fails_the_job_with_the_job_controllers_reason(tmp_path):
    async def scenario():
        recorder, events = await refused_pod(tmp_path)
        assert events == [{"event": "finished", "status": "failed", "error": {"ename": "FailedCreate", "evalue": REFUSED, "cell_index": None}}]
        assert recorder.made("GET", "/events")[0].query == {"fieldSelector": "involvedObject.kind=Job,involvedObject.name=nbrel-job-7"}
        assert not recorder.unexpected

    asyncio.run(scenario())


async def homeless_owners_jobs(tmp_path: Path) -> Recorder:
    """Jobs 7, 8 and 9 of an owner who never started a server (no home PVC), with home storage on."""
    api, recorder = await kube_api()
    backend = job_backend(api, home_storage_size="20Gi", home_storage_class="fast-rwx")
    recorder.answer("GET", HOME, 404, {"kind": "Status", "reason": "NotFound"})
    recorder.answer("POST", CLAIMS, 201)
    recorder.answer("POST", JOBS, 201, {"metadata": {"name": "nbrel-job-7", "uid": "job-uid"}})
    recorder.answer("POST", SECRETS, 201)
    recorder.answer("GET", PODS, body=running_pod("Succeeded"))
    recorder.answer("GET", f"{PODS}/nbrel-job-7-abcde/log", raw=event_line(event="finished", status="succeeded"))
    await backend.start(job_spec(tmp_path, 7))
    recorder.canned[("GET", HOME, "")] = deque([(200, b"{}")])  # made: the next job finds it
    await backend.start(job_spec(tmp_path, 8))
    recorder.canned[("GET", HOME, "")] = deque([(404, b"{}")])
    recorder.canned[("POST", CLAIMS, "")] = deque([(409, b'{"reason": "AlreadyExists"}')])  # a spawn made it meanwhile
    await backend.start(job_spec(tmp_path, 9))
    await backend.close()
    return recorder


def test_a_job_of_an_owner_who_never_spawned_gets_the_home_kubespawner_would_make(tmp_path):
    """D1: the job's pod mounts home-<slug>, which only KubeSpawner made: the executor makes it
    first, as KubeSpawner would (tests/unit/test_hub_kubernetes.py compares the two), once."""

    async def scenario():
        recorder = await homeless_owners_jobs(tmp_path)
        assert [(c.method, c.path) for c in recorder.calls if "/jobs/" not in c.path and "/pods" not in c.path][:4] == [
            ("GET", HOME), ("POST", CLAIMS), ("POST", JOBS), ("POST", SECRETS)]  # the home before the Job
        (made, _refused) = recorder.made("POST", "/persistentvolumeclaims")  # not for job 8: it was there
        pvc = made.body
        validate(pvc)
        slug = safe_slug(OWNER, max_length=48)
        assert pvc["metadata"]["name"] == f"home-{slug}" and pvc["metadata"]["annotations"]["hub.jupyter.org/username"] == OWNER
        assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}},
                               "storageClassName": "fast-rwx"}
        assert pvc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubespawner"  # as if KubeSpawner made it
        assert len(recorder.made("POST", "/jobs")) == 3  # 409: the same PVC, made by a spawn; the job goes on
        assert not recorder.unexpected

    asyncio.run(scenario())


def test_kubernetes_api_errors_reach_users_as_a_short_reason(tmp_path):
    """D3's symptom: a 403 reached the user as kubernetes_asyncio's exception, HTTP headers and all."""
    forbidden = {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403, "message":
                 'jobs.batch "nbrel-job-1" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers to '
                 "a resource you can't set finalizers on: " + "x" * 500}

    async def scenario():
        api, recorder = await kube_api()
        app = dispatcher_app(tmp_path, api)
        dispatcher = app.start()
        recorder.answer("POST", JOBS, 403, forbidden)
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
        job = await dispatcher.submit("alice", JobRequest.model_validate({"notebook": notebook}))
        await until(lambda: app.job(job.id).status == "failed", "the job to fail")
        await dispatcher.close()
        return app.job(job.id).error

    error = asyncio.run(scenario())
    assert error["ename"] == "KubernetesAPIError"
    assert error["evalue"].startswith('403 canned: jobs.batch "nbrel-job-1" is forbidden: cannot set blockOwnerDeletion')
    assert len(error["evalue"]) == 300 and error["evalue"].endswith("…")
    assert "HTTP response headers" not in error["evalue"] and "content-type" not in error["evalue"]


# --- endpoints at the client boundary ----------------------------------------------------------------


def endpoint_backend(api: KubeAPI) -> KubernetesEndpointBackend:
    backend = KubernetesEndpointBackend(profiles=Profiles(profiles=PROFILES), namespace=NS, release=RELEASE,
                                        image="example.org/model-server:1", poll_seconds=0.01)
    backend.api = api
    return backend


SERVER_SPEC = ScoringServerSpec(12, "churn", "bob", "models:/churn/3", "cpu", {"MLFLOW_TRACKING_TOKEN": "bob-token"})
HANDLE = {"name": "nbrel-model-12", "namespace": NS, "port": 8080, "server_id": 12}


async def start_server_twice():
    """Start server 12, then start it again over what is left of it (conflicts: patched)."""
    api, recorder = await kube_api()
    backend = endpoint_backend(api)
    recorder.answer("POST", DEPLOYMENTS, 201, {"metadata": {"uid": "dep-uid"}})
    recorder.answer("POST", SECRETS, 201)
    recorder.answer("POST", SERVICES, 201)
    first = await backend.start(SERVER_SPEC)
    for path in (DEPLOYMENTS, SECRETS, SERVICES):
        recorder.canned[("POST", path, "")] = deque([(409, b'{"reason": "AlreadyExists"}')])
    recorder.answer("PATCH", f"{DEPLOYMENTS}/nbrel-model-12", body={"metadata": {"uid": "dep-uid"}})
    recorder.answer("PATCH", f"{SECRETS}/nbrel-model-12")
    recorder.answer("PATCH", f"{SERVICES}/nbrel-model-12")
    second = await backend.start(SERVER_SPEC)
    return backend, recorder, first, second


def test_a_model_server_is_a_deployment_its_secret_and_a_service(tmp_path):
    async def scenario():
        backend, recorder, first, second = await start_server_twice()
        assert first == second == HANDLE
        assert [(c.method, c.path) for c in recorder.calls[:3]] == [("POST", DEPLOYMENTS), ("POST", SECRETS), ("POST", SERVICES)]
        assert recorder.calls[1].body["metadata"]["ownerReferences"][0]["uid"] == "dep-uid"
        patches = recorder.made("PATCH")
        assert [c.path.rsplit("/", 2)[-2] for c in patches] == ["deployments", "secrets", "services"]
        assert all(c.headers["content-type"] == "application/merge-patch+json" for c in patches)
        assert patches[0].body["spec"]["template"]["spec"]["containers"][0]["image"] == "example.org/model-server:1"

        recorder.answer("GET", f"{DEPLOYMENTS}/nbrel-model-12", body={"metadata": {"name": "nbrel-model-12"}})
        assert await backend.is_running(HANDLE) is True
        recorder.canned[("GET", f"{DEPLOYMENTS}/nbrel-model-12", "")] = deque([(404, b"{}")])
        assert await backend.is_running(HANDLE) is False

        recorder.answer("DELETE", f"{DEPLOYMENTS}/nbrel-model-12")
        recorder.answer("DELETE", f"{SERVICES}/nbrel-model-12", 404)  # gone already: fine
        recorder.answer("DELETE", f"{SECRETS}/nbrel-model-12")
        await backend.stop(HANDLE)
        assert [(c.path, c.query) for c in recorder.made("DELETE")] == [
            (f"{DEPLOYMENTS}/nbrel-model-12", {"propagationPolicy": "Background"}),
            (f"{SERVICES}/nbrel-model-12", {"propagationPolicy": "Background"}),
            (f"{SECRETS}/nbrel-model-12", {"propagationPolicy": "Background"}),  # not left to be moved to a new owner
        ]
        assert not recorder.unexpected

    asyncio.run(scenario())


async def crashing_server():
    api, recorder = await kube_api()
    backend = endpoint_backend(api)
    recorder.answer("GET", f"{DEPLOYMENTS}/nbrel-model-12", body={"metadata": {}, "status": {"replicas": 1}})
    crashed = {"name": "model-server", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
               "lastState": {"terminated": {"exitCode": 1}}}
    recorder.answer("GET", PODS, body={"items": [{"metadata": {"name": "nbrel-model-12-x"}, "status": {"containerStatuses": [crashed]}}]})
    recorder.answer("GET", f"{PODS}/nbrel-model-12-x/log", raw=b"RESOURCE_DOES_NOT_EXIST: churn/3\n")
    with pytest.raises(ScoringServerFailed) as failed:
        await backend.wait_ready(HANDLE, timeout=DEADLINE)
    return recorder, str(failed.value)


def test_a_crashing_model_server_fails_with_its_log_tail():
    async def scenario():
        recorder, message = await crashing_server()
        assert "CrashLoopBackOff" in message and "RESOURCE_DOES_NOT_EXIST: churn/3" in message
        assert recorder.made("GET", "/pods")[0].query == {"labelSelector": "app.kubernetes.io/instance=nbrel,notebench.io/server-id=12"}
        assert recorder.made("GET", "/log")[0].query == {"container": "model-server", "tailLines": "15", "previous": "true"}

    asyncio.run(scenario())


async def reach_ready_server(connect_to: str) -> tuple[Recorder, list]:
    """Server 12 is ready: wait_ready pings it through open_connection. Returns where it dialled."""

    async def scoring_server(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(scoring_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    dialled = []
    real_open = asyncio.open_connection

    async def open_connection(host, service_port):
        dialled.append((host, service_port))
        return await real_open("127.0.0.1", port)

    api, recorder = await kube_api()
    backend = endpoint_backend(api)
    backend.connect_to = connect_to
    recorder.answer("GET", f"{DEPLOYMENTS}/nbrel-model-12", body={"metadata": {}, "status": {"readyReplicas": 1}})
    ready, not_ready = ({"conditions": [{"type": "Ready", "status": status}]} for status in ("True", "False"))
    recorder.answer("GET", PODS, body={"items": [
        {"metadata": {"name": "a"}, "status": {**not_ready, "podIP": "10.244.2.9"}},
        {"metadata": {"name": "b"}, "status": {**ready, "podIP": "10.244.1.7"}},
        {"metadata": {"name": "c", "deletionTimestamp": "2026-12-05T21:00:00Z"}, "status": {**ready, "podIP": "10.244.3.3"}}]})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(asyncio, "open_connection", open_connection)
        await backend.wait_ready(HANDLE, timeout=DEADLINE)
    server.close()
    return recorder, dialled


@pytest.mark.parametrize("connect_to, dialled", [
    ("service", [(f"nbrel-model-12.{NS}.svc", 8080)]),  # the executor in the cluster: DNS and kube-proxy
    ("pods", [("10.244.1.7", 8080)]),  # outside it: the ready pod, as the endpoints controller would list it
])
def test_a_ready_model_server_is_reached_through_its_service_or_a_ready_pod(connect_to, dialled):
    recorder, made = asyncio.run(reach_ready_server(connect_to))
    assert made == dialled
    assert not recorder.unexpected


# --- configuration and RBAC ---------------------------------------------------------------------------


def test_the_values_file_configures_the_kubernetes_backends(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(json.dumps({  # the chart's keys (helm/notebench/values.yaml)
        "imagePullSecrets": ["registry-login"],
        "singleuser": {"image": {"repository": "example.org/user", "tag": "2", "pullPolicy": "Always"}, "uid": 1001,
                       "fsGid": 101, "storage": {"storageClass": "", "size": "10Gi"}, "profiles": PROFILES},
        "executor": {"maxRunningJobs": 9, "maxRunningJobsPerUser": 3,
                     "modelServer": {"image": {"repository": "example.org/model-server", "tag": "3", "pullPolicy": "IfNotPresent"}}},
    }))
    env = {"NOTEBENCH_VALUES": str(values), "POD_NAME": "nb-executor-0", "POD_NAMESPACE": "team-a",
           "NOTEBENCH_RELEASE": "nb", "NOTEBENCH_EXECUTOR_URL": "http://nb-executor:8090",
           "NOTEBENCH_MLFLOW_URL": "http://nb-mlflow:5000"}
    executor = Executor(config=config_from_values(env))
    assert executor.backend_class is KubernetesBackend and executor.endpoint_backend_class is KubernetesEndpointBackend
    assert executor.executor_id == "nb-executor-0"
    assert executor.mlflow_url == executor.job_mlflow_url == "http://nb-mlflow:5000/services/mlflow"
    assert (executor.max_running_jobs, executor.max_running_jobs_per_user) == (9, 3)
    jobs = executor.backend_class(parent=executor, profiles=Profiles(parent=executor), token_key=KEY)
    assert (jobs.namespace, jobs.release, jobs.image, jobs.uid, jobs.gid) == ("team-a", "nb", "example.org/user:2", 1001, 101)
    assert jobs.executor_id == "nb-executor-0" and jobs.executor_url == "http://nb-executor:8090"
    assert jobs.home_claim == "home-{username}" and (jobs.home_storage_size, jobs.home_storage_class) == ("10Gi", "") and [p.name for p in jobs.profiles.all()] == ["cpu", "gpu"]
    pod = jobs.objects(job_spec(tmp_path))["job"]["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "registry-login"}]
    assert pod["containers"][0]["imagePullPolicy"] == "Always"
    servers = executor.endpoint_backend_class(parent=executor)
    assert (servers.namespace, servers.image, servers.image_pull_policy) == ("team-a", "example.org/model-server:3", "IfNotPresent")


def test_backends_are_chosen_by_name_and_local_is_the_default(monkeypatch):
    monkeypatch.delenv("POD_NAME", raising=False)
    executor = Executor()
    assert executor.backend_class is LocalBackend and executor.endpoint_backend_class is LocalEndpointBackend
    executor.backend_class = "kubernetes"
    assert executor.backend_class is KubernetesBackend
    monkeypatch.setenv("POD_NAME", "nb-executor-0")
    assert Executor().executor_id == "nb-executor-0"


def test_executor_rules_are_exactly_the_calls_the_backends_make(tmp_path):
    """Every scenario above once more, all calls collected: the Role must allow each, and nothing else."""

    async def everything():
        recorders = []
        backend, recorder, handle = await start_distributed_job(tmp_path / "a")
        await until(lambda: backend._runs[handle].done, "the pod log to be read")
        recorder.answer("DELETE", f"{CLUSTERS}/nbrel-dask-7")
        recorder.answer("DELETE", f"{JOBS}/nbrel-job-7")
        await backend.kill(handle)
        recorders.append(recorder)
        backend, recorder, _ = await recover(tmp_path / "b")
        await until(lambda: backend._runs["nbrel-job-7"].done, "the pod log to be read")
        recorders.append(recorder)
        recorders.append(await killed_pod_job(tmp_path / "c"))
        backend, recorder, _, _ = await start_server_twice()
        recorder.answer("GET", f"{DEPLOYMENTS}/nbrel-model-12", body={"metadata": {}})
        await backend.is_running(HANDLE)
        recorder.answer("DELETE", f"{DEPLOYMENTS}/nbrel-model-12")
        recorder.answer("DELETE", f"{SERVICES}/nbrel-model-12")
        recorder.answer("DELETE", f"{SECRETS}/nbrel-model-12")
        await backend.stop(HANDLE)
        recorders.append(recorder)
        recorders.append(await homeless_owners_jobs(tmp_path / "d"))
        recorders.append((await reach_ready_server("pods"))[0])
        recorders.append((await refused_pod(tmp_path / "e"))[0])
        recorders.append((await crashing_server())[0])
        return recorders

    for part in "abcde":
        (tmp_path / part).mkdir()
    recorders = asyncio.run(everything())
    used = {rule_for(call) for recorder in recorders for call in recorder.calls}
    assert used == allowed(), f"calls made but not allowed: {used - allowed()}; allowed but never made: {allowed() - used}"
    assert all(not r.unexpected for r in recorders)
