"""A TEST DOUBLE of the kubelet, and of nothing else: the node ``notebench-test-node``.

The control plane in ../shared/k8s has no kubelet and no container runtime. This double plays the
kubelet's part against the real API server, so that the scheduler, the controllers, RBAC and
admission above it are all real:

- it registers the Node (capacity and allocatable: cpu 16, memory 64Gi, nvidia.com/gpu 2,
  pods 110), reports it Ready, heartbeats that condition, and removes the ``not-ready`` taint the
  TaintNodesByCondition admission puts on new Nodes (the node lifecycle controller that would
  remove it needs kubelets, and is off);
- it watches the pods the scheduler binds to it and runs each container's ``command`` + ``args``
  as a local process, as the pod's ``runAsUser``/``runAsGroup`` (the container's own override the
  pod's; ``fsGroup`` and ``supplementalGroups`` become extra groups), with the container's env:
  ``value`` (with ``$(VAR)`` expansion), ``valueFrom`` ``secretKeyRef``/``configMapKeyRef``/
  ``fieldRef`` and ``envFrom``, resolved through the API as a kubelet does;
- it reports the phases Pending -> Running -> Succeeded/Failed, ``containerStatuses`` (running
  ``startedAt``, terminated ``exitCode`` and ``reason``), restarts by ``restartPolicy`` with the
  kubelet's back-off (CrashLoopBackOff), and readiness from ``httpGet``/``tcpSocket``/``exec``
  readiness probes (probed every 0.5 s until the first success; liveness probes are not run);
- on deletion it sends SIGTERM to each container's main process, SIGKILL after the grace period,
  and deletes the pod object (grace 0) once the processes are gone. There are no PID namespaces:
  a container's processes carry a marker in their environment, and all of them are killed when
  the container ends, as its namespace's end would (Jupyter kernels in sessions of their own too);
- it serves ``pods/log``: the API server fetches logs from the node's kubelet endpoint
  (``status.daemonEndpoints.kubeletEndpoint``, address 127.0.0.1), an HTTPS server here with a
  certificate from the test CA, with ``follow``, ``tailLines``, ``limitBytes`` and ``previous``.

What it does not do, by design:
- Images are ignored: the command runs from this machine's environment (the test interpreter's
  ``bin`` directory first on PATH). A container without ``command`` runs its ``args``.
- No network namespaces: each pod gets a loopback address of its own (127.<n>.x.y, its
  ``status.podIP``), so several pods can listen on one port. ``0.0.0.0`` in a container's args and
  env is replaced by that address, as a pod's own network namespace would confine it.
  No Services, DNS or NetworkPolicy enforcement (no kube-proxy, no CNI).
- Volumes cannot be mounted at their ``mountPath`` for a local process. An emptyDir is a directory
  of the pod, a PVC a directory per claim (kept across pods, like the volume), a configMap or
  secret volume a directory with its keys as files. ``HOME`` and ``workingDir`` under a
  ``mountPath`` are mapped to the volume's directory; ``NOTEBENCH_TEST_NODE_MOUNTS`` holds the
  whole map (JSON, mountPath -> directory). HOME is otherwise a fresh directory of the container.
- No service-account token projection, no ``exec``/``attach``/``port-forward``, no resource
  limits (cgroups), no image pulls.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import itertools
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

NODE_NAME = "notebench-test-node"
CAPACITY = {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "2", "pods": "110"}
HEARTBEAT_SECONDS = 10
PROBE_SECONDS = 0.5
# The kubelet's restart back-off: 10 s, doubling, at most 5 min.
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0
STRATEGIC = "application/strategic-merge-patch+json"
# In the environment of every process of a container (inherited by its descendants): which
# container it belongs to, so that all of them end with it (there are no PID namespaces here).
MARKER = "NOTEBENCH_TEST_NODE_CONTAINER"
ENV_REFERENCE = re.compile(r"\$\$|\$\(([-._a-zA-Z0-9]+)\)")


_octets_in_use: set[int] = set()


def pick_octet() -> int:
    """The second octet of a node's pod addresses (127.<octet>.x.y): another for each node of this
    process, and a random one, so that test runs side by side on one machine rarely meet."""
    octet = random.choice(sorted(set(range(2, 255)) - _octets_in_use))
    _octets_in_use.add(octet)
    return octet


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are replaced, $$ is a literal $, the rest stays."""
    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))
    return ENV_REFERENCE.sub(replace, text)


