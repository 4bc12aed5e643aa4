"""The job pods' own file API (the Kubernetes backend): a job's input notebook in, its output out."""

from __future__ import annotations

import os
from pathlib import Path

from tornado import web

from notebench.executor.api.base import JSONErrors, get_by_id
from notebench.executor.db import Job
from notebench.executor.errors import NotebenchError
from notebench.executor.jobs.dispatcher import MAX_NOTEBOOK_BYTES


@web.stream_request_body
class JobFilesHandler(JSONErrors):
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
            raise NotebenchError(401, "Authorization", "a running job's own token is needed (Authorization: token <token>)")
        # Claimed: a pod the executor still shows as queued (waiting for a GPU) may have just started.
        if job is None or not job.is_claimed or not self.app.backend.check_job_token(job.id, token):
            raise NotebenchError(403, "Authorization", "not this job's token, or the job does not run")
        self.job_dir = self.app.dispatcher.job_dir(job.id)
        if self.request.method == "PUT":
            self.request.connection.set_max_body_size(MAX_NOTEBOOK_BYTES)
            self._part = self.job_dir / "output.ipynb.part"
            self._file = open(self._part, "wb")

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
