"""The executor's clients of other hub services: user tokens from the hub, runs in MLflow."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from notebench.executor.runtime.mlflow_plugins import MOVED_TO
from notebench.executor.user_files import read_job_file

MAX_ARTIFACT_BYTES = 256 * 1024 * 1024
RUN_ID = re.compile(r"[0-9a-f]{32}")  # MLflow's run ids
# What a service answers (or its proxy for it) while it is down or restarting; 599: no answer.
UNAVAILABLE = (502, 503, 504, 599)


def is_outage(error: BaseException) -> bool:
    """Whether a call to MLflow or the hub failed because the service is down for now (refused,
    reset, timed out, or a 'service unavailable' from the proxy): work waits and is retried."""
    if isinstance(error, HTTPClientError):
        return error.code in UNAVAILABLE
    return isinstance(error, (OSError, asyncio.TimeoutError))


class HubTokens:
    """Short-lived API tokens of users (scope ``access:services``), minted with the executor's
    own token (scope ``tokens``), so a job reaches MLflow as its owner."""

    def __init__(self, api_url: str, service_token: str, lifetime_s: int = 7 * 24 * 3600):
        self.api_url = api_url.rstrip("/")
        self.service_token = service_token
        self.lifetime_s = lifetime_s
        self._cache: dict[str, tuple[str, float]] = {}

    async def token_for(self, user: str) -> str:
        token, expires = self._cache.get(user, ("", 0.0))
        if time.time() < expires - 3600:
            return token
        body = {"note": "notebench executor (jobs)", "scopes": ["access:services"], "expires_in": self.lifetime_s}
        r = await AsyncHTTPClient().fetch(
            f"{self.api_url}/users/{quote(user, safe='')}/tokens",
            method="POST",
            body=json.dumps(body),
            headers={"Authorization": f"token {self.service_token}", "Content-Type": "application/json"},
        )
        token = json.loads(r.body)["token"]
        self._cache[user] = (token, time.time() + self.lifetime_s)
        return token


def job_experiment(job) -> str:
    """The experiment of a job's run, unless its notebook names another (runtime/mlflow_plugins.py):
    the notebook's own, as in JupyterLab, since a job is named after its notebook by default."""
    return f"{job.owner}/{job.name}"


