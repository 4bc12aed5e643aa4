"""The endpoint router: ``POST /services/executor/endpoints/<name>/invocations``, and MLflow's
``GET .../ping``, ``.../health`` and ``.../version`` per endpoint.

Every invocation goes to one version of the endpoint, chosen by smooth weighted round-robin (so
the split follows the weights closely even over a few requests), over connections kept open to
each scoring server. A rolling update swaps an endpoint's whole ``Route`` in one assignment:
a request is routed either by the old weights or by the new ones, never by a mix, and the
requests already sent to an old server finish there (``Upstream.in_flight`` is drained first).

Callers authenticate with a JupyterHub API token (never a cookie: a cross-site page cannot
invoke). The token must hold the custom scope ``custom:notebench-endpoints:invoke`` for the
endpoint's owner (users hold it for themselves; a token can be made with only that scope, which
can then invoke but not reach the jobs API or the user's server), or be an admin's holding the scope.
The hub's answer about a token is cached by HubAuth (``TOKEN_CACHE_SECONDS``, 60 s): no hub round
trip per request, and a revoked token invokes for at most that long.

The scoring paths take MLflow's scoring protocol (its input formats and status codes); their error
bodies are the executor's ``{status, message, field}`` with MLflow's ``error_code``, the scoring
server's own where it gave one. An invocation must say its ``Content-Type`` (415 if not), as
MLflow's scoring server needs to know how to read the input. ``ping``/``health`` answer as MLflow's
do (200 once the model is loaded) from the scoring server of a version that takes traffic; 503 when
none answers.

Metrics and the sample of requests are recorded in memory on the hot path; the sample is written
to the store by ``Endpoints`` in the background.

Every answer of the scoring paths, errors included, carries ``X-Notebench-Request-Id``: a new
random id (32 hex digits) the router makes per request; a client's own id is not taken (ids must be
unique to match a label to one prediction, and a client's could collide with another's). The
predictions of every successful invocation (not a sample) are queued in memory with that id
(``Router.predictions``, bounded: when full, a prediction is dropped and counted in
``predictions_dropped``) and written to the store in the background, for labels posted later
(``POST .../feedback``, serving/feedback.py).

Shadow versions (``Route.shadows``) are never picked: after the live answer has been handed to the
client, ``mirror`` sends a copy of the request to each shadow (``traffic_percent`` of the requests,
chosen by a counter so that of every 100 consecutive requests exactly that many go) in a background
task, at most ``max_shadow_in_flight`` at a time per shadow: beyond that, the copy is dropped and
counted (``shadow_dropped``), so a slow or dead shadow never holds live traffic up. A shadow's
answer (or its failure) is queued with the live request's id, as predictions are, and compared by
serving/shadow.py; it never reaches the client.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from dataclasses import dataclass, field

from jupyterhub.scopes import has_scope

from notebench.hub.platform.scopes import ENDPOINT_INVOKE_SCOPE as INVOKE_SCOPE

MAX_IDLE_CONNECTIONS = 64
UPSTREAM_TIMEOUT_S = 120
PING_TIMEOUT_S = 10
# MLflow's error codes for the statuses the router answers with, as MLflow maps them
# (mlflow.exceptions.HTTP_STATUS_TO_ERROR_CODE; not imported from there: importing mlflow takes seconds).
ERROR_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "ENDPOINT_NOT_FOUND",
               500: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


LATENCY_WINDOW = 10_000  # latencies kept per version for p50/p99
SERIES_MINUTES = 60


class ScoringServerUnreachable(Exception):
    """The scoring server could not be reached or answered with something that is not HTTP."""


@dataclass
class Response:
    status: int
    content_type: bytes
    body: bytes


async def _read_response(reader: asyncio.StreamReader) -> tuple[Response, bool]:
    """One HTTP/1.1 response; returns it and whether the connection may be used again."""
    head = await reader.readuntil(b"\r\n\r\n")  # the status line and the headers, in one read
    status_line, *lines = head[:-4].split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ScoringServerUnreachable(f"not an HTTP response: {status_line[:80]!r}")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    keep_alive = headers.get(b"connection", b"").lower() != b"close"
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    else:
        body, keep_alive = await reader.read(), False
    content_type = headers.get(b"content-type", b"application/json")
    return Response(int(parts[1]), content_type, body), keep_alive


class Upstream:
    """Kept-alive HTTP/1.1 connections to one scoring server (``connect()`` opens a new one)."""

    def __init__(self, connect):
        self._connect = connect
        self._idle: list = []
        self.in_flight = 0

    async def request(self, method: str, path: str, body: bytes = b"", content_type: str | None = None) -> Response:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: scoring-server\r\n"
            + (f"Content-Type: {content_type}\r\n" if content_type else "")
            + f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        self.in_flight += 1
        try:
            while True:
                reused = bool(self._idle)
                reader, writer = self._idle.pop() if reused else await self._connect()
                try:
                    writer.write(head + body)
                    response, keep_alive = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
                    writer.close()
                    if reused:  # a kept connection the server had closed meanwhile: use a new one
                        continue
                    raise ScoringServerUnreachable(f"{type(e).__name__}: {e}") from e
                except BaseException:  # cancelled (timeout): the connection is in an unknown state
                    writer.close()
                    raise
                if keep_alive and len(self._idle) < MAX_IDLE_CONNECTIONS:
                    self._idle.append((reader, writer))
                else:
                    writer.close()
                return response
        finally:
            self.in_flight -= 1

    def close(self) -> None:
        for _reader, writer in self._idle:
            writer.close()
        self._idle.clear()


@dataclass(eq=False)
class Target:
    server_id: int
    model: str
    version: str
    weight: int
    upstream: Upstream
    alias: str | None = None  # as recorded (kept so that a failed update can restore it)
    current: int = 0  # smooth weighted round-robin state
    shadow: bool = False
    traffic_percent: int | None = None  # a shadow's share of the requests copied to it
    seen: int = 0  # a shadow: requests of the endpoint since it joined the route (for its percentage)

    @property
    def label(self) -> str:
        return f"{self.model}/{self.version}"


@dataclass(eq=False)
class Route:
    """How one endpoint's traffic is split right now. No targets: not serving (``reason`` says why)."""

    endpoint_id: int
    name: str
    owner: str
    targets: list[Target] = field(default_factory=list)  # the live versions (picked by weight)
    reason: str = ""
    shadows: list[Target] = field(default_factory=list)  # never picked: they get copies (Router.mirror)
    monitored: bool = True  # False: no sample, no predictions (the endpoint's "monitoring")

    def pick(self) -> Target:
        # Smooth weighted round-robin (as nginx does): each pick, every target gains its weight,
        # the one furthest ahead is chosen and pays back the total.
        total, best = 0, None
        for target in self.targets:
            target.current += target.weight
            total += target.weight
            if best is None or target.current > best.current:
                best = target
        assert best is not None  # only a serving route (one with targets) is picked from
        best.current -= total
        return best


