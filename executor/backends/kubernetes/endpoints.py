"""Scoring servers on Kubernetes: a Deployment (one replica) and a Service per model version.

The executor's router (executor/serving/router.py) splits an endpoint's traffic between its versions as
it does locally: ``open_connection`` connects to the version's Service (or, with ``connect_to =
"pods"``, to a ready pod of the server, by its IP). The Deployment restarts
a crashed server itself, so a server "runs" as long as its Deployment exists. The owner's MLflow
token reaches the pod in a Secret owned by the Deployment. (KServe is not used.)
"""

from __future__ import annotations

import asyncio
import random
import time

from traitlets import Enum

from notebench.executor.backends.base import EndpointBackend, ScoringServerFailed, ScoringServerSpec
from notebench.executor.backends.kubernetes.jobs import FAILED_WAITING, KubernetesAPIError, KubernetesSettings
from notebench.executor.backends.kubernetes.objects import (
    INSTANCE,
    MODEL_SERVER_PORT,
    SERVER_ID,
    env_secret,
    labels,
    model_server_deployment,
    model_server_service,
    object_name,
    owner_reference,
    owner_slug,
    selector,
)

LOG_TAIL_LINES = 15


class KubernetesEndpointBackend(KubernetesSettings, EndpointBackend):
    connect_to = Enum(
        ("service", "pods"), "service",
        help="How the router reaches a scoring server. service: its Service's cluster DNS name (the executor "
        "in the cluster). pods: a ready pod's IP (as the endpoints controller would list it), for an executor "
        "outside the cluster on a network that routes pod IPs but has no cluster DNS or Service IPs.",
    ).tag(config=True)

    def _collection(self, group: str, resource: str) -> str:
        return f"/{group}/namespaces/{self.namespace}/{resource}"

    def objects(self, spec: ScoringServerSpec) -> dict:
        """What ``start`` applies: the Deployment, then (owned by it) the Secret, and the Service."""
        profile = self._profiles.get(spec.profile)
        name = object_name(self.release, "model", spec.server_id)
        server_labels = labels(self.release, "model-server", owner_slug(spec.owner), **{SERVER_ID: str(spec.server_id)})
        deployment = model_server_deployment(
            name=name, namespace=self.namespace, labels=server_labels, image=self.image or self.image_for(profile),  # the model-server image first
            model_uri=spec.model_uri, env={"HOME": "/tmp"}, secret_name=name, profile=profile, pod=self.pod_settings(),
        )
        return {
            "name": name,
            "deployment": deployment,
            "secret": lambda uid: env_secret(
                name=name, namespace=self.namespace, labels=server_labels, env=self.without_device_mask(spec.env),
                owner=owner_reference("Deployment", "apps/v1", name, uid)),
            "service": model_server_service(name=name, namespace=self.namespace, labels=server_labels),
        }

    async def start(self, spec: ScoringServerSpec) -> dict:
        made = self.objects(spec)
        deployment = await self.api.apply(self._collection("apis/apps/v1", "deployments"), made["deployment"])
        await self.api.apply(self._collection("api/v1", "secrets"), made["secret"](deployment["metadata"]["uid"]))
        await self.api.apply(self._collection("api/v1", "services"), made["service"])
        return {"name": made["name"], "namespace": self.namespace, "port": MODEL_SERVER_PORT, "server_id": spec.server_id}

    def _deployment(self, handle: dict) -> str:
        return f"/apis/apps/v1/namespaces/{handle['namespace']}/deployments/{handle['name']}"

    async def is_running(self, handle: dict) -> bool:
        deployment = await self.api.get(self._deployment(handle))
        return deployment is not None and not deployment["metadata"].get("deletionTimestamp")

    async def wait_ready(self, handle: dict, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            deployment = await self.api.get(self._deployment(handle))
            if deployment is None:
                raise ScoringServerFailed("the scoring server's Deployment was deleted")
            if (deployment.get("status") or {}).get("readyReplicas") and await self.ping(handle):
                return
            problem = await self._problem(handle)
            if problem:
                raise ScoringServerFailed(problem)
            if time.monotonic() > deadline:
                raise ScoringServerFailed(f"the scoring server was not ready within {timeout:.0f} s")
            await asyncio.sleep(self.poll_seconds)

    async def _problem(self, handle: dict) -> str | None:
        """Why the server's pod will not serve (a bad image, a crash), with its last log lines."""
        for pod in await self._pods(handle):
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (status.get("state") or {}).get("waiting") or {}
                crashed = (status.get("lastState") or {}).get("terminated") or {}
                if waiting.get("reason") in FAILED_WAITING or crashed:
                    reason = waiting.get("reason") or f"exited with code {crashed.get('exitCode')}"
                    tail = await self._log_tail(handle, pod["metadata"]["name"], previous=bool(crashed))
                    return f"the scoring server's container: {reason} {waiting.get('message', '')}".rstrip() + f"\n{tail}"
        return None

    async def _pods(self, handle: dict) -> list[dict]:
        pods = await self.api.call("GET", f"/api/v1/namespaces/{handle['namespace']}/pods",
                                   {"labelSelector": selector(**{INSTANCE: self.release, SERVER_ID: handle["server_id"]})})
        return pods.get("items", [])

    async def _log_tail(self, handle: dict, pod: str, previous: bool, lines: int = LOG_TAIL_LINES,
                        max_bytes: int | None = None) -> str:
        path = f"/api/v1/namespaces/{handle['namespace']}/pods/{pod}/log"
        query = {"container": "model-server", "tailLines": str(lines), "previous": str(previous).lower()}
        if max_bytes is not None:
            query["limitBytes"] = str(max_bytes)
        try:
            response = await self.api.stream(path, query)
        except KubernetesAPIError:
            return ""
        try:
            if max_bytes is None:
                return (await response.read()).decode("utf-8", "replace")
            # Bounded twice: the API server stops at limitBytes, and so does this read.
            data = b""
            async for chunk in response.content.iter_any():
                data += chunk
                if len(data) >= max_bytes:
                    break
            return data[:max_bytes].decode("utf-8", "replace")
        finally:
            response.release()

    async def logs(self, handle: dict, lines: int, max_bytes: int) -> str:
        """The current log of the server's pod (the Deployment has one replica; a pod being
        replaced may be listed too: the newest one's)."""
        pods = sorted(await self._pods(handle), key=lambda pod: pod["metadata"].get("creationTimestamp") or "")
        if not pods:
            return ""
        return await self._log_tail(handle, pods[-1]["metadata"]["name"], previous=False, lines=lines, max_bytes=max_bytes)

    async def open_connection(self, handle: dict):
        if self.connect_to == "pods":
            return await asyncio.open_connection(await self._ready_pod_ip(handle), handle["port"])
        return await asyncio.open_connection(f"{handle['name']}.{handle['namespace']}.svc", handle["port"])

    async def _ready_pod_ip(self, handle: dict) -> str:
        """A ready pod of the server, as the endpoints controller picks them for its Service (whose
        port is its pods' port): Ready, with an IP, not being deleted."""
        ready = [pod["status"]["podIP"] for pod in await self._pods(handle)
                 if pod["status"].get("podIP") and not pod["metadata"].get("deletionTimestamp")
                 and any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod["status"].get("conditions") or [])]
        if not ready:  # an OSError, as a refused connection is: the server is not (yet) there
            raise ConnectionRefusedError(f"no ready pod of {handle['name']}")
        return random.choice(ready)

    async def stop(self, handle: dict) -> None:
        # uvicorn finishes the requests it has on SIGTERM (the pod's grace period).
        await self.api.delete(self._deployment(handle))
        await self.api.delete(f"/api/v1/namespaces/{handle['namespace']}/services/{handle['name']}")
        # Not left to the garbage collector: a server started again soon would find it, and
        # moving it to the new Deployment needs delete on it anyway (OwnerReferencesPermissionEnforcement).
        await self.api.delete(f"/api/v1/namespaces/{handle['namespace']}/secrets/{handle['name']}")

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()

