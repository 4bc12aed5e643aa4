"""The tornado front of the MLflow service: JupyterHub authentication and a streaming proxy.

Routes, under the service prefix (``$JUPYTERHUB_SERVICE_PREFIX``, e.g. ``/services/mlflow/``):

- ``health``          anonymous; JSON ``{"status": "ok", "mlflow": {"ready": ...}}``
- ``oauth_callback``  JupyterHub OAuth callback (sets the service's login cookie)
- the prefix itself   MLflow's UI page, with Notebench's additions (``UI_ADDITIONS``): the classic
                      ML view by default, no Assistant, a link back to JupyterLab
- everything else     authenticated with a JupyterHub API token (``Authorization: token X`` or
                      ``Bearer X``) or the OAuth cookie, then streamed to MLflow with the caller's
                      identity in headers that only this process can make MLflow trust; except
                      MLflow's Assistant (403; its UI asks for its settings, answered "none") and
                      MLflow 2's permission API, gone in MLflow 3 (404 naming what replaced it).

Anonymous browser page loads are redirected to the hub login; other anonymous requests get 401.
"""

import asyncio
import json
import logging
import os
import re
import signal
import time
from urllib.parse import quote, urlparse

from jupyterhub.services.auth import (
    HubOAuth,
    HubOAuthCallbackHandler,
    HubOAuthenticated,
)
from jupyterhub.utils import url_path_join
from tornado import httputil, web
from tornado.httpclient import HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.queues import Queue
from tornado.simple_httpclient import SimpleAsyncHTTPClient

from notebench.hub.mlflow_service import ADMIN_HEADER, IDENTITY_HEADER_PREFIX, SECRET_HEADER, USER_HEADER, audit
from notebench.hub.platform.service_auth import TOKEN_CACHE_SECONDS, identify

log = logging.getLogger("notebench.mlflow")

# The limits (request body sizes, waits) are settings of the service, c.MlflowService (app.py),
# handed to make_app() and serve().

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
# Request headers never forwarded to MLflow (besides hop-by-hop ones).
_DROP_REQUEST = _HOP_BY_HOP | {
    "host",  # MLflow accepts loopback Host headers only; the client sets the backend's
    "authorization",  # the JupyterHub token stays here
    "origin",  # same-origin is enforced here; MLflow's CORS guard knows only localhost
    "expect",
    "content-length",  # set again below when there is a body
    "x-mlflow-authorization",
}
_BODY_METHODS = {"POST", "PUT", "PATCH"}
# Bodies up to this size are read (and dropped) before answering a request MLflow won't see.
_EARLY_ANSWER_MAX_BODY = 1024 * 1024
# MLflow features not offered through Notebench. The MLflow Assistant trusts requests from
# loopback addresses as "local" (where it may run tools on the server host); every request the
# front forwards comes from loopback, and users' servers run on this host.
_BLOCKED_PATHS = re.compile(r"(?:ajax-)?api/[0-9.]+/mlflow/assistant(?:/|$)")
# What MLflow's UI asks about its Assistant as it starts: answered here with "nothing set up"
# (as MLflow answers a server without providers), so the UI has no failed requests to report.
_ASSISTANT_UI_ANSWERS = {
    "ajax-api/3.0/mlflow/assistant/config": {"providers": {}, "projects": {}, "remote_access_allowed": False},
    "ajax-api/3.0/mlflow/assistant/providers": {"providers": [], "resolved": None, "gateway_vendor_options": {}},
}
# Added to MLflow's UI page (before its own scripts run). MLflow keeps its UI settings in the
# browser's localStorage: the classic ML view ("Model training") unless the user chose another,
# and the Assistant's panel never opening by itself (MLflow opens it on a first visit, and on
# loopback hosts offers it whatever the server says). A link goes back to JupyterLab.
UI_ADDITIONS = """<script>
(function () {
  try {
    if (localStorage.getItem("mlflow.workflowType_v1") === null) {
      localStorage.setItem("mlflow.workflowType_v1", JSON.stringify("machine_learning"));
    }
    localStorage.setItem("mlflow.assistant.panelOpen_v1", "false");
    localStorage.setItem("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true");
  } catch (e) {}
  document.addEventListener("DOMContentLoaded", function () {
    var link = document.createElement("a");
    link.href = %(lab_url)s;
    link.className = "notebench-lab-link";
    link.textContent = "\u2190 JupyterLab";
    link.title = "Back to your JupyterLab";
    document.body.appendChild(link);
  });
})();
</script>
<style>
[data-assistant-ui], [data-component-id^="mlflow.assistant"],
[data-component-id="mlflow.experiment_side_nav.assistant_button"] { display: none !important; }
.notebench-lab-link { position: fixed; right: 16px; bottom: 16px; z-index: 1000; padding: 6px 14px;
  border-radius: 16px; background: #2272b4; color: #fff !important; font: 13px/1.4 system-ui, sans-serif;
  text-decoration: none; box-shadow: 0 1px 4px rgba(0, 0, 0, 0.3); }
.notebench-lab-link:hover, .notebench-lab-link:focus-visible { background: #0e538b; }
</style>
"""
# MLflow 2's per-resource permission API, gone in MLflow 3 (whose fail-closed auth answers it
# with a bare 403): answered with what replaced it.
_OLD_PERMISSION_PATHS = re.compile(
    r"(?:ajax-)?api/2\.0/mlflow/(?:experiments|registered-models)/permissions/"
)
_OLD_PERMISSION_ANSWER = (
    "MLflow 3 replaced this permission API: POST api/3.0/mlflow/users/permissions/grant with "
    '{"username", "resource_type": "experiment" or "registered_model", "resource_id": the '
    'experiment id or model name, "permission": "READ", "EDIT" or "MANAGE"} '
    "(and .../permissions/revoke, GET .../permissions/get)."
)
# Response headers this server sets itself.
_DROP_RESPONSE = _HOP_BY_HOP | {"date"}

