"""What every handler of the executor's REST API shares: JSON errors, bodies read up to a limit,
the caller's identity (JupyterHub's), and request validation (pydantic, schemas.py).

Identity is JupyterHub's (API token or the hub OAuth cookie). A user sees and acts on their own
jobs and schedules only (others' answer 404, as if they did not exist); admins see all.
Errors are JSON: ``{"status": 4xx, "message": "...", "field": "<the offending field>"}``; a
``NotebenchError`` raised anywhere below is answered with its own status (``JSONErrors``).

Request bodies are streamed in (``stream_request_body``, ``LimitedBodyHandler``: the API here,
and the endpoints' scoring paths in invocations.py) so that a body over ``c.Executor.max_body_bytes``
is read and dropped, then answered with a JSON 413. Tornado's own limit (HTTPServer's
max_body_size) answers a bare 400 and closes the connection while the proxy still sends the body:
the proxy's write fails and it answers its 503 page instead.
"""

from __future__ import annotations

import functools
import json
import re
from urllib.parse import quote

import pydantic
from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from notebench.executor import audit
from notebench.executor.errors import NotebenchError
from notebench.hub.platform.accounts import AccountClash
from notebench.hub.platform.service_auth import identify

PAGE_DEFAULT, PAGE_MAX = 50, 200
MAX_ID = 2**63 - 1  # ids are 64-bit integers in every database we use
# A body over the limit is read to its end (and dropped) before the 413: answered early, the
# connection is closed under the proxy, which then answers 503 instead. Up to this size at least:
DRAIN_MIN_BYTES = 1024**3
_DIGITS = re.compile(r"[0-9]+")


def _with_body(method):
    """Run an HTTP method once its whole body is in: refuse it if too large (413), then
    authenticate and check the query."""

    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        self._body_complete = True
        if self._body_size > self.app.max_body_bytes:
            raise NotebenchError(
                413, "body", f"the request body is {self._body_size} bytes; at most {self.app.max_body_bytes} allowed"
            )
        self.request.body = bytes(self._body)
        await self.authenticate()
        self.check_query()
        return await method(self, *args, **kwargs)

    wrapper._with_body = True
    return wrapper


def get_by_id(sessions, cls, object_id: str):
    """The row whose id is ``object_id`` (digits, from a route), or None; ids past 64 bits exist nowhere."""
    number = int(object_id) if len(object_id) <= 19 else MAX_ID + 1
    if number > MAX_ID:
        return None
    with sessions() as s:
        return s.get(cls, number)


def attachment(filename: str) -> str:
    """A Content-Disposition header for any file name (RFC 6266: an ASCII fallback and the UTF-8 name)."""
    fallback = re.sub(r"[^A-Za-z0-9._-]+", "_", filename) or "output.ipynb"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def write_json_error(handler: web.RequestHandler, status_code: int, exc, body_complete: bool, **extra) -> None:
    """Every executor error: a JSON body {status, message, field, **extra}, field naming what was wrong."""
    body = {"status": status_code, "message": handler._reason, "field": None}
    if isinstance(exc, NotebenchError):
        body.update(message=exc.message, field=exc.field, **exc.details)
    elif isinstance(exc, web.HTTPError) and exc.log_message:
        body["message"] = exc.log_message
    elif isinstance(exc, AccountClash):  # the owner's OS account is another user's: refused, not shared
        handler.set_status(409)
        body.update(status=409, message=str(exc))
    if status_code == 401:
        handler.set_header("WWW-Authenticate", 'Bearer realm="notebench"')
    if not body_complete:
        # Answered before the body was read (an unsupported method, a body far too large):
        # tornado closes the connection after this answer, so say so, or the proxy reuses the
        # connection for its next request and gets a reset (a 503 for someone else).
        handler.set_header("Connection", "close")
    if status_code == 405:
        allowed = [m for m in ("GET", "POST", "PATCH", "PUT", "DELETE") if m.lower() in type(handler).__dict__]
        handler.set_header("Allow", ", ".join(allowed))
    body.update(extra)
    handler.set_header("Content-Type", "application/json")
    handler.finish(json.dumps(body))


