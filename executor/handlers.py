"""The executor's REST API under /services/executor/api/ (OpenAPI description: openapi.py).

Identity is JupyterHub's (API token or the hub OAuth cookie). A user sees and acts on their own
jobs and schedules only (others' answer 404, as if they did not exist); admins see all.
Errors are JSON: ``{"status": 4xx, "message": "...", "field": "<the offending field>"}``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path

import pydantic
import sqlalchemy as sa
from croniter import croniter
from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web
from zoneinfo import ZoneInfo

from .db import FINAL, STATUSES, Job, Schedule, utcnow
from .dispatcher import JobError
from .models import JobRequest, SchedulePatch, ScheduleRequest

PAGE_DEFAULT, PAGE_MAX = 50, 200


class FieldError(web.HTTPError):
    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(status, reason=None)
        self.field, self.message = field, message


def next_run(cron: str, tz: str, after: datetime | None = None) -> datetime:
    base = (after or utcnow()).astimezone(ZoneInfo(tz))
    return croniter(cron, base).get_next(datetime).astimezone(timezone.utc)


class APIHandler(HubOAuthenticated, web.RequestHandler):
    hub_auth_class = HubOAuth  # configured from the JUPYTERHUB_* environment the hub gives services

    def initialize(self):
        self.app = self.settings["executor"]

    def check_xsrf_cookie(self):
        # Tokens are not sent by browsers on their own: only cookie-authenticated writes need the check.
        if self.request.headers.get("Authorization"):
            return
        return super().check_xsrf_cookie()

    def get_current_user(self):
        return getattr(self, "_user_model", None)

    async def prepare(self):
        length = self.request.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.app.max_body_bytes:
            self.set_header("Connection", "close")
            raise FieldError(413, "body", f"the request body is {length} bytes; at most {self.app.max_body_bytes} allowed")
        model = await self.hub_auth.get_user(self, sync=False)
        if not model:
            self.set_header("WWW-Authenticate", 'Bearer realm="notebench"')
            raise FieldError(401, None, "Not authenticated: send a JupyterHub API token (Authorization: token <token>)")
        try:
            self._user_model = self.check_hub_user(model)
        except web.HTTPError:
            raise FieldError(403, None, f"{model['name']} may not use the executor (needs the access:services scope)")
        if self._user_model is None:
            raise FieldError(403, None, f"{model['name']} may not use the executor")
        if model.get("kind", "user") != "user":
            raise FieldError(403, None, "jobs belong to users: use a user's token, not a service's")

    @property
    def user_name(self) -> str:
        return self.current_user["name"]

    @property
    def is_admin(self) -> bool:
        return bool(self.current_user.get("admin"))

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        body = {"status": status_code, "message": self._reason}
        if isinstance(exc, FieldError):
            body.update(message=exc.message, field=exc.field)
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            body["message"] = exc.log_message
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def write_json(self, data, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def parse(self, model: type[pydantic.BaseModel]):
        try:
            data = json.loads(self.request.body or b"null")
        except ValueError as e:
            raise FieldError(400, "body", f"the body is not valid JSON: {e}")
        if not isinstance(data, dict):
            raise FieldError(400, "body", "the body must be a JSON object")
        try:
            return model.model_validate(data)
        except pydantic.ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "body"
            raise FieldError(400, field, f"{field}: {first['msg']}")

    def visible(self, owner: str) -> bool:
        return self.is_admin or owner == self.user_name

    def load(self, cls, object_id: str):
        with self.app.sessions() as s:
            obj = s.get(cls, int(object_id))
        if obj is None or not self.visible(obj.owner):
            raise FieldError(404, None, f"no {cls.__tablename__[:-1]} {object_id}")
        return obj


class JobsHandler(APIHandler):
    async def get(self):
        q = sa.select(Job).order_by(Job.id.desc())
        owner = self.get_argument("owner", None)
        if owner and not self.is_admin and owner != self.user_name:
            raise FieldError(403, "owner", "only admins can list other users' jobs")
        if owner or not self.is_admin:
            q = q.where(Job.owner == (owner or self.user_name))
        status = self.get_argument("status", None)
        if status:
            if status not in STATUSES:
                raise FieldError(400, "status", f"status must be one of {', '.join(STATUSES)}")
            q = q.where(Job.status == status)
        prefix = self.get_argument("name", None)
        if prefix:
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            q = q.where(Job.name.like(escaped + "%", escape="\\"))
        limit = self.get_argument("limit", str(PAGE_DEFAULT))
        if not limit.isdigit() or not 1 <= int(limit) <= PAGE_MAX:
            raise FieldError(400, "limit", f"limit must be an integer from 1 to {PAGE_MAX}")
        cursor = self.get_argument("cursor", None)
        if cursor:
            if not cursor.isdigit():
                raise FieldError(400, "cursor", "cursor must be the next_cursor of a previous page")
            q = q.where(Job.id < int(cursor))
        with self.app.sessions() as s:
            jobs = s.scalars(q.limit(int(limit) + 1)).all()
        page = jobs[: int(limit)]
        more = len(jobs) > int(limit)
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
    async def get(self, job_id):
        job = self.load(Job, job_id)
        path = self.app.dispatcher.job_dir(job.id) / "log.txt"
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        follow = self.get_argument("follow", "0") in ("1", "true")
        offset = 0
        while True:
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b""
            if chunk:
                offset += len(chunk)
                self.write(chunk)
                await self.flush()
            if not follow or (self.load(Job, job_id).status in FINAL and not chunk):
                break
            await asyncio.sleep(0.2)
        self.finish()


class OutputHandler(APIHandler):
    async def get(self, job_id, kind):
        job = self.load(Job, job_id)
        job_dir = self.app.dispatcher.job_dir(job.id)
        output = job_dir / "output.ipynb"
        if not output.exists():
            raise FieldError(404, None, f"job {job.id} has no output yet (status: {job.status})")
        if kind == ".html":
            html = await asyncio.get_running_loop().run_in_executor(None, render_html, output, job_dir / "output.html")
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(html)
        else:
            self.set_header("Content-Type", "application/x-ipynb+json")
            self.set_header("Content-Disposition", f'attachment; filename="{job.name}-{job.id}.ipynb"')
            self.finish(output.read_bytes())


def render_html(notebook: Path, cached: Path) -> bytes:
    """nbconvert, in-process; kept beside the notebook until the notebook changes."""
    if cached.exists() and cached.stat().st_mtime >= notebook.stat().st_mtime:
        return cached.read_bytes()
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(notebook), as_version=4))
    cached.write_text(body)
    return body.encode()


class SchedulesHandler(APIHandler):
    async def get(self):
        q = sa.select(Schedule).order_by(Schedule.id)
        if not self.is_admin:
            q = q.where(Schedule.owner == self.user_name)
        with self.app.sessions() as s:
            schedules = s.scalars(q).all()
        self.write_json({"schedules": [schedule_dict(x) for x in schedules]})

    async def post(self):
        request = self.parse(ScheduleRequest)
        try:
            self.app.dispatcher._resolve(self.user_name, request.job)
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
        self.write_json(schedule_dict(schedule), 201)


class ScheduleHandler(APIHandler):
    async def get(self, schedule_id):
        self.write_json(schedule_dict(self.load(Schedule, schedule_id)))

    async def patch(self, schedule_id):
        schedule = self.load(Schedule, schedule_id)
        patch = self.parse(SchedulePatch)
        if patch.job is not None:
            try:
                self.app.dispatcher._resolve(schedule.owner, patch.job)
            except JobError as e:
                raise FieldError(e.status, f"job.{e.field}", e.message)
        changes = patch.model_dump(exclude_unset=True)
        if "job" in changes:
            changes["job_template"] = patch.job.model_dump()
            del changes["job"]
        with self.app.sessions() as s:
            schedule = s.get(Schedule, schedule.id)
            for key, value in changes.items():
                setattr(schedule, key, value)
            schedule.next_run_at = next_run(schedule.cron, schedule.timezone) if schedule.active else None
            s.commit()
        self.write_json(schedule_dict(schedule))

    async def delete(self, schedule_id):
        schedule = self.load(Schedule, schedule_id)
        with self.app.sessions() as s:
            s.execute(sa.delete(Schedule).where(Schedule.id == schedule.id))
            s.commit()
        self.set_status(204)
        self.finish()


def schedule_dict(schedule: Schedule) -> dict:
    iso = lambda d: d.isoformat().replace("+00:00", "Z") if d else None  # noqa: E731
    return {
        "id": schedule.id,
        "owner": schedule.owner,
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "active": schedule.active,
        "job": schedule.job_template,
        "created_at": iso(schedule.created_at),
        "next_run_at": iso(schedule.next_run_at),
    }


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
    api = prefix + "api/"
    return [
        (prefix + "health", HealthHandler),
        (prefix + "oauth_callback", HubOAuthCallbackHandler),
        (api + "openapi.json", OpenAPIHandler),
        (api + "jobs", JobsHandler),
        (api + r"jobs/(\d+)", JobHandler),
        (api + r"jobs/(\d+)/cancel", CancelHandler),
        (api + r"jobs/(\d+)/log", LogHandler),
        (api + r"jobs/(\d+)/output(\.html)?", OutputHandler),
        (api + "schedules", SchedulesHandler),
        (api + r"schedules/(\d+)", ScheduleHandler),
        (prefix + "(.*)", NotFoundHandler),
    ]