class Minute:
    """One minute of a version's invocations: counts, and latencies (at most LATENCY_WINDOW of them)."""

    __slots__ = ("requests", "errors", "latencies")

    def __init__(self):
        self.requests, self.errors, self.latencies = 0, 0, []


class VersionStats:
    """Requests, errors and latencies of one version of an endpoint, since the executor started."""

    def __init__(self):
        self.requests = 0
        self.errors = 0
        self.latencies = collections.deque(maxlen=LATENCY_WINDOW)
        self.minutes: collections.OrderedDict[int, Minute] = collections.OrderedDict()

    def add(self, latency_ms: float, ok: bool) -> None:
        self.requests += 1
        if not ok:
            self.errors += 1
        self.latencies.append(latency_ms)
        minute = int(time.time() // 60)
        bucket = self.minutes.get(minute)
        if bucket is None:
            bucket = self.minutes[minute] = Minute()
            while len(self.minutes) > SERIES_MINUTES:
                self.minutes.popitem(last=False)
        bucket.requests += 1
        if not ok:
            bucket.errors += 1
        if len(bucket.latencies) < LATENCY_WINDOW:
            bucket.latencies.append(latency_ms)


def percentile(values, fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 3)


@dataclass
class Sample:
    endpoint_id: int
    time: float
    model: str
    version: str
    latency_ms: float
    status: int
    inputs: bytes
    outputs: bytes


@dataclass
class Prediction:
    request_id: str
    endpoint_id: int
    time: float
    model: str
    version: str
    outputs: bytes


@dataclass
class ShadowAnswer:
    """A shadow's answer to its copy of a request, with the live answer's version, status and latency."""

    request_id: str
    endpoint_id: int
    time: float
    model: str
    version: str
    latency_ms: float
    status: int  # 502: the shadow did not answer
    outputs: bytes | None  # None for an error
    live_model: str
    live_version: str
    live_latency_ms: float
    live_status: int


def takes(count: int, percent: int) -> bool:
    """Whether a shadow taking ``percent`` of the requests gets the ``count``-th (from 1): exactly
    ``percent`` of any 100 consecutive ones from the first, spread evenly (no randomness: a test or
    a user sees the share they asked for)."""
    return count * percent // 100 != (count - 1) * percent // 100


def new_request_id() -> str:
    """A request id: 128 random bits as 32 lowercase hex digits (as uuid4().hex, in a third of the time)."""
    return os.urandom(16).hex()


class Router:
    def __init__(self, hub_auth, samples_per_second: int = 10, max_pending_samples: int = 5000, prometheus=None,
                 max_pending_predictions: int = 100_000, max_pending_prediction_bytes: int = 64 * 1024**2,
                 max_prediction_bytes: int = 64 * 1024, max_shadow_in_flight: int = 8, shadow_timeout_s: float = 30):
        self.prometheus = prometheus  # the executor's Prometheus metrics (executor/metrics.py), if any
        self.routes: dict[str, Route] = {}
        self.upstreams: dict[int, Upstream] = {}  # by scoring server id (shared by old and new routes)
        self.stats: dict[tuple, VersionStats] = {}
        self.samples: collections.deque[Sample] = collections.deque(maxlen=max_pending_samples)
        self.samples_per_second = samples_per_second
        self._sampled: dict[int, tuple[int, int]] = {}  # endpoint id -> (second, samples taken in it)
        # Of every successful invocation, and the shadows' answers to their copies.
        self.predictions: collections.deque[Prediction | ShadowAnswer] = collections.deque()
        self.pending_prediction_bytes = 0  # of the queue (reset when it is taken)
        self.max_pending_predictions = max_pending_predictions
        self.max_pending_prediction_bytes = max_pending_prediction_bytes
        self.max_prediction_bytes = max_prediction_bytes  # longer outputs are kept cut (they cannot be labelled)
        self.predictions_dropped = 0  # queue full (the store is behind): those cannot be labelled
        self.hub_auth = hub_auth  # the API's HubOAuth (and token cache)
        self.max_shadow_in_flight = max_shadow_in_flight  # per shadow; more copies are dropped
        self.shadow_timeout_s = shadow_timeout_s
        self.shadow_in_flight: dict[int, int] = {}  # by scoring server id
        self.shadow_dropped: dict[tuple, int] = {}  # (endpoint id, model, version) -> copies not sent
        self.shadow_tasks: set[asyncio.Task] = set()  # kept referenced until done

    # --- routes -------------------------------------------------------------------------------

    def upstream(self, server_id: int, connect) -> Upstream:
        if server_id not in self.upstreams:
            self.upstreams[server_id] = Upstream(connect)
        return self.upstreams[server_id]

    def set_route(self, route: Route) -> None:
        self.routes[route.name] = route  # one assignment: requests see the old route or the new one

    def remove(self, name: str) -> None:
        self.routes.pop(name, None)

    async def drain(self, server_ids, timeout: float) -> None:
        """Wait until no request is in flight to these servers (after they left every route)."""
        deadline = time.monotonic() + timeout
        while any(self.upstreams[i].in_flight for i in server_ids if i in self.upstreams):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        for server_id in server_ids:
            upstream = self.upstreams.pop(server_id, None)
            if upstream is not None:
                upstream.close()

    # --- recording ----------------------------------------------------------------------------

    def _queue(self, item: Prediction | ShadowAnswer, size: int) -> None:
        """Queue a prediction (live or shadow) for the store, unless the queue is full (then count it)."""
        if (len(self.predictions) < self.max_pending_predictions
                and self.pending_prediction_bytes + size <= self.max_pending_prediction_bytes):
            self.predictions.append(item)
            self.pending_prediction_bytes += size
        else:
            self.predictions_dropped += 1

    def record(self, route: Route, target: Target, status: int, latency_ms: float, inputs: bytes, outputs: bytes,
               request_id: str | None = None) -> None:
        if route.monitored and request_id is not None and status < 400:
            outputs = outputs[:self.max_prediction_bytes]
            self._queue(Prediction(request_id, route.endpoint_id, time.time(), target.model, target.version, outputs),
                        len(outputs))
        key = (route.endpoint_id, target.model, target.version)
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = VersionStats()
        stats.add(latency_ms, status < 400)
        if self.prometheus is not None:
            self.prometheus.invocation(route.name, target.model, target.version, status, latency_ms / 1000)
        now = time.time()
        second, taken = self._sampled.get(route.endpoint_id, (0, 0))
        if int(now) != second:
            second, taken = int(now), 0
        if route.monitored and taken < self.samples_per_second:
            self._sampled[route.endpoint_id] = (second, taken + 1)
            self.samples.append(Sample(route.endpoint_id, now, target.model, target.version, latency_ms, status, inputs, outputs))

    # --- shadows ------------------------------------------------------------------------------

    def mirror(self, route: Route, live: Target, status: int, latency_ms: float, body: bytes, content_type: str,
               request_id: str) -> None:
        """Send a copy of a request the live version has answered to the route's shadows (those whose
        share takes it), in the background. No await: called once the answer is on its way. An
        endpoint without monitoring keeps no prediction: its shadows get nothing (of no use unrecorded)."""
        if not route.monitored:
            return
        for shadow in route.shadows:
            shadow.seen += 1
            if not takes(shadow.seen, shadow.traffic_percent or 100):
                continue
            if self.shadow_in_flight.get(shadow.server_id, 0) >= self.max_shadow_in_flight:
                key = (route.endpoint_id, shadow.model, shadow.version)
                self.shadow_dropped[key] = self.shadow_dropped.get(key, 0) + 1
                continue
            self.shadow_in_flight[shadow.server_id] = self.shadow_in_flight.get(shadow.server_id, 0) + 1
            answer = ShadowAnswer(request_id, route.endpoint_id, time.time(), shadow.model, shadow.version, 0, 0, None,
                                  live.model, live.version, round(latency_ms, 3), status)
            task = asyncio.ensure_future(self._shadow(route, shadow, answer, body, content_type))
            self.shadow_tasks.add(task)
            task.add_done_callback(self.shadow_tasks.discard)

    async def _shadow(self, route: Route, shadow: Target, answer: ShadowAnswer, body: bytes, content_type: str) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.shadow_timeout_s):
                response = await shadow.upstream.request("POST", "/invocations", body, content_type)
            answer.status = response.status
            if response.status < 400:
                answer.outputs = response.body[:self.max_prediction_bytes]
        except (ScoringServerUnreachable, OSError, asyncio.TimeoutError):
            answer.status = 502
        finally:
            left = self.shadow_in_flight.pop(shadow.server_id) - 1
            if left:
                self.shadow_in_flight[shadow.server_id] = left
        answer.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        self._queue(answer, len(answer.outputs or b""))

    def take_predictions(self) -> collections.deque[Prediction | ShadowAnswer]:
        """The queued predictions, leaving an empty queue (no await: nothing is appended meanwhile)."""
        taken, self.predictions, self.pending_prediction_bytes = self.predictions, collections.deque(), 0
        return taken

    def metrics(self, endpoint_id: int, versions: list[tuple[str, str]]) -> dict:
        """Per version: totals, p50/p99 of recent latencies, and a per-minute series."""
        keys = [(endpoint_id, m, v) for m, v in versions]
        keys += sorted(k for k in self.stats if k[0] == endpoint_id and k not in keys)
        result = []
        for key in keys:
            stats = self.stats.get(key) or VersionStats()
            series = [
                {"t": time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(minute * 60)), "requests": bucket.requests,
                 "p50_ms": percentile(bucket.latencies, 0.5)}
                for minute, bucket in stats.minutes.items()
            ]
            result.append({
                "model": key[1],
                "version": key[2],
                "requests": stats.requests,
                "errors": stats.errors,
                "latency_ms": {"p50": percentile(stats.latencies, 0.5), "p99": percentile(stats.latencies, 0.99)},
                "series": series,
            })
        return {"versions": result}

    def window(self, endpoint_id: int, seconds: float) -> tuple[int, int, list[float]]:
        """Requests, errors and latencies of all versions of an endpoint in the minutes that overlap
        the last ``seconds`` (at most SERIES_MINUTES), for alerts (serving/alerts.py)."""
        first = int((time.time() - seconds) // 60)
        requests, errors, latencies = 0, 0, []
        for key, stats in list(self.stats.items()):
            if key[0] != endpoint_id:
                continue
            for minute, bucket in list(stats.minutes.items()):
                if minute >= first:
                    requests += bucket.requests
                    errors += bucket.errors
                    latencies.extend(bucket.latencies)
        return requests, errors, latencies

    def forget(self, endpoint_id: int) -> None:
        for kept in (self.stats, self.shadow_dropped):
            for key in [k for k in kept if k[0] == endpoint_id]:
                del kept[key]
        self._sampled.pop(endpoint_id, None)

    # --- who may invoke -----------------------------------------------------------------------

    async def caller(self, authorization: str) -> dict | None:
        """The hub's model of the token's owner (with the token's scopes), or None."""
        match = self.hub_auth.auth_header_pat.match(authorization)
        if not match:
            return None
        return await self.hub_auth.user_for_token(match.group(1), sync=False)

    @staticmethod
    def may_invoke(caller: dict, owner: str) -> bool:
        scopes = caller.get("scopes", ())
        if has_scope(f"{INVOKE_SCOPE}!user={owner}", scopes):
            return True
        return bool(caller.get("admin")) and has_scope(INVOKE_SCOPE, scopes, post_filter=True)