# MLflow 3.17 serves artifact downloads/uploads natively in FastAPI, streaming, but registers
# those routes *without* the static prefix; under the prefix the same paths fall through to the
# Flask app, which buffers whole bodies in memory and stores an empty file for a chunked upload.
# So these are forwarded without the prefix (MLflow's auth middleware still checks them).
_NATIVE_ARTIFACT_PATHS = (
    "api/2.0/mlflow-artifacts/artifacts/",
    "ajax-api/2.0/mlflow-artifacts/artifacts/",
)


class Backend:
    """The MLflow process as the front sees it: readiness, restarts, stop."""

    def __init__(self, process):
        self.process = process
        self.ready = asyncio.Event()
        self.restarts = 0
        self.ready_after = None  # seconds from start to first healthy answer
        self._stopping = False
        self._task = None
        self._client = SimpleAsyncHTTPClient(force_instance=True, max_clients=4)

    def start_watching(self):
        self._task = asyncio.ensure_future(self._watch())

    async def _wait_healthy(self):
        """Poll MLflow's health route until it answers or the process exits."""
        proc = self.process
        while proc.running and not self._stopping:
            try:
                resp = await self._client.fetch(
                    proc.health_url, request_timeout=2, connect_timeout=1, raise_error=False
                )
                if resp.code == 200:
                    return True
            except Exception:
                pass
            await asyncio.sleep(0.05)
        return False

    async def _watch(self):
        backoff = 1.0
        while not self._stopping:
            if not self.process.running:
                try:
                    self.process.start()
                except Exception:
                    log.exception("Could not start the MLflow backend")
            if await self._wait_healthy():
                self.ready_after = time.monotonic() - self.process.started_at
                log.info("MLflow backend ready after %.2f s", self.ready_after)
                self.ready.set()
                backoff = 1.0
                while self.process.running and not self._stopping:
                    await asyncio.sleep(0.5)
            self.ready.clear()
            if self._stopping:
                return
            code = self.process.poll()
            log.error("MLflow backend exited (%s); restarting in %.0f s", code, backoff)
            self.process.kill()
            self.restarts += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def wait_ready(self, timeout):
        if self.ready.is_set():
            return True
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def stop(self, timeout=5.0):
        self._stopping = True
        self.ready.clear()
        if self._task is not None:
            self._task.cancel()
        self.process.begin_stop()
        deadline = time.monotonic() + timeout
        while self.process.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.process.kill()


class HealthHandler(web.RequestHandler):
    def _payload(self):
        backend = self.settings["backend"]
        return {
            "status": "ok",
            "mlflow": {
                "ready": backend.ready.is_set(),
                "restarts": backend.restarts,
                "ready_after_s": (
                    round(backend.ready_after, 3) if backend.ready_after is not None else None
                ),
            },
        }

    def get(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(self._payload()))

    def head(self):
        self.set_header("Content-Type", "application/json")
        self.finish()


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    def initialize(self):
        self.hub_auth = self.settings["hub_auth"]


