"""Jobs: submit, list, show, cancel, delete (ended ones); a job's log (followed) and output notebook (as HTML too).

A job's directory belongs to the job's owner (the job runs as them and writes there), while the
executor reads it as root: its files are opened without following links, and only when they are
plain files with a single name, so an owner cannot make the executor read another user's file
(a link to it) for them. Nothing is written there by the executor.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import sqlalchemy as sa
from tornado.iostream import StreamClosedError

from notebench.executor.api.base import _DIGITS, APIHandler, attachment
from notebench.executor.db import Job
from notebench.executor.errors import NotebenchError
from notebench.executor.schemas import JobPage, JobRequest, JobResponse
from notebench.executor.user_files import read_job_file
from notebench.hub.platform.statuses import FINAL, JOB_STATUSES


class JobsHandler(APIHandler):
    query_params = frozenset({"owner", "status", "name", "limit", "cursor"})

    async def get(self):
        q = sa.select(Job).order_by(Job.id.desc())
        owner = self.get_argument("owner", None)
        if owner and not self.is_admin and owner != self.user_name:
            raise NotebenchError(403, "owner", "only admins can list other users' jobs")
        if owner or not self.is_admin:
            q = q.where(Job.owner == (owner or self.user_name))
        status = self.get_argument("status", None)
        if status is not None:
            if status not in JOB_STATUSES:
                raise NotebenchError(400, "status", f"status must be one of {', '.join(JOB_STATUSES)}")
            q = q.where(Job.status == status)
        prefix = self.get_argument("name", None)
        if prefix:
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            q = q.where(Job.name.like(escaped + "%", escape="\\"))
        page, next_cursor = self.page(q, Job.id)
        self.write_json(JobPage(jobs=[JobResponse.of(j) for j in page], next_cursor=next_cursor))

    async def post(self):
        request = self.parse(JobRequest)
        job = await self.app.dispatcher.submit(self.user_name, request, groups=self.current_user.get("groups", []))
        self.audit("job.submit", f"job {job.id}", job.owner, name=job.name, profile=job.profile, workers=job.workers)
        self.set_header("Location", f"{self.settings['prefix']}api/jobs/{job.id}")
        self.write_json(JobResponse.of(job), 201)


class JobHandler(APIHandler):
    async def get(self, job_id):
        self.write_json(JobResponse.of(self.load(Job, job_id)))

    async def delete(self, job_id):
        """Delete an ended job: its record, its directory (log, output). Its MLflow run stays."""
        job = self.load(Job, job_id)
        if not self.app.dispatcher.delete(job.id):
            status = self.load(Job, job_id).status  # 404 if deleted meanwhile
            raise NotebenchError(409, "status", f"job {job.id} is {status}: cancel it first, only ended jobs can be deleted")
        self.audit("job.delete", f"job {job.id}", job.owner, name=job.name, status=job.status)
        self.set_status(204)
        self.finish()


class CancelHandler(APIHandler):
    async def post(self, job_id):
        job = self.load(Job, job_id)
        if job.status not in FINAL:
            await self.app.dispatcher.cancel(job.id)
            self.audit("job.cancel", f"job {job.id}", job.owner, name=job.name, was=job.status)
        self.write_json(JobResponse.of(self.load(Job, job_id)))


class LogHandler(APIHandler):
    query_params = frozenset({"follow", "offset"})

    async def get(self, job_id):
        job = self.load(Job, job_id)
        path = self.app.dispatcher.job_dir(job.id) / "log.txt"
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        follow = self.get_argument("follow", "0")
        if follow not in ("0", "1", "true", "false"):
            raise NotebenchError(400, "follow", "follow must be 1 (stream until the job ends) or 0")
        follow = follow in ("1", "true")
        # From a byte offset: a client that polls (the JupyterLab panel) asks only for what is new.
        offset = self.get_argument("offset", "0")
        if not (_DIGITS.fullmatch(offset) and len(offset) <= 18):
            raise NotebenchError(400, "offset", "offset must be a byte offset into the log (0 or more)")
        offset = int(offset)
        while not self._closed:
            try:
                chunk = read_job_file(path, offset) or b""
            except PermissionError as e:
                raise NotebenchError(404, None, f"job {job.id}'s log cannot be read: {e}")
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


MAX_HTML_NOTEBOOK_BYTES = 64 * 1024 * 1024  # rendering is in-process: bigger notebooks are download-only


class OutputHandler(APIHandler):
    async def get(self, job_id, kind):
        job = self.load(Job, job_id)
        output = self.app.dispatcher.job_dir(job.id) / "output.ipynb"
        data = await self._read_output(job, output)
        if kind == ".html":
            if len(data) > MAX_HTML_NOTEBOOK_BYTES:
                raise NotebenchError(404, None, f"job {job.id}'s output is too large to show as HTML: download the notebook")
            cache = Path(self.app.dispatcher.jobs_dir).parent / "html"
            try:
                html = await asyncio.get_running_loop().run_in_executor(None, render_html, data, cache, job.id)
            except Exception as e:  # the owner's notebook: anything nbconvert cannot make sense of
                raise NotebenchError(404, None, f"job {job.id}'s output cannot be shown as HTML: {type(e).__name__}: {e}")
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
                read = read_job_file(output)
            except PermissionError as e:
                raise NotebenchError(404, None, f"job {job.id}'s output cannot be read: {e}")
            if read is None:
                raise NotebenchError(404, None, f"job {job.id} has no output yet (status: {job.status})")
            data = read
            if job.status in FINAL:
                return data
            try:  # a running job's output is rewritten after each cell: wait out a half-written one
                json.loads(data)
                return data
            except ValueError:
                await asyncio.sleep(0.05)
        return data



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
