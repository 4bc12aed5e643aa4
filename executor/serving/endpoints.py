"""Model endpoints: which model versions serve an endpoint, with which weights, and their lifecycle.

The store says what each endpoint should serve (``ScoringServer`` rows that are not retired,
with their weights); ``Endpoints`` brings the scoring servers (through the endpoint backend) and
the router to that state, one change at a time per endpoint:

- create, and PATCH (rolling): start the servers of versions not yet served, wait until all are
  ready, then switch the router to the new weights in one step, wait for the requests still in
  flight at replaced servers, and stop those. If a new version fails to start, the previous
  versions keep serving with their previous weights, and the endpoint's ``reason`` says why.
  A shadow version (serving/shadow.py) that fails to start does not hold the others up: the live
  versions (and the shadows that did start) serve, the endpoint is ready, its ``reason`` says which
  shadow did not start, and that version stays ``failed`` (not retried) until a PATCH asks again.
- DELETE stops everything.
- After an executor restart, servers still running are adopted and dead ones started again.

Versions are named as in MLflow's registry, which is asked (MLflow's REST API, as the owner):
an alias is resolved to its version at deploy, and the version is what gets served and recorded.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import sqlalchemy as sa
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Integer
from traitlets.config import LoggingConfigurable

from notebench.executor.backends.base import ScoringServerFailed, ScoringServerSpec
from notebench.executor.db import (
    Endpoint,
    Feedback,
    Prediction,
    RequestSample,
    ScoringServer,
    ShadowPrediction,
    iso,
    utcnow,
)
from notebench.executor.errors import NotebenchError
from notebench.executor.schemas import EndpointCreate, EndpointPatch, EndpointResponse, EndpointVersion, ServedVersion
from notebench.executor.serving import feedback, history, quality, shadow
from notebench.executor.serving.router import Prediction as LivePrediction
from notebench.executor.serving.router import Route, Router, Target
from notebench.hub.platform.environment import workload_env
from notebench.hub.platform.profiles import ProfileError

INVOCATIONS_PATH = "endpoints/{name}/invocations"


class ModelRegistry:
    """Looks up registered model versions in MLflow as a given user."""

    def __init__(self, mlflow_url: str, tokens):
        self.url = mlflow_url.rstrip("/")
        self.tokens = tokens

    async def get(self, owner: str, path: str, **params) -> dict | None:
        """The JSON answer, or None when MLflow says it does not exist or the owner may not see it."""
        body = await self._fetch(owner, f"api/2.0/mlflow/{path}", params)
        return None if body is None else json.loads(body)

    async def set_alias(self, owner: str, model: str, alias: str, version: str) -> None:
        """Point ``alias`` of ``model`` at ``version``, as the owner (MLflow checks that they may).
        A refusal is a NotebenchError with MLflow's status (4xx), an outage a 502/503 as ``get``'s."""
        token = await self.tokens.token_for(owner)
        try:
            await AsyncHTTPClient().fetch(
                f"{self.url}/api/2.0/mlflow/registered-models/alias", method="POST",
                body=json.dumps({"name": model, "alias": alias, "version": version}),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, request_timeout=20,
            )
        except HTTPClientError as e:
            if e.code in (400, 403, 404):
                raise NotebenchError(e.code, None, f"MLflow refused to set alias {alias!r} of {model!r}: {e}") from None
            raise NotebenchError(502, None, f"MLflow's model registry failed ({e}): try again later") from None
        except OSError as e:
            raise NotebenchError(503, None, f"MLflow's model registry cannot be reached ({e}): try again shortly") from None

    async def artifact(self, owner: str, route: str, **params) -> bytes | None:
        """An artifact's bytes through MLflow's download routes (``get-artifact`` of a run,
        ``model-versions/get-artifact`` of a model version), or None where there is none."""
        return await self._fetch(owner, route, params)

    async def _fetch(self, owner: str, path: str, params: dict) -> bytes | None:
        token = await self.tokens.token_for(owner)
        try:
            r = await AsyncHTTPClient().fetch(
                f"{self.url}/{path}?{urlencode(params)}",
                headers={"Authorization": f"Bearer {token}"},
                request_timeout=20,
            )
        except HTTPClientError as e:
            if e.code in (400, 403, 404):  # MLflow answers 400 for some malformed names
                return None
            raise NotebenchError(502, None, f"MLflow's model registry failed ({e}): try again later") from None
        except OSError as e:  # MLflow (re)starting
            raise NotebenchError(503, None, f"MLflow's model registry cannot be reached ({e}): try again shortly") from None
        return r.body

    async def resolve(self, owner: str, wanted: EndpointVersion, field: str) -> tuple[str, str | None]:
        """(version, alias) for ``wanted.version``, a version number or an alias of ``wanted.model``."""
        if await self.get(owner, "registered-models/get", name=wanted.model) is None:
            raise NotebenchError(400, f"{field}.model", f"{field}.model: no registered model {wanted.model!r} (that you may read)")
        if wanted.version.isdecimal():  # a number, as the request model and MLflow (int()) read it
            found = await self.get(owner, "model-versions/get", name=wanted.model, version=wanted.version)
            if found is None:
                raise NotebenchError(400, f"{field}.version", f"{field}.version: {wanted.model!r} has no version {wanted.version}")
            return found["model_version"]["version"], None
        found = await self.get(owner, "registered-models/alias", name=wanted.model, alias=wanted.version)
        if found is None:
            raise NotebenchError(
                400, f"{field}.version", f"{field}.version: {wanted.model!r} has no version or alias {wanted.version!r}"
            )
        return found["model_version"]["version"], wanted.version


class Endpoints(LoggingConfigurable):
    ready_timeout_seconds = Integer(300, help="Time a scoring server has to load its model and answer.").tag(config=True)
    drain_timeout_seconds = Integer(120, help="Time replaced servers have to finish requests in flight.").tag(config=True)
    max_samples = Integer(1000, help="Requests kept per endpoint in the downloadable sample (the latest).").tag(config=True)
    samples_per_second = Integer(10, help="At most this many requests per endpoint and second go into the sample.").tag(
        config=True
    )
    max_sample_bytes = Integer(16 * 1024, help="Inputs and outputs longer than this are stored cut (as text).").tag(
        config=True
    )
    sample_flush_seconds = Integer(1, help="How often sampled requests are written to the store.").tag(config=True)
    max_log_bytes = Integer(64 * 1024, help="The most of a scoring server's log GET endpoints/{name}/logs returns.").tag(
        config=True
    )
    max_pending_predictions = Integer(
        100_000, help="Predictions queued in memory for the store at most; more are dropped (and counted) until it catches up."
    ).tag(config=True)
    max_pending_prediction_bytes = Integer(
        64 * 1024**2, help="The most bytes of predictions queued in memory; more are dropped (and counted) until the store catches up."
    ).tag(config=True)
    max_prediction_bytes = Integer(64 * 1024, help="Predictions longer than this are stored cut (and cannot be labelled).").tag(
        config=True
    )
    prediction_retention_days = Integer(30, help="Predictions (and their labels) older than this are dropped, hourly.").tag(
        config=True
    )
    max_shadow_in_flight = Integer(
        8, help="Copies of requests in flight to one shadow version at most; more are dropped (and counted), so a "
                "slow shadow never holds live traffic up."
    ).tag(config=True)
    shadow_timeout_seconds = Integer(30, help="Time a shadow version has to answer its copy of a request.").tag(config=True)
    watch_seconds = Integer(2, help="How often scoring servers are checked (one that died is started again).").tag(config=True)

    def __init__(self, app, **kwargs):
        super().__init__(parent=app, **kwargs)
        self.app = app
        self.sessions = app.sessions
        self.backend = app.endpoint_backend
        self.registry = ModelRegistry(app.mlflow_url, app.tokens) if app.mlflow_url else None
        self.router = Router(app.hub_auth, samples_per_second=self.samples_per_second, prometheus=app.metrics,
                             max_pending_predictions=self.max_pending_predictions,
                             max_pending_prediction_bytes=self.max_pending_prediction_bytes,
                             max_prediction_bytes=self.max_prediction_bytes,
                             max_shadow_in_flight=self.max_shadow_in_flight, shadow_timeout_s=self.shadow_timeout_seconds)
        self._tasks: dict[int, asyncio.Task] = {}
        self._deleting: set[int] = set()  # no more changes to these (the watcher must not restart them)
        self._flush_lock = asyncio.Lock()
        self._dropped_reported = 0  # of router.predictions_dropped, logged

    # --- reading --------------------------------------------------------------------------------

    def _servers(self, s, endpoint_id: int) -> list[ScoringServer]:
        return s.scalars(sa.select(ScoringServer).where(ScoringServer.endpoint_id == endpoint_id).order_by(ScoringServer.id)).all()

    def describe(self, endpoint: Endpoint) -> EndpointResponse:
        """The endpoint as the API shows it: the versions it serves (not those being retired)."""
        with self.sessions() as s:
            servers = [x for x in self._servers(s, endpoint.id) if not x.retired]
        return EndpointResponse(
            name=endpoint.name, owner=endpoint.owner, profile=endpoint.profile, status=endpoint.status, task=endpoint.task,
            monitoring=endpoint.monitoring, reason=endpoint.reason, created_at=iso(endpoint.created_at), updated_at=iso(endpoint.updated_at),
            invocation_url=self.app.service_prefix + INVOCATIONS_PATH.format(name=endpoint.name),
            versions=[ServedVersion(model=x.model, version=x.version, alias=x.alias, weight=x.weight, shadow=x.shadow,
                                    traffic_percent=x.traffic_percent, status=x.status, reason=x.reason) for x in servers],
        )

    def find(self, name: str) -> Endpoint | None:
        with self.sessions() as s:
            return s.scalar(sa.select(Endpoint).where(Endpoint.name == name))

    def listing(self, owner: str | None) -> list[Endpoint]:
        q = sa.select(Endpoint).order_by(Endpoint.name)
        if owner is not None:
            q = q.where(Endpoint.owner == owner)
        with self.sessions() as s:
            return s.scalars(q).all()

    def metrics(self, endpoint: Endpoint) -> dict:
        with self.sessions() as s:
            versions = [(x.model, x.version) for x in self._servers(s, endpoint.id) if not x.retired and not x.shadow]
        return self.router.metrics(endpoint.id, versions)  # the live versions' (shadows: GET .../shadow)

    async def logs(self, endpoint: Endpoint, lines: int) -> list[dict]:
        """The last ``lines`` lines (at most ``max_log_bytes``) of each scoring server of the endpoint."""
        with self.sessions() as s:
            servers = [x for x in self._servers(s, endpoint.id) if not x.retired]

        async def log_of(server: ScoringServer) -> str:
            return await self.backend.logs(server.handle, lines, self.max_log_bytes) if server.handle else ""

        texts = await asyncio.gather(*(log_of(x) for x in servers))
        return [{"model": x.model, "version": x.version, "status": x.status, "log": "\n".join(text.splitlines()[-lines:])}
                for x, text in zip(servers, texts)]

    async def samples(self, endpoint: Endpoint) -> list[dict]:
        await self.flush_samples()
        with self.sessions() as s:
            rows = s.scalars(
                sa.select(RequestSample).where(RequestSample.endpoint_id == endpoint.id).order_by(RequestSample.id)
            ).all()
        return [r.to_dict() for r in rows]

    # --- changing -------------------------------------------------------------------------------

    async def _resolve(self, owner: str, versions: list[EndpointVersion]) -> list[tuple[EndpointVersion, str, str | None]]:
        if self.registry is None:
            raise NotebenchError(503, None, "MLflow is not enabled on this Notebench: endpoints need its model registry")
        resolved: list[tuple[EndpointVersion, str, str | None]] = []
        seen: set[tuple[str, str]] = set()
        for i, wanted in enumerate(versions):
            version, alias = await self.registry.resolve(owner, wanted, f"versions.{i}")
            if (wanted.model, version) in seen:
                raise NotebenchError(400, f"versions.{i}.version", f"versions.{i}.version: {wanted.model}/{version} is listed twice "
                                     "(a version is either live or a shadow)")
            seen.add((wanted.model, version))
            resolved.append((wanted, version, alias))
        return resolved

    def _profile(self, name: str | None):
        try:
            profile = self.app.profiles.get(name)
        except ProfileError as e:
            raise NotebenchError(400, "profile", str(e))
        if profile.gpus:
            raise NotebenchError(400, "profile", f"profile {profile.name!r} has GPUs: local endpoints run on CPU profiles only")
        return profile

    async def create(self, owner: str, request: EndpointCreate, groups: list[str]) -> Endpoint:
        profile = self._profile(request.profile)
        resolved = await self._resolve(owner, request.versions)
        self.app.quotas.check_endpoint(owner, groups, profile.name, len(resolved), new_endpoint=True)  # no await from here to the commit
        with self.sessions() as s:
            endpoint = Endpoint(name=request.name, owner=owner, profile=profile.name, status="starting", task=request.task,
                                monitoring=request.monitoring)
            s.add(endpoint)
            try:
                s.flush()
            except sa.exc.IntegrityError:
                raise NotebenchError(409, "name", f"an endpoint called {request.name!r} exists already")
            for wanted, version, alias in resolved:
                s.add(ScoringServer(endpoint_id=endpoint.id, model=wanted.model, version=version, alias=alias,
                                    weight=wanted.weight, shadow=wanted.shadow, traffic_percent=wanted.traffic_percent,
                                    executor_id=self.app.executor_id))
            history.record(s, endpoint, "deploy", history.asked(resolved))
            s.commit()
        self.router.set_route(Route(endpoint.id, endpoint.name, owner, reason="starting"))
        self._start_task(endpoint.id)
        return endpoint

    def _check_unchanging(self, endpoint: Endpoint) -> None:
        task = self._tasks.get(endpoint.id)
        if endpoint.id in self._deleting:
            raise NotebenchError(404, None, f"no endpoint {endpoint.name}")
        if task is not None and not task.done():
            raise NotebenchError(409, None, f"endpoint {endpoint.name} is changing: try again once it is ready")

    async def update(self, endpoint: Endpoint, request: EndpointPatch, groups: list[str],
                     change: history.Change | None = None) -> Endpoint:
        self._check_unchanging(endpoint)
        resolved = await self._resolve(endpoint.owner, request.versions)
        # Again: another PATCH or a DELETE may have come while MLflow was asked (from here on
        # nothing awaits until the change is recorded and its task started).
        self._check_unchanging(endpoint)
        with self.sessions() as s:
            if s.get(Endpoint, endpoint.id) is None:
                raise NotebenchError(404, None, f"no endpoint {endpoint.name}")
            current = {(x.model, x.version): x for x in self._servers(s, endpoint.id) if not x.retired}
            for wanted, version, alias in resolved:
                server = current.pop((wanted.model, version), None)
                if server is not None and server.status != "failed":  # served already: only its weight (or role) changes
                    server.weight, server.alias = wanted.weight or 0, alias  # never None once validated
                    server.shadow, server.traffic_percent = wanted.shadow, wanted.traffic_percent
                else:
                    if server is not None:
                        server.retired = True
                    s.add(ScoringServer(endpoint_id=endpoint.id, model=wanted.model, version=version, alias=alias,
                                        weight=wanted.weight, shadow=wanted.shadow, traffic_percent=wanted.traffic_percent,
                                        executor_id=self.app.executor_id))
            for server in current.values():  # versions left out: replaced
                server.retired = True
            # Replaced servers run on until the new ones are ready: the new ones count on top.
            self.app.quotas.check_endpoint(endpoint.owner, groups, endpoint.profile,
                                           sum(1 for x in s.new if isinstance(x, ScoringServer)), new_endpoint=False)
            row = s.get(Endpoint, endpoint.id)
            row.status, row.updated_at = "updating", utcnow()
            if "task" in request.model_fields_set:  # null: inferred again
                row.task = request.task
            if "monitoring" in request.model_fields_set:  # applied with the new route, at the end of the roll
                row.monitoring = request.monitoring
            history.record(s, row, "update", history.asked(resolved), change, request.reason)
            s.commit()
        self._start_task(endpoint.id)
        updated = self.find(endpoint.name)
        if updated is None:  # deleted meanwhile
            raise NotebenchError(404, None, f"no endpoint {endpoint.name}")
        return updated

    async def delete(self, endpoint: Endpoint, change: history.Change | None = None) -> None:
        self._deleting.add(endpoint.id)
        try:
            await self._delete(endpoint, change)
        finally:
            self._deleting.discard(endpoint.id)

    async def _delete(self, endpoint: Endpoint, change: history.Change | None = None) -> None:
        task = self._tasks.pop(endpoint.id, None)
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.router.remove(endpoint.name)
        with self.sessions() as s:
            servers = self._servers(s, endpoint.id)
        await self.router.drain([x.id for x in servers], timeout=0)
        await asyncio.gather(*(self.backend.stop(x.handle) for x in servers if x.handle))
        with self.sessions() as s:
            s.execute(sa.delete(Endpoint).where(Endpoint.id == endpoint.id))
            history.record(s, endpoint, "delete", history.served(servers), change)
            s.commit()
        self.router.forget(endpoint.id)

    # --- bringing an endpoint to what the store says --------------------------------------------

    def _start_task(self, endpoint_id: int) -> None:
        if endpoint_id not in self._deleting:
            self._tasks[endpoint_id] = asyncio.ensure_future(self._roll(endpoint_id))

    def _set(self, model, object_id: int, **values) -> None:
        with self.sessions() as s:
            s.execute(sa.update(model).where(model.id == object_id).values(**values))
            s.commit()

    async def _serve(self, endpoint: Endpoint, server: ScoringServer) -> None:
        """Make ``server`` run and answer: adopt it if it runs, else start it."""
        handle = server.handle
        if handle is None or not await self.backend.is_running(handle):
            if handle is not None:  # it died: its connections are of no use
                await self.router.drain([server.id], timeout=0)
                await self.backend.stop(handle)
            profile = self.app.profiles.get(endpoint.profile)
            env = workload_env(profile, gpus=[], mlflow_url=self.app.mlflow_url,  # CPU profiles only (see _profile)
                               mlflow_token=await self.app.tokens.token_for(endpoint.owner))
            spec = ScoringServerSpec(server.id, endpoint.name, endpoint.owner, f"models:/{server.model}/{server.version}",
                                     profile.name, env)
            self._set(ScoringServer, server.id, status="starting", reason=None)
            starting = asyncio.ensure_future(self.backend.start(spec))
            try:
                handle = await asyncio.shield(starting)
            except asyncio.CancelledError:  # deleted meanwhile: record the process so it is stopped
                handle = await starting
                self._set(ScoringServer, server.id, handle=handle)
                raise
            self._set(ScoringServer, server.id, handle=handle, executor_id=self.app.executor_id)
        try:
            await self.backend.wait_ready(handle, self.ready_timeout_seconds)
        except ScoringServerFailed as e:
            self._set(ScoringServer, server.id, status="failed", reason=str(e))
            raise
        self._set(ScoringServer, server.id, status="ready", reason=None)

    def _route(self, endpoint: Endpoint, servers: list[ScoringServer]) -> Route:
        targets: list[Target] = []
        shadows: list[Target] = []
        for server in servers:  # weight 0 too: never picked, but kept (a rollback restores it)
            if server.shadow and server.status == "failed":  # did not start: left out until a PATCH asks again
                continue
            upstream = self.router.upstream(server.id, lambda h=server.handle: self.backend.open_connection(h))
            (shadows if server.shadow else targets).append(
                Target(server.id, server.model, server.version, server.weight, upstream, server.alias,
                       shadow=server.shadow, traffic_percent=server.traffic_percent))
        return Route(endpoint.id, endpoint.name, endpoint.owner, targets, monitored=endpoint.monitoring, shadows=shadows)

    async def _roll(self, endpoint_id: int) -> None:
        with self.sessions() as s:
            endpoint = s.get(Endpoint, endpoint_id)
            servers = self._servers(s, endpoint_id)
        if endpoint is None:  # deleted meanwhile
            return
        # A shadow that failed to start is not tried again by every roll (a live one's restart).
        wanted = [x for x in servers if not x.retired and not (x.shadow and x.status == "failed")]
        replaced = [x for x in servers if x.retired]
        self.backend.prewarm(endpoint.owner)
        results = await asyncio.gather(*(self._serve(endpoint, x) for x in wanted), return_exceptions=True)
        failures = [(x, r) for x, r in zip(wanted, results) if isinstance(r, BaseException)]
        for _, error in failures:
            if isinstance(error, asyncio.CancelledError):
                raise error
        for server, error in failures:
            if not isinstance(error, ScoringServerFailed):
                self.log.error("endpoint %s: %s/%s did not start", endpoint.name, server.model, server.version, exc_info=error)
        live = self.router.routes.get(endpoint.name)
        failed_live = [(x, e) for x, e in failures if not x.shadow]
        if failed_live:
            server, error = failed_live[0]
            await self._fail(endpoint, wanted, replaced, live, f"{server.model}/{server.version} did not start: {error}")
            return
        reason = None
        if failures:  # shadows only: the live versions serve all the same; the shadows that failed are stopped
            await asyncio.gather(*(self.backend.stop(x.handle) for x, _ in failures if x.handle))
            for server, error in failures:
                self._set(ScoringServer, server.id, status="failed", reason=f"did not start: {error}", handle=None)
            server, error = failures[0]
            reason = f"shadow {server.model}/{server.version} did not start (the live versions serve): {error}"
        with self.sessions() as s:
            wanted = [x for x in self._servers(s, endpoint_id) if not x.retired]
        self.router.set_route(self._route(endpoint, wanted))
        self._set(Endpoint, endpoint_id, status="ready", reason=reason, updated_at=utcnow())
        await self._retire(replaced)

    async def _retire(self, servers: list[ScoringServer]) -> None:
        await self.router.drain([x.id for x in servers], self.drain_timeout_seconds)
        await asyncio.gather(*(self.backend.stop(x.handle) for x in servers if x.handle))
        with self.sessions() as s:
            s.execute(sa.delete(ScoringServer).where(ScoringServer.id.in_([x.id for x in servers])))
            s.commit()

    async def _fail(self, endpoint, wanted, replaced, live: Route | None, reason: str) -> None:
        if live is not None and live.targets:
            # A rolling update that cannot finish: the versions serving now go on, as they were.
            serving = {t.server_id: (t.weight, t.alias, t.shadow, t.traffic_percent) for t in live.targets + live.shadows}
            dropped = [x for x in wanted + replaced if x.id not in serving]
            await asyncio.gather(*(self.backend.stop(x.handle) for x in dropped if x.handle))
            with self.sessions() as s:
                s.execute(sa.delete(ScoringServer).where(ScoringServer.id.in_([x.id for x in dropped])))
                for server_id, (weight, alias, is_shadow, percent) in serving.items():
                    s.execute(sa.update(ScoringServer).where(ScoringServer.id == server_id)
                              .values(weight=weight, alias=alias, shadow=is_shadow, traffic_percent=percent, retired=False))
                s.commit()
            self._set(Endpoint, endpoint.id, status="ready", reason=f"not applied, the versions before are kept: {reason}",
                      updated_at=utcnow())
            return
        # Nothing serving: the endpoint has failed; stop what did start.
        others = [x for x in wanted if x.status != "failed"]
        await asyncio.gather(*(self.backend.stop(x.handle) for x in others + replaced if x.handle))
        with self.sessions() as s:
            s.execute(sa.delete(ScoringServer).where(ScoringServer.id.in_([x.id for x in replaced])))
            for server in others:
                row = s.get(ScoringServer, server.id)
                if row is not None and row.status != "failed":
                    row.status, row.reason, row.handle = "failed", "stopped: another version did not start", None
            s.commit()
        self.router.set_route(Route(endpoint.id, endpoint.name, endpoint.owner, reason=reason))
        self._set(Endpoint, endpoint.id, status="failed", reason=reason, updated_at=utcnow())

    # --- executor start and stop -------------------------------------------------------------

    async def recover(self) -> None:
        """Adopt the scoring servers that outlived the previous executor, restart the dead ones
        (in the background: the endpoints are known to the router at once)."""
        with self.sessions() as s:
            mine = sa.or_(ScoringServer.executor_id == self.app.executor_id, ScoringServer.executor_id.is_(None))
            ids = s.scalars(sa.select(ScoringServer.endpoint_id).where(mine).distinct()).all()
            endpoints = s.scalars(sa.select(Endpoint).where(Endpoint.id.in_(ids))).all()
        for endpoint in endpoints:
            if endpoint.status == "failed":
                self.router.set_route(Route(endpoint.id, endpoint.name, endpoint.owner, reason=endpoint.reason or "failed"))
                continue
            with self.sessions() as s:
                wanted = [x for x in self._servers(s, endpoint.id) if not x.retired and not (x.shadow and x.status == "failed")]
            running = [x for x in wanted if x.handle and await self.backend.is_running(x.handle)]
            if endpoint.status == "ready" and running and all(x.handle for x in wanted):
                # Serve at once with the live servers; the share of dead ones goes to the others
                # until they are started again.
                self.router.set_route(self._route(endpoint, wanted))
            else:
                self.router.set_route(Route(endpoint.id, endpoint.name, endpoint.owner, reason="starting after a restart"))
            if endpoint.status == "ready" and len(running) < len(wanted):
                self._set(Endpoint, endpoint.id, status="starting", reason="a scoring server is started again after a restart")
            self._start_task(endpoint.id)  # also stops servers an update was replacing

    async def restart_dead_servers(self) -> None:
        """Start again the scoring servers of serving endpoints that died (until then, the
        router sends their share to the other versions, if any)."""
        for route in list(self.router.routes.values()):
            task = self._tasks.get(route.endpoint_id)
            if not route.targets or (task is not None and not task.done()) or route.endpoint_id in self._deleting:
                continue
            with self.sessions() as s:
                servers = [x for x in self._servers(s, route.endpoint_id) if not x.retired]
            # Only servers that were ready: one that failed to start stays failed (no restart loop).
            dead = [x for x in servers if x.status == "ready" and not (x.handle and await self.backend.is_running(x.handle))]
            if dead:
                names = ", ".join(f"{x.model}/{x.version}" for x in dead)
                self.log.warning("endpoint %s: the scoring server of %s exited; starting it again", route.name, names)
                self._set(Endpoint, route.endpoint_id, status="starting", reason=f"the scoring server of {names} exited; starting it again")
                self._start_task(route.endpoint_id)

    async def watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.watch_seconds)
            try:
                await self.restart_dead_servers()
            except Exception:
                self.log.exception("checking scoring servers failed")

    async def flush_samples(self) -> None:
        """Write the requests sampled since the last flush, keeping the latest ``max_samples`` per
        endpoint, and the predictions made since."""
        async with self._flush_lock:
            pending = list(self.router.samples)
            self.router.samples.clear()
            if pending:
                await asyncio.get_running_loop().run_in_executor(None, self._write_samples, pending)
            predictions = self.router.take_predictions()
            if self.router.predictions_dropped > self._dropped_reported:
                self.log.warning("%d predictions were dropped (the queue was full: the store is behind); they cannot be labelled",
                                 self.router.predictions_dropped - self._dropped_reported)
                self._dropped_reported = self.router.predictions_dropped
            if predictions:
                await asyncio.get_running_loop().run_in_executor(None, self._write_predictions, predictions)

    def _write_predictions(self, pending) -> None:
        with self.sessions() as s:
            existing = set(s.scalars(sa.select(Endpoint.id).where(Endpoint.id.in_({p.endpoint_id for p in pending}))).all())
            rows = [{"request_id": p.request_id, "endpoint_id": p.endpoint_id, "model": p.model, "version": p.version,
                     "time": datetime.fromtimestamp(p.time, timezone.utc), "outputs": p.outputs.decode("utf-8", "replace")}
                    for p in pending if p.endpoint_id in existing and isinstance(p, LivePrediction)]
            if rows:
                s.execute(sa.insert(Prediction), rows)
            shadows = [{**vars(p), "time": datetime.fromtimestamp(p.time, timezone.utc),
                        "outputs": None if p.outputs is None else p.outputs.decode("utf-8", "replace")}
                       for p in pending if p.endpoint_id in existing and not isinstance(p, LivePrediction)]
            if shadows:
                s.execute(sa.insert(ShadowPrediction), shadows)
            s.commit()

    def purge_predictions(self) -> int:
        """Drop predictions (and with them their labels) older than the retention; how many went."""
        since = utcnow() - timedelta(days=self.prediction_retention_days)
        with self.sessions() as s:
            old = sa.select(Prediction.request_id).where(Prediction.time < since)
            s.execute(sa.delete(Feedback).where(Feedback.request_id.in_(old)))
            gone = s.execute(sa.delete(Prediction).where(Prediction.time < since)).rowcount
            gone += s.execute(sa.delete(ShadowPrediction).where(ShadowPrediction.time < since)).rowcount
            s.commit()
        return gone

    async def purge_loop(self, every_seconds: float = 3600) -> None:
        while True:
            try:
                gone = await asyncio.to_thread(self.purge_predictions)
                if gone:
                    self.log.info("dropped %d predictions older than %d days", gone, self.prediction_retention_days)
            except Exception:
                self.log.exception("dropping old predictions failed")
            await asyncio.sleep(every_seconds)

    async def feedback(self, endpoint: Endpoint, rows: list, by: str) -> tuple[int, list[str]]:
        """Store labels of this endpoint's predictions (those made until now are written first)."""
        await self.flush_samples()
        return await asyncio.to_thread(feedback.store, self.sessions, endpoint.id, rows, by)

    async def quality(self, endpoint: Endpoint, since: datetime) -> list[dict]:
        """Per version (those served now first, then those with labels in the window): its quality since ``since``."""
        await self.flush_samples()
        found = await asyncio.to_thread(quality.quality, self.sessions, endpoint.id, since)
        with self.sessions() as s:
            keys = [(x.model, x.version) for x in self._servers(s, endpoint.id) if not x.retired and not x.shadow]
        keys += sorted(k for k in found if k not in keys)
        empty: dict = {"task": endpoint.task, "labelled": 0, "mismatched": 0, "quality": {}}
        return [{"model": m, "version": v, **found.get((m, v), empty)} for m, v in keys]

    async def shadow(self, endpoint: Endpoint, since: datetime) -> dict:
        """The live versions and the shadows side by side since ``since`` (serving/shadow.py)."""
        await self.flush_samples()
        with self.sessions() as s:
            servers = [x for x in self._servers(s, endpoint.id) if not x.retired]
        report = await asyncio.to_thread(shadow.compare, self.sessions, endpoint.id, since,
                                         [(x.model, x.version) for x in servers if not x.shadow],
                                         {(x.model, x.version): x.traffic_percent for x in servers if x.shadow})
        for row in report["shadows"]:
            row["dropped"] = self.router.shadow_dropped.get((endpoint.id, row["model"], row["version"]), 0)
        return report

    def _write_samples(self, pending) -> None:
        cut = self.max_sample_bytes

        def text(data: bytes) -> str:
            return data[:cut].decode("utf-8", "replace")

        with self.sessions() as s:
            existing = set(s.scalars(sa.select(Endpoint.id).where(Endpoint.id.in_({p.endpoint_id for p in pending}))).all())
            for p in pending:
                if p.endpoint_id in existing:
                    s.add(RequestSample(endpoint_id=p.endpoint_id, time=datetime.fromtimestamp(p.time, timezone.utc),
                                        model=p.model, version=p.version, latency_ms=round(p.latency_ms, 3),
                                        status=p.status, inputs=text(p.inputs), outputs=text(p.outputs)))
            s.flush()
            for endpoint_id in existing:
                keep_from = s.scalar(
                    sa.select(RequestSample.id).where(RequestSample.endpoint_id == endpoint_id)
                    .order_by(RequestSample.id.desc()).offset(self.max_samples - 1).limit(1)
                )
                if keep_from is not None:
                    s.execute(sa.delete(RequestSample).where(RequestSample.endpoint_id == endpoint_id, RequestSample.id < keep_from))
            s.commit()

    async def flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sample_flush_seconds)
            try:
                await self.flush_samples()
            except Exception:
                self.log.exception("writing sampled requests failed")

    async def close(self) -> None:
        """Stop changing endpoints; the scoring servers keep serving (a restart adopts them)."""
        shadow_copies = list(self.router.shadow_tasks)  # copies to shadows still waiting: not recorded
        for task in [*self._tasks.values(), *shadow_copies]:
            task.cancel()
        await asyncio.gather(*self._tasks.values(), *shadow_copies, return_exceptions=True)
        await self.flush_samples()
        await self.backend.close()