def _same_origin(request):
    """Whether the request's Origin header names the host it was sent to."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return False
    host = request.headers.get("X-Forwarded-Host") or request.host
    return urlparse(origin).netloc.lower() == host.split(",")[0].strip().lower()


@web.stream_request_body
class ProxyHandler(HubOAuthenticated, web.RequestHandler):
    """Authenticate with JupyterHub, then stream the request to MLflow and the answer back."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    _body = None  # Queue of request body chunks, None at the end
    _upstream = None  # task running the upstream request
    _client_gone = False
    _headers_sent = False
    _early_answer = None  # set when prepare() decided the answer
    _audit = None  # audit.Recorder of a registry or permission change (reported after MLflow's 2xx)

    def initialize(self):
        self.hub_auth = self.settings["hub_auth"]

    def compute_etag(self):
        return None  # MLflow sets its own

    # ---- authentication

    def check_xsrf_cookie(self):
        """CSRF protection for cookie-authenticated requests (token requests skip this).

        JupyterHub's own check wants an ``_xsrf`` token that MLflow's web app does not send.
        Browsers label every request with Fetch Metadata (``Sec-Fetch-Site``), which pages on
        other sites cannot forge: accept same-origin requests, and read-only requests that are
        not cross-site fetches; otherwise fall back to JupyterHub's token check.
        """
        site = self.request.headers.get("Sec-Fetch-Site")
        mode = self.request.headers.get("Sec-Fetch-Mode")
        safe = self.request.method in ("GET", "HEAD", "OPTIONS")
        if site == "same-origin" or site == "none":
            return
        if site is None and _same_origin(self.request):
            return
        if safe and (site is None or mode == "navigate"):
            return
        return super().check_xsrf_cookie()

    def _send_json_error(self, status, message, error_code=None, **headers):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        for k, v in headers.items():
            self.set_header(k, v)
        error = {"error_code": error_code or httputil.responses.get(status, ""), "message": message}
        self.finish(json.dumps(error))

    def _answer_with(self, respond):
        """Answer a request from prepare(), i.e. before its body was read.

        Finishing a response before the request is fully read makes tornado close the
        connection afterwards, without saying so; a keep-alive client (the hub's proxy) may
        already be sending the next request on it and gets a reset. So answer after the body
        (usually empty) has been read, unless it is large: then answer now, with
        ``Connection: close``.
        """
        length = self.request.headers.get("Content-Length")
        chunked = "chunked" in self.request.headers.get("Transfer-Encoding", "").lower()
        if chunked or (length and int(length) > _EARLY_ANSWER_MAX_BODY):
            self.set_header("Connection", "close")
            respond()
        else:
            self._early_answer = respond

    def _answer(self, status, message, error_code=None, **headers):
        self._answer_with(lambda: self._send_json_error(status, message, error_code, **headers))

    async def _authenticate(self):
        """The hub user/service model, or None when a response has been sent instead."""
        try:
            caller = await identify(self)
        except Exception:
            log.exception("Could not check identity with the hub")
            self._answer(502, "Could not check identity with JupyterHub.")
            return None
        if caller.outcome == "allowed":
            return caller.model
        if caller.outcome == "forbidden":
            model = caller.model
            self._answer(
                403, f"{model.get('kind', 'user')} {model['name']} may not use MLflow (needs the access:services scope)."
            )
        elif caller.outcome == "login":
            login_url = self.get_login_url()
            self._answer_with(lambda: self.redirect(login_url))
        else:
            self._answer(
                401,
                "Not authenticated: send a JupyterHub API token "
                "(Authorization: token <token>, or MLFLOW_TRACKING_TOKEN for MLflow clients).",
                **{"WWW-Authenticate": 'Bearer realm="notebench"'},
            )
        return None

    def get_current_user(self):
        # set in prepare(); never do a blocking lookup from tornado's property
        return getattr(self, "_hub_auth_user_cache", None)

    def _identity_headers(self, model):
        if model.get("kind", "user") == "service":
            name = f"service:{model['name']}"
        else:
            name = model["name"]
        return {
            USER_HEADER: quote(name, safe=""),
            ADMIN_HEADER: "1" if model.get("admin") else "0",
            SECRET_HEADER: self.settings["front_secret"],
        }

    # ---- proxying

    def _upstream_uri(self):
        """Path and query to request from MLflow, and whether it streams request bodies."""
        uri = self.request.uri
        prefix = self.settings["prefix"]
        rest = uri[len(prefix):] if uri.startswith(prefix) else None
        if (
            rest is not None
            and self.request.method in ("GET", "PUT")
            and rest.startswith(_NATIVE_ARTIFACT_PATHS)
        ):
            return "/" + rest, True
        return uri, False

    def _forward_cookies(self):
        """The Cookie header minus the hub's cookies, which MLflow has no business seeing."""
        raw = self.request.headers.get("Cookie")
        if not raw:
            return None
        hub_auth = self.hub_auth
        drop_prefixes = (hub_auth.cookie_name, hub_auth.state_cookie_name, "_xsrf", "jupyterhub-")
        kept = []
        for chunk in raw.split(";"):
            name = chunk.partition("=")[0].strip()
            if name and not name.startswith(drop_prefixes):
                kept.append(chunk.strip())
        return "; ".join(kept) or None

    def _upstream_headers(self, model):
        headers = httputil.HTTPHeaders()
        for name, value in self.request.headers.get_all():
            lname = name.lower()
            if (
                lname in _DROP_REQUEST
                or lname == "cookie"
                or lname.startswith(IDENTITY_HEADER_PREFIX.lower())
            ):
                continue
            headers.add(name, value)
        cookies = self._forward_cookies()
        if cookies:
            headers["Cookie"] = cookies
        forwarded_for = self.request.headers.get("X-Forwarded-For")
        remote = self.request.remote_ip or ""
        headers["X-Forwarded-For"] = f"{forwarded_for}, {remote}" if forwarded_for else remote
        headers.update(self._identity_headers(model))
        return headers

    async def prepare(self):
        self.request.connection.set_max_body_size(self.settings["max_body_size"])
        model = await self._authenticate()
        if model is None:
            return
        self._hub_auth_user_cache = model
        rest = self.request.path[len(self.settings["prefix"]):]
        if self.request.method == "GET" and rest in _ASSISTANT_UI_ANSWERS:
            answer = json.dumps(_ASSISTANT_UI_ANSWERS[rest])
            self._answer_with(lambda: (self.set_header("Content-Type", "application/json"), self.finish(answer)))
            return
        if _BLOCKED_PATHS.match(rest):
            self._answer(403, "This MLflow feature is disabled in Notebench.")
            return
        if _OLD_PERMISSION_PATHS.match(rest):
            self._answer(404, _OLD_PERMISSION_ANSWER, "ENDPOINT_NOT_FOUND")
            return
        backend = self.settings["backend"]
        if not await backend.wait_ready(self.settings["backend_wait"]):
            self._answer(503, "MLflow is not available yet; try again shortly.")
            return

        method = self.request.method
        action = audit.audited(method, rest)
        if action is not None:
            self._audit = audit.Recorder(action)
        headers = self._upstream_headers(model)
        uri, streams_body = self._upstream_uri()
        length = self.request.headers.get("Content-Length")
        max_api_body_size = self.settings["max_api_body_size"]
        if not streams_body and length and length.isdigit() and int(length) > max_api_body_size:
            # Read and dropped (data_received keeps nothing), then answered: closing on a client
            # still sending would make the hub's proxy answer with its own error page instead.
            self.request.connection.set_max_body_size(max(64 * max_api_body_size, 1024**3))
            self._early_answer = lambda: self._send_json_error(
                413, f"The request body is larger than {max_api_body_size} bytes "
                     "(c.MlflowService.max_api_body_size); artifacts go through mlflow-artifacts.",
                "REQUEST_LIMIT_EXCEEDED")
            return
        chunked = "chunked" in self.request.headers.get("Transfer-Encoding", "").lower()
        if chunked and not length and not streams_body:
            # MLflow's Flask routes read a body without Content-Length as empty
            self._answer(411, "Send a Content-Length with this request's body.")
            return
        body = body_producer = None
        if (length and length != "0") or chunked:
            if length:
                headers["Content-Length"] = length
            self._body = Queue(maxsize=8)
            body_producer = self._produce_body
        elif method in _BODY_METHODS:
            body = b""
        url = backend.process.url + uri
        request = HTTPRequest(
            url,
            method=method,
            headers=headers,
            body=body,
            body_producer=body_producer,
            follow_redirects=False,
            decompress_response=False,
            allow_nonstandard_methods=True,
            connect_timeout=10,
            request_timeout=self.settings["upstream_timeout"],
            header_callback=self._on_upstream_header,
            streaming_callback=self._on_upstream_chunk,
        )
        self._response_lines = []
        self._upstream = asyncio.ensure_future(
            self.settings["http_client"].fetch(request, raise_error=False)
        )

    async def _produce_body(self, write):
        while True:
            chunk = await self._body.get()
            if chunk is None:
                return
            await write(chunk)

    async def data_received(self, chunk):
        if self._audit is not None:
            self._audit.keep(self._audit.request, chunk)
        if self._body is not None and not self._upstream.done():
            await self._body.put(chunk)

    def _on_upstream_header(self, line):
        if self._client_gone:
            raise IOError("client went away")
        if line.startswith("HTTP/"):
            self._response_lines = [line]
            return
        if line.strip():
            self._response_lines.append(line)
            return
        # end of headers
        start = httputil.parse_response_start_line(self._response_lines[0].strip())
        headers = httputil.HTTPHeaders()
        for raw in self._response_lines[1:]:
            headers.parse_line(raw.rstrip("\r\n"))
        self.clear()
        for name in ("Content-Type", "Server"):
            self.clear_header(name)
        self.set_status(start.code, start.reason or httputil.responses.get(start.code, "Unknown"))
        for name, value in headers.get_all():
            if name.lower() in _DROP_RESPONSE:
                continue
            self.add_header(name, value)
        self._headers_sent = True

    def _on_upstream_chunk(self, chunk):
        if self._client_gone:
            raise IOError("client went away")
        if self._audit is not None:
            self._audit.keep(self._audit.response, chunk)
        self.write(chunk)
        # returning the flush lets tornado wait for a slow client before reading more
        return self.flush()

    async def _finish_upstream(self):
        if self._upstream is None:
            return  # prepare() answered already
        if self._body is not None:
            await self._body.put(None)
        try:
            response = await self._upstream
            error = response.error if response.code == 599 else None
        except Exception as e:
            error = e
        if self._client_gone or self._finished:
            return
        if error is not None:
            log.warning("%s %s: MLflow backend failed: %s",
                        self.request.method, self.request.path, error)
            if not self._headers_sent:
                self._send_json_error(502, "MLflow did not answer.")
                return
        if self._audit is not None and error is None and 200 <= self.get_status() < 300:
            try:
                audit.report(self.settings.get("audit_outbox"), self._audit, self._hub_auth_user_cache["name"],
                             self.request.query)
            except Exception:  # MLflow made the change: a report that failed is logged, not answered
                log.exception("could not report %s %s to the audit log", self.request.method, self.request.path)
        try:
            self.finish()
        except Exception as e:  # e.g. the upstream body ended early
            log.warning("%s %s: incomplete answer: %s", self.request.method, self.request.path, e)

    async def get(self):
        if self._early_answer is not None:
            self._early_answer()
            return
        await self._finish_upstream()

    head = post = put = patch = delete = options = get

    def on_connection_close(self):
        self._client_gone = True
        if self._body is not None:
            # end the upstream request body now (what is still queued is of no use)
            while not self._body.empty():
                self._body.get_nowait()
            self._body.put_nowait(None)
        super().on_connection_close()

    def log_exception(self, typ, value, tb):
        if isinstance(value, (IOError, asyncio.CancelledError)) and self._client_gone:
            return
        super().log_exception(typ, value, tb)