class ConfigError(Exception):
    """A container cannot start yet (a missing Secret or key): reported as CreateContainerConfigError."""


@dataclass
class ContainerRun:
    """One container of a pod: its current process and what the API is told about it."""
    spec: dict
    init: bool = False
    process: subprocess.Popen | None = None
    log: Path | None = None
    previous_log: Path | None = None
    restarts: int = 0
    started_at: str | None = None
    ready: bool = False
    waiting: dict | None = field(default_factory=lambda: {"reason": "ContainerCreating"})
    terminated: dict | None = None
    last_terminated: dict | None = None
    backoff_until: float = 0.0
    marker: str = ""  # <pod uid>/<container name>, in the environment of the container's processes
    mounts: dict[str, Path] = field(default_factory=dict)  # mountPath -> its directory here
    ended: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return self.spec["name"]

    def local_path(self, path: str | None) -> Path | None:
        """Where a path under one of the container's mountPaths is on this machine (the longest mount wins)."""
        if not path:
            return None
        for mount in sorted(self.mounts, key=len, reverse=True):
            if path == mount or path.startswith(mount.rstrip("/") + "/"):
                return self.mounts[mount] / os.path.relpath(path, mount)
        return None

    def kill_all(self) -> None:
        """SIGKILL every process of the container, as the end of its PID namespace would: the
        processes that carry its marker in their environment (its main process and every
        descendant, also those in sessions of their own, such as Jupyter kernels)."""
        if self.process is None:
            return
        for process in psutil.process_iter():
            try:
                if process.pid == self.process.pid or process.environ().get(MARKER) == self.marker:
                    process.kill()
            except (psutil.Error, OSError):  # gone, or a zombie
                pass

    def status(self) -> dict:
        # Every state key is sent, the unused ones as null: a strategic merge patch keeps keys it is not told to drop.
        running = {"startedAt": self.started_at} if self.process and not self.terminated else None
        state = {"waiting": None if running or self.terminated else self.waiting, "running": running,
                 "terminated": self.terminated}
        return {"name": self.name, "image": self.spec.get("image", ""), "imageID": "", "ready": self.ready,
                "restartCount": self.restarts, "started": bool(running),
                "containerID": f"notebench-test-node://{self.process.pid}" if self.process else None,
                "state": state, "lastState": {"terminated": self.last_terminated} if self.last_terminated else {}}


