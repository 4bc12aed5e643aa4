"""The executor's REST API under /services/executor/api/ (OpenAPI description: openapi.py).

Identity is JupyterHub's (API token or the hub OAuth cookie). A user sees and acts on their own
jobs and schedules only (others' answer 404, as if they did not exist); admins see all.
Errors are JSON: ``{"status": 4xx, "message": "...", "field": "<the offending field>"}``.

Request bodies are streamed in (``stream_request_body``, ``LimitedBodyHandler``: the API here,
and the endpoints' scoring paths in router.py) so that a body over ``c.Executor.max_body_bytes``
is read and dropped, then answered with a JSON 413. Tornado's own limit (HTTPServer's
max_body_size) answers a bare 400 and closes the connection while the proxy still sends the body:
the proxy's write fails and it answers its 503 page instead.

A job's directory belongs to the job's owner (the job runs as them and writes there), while the
executor reads it as root: its files are opened without following links, and only when they are
plain files with a single name, so an owner cannot make the executor read another user's file
(a link to it) for them. Nothing is written there by the executor.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pydantic
import sqlalchemy as sa
from croniter import croniter
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
from tornado import web
from tornado.iostream import StreamClosedError
from zoneinfo import ZoneInfo

from notebench.hub.accounts import AccountClash

from .db import FINAL, STATUSES, Job, Schedule, utcnow
from .dispatcher import MAX_NOTEBOOK_BYTES, JobError
from .jobfiles import read_job_file
from .models import JobRequest, SchedulePatch, ScheduleRequest

PAGE_DEFAULT, PAGE_MAX = 50, 200
MAX_ID = 2**63 - 1  # ids are 64-bit integers in every database we use
MAX_HTML_NOTEBOOK_BYTES = 64 * 1024 * 1024  # rendering is in-process: bigger notebooks are download-only
# A body over the limit is read to its end (and dropped) before the 413: answered early, the
# connection is closed under the proxy, which then answers 503 instead. Up to this size at least:
DRAIN_MIN_BYTES = 1024**3
_DIGITS = re.compile(r"[0-9]+")


class FieldError(web.HTTPError):
    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(status, reason=None)
        self.field, self.message = field, message


def next_run(cron: str, tz: str, after: datetime | None = None) -> datetime:
    base = (after or utcnow()).astimezone(ZoneInfo(tz))
    return croniter(cron, base).get_next(datetime).astimezone(timezone.utc)


def _with_body(method):
    """Run an HTTP method once its whole body is in: refuse it if too large (413), then
    authenticate and check the query."""

    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        self._body_complete = True
        if self._body_size > self.app.max_body_bytes:
            raise FieldError(
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


def write_json_error(handler: web.RequestHandler, status_code: int, exc, body_complete: bool, **extra) -> None:
    """Every executor error: a JSON body {status, message, field, **extra}, field naming what was wrong."""
    body = {"status": status_code, "message": handler._reason, "field": None}
    if isinstance(exc, FieldError):
        body.update(message=exc.message, field=exc.field)
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


@web.stream_request_body
class LimitedBodyHandler(web.RequestHandler):
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
        """Who asks, and whether they may: raises a FieldError (401, 403, 404) if not."""
        raise NotImplementedError

    def check_query(self) -> None:
        """Raises a FieldError (400) for a query the handler does not take."""

    def write_error(self, status_code, **kwargs):
        write_json_error(self, status_code, kwargs.get("exc_info", (None, None))[1], self._body_complete)

    def prepare(self):
        limit = self.app.max_body_bytes
        drain = max(limit * 64, DRAIN_MIN_BYTES)
        length = self.request.headers.get("Content-Length", "")
        if _DIGITS.fullmatch(length) and (len(length) > 18 or int(length) > drain):
            # Absurd: answer at once (tornado closes the connection; through the proxy, a 503).
            raise FieldError(413, "body", f"the request body is {length} bytes; at most {limit} allowed")
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
            raise FieldError(400, unknown[0], f"unknown query parameter {unknown[0]!r}")

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
        model = await self.hub_auth.get_user(self, sync=False)
        if not model:
            if self.request.method == "GET" and self._browser_navigation():
                self.redirect(self.get_login_url())  # the hub's OAuth: a browser comes back with the cookie
                raise web.Finish()
            if self.get_cookie(self.hub_auth.cookie_name) and self.request.method not in ("GET", "HEAD", "OPTIONS"):
                raise FieldError(
                    403, None, "a cookie-authenticated request that changes something needs the X-XSRFToken header"
                )
            raise FieldError(401, None, "Not authenticated: send a JupyterHub API token (Authorization: token <token>)")
        try:
            self._user_model = self.check_hub_user(model)
        except (UserNotAllowed, web.HTTPError):  # e.g. a token without the access:services scope
            raise FieldError(403, None, f"{model['name']} may not use the executor (needs the access:services scope)")
        if self._user_model is None:
            raise FieldError(403, None, f"{model['name']} may not use the executor")
        if model.get("kind", "user") != "user":
            raise FieldError(403, None, "jobs belong to users: use a user's token, not a service's")

    def _browser_navigation(self) -> bool:
        if self.request.headers.get("Sec-Fetch-Mode") == "navigate":
            return True
        return "text/html" in self.request.headers.get("Accept", "")

    @property
    def user_name(self) -> str:
        return self.current_user["name"]

    @property
    def is_admin(self) -> bool:
        return bool(self.current_user.get("admin"))

    # --- answers ----------------------------------------------------------------------------------

    def write_json(self, data, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def parse(self, model: type[pydantic.BaseModel]):
        try:
            data = json.loads(self.request.body or b"null")
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise FieldError(400, "body", f"the body is not valid JSON: {e}")
        if not isinstance(data, dict):
            raise FieldError(400, "body", "the body must be a JSON object")
        # Python reads NaN and Infinity, which JSON has not: nothing stored may hold them.
        where = _non_finite(data)
        if where is not None:
            field = _field_name(model, where)
            raise FieldError(400, field, f"{field}: NaN and Infinity are not JSON values (at {'.'.join(map(str, where))})")
        try:
            return model.model_validate(data)
        except pydantic.ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "body"
            raise FieldError(400, field, f"{field}: {first['msg']}")
        except RecursionError:
            raise FieldError(400, "body", "the body is nested too deeply")

    def visible(self, owner: str) -> bool:
        return self.is_admin or owner == self.user_name

    def load(self, cls, object_id: str):
        obj = get_by_id(self.app.sessions, cls, object_id)
        if obj is None or not self.visible(obj.owner):
            raise FieldError(404, None, f"no {cls.__tablename__[:-1]} {object_id}")
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


def _field_name(model: type[pydantic.BaseModel], path: tuple) -> str:
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


class JobsHandler(APIHandler):
    query_params = frozenset({"owner", "status", "name", "limit", "cursor"})

    async def get(self):
        q = sa.select(Job).order_by(Job.id.desc())
        owner = self.get_argument("owner", None)
        if owner and not self.is_admin and owner != self.user_name:
            raise FieldError(403, "owner", "only admins can list other users' jobs")
        if owner or not self.is_admin:
            q = q.where(Job.owner == (owner or self.user_name))
        status = self.get_argument("status", None)
        if status is not None:
            if status not in STATUSES:
                raise FieldError(400, "status", f"status must be one of {', '.join(STATUSES)}")
            q = q.where(Job.status == status)
        prefix = self.get_argument("name", None)
        if prefix:
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            q = q.where(Job.name.like(escaped + "%", escape="\\"))
        limit = self.get_argument("limit", str(PAGE_DEFAULT))
        if not (_DIGITS.fullmatch(limit) and len(limit) <= 4 and 1 <= int(limit) <= PAGE_MAX):
            raise FieldError(400, "limit", f"limit must be an integer from 1 to {PAGE_MAX}")
        limit = int(limit)
        cursor = self.get_argument("cursor", None)
        if cursor:
            if not _DIGITS.fullmatch(cursor):
                raise FieldError(400, "cursor", "cursor must be the next_cursor of a previous page")
            q = q.where(Job.id < (min(int(cursor), MAX_ID) if len(cursor) <= 19 else MAX_ID))
        with self.app.sessions() as s:
            jobs = s.scalars(q.limit(limit + 1)).all()
        page = jobs[:limit]
        more = len(jobs) > limit
        self.write_json({"jobs": [j.to_dict() for j in page], "next_cursor": str(page[-1].id) if more else None})

    async def post(self):
        request = self.parse(JobRequest)
        try:
            job = await self.app.dispatcher.submit(self.user_name, request)
        except JobError as e:
            raise FieldError(e.status, e.field, e.message)
        self.set_header("Location", f"{self.settings['prefix']}api/jobs/{job.id}")
        self.write_json(job.to_dict(), 201)


class JobHandler(APIHandler):
    async def get(self, job_id):
        self.write_json(self.load(Job, job_id).to_dict())


class CancelHandler(APIHandler):
    async def post(self, job_id):
        job = self.load(Job, job_id)
        if job.status not in FINAL:
            await self.app.dispatcher.cancel(job.id)
        self.write_json(self.load(Job, job_id).to_dict())


class LogHandler(APIHandler):
    query_params = frozenset({"follow"})

    async def get(self, job_id):
        job = self.load(Job, job_id)
        path = self.app.dispatcher.job_dir(job.id) / "log.txt"
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        follow = self.get_argument("follow", "0")
        if follow not in ("0", "1", "true", "false"):
            raise FieldError(400, "follow", "follow must be 1 (stream until the job ends) or 0")
        follow = follow in ("1", "true")
        offset = 0
        while not self._closed:
            try:
                chunk = read_job_file(path, offset) or b""
            except PermissionError as e:
                raise FieldError(404, None, f"job {job.id}'s log cannot be read: {e}")
            if chunk:
                offset += len(chunk)
                self.write(chunk)
                try:
                    await self.flush()
                except StreamClosedError:
                    return  # the client went away
            if not follow or (self.load(Job, job_id).status in FINAL and not chunk):
                break
            await asyncio.sleep(0.2)
        if not self._closed:
            self.finish()


class OutputHandler(APIHandler):
    async def get(self, job_id, kind):
        job = self.load(Job, job_id)
        output = self.app.dispatcher.job_dir(job.id) / "output.ipynb"
        data = await self._read_output(job, output)
        if kind == ".html":
            if len(data) > MAX_HTML_NOTEBOOK_BYTES:
                raise FieldError(404, None, f"job {job.id}'s output is too large to show as HTML: download the notebook")
            cache = Path(self.app.dispatcher.jobs_dir).parent / "html"
            try:
                html = await asyncio.get_running_loop().run_in_executor(None, render_html, data, cache, job.id)
            except Exception as e:  # the owner's notebook: anything nbconvert cannot make sense of
                raise FieldError(404, None, f"job {job.id}'s output cannot be shown as HTML: {type(e).__name__}: {e}")
            self.set_header("Content-Type", "text/html; charset=utf-8")
            # The notebook's outputs are the owner's HTML: shown to others (admins) it must not
            # run scripts in the hub's origin.
            self.set_header("Content-Security-Policy", "sandbox")
            self.finish(html)
        else:
            self.set_header("Content-Type", "application/x-ipynb+json")
            self.set_header("Content-Disposition", attachment(f"{job.name}-{job.id}.ipynb"))
            self.finish(data)

    async def _read_output(self, job: Job, output: Path) -> bytes:
        for attempt in range(10):
            try:
                data = read_job_file(output)
            except PermissionError as e:
                raise FieldError(404, None, f"job {job.id}'s output cannot be read: {e}")
            if data is None:
                raise FieldError(404, None, f"job {job.id} has no output yet (status: {job.status})")
            if job.status in FINAL:
                return data
            try:  # a running job's output is rewritten after each cell: wait out a half-written one
                json.loads(data)
                return data
            except ValueError:
                await asyncio.sleep(0.05)
        return data


@web.stream_request_body
class JobFilesHandler(web.RequestHandler):
    """A job pod's own calls (the Kubernetes backend's jobs): GET its input notebook, PUT its
    output notebook. Authenticated by the job's token, not a user's (the pod holds no hub token);
    backends whose jobs write the job directory themselves accept no token (403)."""

    def initialize(self):
        self.app = self.settings["executor"]
        self._part: Path | None = None
        self._file = None
        self._body_complete = False  # get/put run once the body is in; prepare runs before

    def check_xsrf_cookie(self):
        pass  # a token, never a cookie, authenticates these calls

    def prepare(self):
        job_id, _name = self.path_args
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        token = token.strip() if scheme.lower() in ("token", "bearer") else ""
        job = get_by_id(self.app.sessions, Job, job_id)
        if not token:
            raise FieldError(401, "Authorization", "a running job's own token is needed (Authorization: token <token>)")
        if job is None or job.status != "running" or not self.app.backend.check_job_token(job.id, token):
            raise FieldError(403, "Authorization", "not this job's token, or the job does not run")
        self.job_dir = self.app.dispatcher.job_dir(job.id)
        if self.request.method == "PUT":
            self.request.connection.set_max_body_size(MAX_NOTEBOOK_BYTES)
            self._part = self.job_dir / "output.ipynb.part"
            self._file = open(self._part, "wb")

    def write_error(self, status_code, **kwargs):
        write_json_error(self, status_code, kwargs.get("exc_info", (None, None))[1], self._body_complete)

    def data_received(self, chunk: bytes) -> None:
        if self._file is not None:
            self._file.write(chunk)

    def get(self, job_id, name):
        self._body_complete = True
        if name != "input":
            raise web.HTTPError(405)
        self.set_header("Content-Type", "application/x-ipynb+json")
        self.finish((self.job_dir / "input.ipynb").read_bytes())

    def put(self, job_id, name):
        self._body_complete = True
        if name != "output":
            raise web.HTTPError(405)
        self._file.close()
        os.replace(self._part, self.job_dir / "output.ipynb")  # readers never see half a notebook
        self.set_status(204)
        self.finish()

    def on_finish(self):
        if self._file is not None and not self._file.closed:  # the upload broke off
            self._file.close()
            self._part.unlink(missing_ok=True)

    on_connection_close = on_finish


def attachment(filename: str) -> str:
    """A Content-Disposition header for any file name (RFC 6266: an ASCII fallback and the UTF-8 name)."""
    fallback = re.sub(r"[^A-Za-z0-9._-]+", "_", filename) or "output.ipynb"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def render_html(notebook: bytes, cache_dir: Path, job_id: int) -> bytes:
    """nbconvert, in-process; kept in the executor's own cache (not in the job's directory, which
    its owner controls) until the notebook changes."""
    import hashlib

    digest = hashlib.sha256(notebook).hexdigest()[:32]
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cached = cache_dir / f"{job_id}-{digest}.html"
    try:
        return cached.read_bytes()
    except FileNotFoundError:
        pass
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.reads(notebook.decode("utf-8", "replace"), as_version=4))
    data = body.encode()
    for old in cache_dir.glob(f"{job_id}-*.html"):
        old.unlink(missing_ok=True)
    tmp = cache_dir / f".{job_id}-{digest}.{os.getpid()}.{id(data)}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, cached)
    return data


class SchedulesHandler(APIHandler):
    async def get(self):
        q = sa.select(Schedule).order_by(Schedule.id)
        if not self.is_admin:
            q = q.where(Schedule.owner == self.user_name)
        with self.app.sessions() as s:
            schedules = s.scalars(q).all()
        self.write_json({"schedules": [x.to_dict() for x in schedules]})

    async def post(self):
        request = self.parse(ScheduleRequest)
        try:
            self.app.dispatcher.resolve(self.user_name, request.job)
        except JobError as e:
            raise FieldError(e.status, f"job.{e.field}", e.message)
        schedule = Schedule(
            owner=self.user_name,
            name=request.name,
            cron=request.cron,
            timezone=request.timezone,
            active=request.active,
            job_template=request.job.model_dump(),
            next_run_at=next_run(request.cron, request.timezone) if request.active else None,
        )
        with self.app.sessions() as s:
            s.add(schedule)
            s.commit()
        self.set_header("Location", f"{self.settings['prefix']}api/schedules/{schedule.id}")
        self.write_json(schedule.to_dict(), 201)


class ScheduleHandler(APIHandler):
    async def get(self, schedule_id):
        self.write_json(self.load(Schedule, schedule_id).to_dict())

    async def patch(self, schedule_id):
        schedule = self.load(Schedule, schedule_id)
        patch = self.parse(SchedulePatch)
        if patch.job is not None:
            try:
                self.app.dispatcher.resolve(schedule.owner, patch.job)
            except JobError as e:
                raise FieldError(e.status, f"job.{e.field}", e.message)
        changes = patch.model_dump(exclude_unset=True)
        if "job" in changes:
            changes["job_template"] = patch.job.model_dump()
            del changes["job"]
        with self.app.sessions() as s:
            schedule = s.get(Schedule, schedule.id)
            if schedule is None:  # deleted meanwhile
                raise FieldError(404, None, f"no schedule {schedule_id}")
            for key, value in changes.items():
                setattr(schedule, key, value)
            schedule.next_run_at = next_run(schedule.cron, schedule.timezone) if schedule.active else None
            s.commit()
        self.write_json(schedule.to_dict())

    async def delete(self, schedule_id):
        schedule = self.load(Schedule, schedule_id)
        with self.app.sessions() as s:
            s.execute(sa.delete(Schedule).where(Schedule.id == schedule.id))
            s.commit()
        self.set_status(204)
        self.finish()


class ProfilesHandler(APIHandler):
    """What a job may ask for: the hub's profiles and the kernels installed (the panel's pickers)."""

    async def get(self):
        default = self.app.profiles.get(None).name
        profiles = [
            {
                "name": p.name,
                "display_name": p.display_name,
                "description": p.description,
                "gpus": p.gpus,
                "cpu_limit": p.cpu_limit,
                "mem_limit": p.mem_limit,
                "default": p.name == default,
            }
            for p in self.app.profiles.all()
        ]
        self.write_json({"profiles": profiles, "kernels": sorted(self.app.kernel_names())})
        # Asked for by the job form: a job is likely to follow, let it start on a warm kernel.
        asyncio.ensure_future(self.app.dispatcher.prewarm(self.user_name))


class OpenAPIHandler(APIHandler):
    async def get(self):
        from .openapi import spec

        self.write_json(spec(self.settings["prefix"]))


class HealthHandler(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": "ok"}))


class NotFoundHandler(APIHandler):
    async def get(self, *args):
        raise FieldError(404, None, f"no such resource: {self.request.path}")

    post = patch = delete = put = get


def routes(prefix: str) -> list:
    from .endpoint_handlers import routes as endpoint_routes  # they build on APIHandler, above

    api = prefix + "api/"
    return [
        (prefix + "health", HealthHandler),
        (prefix + "oauth_callback", HubOAuthCallbackHandler),
        (api + "openapi.json", OpenAPIHandler),
        (api + "profiles", ProfilesHandler),
        (api + "jobs", JobsHandler),
        (api + r"jobs/([0-9]+)", JobHandler),
        (api + r"jobs/([0-9]+)/cancel", CancelHandler),
        (api + r"jobs/([0-9]+)/log", LogHandler),
        (api + r"jobs/([0-9]+)/output(\.html)?", OutputHandler),
        (api + r"jobs/([0-9]+)/files/(input|output)", JobFilesHandler),
        (api + "schedules", SchedulesHandler),
        (api + r"schedules/([0-9]+)", ScheduleHandler),
        *endpoint_routes(prefix),
        (prefix + "(.*)", NotFoundHandler),
    ]