class MlflowRuns:
    """One MLflow run per job, created and closed through MLflow's REST API as the job's owner."""

    STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED", "timed_out": "FAILED"}

    def __init__(self, tracking_url: str, tokens: HubTokens):
        self.url = tracking_url.rstrip("/")
        self.tokens = tokens
        # Experiments are never renamed by us; ids are looked up once per (owner, name).
        self._experiment_ids: dict[tuple[str, str], str] = {}
        self._run_experiments: dict[str, str] = {}  # run id -> experiment id, for finish()

    async def _call(self, owner: str, method: str, path: str, body=None, raw: bytes | None = None, **kw):
        token = await self.tokens.token_for(owner)
        headers = {"Authorization": f"Bearer {token}"}
        if raw is None:
            headers["Content-Type"] = "application/json"
        r = await AsyncHTTPClient().fetch(
            f"{self.url}{path}",
            method=method,
            body=raw if raw is not None else (json.dumps(body) if body is not None else None),
            headers=headers,
            request_timeout=20,
            **kw,
        )
        return json.loads(r.body) if r.body else {}

    async def _experiment_id(self, owner: str, name: str) -> str:
        if (owner, name) not in self._experiment_ids:
            self._experiment_ids[(owner, name)] = await self._find_or_create_experiment(owner, name)
        return self._experiment_ids[(owner, name)]

    async def _find_or_create_experiment(self, owner: str, name: str) -> str:
        try:
            found = await self._call(owner, "GET", f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={quote(name)}")
            return found["experiment"]["experiment_id"]
        except HTTPClientError as e:
            if e.code != 404:
                raise
        try:
            return (await self._call(owner, "POST", "/api/2.0/mlflow/experiments/create", {"name": name}))["experiment_id"]
        except HTTPClientError as e:  # created meanwhile by a concurrent job
            if e.code != 400:
                raise
            return await self._find_or_create_experiment(owner, name)

    async def create_run(self, job, notebook_name: str, look_first: bool = False) -> str:
        """The job's run, made as its owner. ``look_first``: an earlier try may have made it (MLflow
        went down before it answered): find that one by its job tag instead of making a second."""
        experiment = job_experiment(job)
        experiment_id = await self._experiment_id(job.owner, experiment)
        if look_first:
            found = await self._call(job.owner, "POST", "/api/2.0/mlflow/runs/search", {
                "experiment_ids": [experiment_id], "filter": f"tags.`notebench.job_id` = '{int(job.id)}'", "max_results": 1,
            })
            if found.get("runs"):
                run_id = found["runs"][0]["info"]["run_id"]
                self._run_experiments[run_id] = experiment_id
                return run_id
        tags = {
            "mlflow.runName": f"job-{job.id}",
            "mlflow.user": job.owner,
            "notebench.owner": job.owner,
            "notebench.job_id": str(job.id),
            "notebench.notebook": notebook_name,
        }
        create = {
            "experiment_id": experiment_id,
            "start_time": int(time.time() * 1000),
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        try:
            run = await self._call(job.owner, "POST", "/api/2.0/mlflow/runs/create", create)
        except HTTPClientError as e:
            if e.code not in (400, 404):
                raise
            # The experiment was deleted since we looked it up: look again, once.
            self._experiment_ids.pop((job.owner, experiment), None)
            create["experiment_id"] = await self._experiment_id(job.owner, experiment)
            run = await self._call(job.owner, "POST", "/api/2.0/mlflow/runs/create", create)
        run_id = run["run"]["info"]["run_id"]
        self._run_experiments[run_id] = run["run"]["info"]["experiment_id"]
        return run_id

    async def log_parameters(self, job) -> None:
        """The job's parameters on its run (again, the same, when a start is retried)."""
        params = [{"key": k, "value": json.dumps(v) if not isinstance(v, str) else v} for k, v in job.parameters.items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            await self._call(job.owner, "POST", "/api/2.0/mlflow/runs/log-batch", {"run_id": job.mlflow_run_id, "params": params[start : start + 100]})

    async def current_run(self, job) -> str:
        """The job's run: the one made for it, or where the notebook moved it (``notebench.moved_to``
        on the deleted original, set by the owner's kernel). The new run is checked to be this job's."""
        run = (await self._call(job.owner, "GET", f"/api/2.0/mlflow/runs/get?run_id={quote(job.mlflow_run_id)}"))["run"]
        moved_to = {t["key"]: t.get("value") for t in run["data"].get("tags", [])}.get(MOVED_TO)
        if run["info"].get("lifecycle_stage") != "deleted" or not moved_to or not RUN_ID.fullmatch(moved_to):
            return job.mlflow_run_id
        new = (await self._call(job.owner, "GET", f"/api/2.0/mlflow/runs/get?run_id={moved_to}"))["run"]
        tags = {t["key"]: t.get("value") for t in new["data"].get("tags", [])}
        if tags.get("notebench.job_id") != str(job.id):
            return job.mlflow_run_id
        self._run_experiments[moved_to] = new["info"]["experiment_id"]
        return moved_to

    async def finish(self, job, output: Path) -> str:
        """Upload the output notebook to the job's run and close it; returns the run's id (see
        current_run: the notebook may have moved it)."""
        try:
            notebook = read_job_file(output, limit=MAX_ARTIFACT_BYTES)
        except (PermissionError, OverflowError):
            notebook = None  # not a plain file the runner wrote: never upload it
        run_id = await self.current_run(job)
        experiment_id = self._run_experiments.pop(run_id, None)
        if notebook is not None:
            if experiment_id is None:  # started by an executor before a restart
                info = await self._call(job.owner, "GET", f"/api/2.0/mlflow/runs/get?run_id={run_id}")
                experiment_id = info["run"]["info"]["experiment_id"]
            await self._call(
                job.owner,
                "PUT",
                f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/output.ipynb",
                raw=notebook,
            )
        await self._call(
            job.owner,
            "POST",
            "/api/2.0/mlflow/runs/update",
            {"run_id": run_id, "status": self.STATUS[job.status], "end_time": int(time.time() * 1000)},
        )
        return run_id