class KubeletDouble:
    """The node: ``start()`` registers it and starts serving pods, ``stop()`` kills what runs and removes it."""

    def __init__(self, api: client.ApiClient, issue_certificate, directory: Path, *, name: str = NODE_NAME):
        self.api = api
        self.core = client.CoreV1Api(api)
        self.name = name
        self.dir = directory
        self.ip_octet = pick_octet()
        self.ip_numbers = itertools.count()  # next() on a count is atomic under the GIL
        self.lock = threading.Lock()
        self.pods: dict[str, PodRun] = {}  # by uid
        self.by_name: dict[tuple[str, str], PodRun] = {}  # latest run of (namespace, name): its logs
        self.stopping = threading.Event()
        self.watcher: watch.Watch | None = None
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = issue_certificate(f"system:node:{name}", ["127.0.0.1"], directory, "kubelet")
        self.log_server = LogServer(self, cert, key)
        self.api_host = urllib.parse.urlsplit(api.configuration.host)

    # --- the Node ---------------------------------------------------------------------------------

    def start(self) -> KubeletDouble:
        self.log_server.start()
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
        try:
            self.core.create_node({"metadata": {"name": self.name, "labels": labels}})
        except ApiException as e:
            if e.status != 409:
                raise
        self.core.patch_node_status(self.name, self.node_status(), _content_type=STRATEGIC)
        self.core.patch_node(self.name, {"spec": {"taints": None}}, _content_type=STRATEGIC)
        for target in (self.watch_pods, self.heartbeat):
            threading.Thread(target=target, name=f"{self.name}-{target.__name__}", daemon=True).start()
        return self

    def node_status(self) -> dict:
        stamp = now()
        return {"status": {
            "capacity": CAPACITY, "allocatable": CAPACITY,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_server.port}},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "notebench test double of the kubelet", "lastHeartbeatTime": stamp,
                            "lastTransitionTime": stamp}],
            "nodeInfo": {"kubeletVersion": "v1.24.0-notebench-test-double", "kubeProxyVersion": "",
                         "operatingSystem": "linux", "architecture": "amd64", "containerRuntimeVersion": "local-processes://0",
                         "osImage": "this machine", "kernelVersion": os.uname().release, "machineID": "",
                         "systemUUID": "", "bootID": ""},
        }}

    def heartbeat(self) -> None:
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            try:
                self.core.patch_node_status(self.name, {"status": {"conditions": [
                    {"type": "Ready", "status": "True", "lastHeartbeatTime": now()}]}}, _content_type=STRATEGIC)
            except Exception:  # the API server may be stopping: the next beat tries again
                pass

    def stop(self) -> None:
        self.stopping.set()
        if self.watcher:
            self.watcher.stop()
        with self.lock:
            runs = list(self.pods.values())
        for run in runs:
            run.kill()
        self.log_server.stop()
        try:
            self.core.delete_node(self.name)
        except Exception:  # the control plane may already be gone
            pass

    def allocate_ip(self) -> str:
        n = next(self.ip_numbers)
        return f"127.{self.ip_octet}.{n // 254 % 256}.{n % 254 + 1}"

    # --- pods ---------------------------------------------------------------------------------------

    def watch_pods(self) -> None:
        """List, then watch from that version; on any error (410 Gone, a dropped stream), list again."""
        selector = f"spec.nodeName={self.name}"
        while not self.stopping.is_set():
            try:
                listed = self.core.list_pod_for_all_namespaces(field_selector=selector)
                for pod in listed.items:
                    self.on_pod_safely("ADDED", self.api.sanitize_for_serialization(pod))
                self.watcher = watch.Watch()
                for event in self.watcher.stream(self.core.list_pod_for_all_namespaces, field_selector=selector,
                                                 resource_version=listed.metadata.resource_version,
                                                 timeout_seconds=60):
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self.on_pod_safely(event["type"], self.api.sanitize_for_serialization(event["object"]))
            except Exception:
                self.note("watching pods failed (listing again)")
                if self.stopping.wait(1):
                    return

    def on_pod_safely(self, kind: str, pod: dict) -> None:
        """One pod that cannot be handled (a bug here, an API error) never holds up the others: with
        the error raised out of the watch, every list would stop at that pod again."""
        try:
            self.on_pod(kind, pod)
        except Exception:
            meta = pod.get("metadata") or {}
            self.note(f"{kind} of pod {meta.get('namespace')}/{meta.get('name')} failed")

    def note(self, what: str) -> None:
        """Write what went wrong, with its traceback, to node.log in the node's directory (the test's basetemp)."""
        with open(self.dir / "node.log", "a") as log:
            log.write(f"{now()} {what}\n{traceback.format_exc()}\n")

    def on_pod(self, kind: str, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            run = self.pods.get(uid)
            if run is None and kind != "DELETED" and pod["status"].get("phase") not in ("Succeeded", "Failed"):
                if pod["metadata"].get("deletionTimestamp"):
                    run = None
                else:
                    run = self.pods[uid] = PodRun(self, pod)
                    self.by_name[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = run
                    run.start()
        if kind == "DELETED":
            if run:
                run.kill()
        elif pod["metadata"].get("deletionTimestamp"):
            if run:
                run.delete(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
            else:  # nothing runs for it here (it ended, or never started): let it go
                self.delete_pod_object(pod)

    def delete_pod_object(self, pod: dict) -> None:
        meta = pod["metadata"]
        try:
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], grace_period_seconds=0,
                                            body=client.V1DeleteOptions(grace_period_seconds=0,
                                                                        preconditions={"uid": meta["uid"]}))
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    def forget(self, run: PodRun) -> None:
        with self.lock:
            self.pods.pop(run.uid, None)

    # --- what a container sees -------------------------------------------------------------------

    def read_source(self, kind: str, namespace: str, name: str, optional: bool) -> dict[str, str] | None:
        """The data of a Secret or ConfigMap as text, or None when it is optional and missing."""
        try:
            if kind == "secret":
                obj = self.core.read_namespaced_secret(name, namespace)
                return {k: base64.b64decode(v).decode() for k, v in (obj.data or {}).items()}
            obj = self.core.read_namespaced_config_map(name, namespace)
            return dict(obj.data or {})
        except ApiException as e:
            if e.status == 404 and optional:
                return None
            if e.status == 404:
                raise ConfigError(f'{kind} "{name}" not found') from None
            raise

    def key_ref(self, kind: str, namespace: str, ref: dict) -> str | None:
        optional = bool(ref.get("optional"))
        data = self.read_source(kind, namespace, ref["name"], optional)
        if data is None or ref["key"] not in data:
            if optional:
                return None
            raise ConfigError(f'couldn\'t find key {ref["key"]} in {kind} {namespace}/{ref["name"]}')
        return data[ref["key"]]

    def container_env(self, pod: dict, spec: dict, ip: str) -> dict[str, str]:
        meta = pod["metadata"]
        namespace = meta["namespace"]
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOSTNAME": meta["name"],
            # What a kubelet gives every container: where the API server is.
            "KUBERNETES_SERVICE_HOST": self.api_host.hostname or "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.api_host.port or 443),
        }
        for source in spec.get("envFrom") or []:
            kind = "secret" if "secretRef" in source else "configMap"
            ref = source.get("secretRef") or source.get("configMapRef")
            data = self.read_source(kind, namespace, ref["name"], bool(ref.get("optional"))) or {}
            env.update({source.get("prefix", "") + k: v for k, v in data.items()})
        fields = {"metadata.name": meta["name"], "metadata.namespace": namespace, "metadata.uid": meta["uid"],
                  "spec.nodeName": self.name, "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
                  "status.podIP": ip, "status.hostIP": "127.0.0.1"}
        for var in spec.get("env") or []:
            value_from = var.get("valueFrom")
            if value_from is None:
                env[var["name"]] = expand(var.get("value", ""), env)
                continue
            if "fieldRef" in value_from:
                path = value_from["fieldRef"]["fieldPath"]
                found = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
                value = (meta.get(found.group(1)) or {}).get(found.group(2), "") if found else fields.get(path)
                if value is None:
                    raise ConfigError(f"fieldRef {path}: not supported by the kubelet test double")
            elif "secretKeyRef" in value_from:
                value = self.key_ref("secret", namespace, value_from["secretKeyRef"])
            elif "configMapKeyRef" in value_from:
                value = self.key_ref("configMap", namespace, value_from["configMapKeyRef"])
            else:
                raise ConfigError(f"{sorted(value_from)}: not supported by the kubelet test double")
            if value is not None:
                env[var["name"]] = value
        return {k: v.replace("0.0.0.0", ip) for k, v in env.items()}