class UIPageHandler(ProxyHandler):
    """MLflow's UI page (the service's root), fetched from MLflow as the caller, with
    ``UI_ADDITIONS`` before the end of its head."""

    SUPPORTED_METHODS = ("GET", "HEAD")  # type: ignore[assignment]  # fewer than the proxy's: a page

    async def prepare(self):
        model = await self._authenticate()
        if model is None:
            return
        self._hub_auth_user_cache = model
        backend = self.settings["backend"]
        if not await backend.wait_ready(self.settings["backend_wait"]):
            self._answer(503, "MLflow is not available yet; try again shortly.")
            return
        headers = self._upstream_headers(model)
        # The page is edited here: plain text, and always the whole page (MLflow's validators are
        # of its own page, not this one).
        for name in ("Accept-Encoding", "If-None-Match", "If-Modified-Since"):
            headers.pop(name, None)
        response = await self.settings["http_client"].fetch(HTTPRequest(
            backend.process.url + self.request.uri, headers=headers, follow_redirects=False, request_timeout=60,
        ), raise_error=False)
        self._early_answer = lambda: self._send_page(response)

    def _send_page(self, response):
        if response.code == 599:
            self._send_json_error(502, "MLflow did not answer.")
            return
        body = response.body or b""
        if response.code == 200 and "text/html" in response.headers.get("Content-Type", ""):
            hub = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/"
            additions = UI_ADDITIONS % {"lab_url": json.dumps(hub + "user-redirect/lab")}
            body = body.replace(b"</head>", additions.encode() + b"</head>", 1)
        self.set_status(response.code)
        self.set_header("Cache-Control", "no-cache")
        for name, value in response.headers.get_all():
            if name.lower() not in _DROP_RESPONSE | {"content-length", "content-encoding", "etag", "last-modified", "cache-control"}:
                self.add_header(name, value)
        self.finish(body)


