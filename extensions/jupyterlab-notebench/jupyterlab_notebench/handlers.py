"""The server extension's REST API under /notebench/ in the user's server.

The browser talks only to these handlers (same origin, the server's login and XSRF checks); they
talk to the executor and MLflow with the server's own JupyterHub token, so the browser never holds
a token. Every upstream URL comes from `upstream.call` (fixed prefixes, encoded segments).
Bad input is a 4xx with a JSON body naming what was wrong: a body over
``c.NotebenchExtension.max_body_bytes`` (16 MiB) is a 413; one that is not JSON, nests deeper
than ``MAX_JSON_DEPTH`` (64) or is not an object, a 400.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import posixpath
import re
import time

import nbformat
from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web
from traitlets import Integer
from traitlets.config import Configurable

from notebench.hub.platform.names import ENDPOINT_NAME  # the executor's rule, so a bad name never leaves the server

from .culling import setup_culling
from .parameters import notebook_parameters, parse_literal
from .upstream import UpstreamError, UpstreamResponse, call, check_depth, load_json

JOB_FIELDS = ("parameters", "profile", "timeout_seconds", "workers", "worker_profile", "kernel", "name")
OUTPUT_DIR = "job-outputs"


class NotebenchExtension(Configurable):
    """Settings of the server extension (``c.NotebenchExtension`` in the server's config)."""

    max_body_bytes = Integer(
        16 * 1024 * 1024, help="Largest request body the /notebench/ API accepts (413 beyond), as the executor's."
    ).tag(config=True)


class SameOriginOnly:
    """No CORS headers at all: only JupyterLab, on this server's own origin, calls these handlers.
    (jupyter_server would otherwise echo any Origin back to token-authenticated requests.)"""

    def set_cors_headers(self) -> None:
        pass


class NotebenchHandler(SameOriginOnly, APIHandler):
    auth_resource = "notebench"

    def body(self) -> dict:
        size, limit = len(self.request.body), self.settings["notebench_max_body_bytes"]
        if size > limit:
            raise web.HTTPError(413, f"the request body is {size} bytes; at most {limit} allowed")
        try:
            body = load_json(self.request.body or b"{}", "the request body")
        except ValueError as e:
            raise web.HTTPError(400, str(e))
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        return body

    def reply(self, payload, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(payload))

    @property
    def hub_user(self) -> str:
        return os.environ.get("JUPYTERHUB_USER", "")


def _text(body: dict, key: str, required=True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise web.HTTPError(400, f"{key} must be a non-empty string")
    return value.strip()


# --- jobs ------------------------------------------------------------------------------------


class ProfilesHandler(NotebenchHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.reply((await call("executor", ["profiles"])).json())


class ParametersHandler(NotebenchHandler):
    """The parameters of a notebook in the user's files, for the job form."""

    @web.authenticated
    @authorized
    async def get(self):
        path = self.get_query_argument("path")
        notebook = await read_notebook(self.contents_manager, path)
        try:
            self.reply(dict(notebook_parameters(notebook), path=path))
        except ValueError as e:
            raise web.HTTPError(400, str(e))


async def read_notebook(contents_manager, path: str) -> dict:
    if not path.endswith(".ipynb"):
        raise web.HTTPError(400, "path must be a notebook (.ipynb)")
    # The contents manager checks the path stays inside the server's root and answers 404 if missing.
    model = await ensure_async(contents_manager.get(path, content=True, type="notebook"))
    try:
        check_depth(model["content"], f"the notebook {path}")  # before json.dumps recurses into it
    except ValueError as e:
        raise web.HTTPError(400, str(e))
    return json.loads(json.dumps(model["content"]))


def keep_float_types(notebook: dict, parameters: dict) -> dict:
    """JSON (and so the browser) writes 1.0 as 1: give float parameters of the notebook floats back,
    so papermill injects `C = 1.0`, not `C = 1`."""
    try:
        declared = {p["name"]: p["type"] for p in notebook_parameters(notebook)["parameters"]}
    except ValueError:
        return parameters
    return {
        name: float(value) if declared.get(name) == "float" and type(value) is int else value
        for name, value in parameters.items()
    }


def job_cwd(contents_manager, notebook_path: str) -> str:
    """The notebook's directory relative to the home directory, as the executor wants `cwd`."""
    root = getattr(contents_manager, "root_dir", None) or os.getcwd()
    directory = os.path.realpath(os.path.join(root, posixpath.dirname(notebook_path)))
    home = os.path.realpath(os.path.expanduser("~"))
    if directory == home or not directory.startswith(home + os.sep):
        return ""
    return os.path.relpath(directory, home)


class FieldError(web.HTTPError):
    """A 4xx/5xx whose JSON body names the request field at fault, as the executor's errors do."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(status, message)
        self.field = field


class JobsAPIHandler(NotebenchHandler):
    """The job and schedule handlers: errors are ``{status, message, field}``, the executor's own
    passed on with their field, so the form shows each at the field it concerns."""

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, FieldError):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": status_code, "message": exc.log_message, "field": exc.field}))
        else:
            super().write_error(status_code, **kwargs)

    async def executor(self, segments, method: str = "GET", body=None, query=None) -> UpstreamResponse:
        response = await call("executor", segments, method, body, query=query, raise_error=False)
        if response.status >= 400:
            error = UpstreamError(response)
            try:
                field = load_json(response.body or b"null", "the executor's answer").get("field")
            except (ValueError, AttributeError):
                field = None
            raise FieldError(error.status_code, error.log_message or "", field if isinstance(field, str) else None)
        return response


async def job_request(handler: JobsAPIHandler, body: dict) -> dict:
    """The executor's JobRequest for a form's body: the notebook at ``path`` in the user's files, or
    (``from_job``, re-running a job whose notebook is gone) that job's output notebook, which
    papermill re-parameterises (it replaces the injected-parameters cell); its parameters as
    typed values (``parameters``) and as Python literals (``literals``, read here)."""
    from_job = body.get("from_job")
    if from_job is not None:
        if not (isinstance(from_job, int) and not isinstance(from_job, bool) and 0 < from_job < 2**63):
            raise FieldError(400, "from_job must be a job id", "from_job")
        source = (await handler.executor(["jobs", str(from_job)])).json()
        notebook = (await handler.executor(["jobs", str(from_job), "output"])).json()
        path = source.get("notebook_path") or f"{source['name']}.ipynb"
        cwd = _relative_to_home(source.get("cwd") or "")
    else:
        try:
            path = _text(body, "path")
        except web.HTTPError as e:
            raise FieldError(400, e.log_message or "", "path") from None
        notebook = await read_notebook(handler.contents_manager, path)
        cwd = job_cwd(handler.contents_manager, path)
    # The executor names the job and tags its MLflow run with the notebook's path.
    notebook.setdefault("metadata", {}).setdefault("notebench", {})["path"] = path
    job = {k: body[k] for k in JOB_FIELDS if body.get(k) is not None}
    parameters, literals = body.get("parameters") or {}, body.get("literals") or {}
    if not isinstance(parameters, dict):
        raise FieldError(400, "parameters must be an object {name: value}", "parameters")
    if not isinstance(literals, dict):
        raise FieldError(400, "literals must be an object {name: Python literal}", "literals")
    try:
        declared = {p["name"]: p["type"] for p in notebook_parameters(notebook)["parameters"]}
    except ValueError:
        declared = {}
    for name, text in literals.items():
        try:
            parameters[name] = parse_literal(name, text, declared.get(name))
        except ValueError as e:
            raise FieldError(400, str(e), f"parameters.{name}") from None
    job["parameters"] = keep_float_types(notebook, parameters)
    job.setdefault("name", posixpath.splitext(posixpath.basename(path))[0])
    job.update(notebook=notebook, cwd=cwd)
    return job


def _relative_to_home(directory: str) -> str:
    """A job's (absolute) working directory as the executor wants `cwd`: relative to the home."""
    home = os.path.realpath(os.path.expanduser("~"))
    return os.path.relpath(directory, home) if directory.startswith(home + os.sep) else ""


class JobsHandler(JobsAPIHandler):
    @web.authenticated
    @authorized
    async def get(self):
        query = {k: self.get_query_argument(k, None) for k in ("status", "name", "limit", "cursor")}
        self.reply((await self.executor(["jobs"], query=query)).json())

    @web.authenticated
    @authorized
    async def post(self):
        """Submit the notebook at `path` (read here, from the user's files) as a job."""
        job = await job_request(self, self.body())
        self.reply((await self.executor(["jobs"], "POST", job)).json(), 201)


class JobHandler(JobsAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id):
        self.reply((await self.executor(["jobs", job_id])).json())

    @web.authenticated
    @authorized
    async def delete(self, job_id):
        await self.executor(["jobs", job_id], "DELETE")
        self.set_status(204)
        self.finish()


class JobCancelHandler(JobsAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, job_id):
        self.reply((await self.executor(["jobs", job_id, "cancel"], "POST", {})).json())


MAX_LOG_CHUNK = 1024 * 1024  # per answer: the panel asks again at once for the rest


class JobLogHandler(JobsAPIHandler):
    """The job's log from a byte ``offset``: ``{text, offset}`` (the offset to ask from next).
    The panel polls it while the job runs (a stream would hold one of the browser's few
    connections per server for as long as the log is open)."""

    @web.authenticated
    @authorized
    async def get(self, job_id):
        offset = self.get_query_argument("offset", "0")
        if not (offset.isdigit() and offset.isascii() and len(offset) <= 18):
            raise FieldError(400, "offset must be a byte offset into the log (0 or more)", "offset")
        data = (await self.executor(["jobs", job_id, "log"], query={"offset": offset})).body[:MAX_LOG_CHUNK]
        text, used = _utf8_text(data)
        self.reply({"text": text, "offset": int(offset) + used})


def _utf8_text(data: bytes) -> tuple[str, int]:
    """``data`` decoded, and how many of its bytes that used: a character cut in two at the end is
    left for the next answer; the rest of one cut at the start (an offset inside it) is skipped."""
    start = 0
    while start < min(3, len(data)) and 0x80 <= data[start] < 0xC0:
        start += 1
    for cut in range(4):
        try:
            return data[start : len(data) - cut].decode(), len(data) - cut
        except UnicodeDecodeError:
            continue
    return data.decode(errors="replace"), len(data)


class JobRunHandler(JobsAPIHandler):
    """The job's MLflow run: status, metrics and params, and where it is in MLflow's UI."""

    @web.authenticated
    @authorized
    async def get(self, job_id):
        job = (await self.executor(["jobs", job_id])).json()
        if not job.get("mlflow_run_id"):
            raise FieldError(404, f"job {job_id} has no MLflow run", None)
        response = await call("mlflow", ["runs", "get"], query={"run_id": job["mlflow_run_id"]}, raise_error=False)
        if response.status >= 400:
            error = UpstreamError(response)
            raise FieldError(error.status_code, error.log_message or "", None)
        run = response.json()["run"]
        data = run.get("data", {})
        self.reply(
            {
                "run_id": run["info"]["run_id"],
                "experiment_id": run["info"]["experiment_id"],
                "status": run["info"].get("status"),
                "metrics": _pairs(data.get("metrics")),
                "params": _pairs(data.get("params")),
            }
        )


class JobOutputHandler(NotebenchHandler):
    """Copy the job's output notebook into the user's files, so it opens in JupyterLab."""

    @web.authenticated
    @authorized
    async def post(self, job_id):
        job = (await call("executor", ["jobs", job_id])).json()
        output = (await call("executor", ["jobs", job_id, "output"])).json()
        cm = self.contents_manager
        if not await ensure_async(cm.dir_exists(OUTPUT_DIR)):
            await ensure_async(cm.save({"type": "directory"}, OUTPUT_DIR))
        safe_name = re.sub(r"[^A-Za-z0-9._-]+", "-", job["name"]).strip("-.") or "job"
        path = f"{OUTPUT_DIR}/{safe_name}-{int(job_id)}.ipynb"
        model = {"type": "notebook", "format": "json", "content": nbformat.from_dict(output)}
        await ensure_async(cm.save(model, path))
        self.reply({"path": path})


class JobOutputHtmlHandler(SameOriginOnly, JupyterHandler):
    """The job's output as HTML. It is the user's own output, but it may carry scripts: serve it
    sandboxed (an opaque origin, no access to this server's cookies or API)."""

    auth_resource = "notebench"

    @web.authenticated
    @authorized
    async def get(self, job_id):
        response = await call("executor", ["jobs", job_id, "output.html"])
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", "sandbox allow-scripts allow-popups; frame-ancestors 'self'")
        self.finish(response.body)


class SchedulesHandler(JobsAPIHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.reply((await self.executor(["schedules"])).json())

    @web.authenticated
    @authorized
    async def post(self):
        """A schedule of the form's job: ``cron`` and ``timezone`` beside the job's fields."""
        body = self.body()
        job = await job_request(self, body)
        schedule = {"name": job["name"], "cron": body.get("cron"), "timezone": body.get("timezone") or "UTC", "job": job}
        try:
            self.reply((await self.executor(["schedules"], "POST", schedule)).json(), 201)
        except FieldError as e:  # the job's fields are the form's: name them as the form does
            if e.field and e.field.startswith("job."):
                e.field = e.field[len("job.") :]
            raise


class ScheduleHandler(JobsAPIHandler):
    @web.authenticated
    @authorized
    async def patch(self, schedule_id):
        """Pause or resume (``active``), rename or re-time a schedule."""
        body = self.body()
        patch = {k: body[k] for k in ("active", "name", "cron", "timezone") if k in body}
        self.reply((await self.executor(["schedules", schedule_id], "PATCH", patch)).json())

    @web.authenticated
    @authorized
    async def delete(self, schedule_id):
        await self.executor(["schedules", schedule_id], "DELETE")
        self.set_status(204)
        self.finish()


# --- MLflow models ---------------------------------------------------------------------------


async def _experiments() -> dict[str, str]:
    """id -> name of the experiments this user can see."""
    experiments, token = {}, None
    while True:
        page = (await call("mlflow", ["experiments", "search"], "POST", {"max_results": 1000, "page_token": token})).json()
        experiments.update({e["experiment_id"]: e["name"] for e in page.get("experiments", [])})
        token = page.get("next_page_token")
        if not token:
            return experiments


def _pairs(items, value="value") -> dict:
    return {item["key"]: item.get(value) for item in items or []}


class RunsHandler(NotebenchHandler):
    """The user's runs that logged models (MLflow 3 logged models), with their metrics and params."""

    @web.authenticated
    @authorized
    async def get(self):
        experiments = await _experiments()
        ids = list(experiments)
        # Runs logged from the user's kernels carry the OS account, job runs the hub name.
        owners = {self.hub_user, getpass.getuser()}
        models = []
        for start in range(0, len(ids), 100):  # MLflow caps experiment_ids per search
            token = None
            while len(models) < 500:
                query = {"experiment_ids": ids[start : start + 100], "max_results": 100, "page_token": token}
                query["order_by"] = [{"field_name": "creation_timestamp", "ascending": False}]
                page = (await call("mlflow", ["logged-models", "search"], "POST", query)).json()
                models += page.get("models", [])
                token = page.get("next_page_token")
                if not token:
                    break
        rows = []
        for model in models:
            info, data = model["info"], model.get("data", {})
            tags = _pairs(info.get("tags"))
            experiment = experiments.get(info["experiment_id"], "")
            mine = tags.get("mlflow.user") in owners or experiment.startswith(f"{self.hub_user}/")
            if info.get("status") != "LOGGED_MODEL_READY" or not mine:
                continue
            rows.append(
                {
                    "model_id": info["model_id"],
                    "name": info["name"],
                    "run_id": info.get("source_run_id"),
                    "experiment_id": info["experiment_id"],
                    "experiment": experiment,
                    "created_at": info.get("creation_timestamp_ms"),
                    "metrics": _pairs(data.get("metrics")),
                    "params": _pairs(data.get("params")),
                }
            )
        await self._add_run_details(rows)
        self.reply({"runs": rows})

    async def _add_run_details(self, rows) -> None:
        """Run name, job id and notebook of each model's run (tags the executor sets)."""
        runs = {}
        run_ids = sorted({r["run_id"] for r in rows if r["run_id"]})
        experiment_ids = sorted({r["experiment_id"] for r in rows})
        for start in range(0, len(run_ids), 100):
            chunk = run_ids[start : start + 100]
            # Run ids are hex strings from MLflow itself, so they are safe inside the filter.
            filter_string = "attributes.run_id IN (%s)" % ",".join(f"'{r}'" for r in chunk if r.isalnum())
            query = {"experiment_ids": experiment_ids, "filter": filter_string, "max_results": 1000}
            page = (await call("mlflow", ["runs", "search"], "POST", query)).json()
            runs.update({run["info"]["run_id"]: run for run in page.get("runs", [])})
        for row in rows:
            run = runs.get(row["run_id"], {})
            tags = _pairs(run.get("data", {}).get("tags"))
            row["run_name"] = run.get("info", {}).get("run_name", "")
            row["job_id"] = tags.get("notebench.job_id")
            row["notebook"] = tags.get("notebench.notebook") or tags.get("mlflow.source.name")


class VersionsHandler(NotebenchHandler):
    """Register a logged model as a new version of a registered model."""

    @web.authenticated
    @authorized
    async def post(self):
        body = self.body()
        name, model_id = _text(body, "name"), _text(body, "model_id")
        description = body.get("description") or ""
        model = (await call("mlflow", ["logged-models", model_id])).json()["model"]["info"]
        run_id = model.get("source_run_id")
        tags = {"notebench.model_id": model_id}
        if run_id:
            run = (await call("mlflow", ["runs", "get"], query={"run_id": run_id})).json()["run"]
            run_tags = _pairs(run["data"].get("tags"))
            tags.update(
                {
                    "notebench.run_id": run_id,
                    "notebench.job_id": run_tags.get("notebench.job_id"),
                    "notebench.notebook": run_tags.get("notebench.notebook") or run_tags.get("mlflow.source.name"),
                }
            )
        create = {"name": name, "tags": [{"key": "notebench.owner", "value": self.hub_user}]}
        response = await call("mlflow", ["registered-models", "create"], "POST", create, raise_error=False)
        if response.status >= 400 and (response.json() or {}).get("error_code") != "RESOURCE_ALREADY_EXISTS":
            raise UpstreamError(response)
        version = {
            "name": name,
            "source": f"models:/{model_id}",
            "model_id": model_id,
            "run_id": run_id,
            "description": description,
            "tags": [{"key": k, "value": str(v)} for k, v in tags.items() if v],
        }
        created = (await call("mlflow", ["model-versions", "create"], "POST", version)).json()
        self.reply(created["model_version"], 201)


# MLflow's permissions that let a user change a registered model (versions, aliases, deletion).
EDIT_PERMISSIONS = ("EDIT", "MANAGE")
# Permission look-ups MLflow is asked at once (one per registered model).
PERMISSION_LOOKUPS = 8


async def _is_mlflow_admin() -> bool:
    """Whether this server's user is an admin in MLflow (every hub admin is)."""
    return bool((await call("mlflow", ["users", "current"])).json()["user"].get("is_admin"))


class ModelsContextHandler(NotebenchHandler):
    """What the Models panel needs to know once: who is looking (and whether an admin), the
    endpoint-name rule the executor applies (for the form's pattern), and where MLflow's UI and
    the token page are (for links and the code examples)."""

    @web.authenticated
    @authorized
    async def get(self):
        base = os.environ.get("JUPYTERHUB_BASE_URL") or "/"
        self.reply(
            {
                "user": self.hub_user,
                "admin": await _is_mlflow_admin(),
                "endpoint_name_pattern": ENDPOINT_NAME,
                "mlflow_url": url_path_join(base, "services/mlflow/"),
                "token_url": url_path_join(base, "hub/token"),
            }
        )


class RegisteredModelsHandler(NotebenchHandler):
    """Registered models with all their versions and aliases, and whether this user may change
    each (``can_edit``: MLflow's own answer, so the panel offers only what will work)."""

    async def _can_edit(self, names: list[str]) -> dict[str, bool]:
        if await _is_mlflow_admin():
            return dict.fromkeys(names, True)
        slots = asyncio.Semaphore(PERMISSION_LOOKUPS)

        async def permission(name: str) -> str:
            query = {"username": self.hub_user, "resource_type": "registered_model", "resource_id": name}
            async with slots:
                response = await call("mlflow3", ["users", "permissions", "get"], query=query, raise_error=False)
            # Not answerable (e.g. deleted meanwhile): offer no changes.
            return (response.json() or {}).get("permission", "") if response.status == 200 else ""

        permissions = await asyncio.gather(*(permission(name) for name in names))
        return {name: p in EDIT_PERMISSIONS for name, p in zip(names, permissions)}

    @web.authenticated
    @authorized
    async def get(self):
        models, token = [], None
        while True:
            query = {"max_results": 1000, "page_token": token, "order_by": "last_updated_timestamp DESC"}
            page = (await call("mlflow", ["registered-models", "search"], query=query)).json()
            models += page.get("registered_models", [])
            token = page.get("next_page_token")
            if not token:
                break
        versions, token = [], None
        while True:
            page = (await call("mlflow", ["model-versions", "search"], query={"max_results": 10000, "page_token": token})).json()
            versions += page.get("model_versions", [])
            token = page.get("next_page_token")
            if not token:
                break
        by_model: dict[str, list] = {}
        for version in versions:
            version["tags"] = _pairs(version.get("tags"))
            by_model.setdefault(version["name"], []).append(version)
        can_edit = await self._can_edit([m["name"] for m in models])
        result = []
        for model in models:
            aliases = {a["alias"]: a["version"] for a in model.get("aliases", [])}
            model_versions = sorted(by_model.get(model["name"], []), key=lambda v: -int(v["version"]))
            for version in model_versions:
                version["aliases"] = sorted(a for a, v in aliases.items() if v == version["version"])
            result.append(
                {
                    "name": model["name"],
                    "description": model.get("description", ""),
                    "owner": _pairs(model.get("tags")).get("notebench.owner"),
                    "updated_at": model.get("last_updated_timestamp"),
                    "aliases": aliases,
                    "versions": model_versions,
                    "can_edit": can_edit[model["name"]],
                }
            )
        self.reply({"registered_models": result})


class AliasesHandler(NotebenchHandler):
    """Set (or move) and delete MLflow aliases such as champion and challenger."""

    @web.authenticated
    @authorized
    async def post(self):
        body = self.body()
        version = str(body.get("version", ""))
        if not version.isdigit():
            raise web.HTTPError(400, "version must be a version number")
        alias = {"name": _text(body, "name"), "alias": _text(body, "alias"), "version": version}
        await call("mlflow", ["registered-models", "alias"], "POST", alias)
        self.reply(alias)

    @web.authenticated
    @authorized
    async def delete(self):
        alias = {"name": self.get_query_argument("name"), "alias": self.get_query_argument("alias")}
        # MLflow reads a DELETE's parameters from its JSON body.
        await call("mlflow", ["registered-models", "alias"], "DELETE", alias)
        self.set_status(204)
        self.finish()


# --- endpoints -------------------------------------------------------------------------------


def _versions(body: dict) -> list:
    """The versions of a deploy or an update: {model, version, weight}, and for a shadow version
    ``shadow: true`` with its ``traffic_percent`` (the executor checks the rest, naming the field)."""
    versions = body.get("versions")
    if not isinstance(versions, list) or not versions:
        raise FieldError(400, "versions must be a non-empty list", "versions")
    result = []
    for i, v in enumerate(versions):
        if not isinstance(v, dict):
            raise FieldError(400, "each of versions must be an object {model, version, weight}", f"versions.{i}")
        version = {"model": v.get("model"), "version": str(v.get("version")), "weight": v.get("weight")}
        shadow, percent = v.get("shadow", False), v.get("traffic_percent")
        if not isinstance(shadow, bool):
            raise FieldError(400, "shadow must be true or false", f"versions.{i}.shadow")
        if percent is not None and not (isinstance(percent, int) and not isinstance(percent, bool) and 1 <= percent <= 100):
            raise FieldError(400, "traffic_percent must be a whole percent from 1 to 100", f"versions.{i}.traffic_percent")
        if shadow:
            version.update(shadow=True, traffic_percent=percent)
        elif percent is not None:  # the executor refuses it on a live version: let it say so
            version["traffic_percent"] = percent
        result.append(version)
    return result


class EndpointStateHandler(JobsAPIHandler):
    """An endpoint's deploy and update, monitoring, quality, history, rollback, shadows and alerts:
    fixed executor paths, each query parameter or body field checked here first; errors are
    ``{status, message, field}`` as the job handlers' (the executor's own passed on with their
    field, e.g. ``versions.1.weight``), so the panel shows each at the field it concerns."""

    def query_argument(self, name: str, pattern: str) -> str | None:
        value = self.get_query_argument(name, None)
        if value is not None and not re.fullmatch(pattern, value):
            raise FieldError(400, f"{name} is not valid", name)
        return value

    def field_body(self) -> dict:
        """The request's JSON object; one that is not is a 4xx naming ``body``."""
        try:
            return self.body()
        except web.HTTPError as e:
            raise FieldError(e.status_code, e.log_message or "", "body") from None


class EndpointsHandler(EndpointStateHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.reply((await call("executor", ["endpoints"])).json())

    @web.authenticated
    @authorized
    async def post(self):
        body = self.body()
        try:
            name = _text(body, "name")
        except web.HTTPError as e:
            raise FieldError(400, e.log_message or "", "name") from None
        endpoint = {"name": name, "versions": _versions(body)}
        if body.get("profile"):
            endpoint["profile"] = body["profile"]
        self.reply((await self.executor(["endpoints"], "POST", endpoint)).json(), 201)


class EndpointHandler(EndpointStateHandler):
    @web.authenticated
    @authorized
    async def get(self, name):
        self.reply((await call("executor", ["endpoints", name])).json())

    @web.authenticated
    @authorized
    async def patch(self, name):
        body = {"versions": _versions(self.body())}
        self.reply((await self.executor(["endpoints", name], "PATCH", body)).json())

    @web.authenticated
    @authorized
    async def delete(self, name):
        await call("executor", ["endpoints", name], "DELETE")
        self.set_status(204)
        self.finish()


class EndpointMetricsHandler(NotebenchHandler):
    @web.authenticated
    @authorized
    async def get(self, name):
        self.reply((await call("executor", ["endpoints", name, "metrics"])).json())


class EndpointLogsHandler(NotebenchHandler):
    """The scoring servers' last log lines (the executor bounds them; they are shown as text)."""

    @web.authenticated
    @authorized
    async def get(self, name):
        self.reply((await call("executor", ["endpoints", name, "logs"], query={"lines": "200"})).json())


REQUEST_SAMPLES_SHOWN = 20


class EndpointRequestsHandler(NotebenchHandler):
    """The latest stored request samples, newest first (the executor keeps up to 1000)."""

    @web.authenticated
    @authorized
    async def get(self, name):
        body = (await call("executor", ["endpoints", name, "requests"])).body
        samples = []
        for line in reversed(body.splitlines()):
            if len(samples) == REQUEST_SAMPLES_SHOWN:
                break
            try:
                sample = load_json(line, "a request sample")
            except ValueError:
                continue
            if isinstance(sample, dict):
                samples.append(sample)
        self.reply({"requests": samples})


# Monitoring windows are the executor's configuration (c.Monitoring.windows): names it checks itself.
MONITORING_WINDOW = r"[A-Za-z0-9_-]{1,32}"
# The executor's fixed windows of label quality and of the shadow comparison (one set: executor/api/endpoints.py WINDOWS).
REPORT_WINDOW = r"1h|1d|7d"
HISTORY_LIMIT = r"[1-9][0-9]{0,2}"  # the executor caps it (200)
HISTORY_CURSOR = r"[0-9]{1,19}"  # a previous page's next_cursor (an entry id)
MAX_REASON_CHARS = 500  # the executor's limit of a reason kept in the history
MAX_WEBHOOK_CHARS = 2048  # the executor's limits of alerts
MAX_ALERT_RULES = 20
ALERT_RULE_KEYS = ("kind", "threshold", "window", "metric", "min_requests")


class EndpointMonitoringHandler(EndpointStateHandler):
    @web.authenticated
    @authorized
    async def get(self, name):
        query = {"window": self.query_argument("window", MONITORING_WINDOW)}
        self.reply((await self.executor(["endpoints", name, "monitoring"], query=query)).json())


class EndpointQualityHandler(EndpointStateHandler):
    @web.authenticated
    @authorized
    async def get(self, name):
        query = {"window": self.query_argument("window", REPORT_WINDOW)}
        self.reply((await self.executor(["endpoints", name, "quality"], query=query)).json())


class EndpointHistoryHandler(EndpointStateHandler):
    @web.authenticated
    @authorized
    async def get(self, name):
        query = {"limit": self.query_argument("limit", HISTORY_LIMIT), "cursor": self.query_argument("cursor", HISTORY_CURSOR)}
        self.reply((await self.executor(["endpoints", name, "history"], query=query)).json())


class EndpointRollbackHandler(EndpointStateHandler):
    """Back to one of the endpoint's history entries (``to``, its id), with an optional reason."""

    @web.authenticated
    @authorized
    async def post(self, name):
        body = self.field_body()
        to, reason = body.get("to"), body.get("reason")
        if not (isinstance(to, int) and not isinstance(to, bool) and 0 < to < 2**63):
            raise FieldError(400, "to must be the id of a history entry", "to")
        if reason is not None and not (isinstance(reason, str) and len(reason) <= MAX_REASON_CHARS):
            raise FieldError(400, f"reason must be text of at most {MAX_REASON_CHARS} characters", "reason")
        rollback = {"to": to, "reason": (reason or "").strip() or None}  # blank: no reason
        self.reply((await self.executor(["endpoints", name, "rollback"], "POST", rollback)).json())


class EndpointShadowHandler(EndpointStateHandler):
    """The endpoint's shadow versions beside its live ones over a window (1h, 1d or 7d)."""

    @web.authenticated
    @authorized
    async def get(self, name):
        query = {"window": self.query_argument("window", REPORT_WINDOW)}
        self.reply((await self.executor(["endpoints", name, "shadow"], query=query)).json())


def _alert_rules(rules) -> list:
    """The rules as the executor takes them: objects of known keys only; their values it checks."""
    if not isinstance(rules, list) or len(rules) > MAX_ALERT_RULES:
        raise FieldError(400, f"rules must be a list of at most {MAX_ALERT_RULES} rules", "rules")
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise FieldError(400, "each rule must be an object {kind, threshold, window, metric, min_requests}",
                             f"rules.{i}")
        for key in rule:
            if key not in ALERT_RULE_KEYS:
                raise FieldError(400, f"unknown key {key!r} (known: {', '.join(ALERT_RULE_KEYS)})", f"rules.{i}.{key}")
    return rules


class EndpointAlertsHandler(EndpointStateHandler):
    """The endpoint's alert rules, webhook and recent firings; PUT replaces the rules and webhook."""

    @web.authenticated
    @authorized
    async def get(self, name):
        self.reply((await self.executor(["endpoints", name, "alerts"])).json())

    @web.authenticated
    @authorized
    async def put(self, name):
        body = self.field_body()
        webhook = body.get("webhook")
        if webhook is not None and not (isinstance(webhook, str) and len(webhook) <= MAX_WEBHOOK_CHARS):
            raise FieldError(400, f"webhook must be an http(s) URL of at most {MAX_WEBHOOK_CHARS} characters, or null",
                             "webhook")
        alerts = {"webhook": (webhook or "").strip() or None, "rules": _alert_rules(body.get("rules", []))}
        self.reply((await self.executor(["endpoints", name, "alerts"], "PUT", alerts)).json())


async def input_example(endpoint_name: str) -> dict:
    """The serving input example logged with the model of the endpoint's heaviest version."""
    endpoint = (await call("executor", ["endpoints", endpoint_name])).json()
    versions = sorted(endpoint.get("versions", []), key=lambda v: -(v.get("weight") or 0))
    if not versions:
        raise web.HTTPError(404, "the endpoint has no versions")
    query = {"name": versions[0]["model"], "version": str(versions[0]["version"])}
    version = (await call("mlflow", ["model-versions", "get"], query=query)).json()["model_version"]
    source = version.get("source", "")
    if source.startswith("models:/"):
        model = (await call("mlflow", ["logged-models", source[len("models:/") :]])).json()["model"]["info"]
        source = model.get("artifact_uri", "")
    scheme = "mlflow-artifacts:/"
    if not source.startswith(scheme):
        raise web.HTTPError(404, f"no input example: the model's artifacts are not served by MLflow ({source})")
    segments = [s for s in source[len(scheme) :].split("/") if s] + ["serving_input_example.json"]
    response = await call("mlflow-artifacts", segments, raise_error=False)
    if response.status == 404:
        raise web.HTTPError(404, "the model was logged without an input example")
    if response.status >= 400:
        raise UpstreamError(response)
    return response.json()


class EndpointExampleHandler(NotebenchHandler):
    """The model's input example, to start "Try it" from; a model logged without one is not an
    error here: ``payload`` is null and ``reason`` says why."""

    @web.authenticated
    @authorized
    async def get(self, name):
        try:
            self.reply({"payload": await input_example(name), "reason": None})
        except web.HTTPError as e:
            if e.status_code != 404 or isinstance(e, UpstreamError):
                raise
            self.reply({"payload": None, "reason": e.log_message})


class EndpointInvokeHandler(NotebenchHandler):
    """"Try it": send a payload (default: the model's input example) and report who answered."""

    @web.authenticated
    @authorized
    async def post(self, name):
        payload = self.body().get("payload") or await input_example(name)
        started = time.perf_counter()
        response = await call("endpoints", [name, "invocations"], "POST", payload, raise_error=False)
        result = {
            "payload": payload,
            "status": response.status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "version": response.headers.get("X-Notebench-Model-Version"),
        }
        try:
            answer = load_json(response.body or b"null", "the endpoint's answer")
        except ValueError as e:
            answer = f"{e}: {response.body.decode(errors='replace')[:2000]}"
        if response.status < 400 and isinstance(answer, dict):
            result["predictions"] = answer.get("predictions")
        else:
            result["error"] = answer.get("message", answer) if isinstance(answer, dict) else answer
        self.reply(result)


def setup_handlers(web_app, settings: NotebenchExtension | None = None) -> None:
    web_app.settings["notebench_max_body_bytes"] = (settings or NotebenchExtension()).max_body_bytes
    base = url_path_join(web_app.settings["base_url"], "notebench")
    job = r"/jobs/(\d{1,18})"
    endpoint = f"/endpoints/({ENDPOINT_NAME})"
    routes = [
        ("/profiles", ProfilesHandler),
        ("/parameters", ParametersHandler),
        ("/jobs", JobsHandler),
        (job, JobHandler),
        (job + "/cancel", JobCancelHandler),
        (job + "/output", JobOutputHandler),
        (job + "/output.html", JobOutputHtmlHandler),
        ("/models/context", ModelsContextHandler),
        (job + "/log", JobLogHandler),
        (job + "/run", JobRunHandler),
        ("/schedules", SchedulesHandler),
        (r"/schedules/(\d{1,18})", ScheduleHandler),
        ("/models/runs", RunsHandler),
        ("/models/registered", RegisteredModelsHandler),
        ("/models/versions", VersionsHandler),
        ("/models/aliases", AliasesHandler),
        ("/endpoints", EndpointsHandler),
        (endpoint, EndpointHandler),
        (endpoint + "/metrics", EndpointMetricsHandler),
        (endpoint + "/example", EndpointExampleHandler),
        (endpoint + "/invoke", EndpointInvokeHandler),
        (endpoint + "/logs", EndpointLogsHandler),
        (endpoint + "/requests", EndpointRequestsHandler),
        (endpoint + "/monitoring", EndpointMonitoringHandler),
        (endpoint + "/quality", EndpointQualityHandler),
        (endpoint + "/history", EndpointHistoryHandler),
        (endpoint + "/rollback", EndpointRollbackHandler),
        (endpoint + "/shadow", EndpointShadowHandler),
        (endpoint + "/alerts", EndpointAlertsHandler),
        *setup_culling(web_app, NotebenchHandler, "/culling"),
    ]
    web_app.add_handlers(".*$", [(base + path, handler) for path, handler in routes])