class PodRun:
    """What the node does for one pod, in a thread of its own: volumes, init containers, containers,
    restarts, status reports, and the end."""

    def __init__(self, node: KubeletDouble, pod: dict):
        self.node = node
        self.pod = pod
        self.uid = pod["metadata"]["uid"]
        self.namespace, self.name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        self.ip = node.allocate_ip()
        self.dir = node.dir / "pods" / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        spec = pod["spec"]
        self.init = [ContainerRun(c, init=True, marker=f"{self.uid}/{c['name']}") for c in spec.get("initContainers") or []]
        self.containers = [ContainerRun(c, marker=f"{self.uid}/{c['name']}") for c in spec.get("containers") or []]
        self.restart_policy = spec.get("restartPolicy", "Always")
        self.wake = threading.Event()  # set on deletion, and when a process ends
        self.grace: float | None = None  # set once the pod is being deleted
        self.killed = False
        self.started_at = now()
        self.phase = "Pending"
        self.reported: str = ""

    def start(self) -> None:
        threading.Thread(target=self.run, name=f"pod-{self.namespace}/{self.name}", daemon=True).start()

    def container(self, name: str) -> ContainerRun | None:
        return next((c for c in [*self.init, *self.containers] if c.name == name), None)

    # --- deletion ------------------------------------------------------------------------------------

    def delete(self, grace: float) -> None:
        if self.grace is None or grace < self.grace:
            self.grace = grace
        self.wake.set()

    def kill(self) -> None:
        """At once (the object is gone, or the node stops)."""
        self.killed = True
        self.grace = 0
        self.wake.set()
        for c in [*self.init, *self.containers]:
            c.kill_all()

    # --- the pod's life --------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.live()
        except Exception as e:  # a bug here must show in the pod, not vanish in a thread
            self.phase = "Failed"
            try:
                self.report(message=f"kubelet test double: {type(e).__name__}: {e}")
            except Exception:
                pass
            raise
        finally:
            if self.grace is not None and not self.killed:
                self.node.delete_pod_object(self.pod)
            self.node.forget(self)

    def live(self) -> None:
        self.report()
        if not self.prepare_volumes():
            return
        for c in self.init:
            if not self.run_to_end(c):
                if self.grace is None:
                    self.phase = "Failed"
                    self.report()
                    return
                break
        if self.grace is None:
            for c in self.containers:
                self.start_container(c)
            self.report()
        while self.grace is None:
            self.wake.wait(PROBE_SECONDS)
            self.wake.clear()
            if self.grace is not None:
                break
            for c in self.containers:
                self.check(c)
            # what is still terminated after check() is not restarted
            if all(c.terminated for c in self.containers):
                failed = any(c.terminated["exitCode"] != 0 for c in self.containers)
                self.phase = "Failed" if failed else "Succeeded"
                self.report()
                return
            self.report()
        self.terminate()

    def prepare_volumes(self) -> bool:
        """Make each volume's directory; a missing Secret or ConfigMap waits, as a kubelet's mount does."""
        volumes = {}
        while self.grace is None:
            try:
                for volume in self.pod["spec"].get("volumes") or []:
                    volumes[volume["name"]] = self.volume_dir(volume)
                break
            except ConfigError as e:
                for c in [*self.init, *self.containers]:
                    c.waiting = {"reason": "ContainerCreating", "message": f"MountVolume.SetUp failed: {e}"}
                self.report()
                self.wake.wait(2)
        else:
            return False
        for c in [*self.init, *self.containers]:
            for mount in c.spec.get("volumeMounts") or []:
                path = volumes[mount["name"]] / mount.get("subPath", "")
                path.mkdir(parents=True, exist_ok=True)
                c.mounts[mount["mountPath"]] = path
        return True

    def volume_dir(self, volume: dict) -> Path:
        security = self.pod["spec"].get("securityContext") or {}
        fs_group = security.get("fsGroup")
        if "persistentVolumeClaim" in volume:
            # one directory per claim, kept after the pod: the volume outlives it
            path = self.node.dir / "claims" / self.namespace / volume["persistentVolumeClaim"]["claimName"]
        else:
            path = self.dir / "volumes" / volume["name"]
        path.mkdir(parents=True, exist_ok=True)
        for kind in ("configMap", "secret"):
            if kind in volume:
                source = volume[kind]
                name = source.get("name") or source.get("secretName")
                data = self.node.read_source(kind, self.namespace, name, bool(source.get("optional"))) or {}
                items = source.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    if item["key"] in data:
                        target = path / item["path"]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_text(data[item["key"]])
                        target.chmod(0o644)
        if "emptyDir" in volume:
            path.chmod(0o777)  # as a kubelet makes them
        elif "persistentVolumeClaim" in volume:
            if fs_group is not None and os.geteuid() == 0:
                # a kubelet's volume ownership: group fsGroup, setgid, group-writable
                os.chown(path, -1, fs_group)
                path.chmod(0o2775)
            else:
                path.chmod(0o777)
        return path

    def restarts(self, c: ContainerRun) -> bool:
        """Does this ended container start again (restartPolicy; init containers only after failing)?"""
        failed = bool(c.terminated) and c.terminated["exitCode"] != 0
        if c.init:
            return failed and self.restart_policy != "Never"
        return self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and failed)

    def run_to_end(self, c: ContainerRun) -> bool:
        """An init container, restarted by the policy: True once it exited 0."""
        self.start_container(c)
        self.report()
        while self.grace is None:
            self.check(c)
            self.report()
            if c.terminated:  # ended for good
                return c.terminated["exitCode"] == 0
            self.wake.wait(PROBE_SECONDS)
            self.wake.clear()
        return False

    def check(self, c: ContainerRun) -> None:
        """Notice an ended process; start it again after its back-off; probe its readiness."""
        if c.process is None and c.terminated is None:  # waiting: a back-off, or a Secret to appear
            if self.grace is None and time.monotonic() >= c.backoff_until:
                self.start_container(c)
            return
        if c.terminated is None and c.process.poll() is not None:
            code = c.process.returncode
            code = 128 - code if code < 0 else code  # killed by a signal: 128 + the signal, as runtimes say
            c.terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                            "startedAt": c.started_at, "finishedAt": now()}
            c.ready = False
            c.kill_all()  # what it left behind ends with it
            c.ended.set()
        if c.terminated is None:
            if not c.ready and not c.init:
                c.ready = self.probe(c)
            return
        if self.grace is not None or not self.restarts(c):
            return
        delay = min(BACKOFF_START * 2 ** c.restarts, BACKOFF_MAX)
        c.last_terminated, c.terminated, c.process = c.terminated, None, None
        c.restarts += 1
        c.backoff_until = time.monotonic() + delay
        c.waiting = {"reason": "CrashLoopBackOff", "message": f"back-off {delay:.0f}s restarting failed container {c.name}"}

    def start_container(self, c: ContainerRun) -> None:
        c.ended.clear()
        c.terminated = None
        try:
            env = self.node.container_env(self.pod, c.spec, self.ip)
        except ConfigError as e:
            c.waiting = {"reason": "CreateContainerConfigError", "message": str(e)}
            c.process = None
            # check() tries again a second later, as a kubelet retries the pod's sync
            c.backoff_until = time.monotonic() + 1
            return
        c.backoff_until = 0.0
        argv = [expand(a, env).replace("0.0.0.0", self.ip)
                for a in [*(c.spec.get("command") or []), *(c.spec.get("args") or [])]]
        uid, gid, groups = self.identity(c)
        home = self.dir / "homes" / c.name
        home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(home, uid, gid)
        env["HOME"] = str(c.local_path(env.get("HOME")) or c.local_path(c.spec.get("workingDir")) or home)
        env["NOTEBENCH_TEST_NODE_MOUNTS"] = json.dumps({k: str(v) for k, v in c.mounts.items()})
        env[MARKER] = c.marker
        cwd = c.local_path(c.spec.get("workingDir")) or Path(env["HOME"])
        if not cwd.exists():  # made for the container, as runc makes a missing working directory
            cwd.mkdir(parents=True)
            if os.geteuid() == 0:
                os.chown(cwd, uid, gid)
        logs = self.dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        c.previous_log, c.log = c.log, logs / f"{c.name}.{c.restarts}.log"
        c.started_at = now()
        c.waiting = None
        identity = {"user": uid, "group": gid, "extra_groups": groups} if os.geteuid() == 0 else {}
        with open(c.log, "wb") as log:
            try:
                c.process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True, **identity)
            except (OSError, subprocess.SubprocessError, IndexError) as e:
                log.write(f"{e}\n".encode())
                c.process = None
                c.terminated = {"exitCode": 128, "reason": "StartError", "message": str(e),
                                "startedAt": c.started_at, "finishedAt": now()}
                c.ended.set()
                return
        threading.Thread(target=self.notice_end, args=(c, c.process), daemon=True).start()

    def notice_end(self, c: ContainerRun, process: subprocess.Popen) -> None:
        process.wait()
        self.wake.set()

    def identity(self, c: ContainerRun) -> tuple[int, int, list[int]]:
        """runAsUser/runAsGroup (the container's over the pod's), fsGroup and supplementalGroups as extra groups.
        Without runAsGroup the group is 0, as container runtimes have it for a uid the image does not name."""
        pod = self.pod["spec"].get("securityContext") or {}
        own = c.spec.get("securityContext") or {}
        uid = own.get("runAsUser", pod.get("runAsUser", 0))
        gid = own.get("runAsGroup", pod.get("runAsGroup", 0))
        groups = [*([pod["fsGroup"]] if "fsGroup" in pod else []), *(pod.get("supplementalGroups") or [])]
        return uid, gid, groups

    def probe(self, c: ContainerRun) -> bool:
        """The readiness probe once (no probe: ready when running)."""
        probe = c.spec.get("readinessProbe")
        if not probe:
            return True
        try:
            if "httpGet" in probe:
                get = probe["httpGet"]
                url = f"{get.get('scheme', 'HTTP').lower()}://{get.get('host') or self.ip}:{self.port(c, get['port'])}{get.get('path', '/')}"
                context = ssl._create_unverified_context()  # kubelets do not verify probe certificates
                with urllib.request.urlopen(url, timeout=probe.get("timeoutSeconds", 1), context=context) as r:
                    return 200 <= r.status < 400
            if "tcpSocket" in probe:
                sock = probe["tcpSocket"]
                with socket.create_connection((sock.get("host") or self.ip, self.port(c, sock["port"])), timeout=1):
                    return True
            if "exec" in probe:
                env = self.node.container_env(self.pod, c.spec, self.ip)
                uid, gid, groups = self.identity(c)
                identity = {"user": uid, "group": gid, "extra_groups": groups} if os.geteuid() == 0 else {}
                done = subprocess.run(probe["exec"]["command"], env=env, capture_output=True,
                                      timeout=probe.get("timeoutSeconds", 1) + 5, **identity)
                return done.returncode == 0
        except (OSError, ValueError, subprocess.SubprocessError, ConfigError):
            return False
        return True

    @staticmethod
    def port(c: ContainerRun, port) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        return next(p["containerPort"] for p in c.spec.get("ports") or [] if p.get("name") == port)

    def terminate(self) -> None:
        """SIGTERM, then SIGKILL once the grace period is over; the statuses say how each ended."""
        running = [c for c in [*self.init, *self.containers] if c.process and c.process.poll() is None]
        for c in running:
            c.process.send_signal(signal.SIGTERM)  # to the container's main process, as runtimes do
        deadline = time.monotonic() + (self.grace or 0)
        for c in running:
            try:
                c.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            c.kill_all()
            c.process.wait()
        for c in [*self.init, *self.containers]:
            self.check(c)
        if not self.killed:
            self.phase = "Failed" if any((c.terminated or {}).get("exitCode") for c in self.containers) else self.phase
            self.report()

    # --- status --------------------------------------------------------------------------------------

    def report(self, message: str | None = None) -> None:
        """Tell the API server (only when something changed)."""
        if self.killed:
            return
        if self.phase == "Pending" and any(c.process for c in self.containers):
            self.phase = "Running"
        ready = bool(self.containers) and all(c.ready for c in self.containers)
        initialized = all(c.terminated and c.terminated["exitCode"] == 0 for c in self.init)

        def condition(kind: str, value: bool) -> dict:
            return {"type": kind, "status": "True" if value else "False", "lastProbeTime": None}

        status = {
            "phase": self.phase, "hostIP": "127.0.0.1", "podIP": self.ip, "podIPs": [{"ip": self.ip}],
            "startTime": self.started_at, "message": message,
            "conditions": [condition("Initialized", initialized), condition("ContainersReady", ready),
                           condition("Ready", ready)],
            "initContainerStatuses": [c.status() for c in self.init] or None,
            "containerStatuses": [c.status() for c in self.containers],
        }
        text = json.dumps(status, sort_keys=True)
        if text == self.reported:
            return
        stamp = now()
        for cond in status["conditions"]:
            cond["lastTransitionTime"] = stamp
        try:
            self.node.core.patch_namespaced_pod_status(self.name, self.namespace, {"status": status},
                                                       _content_type=STRATEGIC)
            self.reported = text
        except ApiException as e:
            if e.status != 404:  # gone: nothing to tell
                raise


