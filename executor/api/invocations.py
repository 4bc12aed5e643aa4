"""An endpoint's scoring paths, ``POST .../endpoints/<name>/invocations`` and MLflow's ``GET .../ping``,
``.../health`` and ``.../version``: who may invoke, and the answers in MLflow's shapes (see
serving/router.py for how a version is picked)."""

from __future__ import annotations

import asyncio
import json
import time

from notebench.executor.api.base import LimitedBodyHandler, write_json_error
from notebench.executor.errors import NotebenchError
from notebench.executor.serving.router import (
    ERROR_CODES,
    PING_TIMEOUT_S,
    UPSTREAM_TIMEOUT_S,
    Response,
    Route,
    Router,
    ScoringServerUnreachable,
    new_request_id,
)
from notebench.hub.platform.scopes import ENDPOINT_INVOKE_SCOPE as INVOKE_SCOPE


def error_code(status: int) -> str:
    """MLflow's error code for an HTTP status (those MLflow does not map: by their class)."""
    return ERROR_CODES.get(status) or ("BAD_REQUEST" if status < 500 else "TEMPORARILY_UNAVAILABLE")


def scoring_server_error(response: Response) -> tuple[str, str | None]:
    """The message and MLflow error code of a scoring server's error answer (MLflow's JSON, or text)."""
    text = response.body.decode("utf-8", "replace")
    try:
        data = json.loads(response.body)
    except ValueError:
        return text, None
    if not isinstance(data, dict):
        return text, None
    code = data.get("error_code")
    return str(data.get("message") or text), code if isinstance(code, str) else None


class ScoringHandler(LimitedBodyHandler):
    """An endpoint's scoring paths (``endpoints/<name>/...``): who may invoke it may use them."""

    def initialize(self):
        super().initialize()
        self.router: Router = self.app.endpoints.router
        self.route: Route | None = None

    request_id = ""

    def set_default_headers(self):
        # Every answer, errors included: tornado calls this again when an error clears the headers,
        # and the id stays the one made for this request.
        super().set_default_headers()
        if not self.request_id:
            self.request_id = new_request_id()
        self.set_header("X-Notebench-Request-Id", self.request_id)

    def check_xsrf_cookie(self):
        pass  # tokens only: cookies are never looked at, so there is nothing to forge

    async def authenticate(self) -> None:
        name = self.path_args[0]
        caller = await self.router.caller(self.request.headers.get("Authorization", ""))
        if caller is None:
            raise NotebenchError(401, None, "Not authenticated: send a JupyterHub API token (Authorization: token <token>)")
        route = self.router.routes.get(name)
        if route is None or not (caller["name"] == route.owner or caller.get("admin")):
            raise NotebenchError(404, None, f"no endpoint {name}")
        if caller.get("kind", "user") != "user" or not self.router.may_invoke(caller, route.owner):
            raise NotebenchError(403, None, f"this token may not invoke endpoint {name} (it needs the {INVOKE_SCOPE} scope)")
        self.route = route

    def serving(self) -> Route:
        route = self.route
        assert route is not None  # authenticate() found it
        if not route.targets:
            raise NotebenchError(503, None, f"endpoint {route.name} is not serving: {route.reason}")
        return route

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        code = getattr(exc, "error_code", None) or error_code(status_code)
        write_json_error(self, status_code, exc, self._body_complete, error_code=code)

    def answer_error(self, error: NotebenchError) -> None:
        """Answer with ``error``, keeping the headers set so far (send_error would clear them)."""
        self.set_status(error.status)
        self.write_error(error.status, exc_info=(type(error), error, None))


class InvocationHandler(ScoringHandler):
    """Forwards the body to one version's scoring server and its answer back, naming the version."""

    async def post(self, name: str):
        started = time.perf_counter()
        content_type = self.request.headers.get("Content-Type")
        if not content_type:
            raise NotebenchError(
                415, "Content-Type", "say how the input is encoded: Content-Type application/json, text/csv or application/x-parquet "
                "(MLflow's scoring input)"
            )
        route = self.serving()
        target = route.pick()
        body = self.request.body
        message = None
        try:
            async with asyncio.timeout(UPSTREAM_TIMEOUT_S):  # no task of its own, unlike wait_for
                response = await target.upstream.request("POST", "/invocations", body, content_type)
        except (ScoringServerUnreachable, OSError, asyncio.TimeoutError) as e:
            response = Response(502, b"application/json", b"")
            message = f"{target.label} did not answer: {type(e).__name__}: {e}"
            if not isinstance(e, asyncio.TimeoutError):  # it died: another version may answer meanwhile
                for other in route.targets:
                    if other is not target and other.weight > 0:
                        try:
                            async with asyncio.timeout(UPSTREAM_TIMEOUT_S):
                                response = await other.upstream.request("POST", "/invocations", body, content_type)
                                target, message = other, None
                            break
                        except (ScoringServerUnreachable, OSError, asyncio.TimeoutError):
                            continue
        self.set_header("X-Notebench-Model-Version", target.label)
        if response.status < 400:
            self.set_status(response.status)
            self.set_header("Content-Type", response.content_type.decode("latin-1"))
            self.finish(response.body)
        else:
            code = None
            if response.body:
                message, code = scoring_server_error(response)
            message = message or f"{target.label} answered {response.status}"
            field = {400: "body", 415: "Content-Type"}.get(response.status)
            self.answer_error(NotebenchError(response.status, field, message, code))
        latency_ms = (time.perf_counter() - started) * 1000
        self.router.record(route, target, response.status, latency_ms, body, response.body, self.request_id)
        if route.shadows:  # the answer is written: the shadows' copies go off the client's path
            self.router.mirror(route, target, response.status, latency_ms, body, content_type, self.request_id)


class ScoringInfoHandler(ScoringHandler):
    """MLflow's ``ping`` and ``health`` (200 once the model is loaded) and ``version`` (MLflow's
    version), answered by the first scoring server of a version taking traffic that answers."""

    async def get(self, name: str, what: str):
        path = "/version" if what == "version" else "/ping"
        for target in self.serving().targets:
            if target.weight == 0:
                continue
            try:
                async with asyncio.timeout(PING_TIMEOUT_S):
                    response = await target.upstream.request("GET", path)
            except (ScoringServerUnreachable, OSError, asyncio.TimeoutError):
                continue
            if response.status == 200:
                self.set_header("X-Notebench-Model-Version", target.label)
                self.set_header("Content-Type", response.content_type.decode("latin-1"))
                self.finish(response.body)
                return
        raise NotebenchError(503, None, f"endpoint {name} is not serving: no scoring server answers {path}")