def _log_request(handler):
    status = handler.get_status()
    if status < 400:
        level = logging.INFO if not isinstance(handler, HealthHandler) else logging.DEBUG
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    user = getattr(handler, "_hub_auth_user_cache", None)
    who = user["name"] if user else "-"
    log.log(
        level,
        "%d %s %s (%s) %.1fms",
        status,
        handler.request.method,
        handler.request.path,
        who,
        1000.0 * handler.request.request_time(),
    )


def make_app(*, prefix, backend, front_secret, cookie_secret, backend_wait, max_body_size, max_api_body_size,
             upstream_timeout, hub_auth=None, audit_outbox=None):
    """The front's tornado app; the limits are c.MlflowService's settings (see app.py)."""
    if hub_auth is None:
        # identities (and the admin flag) are cached, as by the executor: a revoked token works
        # here for at most that long
        hub_auth = HubOAuth(cache_max_age=TOKEN_CACHE_SECONDS)
    prefix = "/" + prefix.strip("/") + "/"
    callback_path = urlparse(hub_auth.oauth_redirect_uri).path if hub_auth.oauth_redirect_uri \
        else url_path_join(prefix, "oauth_callback")
    settings = {
        "prefix": prefix,
        "backend": backend,
        "front_secret": front_secret,
        "cookie_secret": cookie_secret,
        "hub_auth": hub_auth,
        "backend_wait": backend_wait,
        "max_body_size": max_body_size,
        "max_api_body_size": max_api_body_size,
        "upstream_timeout": upstream_timeout,
        "http_client": SimpleAsyncHTTPClient(
            force_instance=True,
            max_clients=64,
            max_buffer_size=64 * 1024**2,
            max_body_size=max_body_size,
        ),
        "log_function": _log_request,
        "xsrf_cookies": False,
        "audit_outbox": audit_outbox,  # notebench.hub.platform.audit_outbox, or None: nothing reported
    }
    handlers = [
        (url_path_join(prefix, "health"), HealthHandler),
        (callback_path, OAuthCallbackHandler),
        (prefix.rstrip("/"), web.RedirectHandler, {"url": prefix}),
        (prefix, UIPageHandler),
        (prefix + ".*", ProxyHandler),
    ]
    return web.Application(handlers, **settings)


async def serve(*, process, prefix, listen_url, cookie_secret, front_secret, started_at, **limits):
    """Run the front until SIGTERM/SIGINT; ``limits``: make_app's backend_wait, max_body_size,
    max_api_body_size, upstream_timeout and audit_outbox."""
    backend = Backend(process)
    backend.start_watching()
    app = make_app(
        prefix=prefix, backend=backend, front_secret=front_secret, cookie_secret=cookie_secret, **limits
    )
    parsed = urlparse(listen_url)
    server = HTTPServer(app, xheaders=True, max_body_size=limits["max_body_size"])
    server.listen(parsed.port, parsed.hostname or "127.0.0.1")
    log.info(
        "MLflow service listening on %s (prefix %s), %.2f s after start",
        listen_url, prefix, time.monotonic() - started_at,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def report_ready():
        await backend.ready.wait()
        log.info("MLflow service ready %.2f s after start", time.monotonic() - started_at)

    ready_task = asyncio.ensure_future(report_ready())
    await stop.wait()
    log.info("Stopping the MLflow service")
    ready_task.cancel()
    server.stop()
    await backend.stop()
    log.info("MLflow service stopped")