class LogServer:
    """The kubelet's log endpoint, over HTTPS: GET /containerLogs/<namespace>/<pod>/<container>."""

    def __init__(self, node: KubeletDouble, cert: Path, key: Path):
        self.node = node
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        # The API server shows its client certificate; on loopback, for tests, any caller may read logs.
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, name="kubelet-double-logs", daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handler(self):
        node = self.node

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # quiet: the test output is not the place
                pass

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                query = dict(urllib.parse.parse_qsl(url.query))
                if len(parts) != 4 or parts[0] != "containerLogs":
                    return self.send_error(404, "only /containerLogs/<namespace>/<pod>/<container> is served here")
                run = node.by_name.get((parts[1], parts[2]))
                c = run.container(parts[3]) if run else None
                log = (c.previous_log if query.get("previous") == "true" else c.log) if c else None
                if log is None or not log.exists():
                    return self.send_error(404, f"no log of container {parts[3]} in pod {parts[1]}/{parts[2]}")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                data = log.read_bytes()
                offset = len(data)
                if "tailLines" in query:
                    lines = data.splitlines(keepends=True)
                    data = b"".join(lines[-int(query["tailLines"]):]) if int(query["tailLines"]) else b""
                limit = int(query.get("limitBytes", 0)) or None
                sent = self.send(data, limit, 0)
                if sent is None or query.get("follow") != "true" or query.get("previous") == "true":
                    return
                with open(log, "rb") as f:
                    f.seek(offset)
                    while not node.stopping.is_set():
                        ended = c.ended.is_set() or c.log != log
                        chunk = f.read(65536)
                        if chunk:
                            sent = self.send(chunk, limit, sent)
                            if sent is None:
                                return
                        elif ended:
                            return
                        else:
                            c.ended.wait(0.1)

            def send(self, data: bytes, limit: int | None, sent: int) -> int | None:
                """Write, up to limitBytes in all; None when the limit is reached or the caller left."""
                if limit is not None:
                    data = data[:max(0, limit - sent)]
                try:
                    self.wfile.write(data)
                    self.wfile.flush()
                except OSError:
                    return None
                sent += len(data)
                return None if limit is not None and sent >= limit else sent

        return Handler