class JSONErrors(web.RequestHandler):
    """How every executor handler answers an error, in one place: a ``NotebenchError`` with its
    own status, anything else as tornado does (an HTTPError's status, else 500); all as JSON."""

    _body_complete = False

    def send_error(self, status_code: int = 500, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, NotebenchError):
            status_code = exc.status
        super().send_error(status_code, **kwargs)

    def log_exception(self, typ, value, tb) -> None:
        if not isinstance(value, NotebenchError):  # a refused request is the caller's, not ours to log
            super().log_exception(typ, value, tb)

    def write_error(self, status_code, **kwargs):
        write_json_error(self, status_code, kwargs.get("exc_info", (None, None))[1], self._body_complete)


@web.stream_request_body
class LimitedBodyHandler(JSONErrors):
    """Reads its request body itself, at most ``c.Executor.max_body_bytes`` of it: a subclass's HTTP
    methods run once the whole body is in (``self.request.body``) and ``authenticate()`` passed.
    Errors are JSON (``write_json_error``)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("get", "post", "patch", "put", "delete"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_with_body", False):
                setattr(cls, name, _with_body(method))

    def initialize(self):
        self.app = self.settings["executor"]
        self._body = bytearray()
        self._body_size = 0
        self._body_complete = False

    def set_default_headers(self):
        self.set_header("X-Content-Type-Options", "nosniff")

    async def authenticate(self) -> None:
        """Who asks, and whether they may: raises a NotebenchError (401, 403, 404) if not."""
        raise NotImplementedError

    def check_query(self) -> None:
        """Raises a NotebenchError (400) for a query the handler does not take."""

    def prepare(self):
        limit = self.app.max_body_bytes
        drain = max(limit * 64, DRAIN_MIN_BYTES)
        length = self.request.headers.get("Content-Length", "")
        if _DIGITS.fullmatch(length) and (len(length) > 18 or int(length) > drain):
            # Absurd: answer at once (tornado closes the connection; through the proxy, a 503).
            raise NotebenchError(413, "body", f"the request body is {length} bytes; at most {limit} allowed")
        # The server's own limit is the configured one (app.py): raise it so that a body somewhat
        # over the limit is still read, and refused with a 413 once in (see _with_body).
        self.request.connection.set_max_body_size(drain)

    def data_received(self, chunk: bytes) -> None:
        self._body_size += len(chunk)
        if self._body_size <= self.app.max_body_bytes:
            self._body += chunk
        else:
            self._body = bytearray()  # will be refused: keep nothing


class APIHandler(HubOAuthenticated, LimitedBodyHandler):
    query_params: frozenset = frozenset()  # the query parameters a handler reads; others answer 400
    services_may_call = False  # a service's token (not a user's) is refused unless a handler says so

    def initialize(self):
        super().initialize()
        self.hub_auth = self.app.hub_auth  # JupyterHub's HubOAuth, with Notebench's token cache bound
        self._authenticating = False
        self._user_model = None
        self._closed = False

    def set_default_headers(self):
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")

    def check_query(self) -> None:
        unknown = sorted(set(self.request.query_arguments) - self.query_params - {"_xsrf", "token"})
        if unknown:  # a misspelt filter must not silently list everything
            raise NotebenchError(400, unknown[0], f"unknown query parameter {unknown[0]!r}")

    def on_connection_close(self):
        self._closed = True
        super().on_connection_close()

    # --- who is asking --------------------------------------------------------------------------

    def check_xsrf_cookie(self):
        # Tornado calls this before prepare(), before we know whether a token or a cookie
        # authenticates the request: the check is made while authenticating (authenticate()),
        # where JupyterHub refuses the cookie of a write without its XSRF token (never a token).
        if self._authenticating:
            return super().check_xsrf_cookie()

    def get_current_user(self):
        return self._user_model

    async def authenticate(self) -> None:
        self._authenticating = True
        caller = await identify(self)
        if caller.outcome == "login":
            self.redirect(self.get_login_url())  # the hub's OAuth: a browser comes back with the cookie
            raise web.Finish()
        if caller.outcome == "anonymous":
            if self.get_cookie(self.hub_auth.cookie_name) and self.request.method not in ("GET", "HEAD", "OPTIONS"):
                raise NotebenchError(
                    403, None, "a cookie-authenticated request that changes something needs the X-XSRFToken header"
                )
            raise NotebenchError(401, None, "Not authenticated: send a JupyterHub API token (Authorization: token <token>)")
        assert caller.model is not None  # "allowed" and "forbidden" come with the hub's model
        name = caller.model["name"]
        if caller.outcome == "forbidden":
            raise NotebenchError(403, None, f"{name} may not use the executor (needs the access:services scope)")
        if caller.model.get("kind", "user") != "user" and not self.services_may_call:
            raise NotebenchError(403, None, "jobs belong to users: use a user's token, not a service's")
        self._user_model = caller.model
        if caller.model.get("kind", "user") == "user":
            self.app.quotas.remember_groups(name, caller.model.get("groups", []))

    @property
    def user_name(self) -> str:
        return self.current_user["name"]

    @property
    def is_admin(self) -> bool:
        return bool(self.current_user.get("admin"))

    def audit(self, action: str, target: str, owner: str | None, **detail) -> None:
        """Record a change this request made in the audit log (executor/audit.py)."""
        audit.record(self.app.sessions, self.user_name, action, target, owner, **detail)

    # --- answers ----------------------------------------------------------------------------------

    def write_json(self, data, status: int = 200) -> None:
        if isinstance(data, pydantic.BaseModel):  # a response model (schemas.py)
            data = data.model_dump(mode="json")
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def parse(self, model: type[pydantic.BaseModel]):
        try:
            data = json.loads(self.request.body or b"null")
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise NotebenchError(400, "body", f"the body is not valid JSON: {e}")
        if not isinstance(data, dict):
            raise NotebenchError(400, "body", "the body must be a JSON object")
        # Python reads NaN and Infinity, which JSON has not: nothing stored may hold them.
        where = _non_finite(data)
        if where is not None:
            field = _field_name(model, where)
            raise NotebenchError(400, field, f"{field}: NaN and Infinity are not JSON values (at {'.'.join(map(str, where))})")
        try:
            return model.model_validate(data)
        except pydantic.ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "body"
            raise NotebenchError(400, field, f"{field}: {first['msg']}")
        except RecursionError:
            raise NotebenchError(400, "body", "the body is nested too deeply")

    def page(self, q, id_column) -> tuple[list, str | None]:
        """One page of ``q`` (ordered by ``id_column``, newest first) from the ``limit`` and ``cursor``
        query parameters, and the cursor of the next page (None on the last)."""
        limit = self.get_argument("limit", str(PAGE_DEFAULT))
        if not (_DIGITS.fullmatch(limit) and len(limit) <= 4 and 1 <= int(limit) <= PAGE_MAX):
            raise NotebenchError(400, "limit", f"limit must be an integer from 1 to {PAGE_MAX}")
        cursor = self.get_argument("cursor", None)
        if cursor:
            if not _DIGITS.fullmatch(cursor):
                raise NotebenchError(400, "cursor", "cursor must be the next_cursor of a previous page")
            q = q.where(id_column < (min(int(cursor), MAX_ID) if len(cursor) <= 19 else MAX_ID))
        with self.app.sessions() as s:
            rows = s.scalars(q.limit(int(limit) + 1)).all()
        page = rows[: int(limit)]
        return page, str(page[-1].id) if len(rows) > int(limit) else None

    def visible(self, owner: str) -> bool:
        return self.is_admin or owner == self.user_name

    def load(self, cls, object_id: str):
        obj = get_by_id(self.app.sessions, cls, object_id)
        if obj is None or not self.visible(obj.owner):
            raise NotebenchError(404, None, f"no {cls.__tablename__[:-1]} {object_id}")
        return obj


def _non_finite(value, path=()) -> tuple | None:
    """The path to the first NaN or infinity in decoded JSON, or None."""
    stack = [(value, path)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            return path
        if isinstance(value, dict):
            stack.extend((v, path + (k,)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, path + (i,)) for i, v in reversed(list(enumerate(value))))
    return None


def _field_name(model: type[pydantic.BaseModel] | None, path: tuple) -> str:
    """The request field a JSON path is in (e.g. 'parameters', 'job.parameters')."""
    names = []
    for key in path:
        field = model.model_fields.get(key) if model is not None and isinstance(key, str) else None
        if field is None:
            break
        names.append(key)
        inner = [a for a in (field.annotation, *getattr(field.annotation, "__args__", ())) if isinstance(a, type)]
        model = next((a for a in inner if issubclass(a, pydantic.BaseModel)), None)
    return ".".join(names) or "body"


class NotFoundHandler(APIHandler):
    def check_query(self) -> None:
        """No query is wrong on a path that does not exist: that is a 404, whatever it asks."""

    async def get(self, *args):
        raise NotebenchError(404, None, f"no such resource: {self.request.path}")

    post = patch = delete = put = get
