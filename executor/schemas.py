"""The executor API's bodies as pydantic models: what clients send (validated: a validation error
becomes a 400 whose JSON body names the field, api/base.py) and what the API answers.

The OpenAPI description takes its schemas from these (api/openapi.py), and the JupyterLab
extension's TypeScript types are generated from that (extensions/jupyterlab-notebench/src/schema.ts).
"""

from __future__ import annotations

import json
import keyword
from datetime import datetime, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import nbformat
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from notebench.executor.audit import REPORTED_ACTIONS
from notebench.executor.db import iso
from notebench.hub.platform.names import ENDPOINT_NAME
from notebench.hub.platform.statuses import ENDPOINT_STATUSES, JOB_STATUSES, SERVER_STATUSES

MAX_PARAMETERS_BYTES = 64 * 1024
HISTORY_ACTIONS = ("deploy", "update", "rollback", "delete")


def check_name(value: str | None) -> str | None:
    """Names end up in file names, headers and log lines: printable text only."""
    if value is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters")
    return value


def _drop_null_defaults(schema: dict) -> None:
    """Optional fields that may be left out but never sent as null: no "default": null in the schema."""
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None:
            del prop["default"]
    schema["examples"] = [{"active": False}, {"cron": "30 7 * * *", "timezone": "UTC"}]


# For the OpenAPI description (and so for its readers and API fuzzers): a job that runs.
EXAMPLE_NOTEBOOK: dict[str, Any] = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "cells": [
        {"cell_type": "code", "id": "params", "metadata": {"tags": ["parameters"]}, "source": "x = 1",
         "outputs": [], "execution_count": None},
        {"cell_type": "code", "id": "work", "metadata": {}, "source": "print(x * 2)", "outputs": [], "execution_count": None},
    ],
}
EXAMPLE_JOB: dict[str, Any] = {"notebook": EXAMPLE_NOTEBOOK, "parameters": {"x": 21}, "name": "double", "timeout_seconds": 600}


class JobRequest(BaseModel):
    # strict: JSON types as documented (no "5" for 5, no true for 1).
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [EXAMPLE_JOB]})

    notebook: dict[str, Any] = Field(description="The notebook to run, as nbformat v4 JSON.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Injected with papermill (typed).")
    profile: str | None = Field(default=None, description="Profile name (default: the default profile).")
    timeout_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    workers: int = Field(default=0, ge=0, le=64, description="Dask workers (0: no Dask cluster).")
    worker_profile: str | None = Field(default=None, description="Profile of each Dask worker.")
    name: str | None = Field(default=None, max_length=255)
    kernel: str | None = Field(default=None, max_length=128, description="Kernel name (default: the notebook's).")
    cwd: str = Field(default="", max_length=1024, description="Working directory, relative to the user's home.")

    @field_validator("notebook")
    @classmethod
    def _valid_notebook(cls, value):
        try:
            nb = nbformat.from_dict(value)
            if nb.get("nbformat") != 4:
                raise ValueError("only nbformat v4 notebooks are supported")
            nbformat.validate(nb)
        except nbformat.ValidationError as e:
            raise ValueError(f"not a valid nbformat v4 notebook: {e.message}") from None
        except (AttributeError, KeyError, TypeError) as e:
            raise ValueError(f"not a valid nbformat v4 notebook: {e}") from None
        except RecursionError:
            raise ValueError("not a valid nbformat v4 notebook: nested too deeply") from None
        # Free-form metadata the executor reads itself (nbformat does not check it).
        notebench = value["metadata"].get("notebench", {})
        if not isinstance(notebench, dict):
            raise ValueError("metadata.notebench must be an object")
        path = notebench.get("path")
        if path is not None and not (isinstance(path, str) and check_name(path) and len(path) <= 255):
            raise ValueError("metadata.notebench.path must be a file name (text, at most 255 characters)")
        return value

    @field_validator("parameters")
    @classmethod
    def _small_json(cls, value):
        try:
            encoded = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"parameters must be JSON-serialisable: {e}") from None
        if len(encoded) > MAX_PARAMETERS_BYTES:
            raise ValueError(f"parameters are {len(encoded)} bytes; at most {MAX_PARAMETERS_BYTES} allowed")
        bad = [k for k in value if not k.isidentifier() or keyword.iskeyword(k)]
        if bad:
            raise ValueError(f"parameter names must be Python identifiers (not keywords): {bad}")
        return value

    _names = field_validator("name", "profile", "worker_profile", "kernel")(check_name)

    @field_validator("cwd")
    @classmethod
    def _relative(cls, value):
        if value.startswith("/") or ".." in value.split("/") or "\0" in value:
            raise ValueError("cwd must be a path inside your home, relative to it (no '..', no leading '/')")
        return value


def check_cron(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        valid = len(value.split()) == 5 and croniter.is_valid(value)
    except Exception:  # croniter raises more than its own errors on odd input
        valid = False
    if not valid:
        raise ValueError(f"{value!r} is not a valid five-field cron expression")
    try:  # valid syntax that never fires (e.g. '0 0 30 2 *'): no next run to show
        croniter(value, datetime.now(timezone.utc)).get_next(datetime)
    except Exception:
        raise ValueError(f"{value!r} never matches a date") from None
    return value


def check_timezone(value: str | None) -> str | None:
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: 'America' (a directory), over-long names
            raise ValueError(f"unknown time zone {value!r}") from None
    return value


ENDPOINT_NAME_PATTERN = f"^{ENDPOINT_NAME}$"
MODEL_ALIAS_PATTERN = "^[A-Za-z0-9_-]{1,255}$"
EXAMPLE_PROMOTION: dict[str, Any] = {"model": "churn-model", "metric": "accuracy", "greater_is_better": True, "margin": 0.01,
                                     "alias": "champion", "endpoint": "churn"}


class PromotionPolicy(BaseModel):
    """Gated retraining: after each succeeded job of the schedule, the version of ``model`` that
    the job registered (from its own MLflow run) is compared with the version ``alias`` points at,
    on ``metric`` as logged in each version's run; the alias moves (and ``endpoint`` rolls) only if
    it is better by ``margin``."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [EXAMPLE_PROMOTION]})

    model: str = Field(min_length=1, max_length=255, description="The registered model (in MLflow) the job registers versions of.")
    metric: str = Field(min_length=1, max_length=250, description="The metric logged in each version's run (its latest value).")
    greater_is_better: bool = Field(default=True, description="false: lower is better (a loss, an error).")
    margin: float = Field(default=0.0, ge=0, le=1e12, description="How much better the challenger must be (an absolute difference).")
    alias: str = Field(default="champion", pattern=MODEL_ALIAS_PATTERN, description="The alias of the champion, moved on promotion.")
    endpoint: str | None = Field(default=None, pattern=ENDPOINT_NAME_PATTERN,
                                 description="An endpoint of the schedule's owner, rolled to the promoted version (its versions of "
                                             "the model replaced by it, with their weight); null: none.")

    _names = field_validator("model", "metric")(check_name)

    @field_validator("alias")
    @classmethod
    def _alias(cls, value):
        if value.lower() == "latest" or (value[:1] in "vV" and value[1:].isdigit()):  # MLflow keeps these names
            raise ValueError("'latest' and 'v<number>' are not aliases MLflow allows")
        return value


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"name": "weekday-report", "cron": "0 6 * * 1-5", "timezone": "Europe/Paris", "job": EXAMPLE_JOB}]},
    )

    name: str = Field(max_length=255)
    cron: str = Field(description="Five-field cron expression, e.g. '0 6 * * 1-5'.")
    timezone: str = Field(default="UTC", description="IANA time zone the cron expression is read in.")
    active: bool = True
    job: JobRequest = Field(description="The job to submit at each tick.")
    promotion: PromotionPolicy | None = Field(default=None, description="Gated retraining: promote what each job registers "
                                                                        "only if it beats the champion.")

    _cron = field_validator("cron")(check_cron)
    _timezone = field_validator("timezone")(check_timezone)
    _name = field_validator("name")(check_name)


class SchedulePatch(BaseModel):
    """Only the fields sent change; a field may be left out but not sent as null."""

    # Typed without None (the schema must not allow null), defaulting to it: mypy is told so.

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_drop_null_defaults)

    name: str = Field(default=None, max_length=255)  # type: ignore[assignment]
    cron: str = Field(default=None, description="Five-field cron expression.")  # type: ignore[assignment]
    timezone: str = Field(default=None, description="IANA time zone the cron expression is read in.")  # type: ignore[assignment]
    active: bool = Field(default=None, description="false: no more runs (next_run_at becomes null).")  # type: ignore[assignment]
    job: JobRequest = Field(default=None, description="The job to submit at each tick.")  # type: ignore[assignment]
    promotion: PromotionPolicy | None = Field(default=None, description="The promotion policy; null: none any more.")

    _cron = field_validator("cron")(check_cron)
    _timezone = field_validator("timezone")(check_timezone)
    _name = field_validator("name")(check_name)


# --- model endpoints -------------------------------------------------------------------------------

# MLflow numbers a model's versions from 1 and stores them as SQL INTEGER: 32 bits on PostgreSQL
# and MySQL (its store may be either), so a larger number is no version anywhere.
MAX_MODEL_VERSION = 2**31 - 1
EXAMPLE_ENDPOINT: dict[str, Any] = {"name": "churn", "versions": [{"model": "churn-model", "version": "champion", "weight": 80},
                                                  {"model": "churn-model", "version": "3", "weight": 20}]}


TASK_DESCRIPTION = ("What the model does, for its quality from labels: accuracy and F1 (classification) or MAE and "
                    "RMSE (regression). Not given: inferred from the labels.")
MAX_REASON_CHARS = 500
SHADOW_DESCRIPTION = ("A shadow version gets a copy of the requests (traffic_percent of them) after the live answer "
                      "was sent; its answers are recorded and compared (GET endpoints/{name}/shadow), never returned.")
MONITORING_DESCRIPTION = ("Keep a sample of the requests and every prediction, for drift, label feedback and quality. "
                          "false: inputs and outputs are never stored (data that must not be kept); the endpoint then "
                          "has no drift, feedback or quality.")


class EndpointVersion(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1, max_length=255, description="Registered model name in MLflow.")
    version: str = Field(
        min_length=1,
        max_length=255,
        description=f'A version number ("3", from 1 to {MAX_MODEL_VERSION}) or an alias ("champion"), resolved at deploy.',
    )
    # Before weight and traffic_percent: their checks read it.
    shadow: bool = Field(default=False, description=SHADOW_DESCRIPTION)
    weight: int | None = Field(
        default=None, ge=0, le=100, validate_default=True,
        description="Percent of the traffic (the live versions' weights sum to 100). A shadow's is 0 (left out: 0).",
    )
    traffic_percent: int | None = Field(
        default=None, ge=1, le=100, validate_default=True,
        description="A shadow only: the percent of the requests copied to it (left out: 100).",
    )

    _names = field_validator("model", "version")(check_name)

    @field_validator("weight")
    @classmethod
    def _weight(cls, value, info):
        if info.data.get("shadow"):
            if value:
                raise ValueError("a shadow version answers no client: its weight is 0 (or left out)")
            return 0
        if value is None:
            raise ValueError("a live version needs a weight (a shadow one says \"shadow\": true)")
        return value

    @field_validator("traffic_percent")
    @classmethod
    def _traffic_percent(cls, value, info):
        if not info.data.get("shadow"):
            if value is not None:
                raise ValueError("only a shadow version takes a traffic_percent (live versions have weights)")
            return None
        return 100 if value is None else value

    @field_validator("version")
    @classmethod
    def _version_number(cls, value):
        if value.isdecimal() and not 1 <= int(value) <= MAX_MODEL_VERSION:  # a number (as MLflow reads it: int())
            raise ValueError(f"a version number is from 1 to {MAX_MODEL_VERSION}")
        return value


def check_versions(versions: list[EndpointVersion]) -> list[EndpointVersion]:
    live = [v for v in versions if not v.shadow]
    if not live:
        raise ValueError("at least one version must be live (not a shadow): shadows answer no client")
    total = sum(v.weight or 0 for v in live)
    if total != 100:
        raise ValueError(f"the live versions' weights must sum to 100, not {total}")
    seen = set()
    for v in versions:
        if (v.model, v.version) in seen:
            raise ValueError(f"{v.model}/{v.version} is listed twice (a version is either live or a shadow)")
        seen.add((v.model, v.version))
    return versions


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [EXAMPLE_ENDPOINT]})

    name: str = Field(pattern=ENDPOINT_NAME_PATTERN, description="Unique across all users; part of the invocation URL.")
    versions: list[EndpointVersion] = Field(min_length=1, max_length=10)
    profile: str | None = Field(default=None, max_length=64, description="Profile name (default: the default profile).")
    task: Literal["classification", "regression"] | None = Field(default=None, description=TASK_DESCRIPTION)
    monitoring: bool = Field(default=True, description=MONITORING_DESCRIPTION)

    _versions = field_validator("versions")(check_versions)
    _profile = field_validator("profile")(check_name)


class EndpointPatch(BaseModel):
    """The new list of versions and weights: a rolling update to it."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"versions": EXAMPLE_ENDPOINT["versions"]}]}
    )

    versions: list[EndpointVersion] = Field(min_length=1, max_length=10)
    task: Literal["classification", "regression"] | None = Field(
        default=None, description=TASK_DESCRIPTION + " Left out: unchanged; null: inferred again."
    )
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS, description="Why (kept in the endpoint's history).")
    # No null: left out means unchanged (the default is not validated, so it is never applied).
    monitoring: bool = Field(default=None, description=MONITORING_DESCRIPTION + " Left out: unchanged.")  # type: ignore[assignment]

    _versions = field_validator("versions")(check_versions)


class EndpointRollback(BaseModel):
    """Back to an earlier state of the endpoint: a rolling update to that history entry's versions and weights."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"to": 12, "reason": "v4 drifts"}]})

    to: int = Field(ge=1, le=2**63 - 1, description="The id of one of this endpoint's history entries (not a delete).")
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS, description="Why (kept in the endpoint's history).")



# How far ahead of the executor's clock a reported entry's time may be (clocks of hosts differ a little).
AUDIT_CLOCK_SKEW_SECONDS = 300
MAX_AUDIT_DETAIL_BYTES = 8 * 1024
AUDIT_EVENT_ID_PATTERN = "^[A-Za-z0-9_-]{16,64}$"


class AuditEvent(BaseModel):
    """One entry the hub or the MLflow service reports (POST /api/audit): what happened there."""

    model_config = ConfigDict(extra="forbid", strict=True)

    event_id: str = Field(pattern=AUDIT_EVENT_ID_PATTERN,
                          description="The reporter's unique id of the event: an entry sent again is appended once.")
    at: str = Field(max_length=64, json_schema_extra={"format": "date-time"},
                    description="When it happened: RFC 3339 with a zone, not in the future")
    actor: str = Field(min_length=1, max_length=255, description="Who did it (a user, or a service)")
    action: str = Field(json_schema_extra={"enum": list(REPORTED_ACTIONS)}, description="What they did, e.g. user.login, alias.set")
    target: str = Field(min_length=1, max_length=255, description='What it was done to, e.g. "server ada/", "model iris"')
    owner: str | None = Field(None, max_length=255, description="Whose that thing is")
    detail: dict[str, Any] = Field(default_factory=dict,
                                   description=f"What was asked (at most {MAX_AUDIT_DETAIL_BYTES} bytes as JSON)")

    _names = field_validator("actor", "target", "owner")(check_name)

    @field_validator("at")
    @classmethod
    def _moment(cls, value):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an RFC 3339 time, e.g. 2026-12-05T09:00:00Z") from None
        if moment.tzinfo is None:
            raise ValueError("must name its zone (e.g. Z)")
        if (moment - datetime.now(timezone.utc)).total_seconds() > AUDIT_CLOCK_SKEW_SECONDS:
            raise ValueError("is in the future")
        if moment.year < 2000:
            raise ValueError("is before 2000")
        return value

    @field_validator("action")
    @classmethod
    def _action(cls, value):
        if value not in REPORTED_ACTIONS:
            raise ValueError(f"must be one of {', '.join(REPORTED_ACTIONS)}")
        return value

    @field_validator("detail")
    @classmethod
    def _detail(cls, value):
        if len(json.dumps(value)) > MAX_AUDIT_DETAIL_BYTES:
            raise ValueError(f"is over {MAX_AUDIT_DETAIL_BYTES} bytes as JSON")
        if {"source", "event_id"} & set(value):
            raise ValueError("must not set source or event_id (the executor does)")
        return value

    @property
    def moment(self) -> datetime:
        return datetime.fromisoformat(self.at).astimezone(timezone.utc)


class AuditBatch(BaseModel):
    """Entries a service reports (it needs the custom:notebench-audit:append scope)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    entries: list[AuditEvent] = Field(min_length=1, max_length=500)

# --- What the API answers ---------------------------------------------------------------------
# Times are RFC 3339 strings in UTC with a Z (db.iso); the statuses are hub/platform/statuses.py's.

def _datetime():
    return Field(json_schema_extra={"format": "date-time"})


def _one_of(values):
    return Field(json_schema_extra={"enum": list(values)})


class ErrorResponse(BaseModel):
    model_config = ConfigDict(title="Error")

    status: int
    message: str
    field: str | None = Field(description="The request field that was wrong.")
    quota: str | None = Field(None, description="An exceeded quota: its name (then limit and current are given)")
    limit: float | None = Field(None, description="An exceeded quota's limit")
    current: float | None = Field(None, description="The current use of that quota")


class Progress(BaseModel):
    cells_completed: int
    cells_total: int


class CellError(BaseModel):
    model_config = ConfigDict(extra="allow")  # errors stored by older versions are shown as they are

    ename: str = ""
    evalue: str = ""
    cell_index: int | None = Field(
        default=None, description="Index (from 0) of the failing cell in the notebook as submitted: papermill's added cells not counted"
    )
    output_cell_index: int | None = Field(default=None, description="Index of the same cell in the output notebook")


class JobResponse(BaseModel):
    model_config = ConfigDict(title="Job")

    id: int
    name: str
    owner: str
    status: str = _one_of(JOB_STATUSES)
    created_at: str = _datetime()
    started_at: str | None = _datetime()
    finished_at: str | None = _datetime()
    parameters: dict[str, Any]
    profile: str
    kernel: str
    cwd: str
    notebook_path: str | None = Field(
        description="The notebook's path in the owner's files, as the submitter gave it (metadata.notebench.path)")
    workers: int
    worker_profile: str | None
    timeout_seconds: int
    progress: Progress
    error: CellError | None
    mlflow_run_id: str | None
    schedule_id: int | None

    @classmethod
    def of(cls, job) -> JobResponse:
        return cls(
            id=job.id, name=job.name, owner=job.owner, status=job.status, created_at=iso(job.created_at),
            started_at=iso(job.started_at), finished_at=iso(job.finished_at), parameters=job.parameters,
            profile=job.profile, kernel=job.kernel, cwd=job.cwd, notebook_path=job.notebook_path, workers=job.workers,
            worker_profile=job.worker_profile, timeout_seconds=job.timeout_seconds,
            progress=Progress(cells_completed=job.cells_completed, cells_total=job.cells_total),
            error=job.error, mlflow_run_id=job.mlflow_run_id, schedule_id=job.schedule_id,
        )


class JobPage(BaseModel):
    jobs: list[JobResponse]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last one")


class ScheduleResponse(BaseModel):
    model_config = ConfigDict(title="Schedule")

    id: int
    owner: str
    name: str
    cron: str
    timezone: str
    active: bool
    job: dict[str, Any] = Field(description="The job template (a JobRequest)")
    created_at: str = _datetime()
    next_run_at: str | None = _datetime()
    promotion: PromotionPolicy | None = Field(description="The promotion policy (gated retraining), or null")

    @classmethod
    def of(cls, schedule) -> ScheduleResponse:
        return cls(id=schedule.id, owner=schedule.owner, name=schedule.name, cron=schedule.cron,
                   timezone=schedule.timezone, active=schedule.active, job=schedule.job_template,
                   created_at=iso(schedule.created_at), next_run_at=iso(schedule.next_run_at),
                   promotion=schedule.promotion)


class PromotionDecisionResponse(BaseModel):
    model_config = ConfigDict(title="PromotionDecision")

    id: int
    schedule_id: int
    job_id: int = Field(description="The job whose registered version was the challenger")
    at: str = _datetime()
    model: str
    metric: str
    greater_is_better: bool
    margin: float
    alias: str
    challenger_version: str | None = Field(description="The version the job registered (null: it registered none)")
    champion_version: str | None = Field(description="The version the alias pointed at (null: none yet)")
    challenger_value: float | None = Field(description="The metric in the challenger's run (null: not logged)")
    champion_value: float | None = Field(description="The metric in the champion's run (null: no champion, or not logged)")
    promoted: bool
    reason: str = Field(description='Why, with the figures ("promoted: …", "refused: …")')
    state: str = Field(description="applying: promoted, the alias or the endpoint not changed yet (retried); done",
                       json_schema_extra={"enum": ["applying", "done"]})
    endpoint: str | None = Field(description="The endpoint the policy rolls on promotion")
    endpoint_history_id: int | None = Field(description="The endpoint's history entry of the roll (roll back from there)")
    note: str | None = Field(description="What of a promotion could not be applied (the alias, the endpoint), and why")

    @classmethod
    def of(cls, d) -> PromotionDecisionResponse:
        return cls(id=d.id, schedule_id=d.schedule_id, job_id=d.job_id, at=iso(d.at), model=d.model, metric=d.metric,
                   greater_is_better=d.greater_is_better, margin=d.margin, alias=d.alias,
                   challenger_version=d.challenger_version, champion_version=d.champion_version,
                   challenger_value=d.challenger_value, champion_value=d.champion_value, promoted=d.promoted,
                   reason=d.reason, state="done" if d.applied_at or not d.promoted else "applying", endpoint=d.endpoint,
                   endpoint_history_id=d.endpoint_history_id, note=d.note)


class PromotionDecisionPage(BaseModel):
    decisions: list[PromotionDecisionResponse]
    next_cursor: str | None = Field(description="Pass as cursor for the next (older) page; null on the last one")


class ScheduleList(BaseModel):
    schedules: list[ScheduleResponse]


class QuotaLimits(BaseModel):
    """A quota record: the quantities it sets, each a number or null (unlimited); a quantity left
    out is not set by it (for a user: their groups' or the default applies)."""

    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"examples": [{"running_jobs": 2, "queued_jobs": 50, "gpus": None}]})

    gpus: int | None = Field(None, ge=0, le=10_000, description="GPUs in use at once")
    gpu_hours_per_day: float | None = Field(None, ge=0, le=1e6, description="GPU-hours per rolling day")
    cpu: float | None = Field(None, ge=0, le=1e6, description="CPU cores in use at once")
    memory: float | None = Field(None, ge=0, le=1e9, description="Memory in use at once, in GiB")
    running_jobs: int | None = Field(None, ge=0, le=100_000, description="Jobs running at once")
    queued_jobs: int | None = Field(None, ge=0, le=100_000, description="Jobs waiting at once")
    dask_workers: int | None = Field(None, ge=0, le=100_000, description="Dask workers per job")
    endpoints: int | None = Field(None, ge=0, le=100_000, description="Endpoints at once")


class QuotaResponse(BaseModel):
    model_config = ConfigDict(title="Quota")

    kind: str = _one_of(("user", "group"))
    name: str
    gpus: int | None
    gpu_hours_per_day: float | None
    cpu: float | None
    memory: float | None
    running_jobs: int | None
    queued_jobs: int | None
    dask_workers: int | None
    endpoints: int | None
    set: dict[str, Any] = Field(description="What this user's or group's own record sets (null: unlimited)")
    source: dict[str, str] = Field(description='Where each limit comes from: "user", "group:<name>" or "default"')
    usage: dict[str, Any] | None = Field(description="A user's current use, of the quantities counted so far")


class AuditEntryResponse(BaseModel):
    model_config = ConfigDict(title="AuditEntry")

    id: int
    at: str = _datetime()
    actor: str = Field(description="Who did it")
    action: str = Field(description="What they did, e.g. job.submit, endpoint.deploy")
    target: str = Field(description='What it was done to, e.g. "job 12", "endpoint iris"')
    owner: str | None = Field(description="Whose that thing is")
    detail: dict[str, Any]

    @classmethod
    def of(cls, entry) -> AuditEntryResponse:
        return cls(id=entry.id, at=iso(entry.at), actor=entry.actor, action=entry.action, target=entry.target,
                   owner=entry.owner, detail=entry.detail)


class AuditAppended(BaseModel):
    appended: int = Field(description="Entries added to the log")
    duplicates: int = Field(description="Entries already in it (same event_id), skipped")


class AuditPage(BaseModel):
    entries: list[AuditEntryResponse]
    next_cursor: str | None = Field(description="Pass as cursor for the next (older) page; null on the last one")


class UsageAmounts(BaseModel):
    profile_hours: float = Field(description="Hours of the profile held (a job's Dask workers: each counts)")
    cpu_seconds_requested: float = Field(description="CPU cores requested × seconds")
    cpu_seconds_used: float | None = Field(description="CPU-seconds measured; null where not measured (not yet anywhere)")
    memory_gb_hours: float = Field(description="Memory requested, GiB × hours")
    gpu_hours: float
    cost: float | None = Field(description="profile_hours × c.Usage.prices of the profile; null without a price")


class UsageRow(UsageAmounts):
    day: str = Field(description="The UTC day, YYYY-MM-DD")
    user: str
    groups: list[str] = Field(description="The user's groups (as when each thing started)")
    profile: str


class GroupUsageRow(UsageAmounts):
    day: str = Field(description="The UTC day, YYYY-MM-DD")
    group: str | None = Field(description="The group (null: users in no group)")
    users: list[str]
    profile: str


class UsageReport(BaseModel):
    since: str = _datetime()
    until: str = _datetime()
    by: str = _one_of(("user", "group"))
    currency: str
    rows: list[UsageRow] | list[GroupUsageRow] = Field(description="Per day, user (by=group: group) and profile")
    totals: UsageAmounts


class ProfileInfo(BaseModel):
    name: str
    display_name: str
    description: str
    gpus: int
    cpu_limit: float | None
    mem_limit: int | None = Field(description="bytes")
    default: bool


class ProfilesResponse(BaseModel):
    profiles: list[ProfileInfo]
    kernels: list[str]


class ServedVersion(BaseModel):
    model: str
    version: str = Field(description="The version served (an alias resolved at deploy)")
    alias: str | None = Field(description="The alias it was deployed by, if any")
    weight: int
    shadow: bool = Field(description=SHADOW_DESCRIPTION)
    traffic_percent: int | None = Field(description="A shadow's percent of the requests copied to it; null for a live version")
    status: str = _one_of(SERVER_STATUSES)
    reason: str | None


class EndpointResponse(BaseModel):
    model_config = ConfigDict(title="Endpoint")

    name: str
    owner: str
    profile: str
    status: str = _one_of(ENDPOINT_STATUSES)
    reason: str | None = Field(description="Why it failed (or why an update was not applied)")
    task: str | None = Field(description="classification or regression, as declared; null: inferred from the labels")
    monitoring: bool = Field(description=MONITORING_DESCRIPTION)
    created_at: str = _datetime()
    updated_at: str = _datetime()
    invocation_url: str = Field(description="POST MLflow scoring input here (a token with the invoke scope)")
    versions: list[ServedVersion]


class EndpointList(BaseModel):
    endpoints: list[EndpointResponse]


class HistoryVersion(BaseModel):
    model: str
    version: str = Field(description="The version number (an alias resolved when the change was made)")
    alias: str | None = Field(description="The alias asked for, if any")
    weight: int
    shadow: bool = False  # entries written before shadow versions have none
    traffic_percent: int | None = None


class EndpointHistoryResponse(BaseModel):
    model_config = ConfigDict(title="EndpointHistoryEntry")

    id: int = Field(description='Roll back to this state with POST endpoints/{name}/rollback {"to": id}')
    at: str = _datetime()
    endpoint: str
    owner: str
    actor: str = Field(description='Who or what made the change: a user, or automation (e.g. "schedule 3")')
    action: str = _one_of(HISTORY_ACTIONS)
    reason: str | None
    versions: list[HistoryVersion] = Field(description="The versions and weights asked for (a delete: those it had)")
    detail: dict[str, Any] = Field(description='More about the change, e.g. a rollback\'s {"to": id}')

    @classmethod
    def of(cls, entry) -> EndpointHistoryResponse:
        return cls(id=entry.id, at=iso(entry.at), endpoint=entry.endpoint, owner=entry.owner, actor=entry.actor,
                   action=entry.action, reason=entry.reason, versions=entry.versions, detail=entry.detail)


class EndpointHistoryPage(BaseModel):
    entries: list[EndpointHistoryResponse]
    next_cursor: str | None = Field(description="Pass as cursor for the next (older) page; null on the last one")


class Latency(BaseModel):
    p50: float | None
    p99: float | None


class MinuteStats(BaseModel):
    t: str = _datetime()
    requests: int
    p50_ms: float | None


class VersionMetrics(BaseModel):
    model: str
    version: str
    requests: int
    errors: int
    latency_ms: Latency
    series: list[MinuteStats]


class EndpointMetrics(BaseModel):
    versions: list[VersionMetrics]


class VersionLog(BaseModel):
    model: str
    version: str
    status: str = _one_of(SERVER_STATUSES)
    log: str = Field(description="The scoring server's last lines, as it wrote them (the owner's text: show it as text)")


class EndpointLogs(BaseModel):
    versions: list[VersionLog]


class FeatureDrift(BaseModel):
    drift_score: float = Field(description="Population stability index (PSI) of the requests against the baseline")
    method: str = _one_of(("psi", "ks", "chi_square"))
    p_value_or_psi: float = Field(description="method psi: the PSI; ks and chi_square: the test's p-value")
    missing_rate: float
    out_of_range_rate: float = Field(
        description="Numeric: values outside the baseline's min..max; categorical: values the baseline never had"
    )
    drifted: bool


class MonitoringBaseline(BaseModel):
    source: str = _one_of(("training_profile", "input_example", "first_requests"))
    rows: int = Field(description="Rows the baseline was made from (an input example is a few rows only)")
    note: str | None = None


class SchemaViolations(BaseModel):
    requests: int = Field(description="Sampled requests whose input could not be read (not JSON, cut, unknown shape)")
    rows: int = Field(description="Rows with other columns than the baseline's, or a text where a number belongs")
    rate: float = Field(description="Rows in violation over all rows of the window's requests")


class VersionMonitoring(BaseModel):
    model: str
    version: str
    requests: int = Field(description="Sampled requests of this version in the window")
    rows: int = Field(description="Rows of those requests compared with the baseline")
    baseline: MonitoringBaseline | None = Field(description="None until a baseline exists (first requests still coming)")
    features: dict[str, FeatureDrift]
    prediction_drift: FeatureDrift | None = Field(description="Drift of the model's outputs (their first column)")
    schema_violations: SchemaViolations
    drifted: list[str] = Field(description="The features flagged as drifted")
    quality: dict[str, float] = Field(description="Quality metrics from label feedback (empty until labels arrive)")


class EndpointMonitoring(BaseModel):
    window: str
    since: str = _datetime()
    sample: dict[str, int] = Field(
        description="The sample's limits: samples_per_second per endpoint, max_samples kept, max_sample_bytes per body"
    )
    versions: list[VersionMonitoring]


class FeedbackRow(BaseModel):
    model_config = ConfigDict(title="FeedbackRow")

    request_id: str = Field(pattern="^[0-9a-f]{32}$", description="The X-Notebench-Request-Id of an invocation of this endpoint")
    label: str | bool | int | float | list[str | bool | int | float] = Field(
        description="The true label: one value for a one-row request, or a list, one per row of the request"
    )


class FeedbackResult(BaseModel):
    accepted: int = Field(description="Labels stored (a request labelled before: the label replaced)")
    unknown: list[str] = Field(description="Request ids that are no stored prediction of this endpoint")


class VersionQuality(BaseModel):
    model: str
    version: str
    task: str | None = Field(description="classification or regression (declared, else inferred); null: no labels yet")
    labelled: int = Field(description="Labelled prediction rows in the window")
    mismatched: int = Field(description="Labels that did not fit their prediction (another number of rows, or a cut answer)")
    quality: dict[str, float] = Field(description="{accuracy, f1} (classification: F1 of class 1/true when binary, "
                                                  "else macro) or {mae, rmse} (regression); {} without labels")


class EndpointQuality(BaseModel):
    window: str
    versions: list[VersionQuality]


# --- endpoint alerts (serving/alerts.py) ----------------------------------------------------------

ALERT_KINDS = ("drift", "quality", "error_rate", "p99_latency_ms")
QUALITY_METRICS = ("accuracy", "f1", "mae", "rmse")
MAX_ALERT_RULES = 20
MAX_WEBHOOK_CHARS = 2048
ALERT_STATES = ("pending", "delivered", "failed")


class AlertRule(BaseModel):
    """One threshold of an endpoint; it breaches when its value, over the window, passes the threshold."""

    model_config = ConfigDict(extra="forbid", strict=True, title="AlertRule")

    kind: Literal["drift", "quality", "error_rate", "p99_latency_ms"] = Field(
        description="drift: the largest drift_score (PSI) among the drifted features of any version; quality: a "
        "version's `metric` from label feedback; error_rate: invocations answered 4xx/5xx over all invocations (0 "
        "to 1); p99_latency_ms: the 99th percentile of the invocations' latency, in milliseconds"
    )
    threshold: float = Field(ge=0, le=1e12, description="drift, error_rate, p99_latency_ms, quality mae/rmse: breached "
                             "above it; quality accuracy/f1: breached below it")
    window: str | None = Field(default=None, max_length=64, description="One of the monitoring windows (GET "
                               ".../monitoring?window=); error_rate and p99_latency_ms take windows up to 1 hour. "
                               "Left out: the first monitoring window")
    metric: Literal["accuracy", "f1", "mae", "rmse"] | None = Field(
        default=None, description="quality only (required there): the metric watched")
    min_requests: int = Field(default=1, ge=1, le=10**9, description="Below this many requests in the window "
                              "(sampled ones for drift and quality) the rule is not breached")

    _window = field_validator("window")(check_name)


class EndpointAlertsRequest(BaseModel):
    """An endpoint's alert rules and webhook, replacing the previous ones (open firings are closed)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{
        "webhook": "https://hooks.example.com/notebench",
        "rules": [{"kind": "error_rate", "threshold": 0.05, "window": "1h", "min_requests": 20},
                  {"kind": "quality", "metric": "accuracy", "threshold": 0.8, "window": "1d"}]}]})

    webhook: str | None = Field(default=None, max_length=MAX_WEBHOOK_CHARS, description="http(s) URL each firing is "
                                "POSTed to as JSON (its host must be allowed: c.Alerts.allowed_webhook_hosts); null: "
                                "firings are only recorded")
    rules: list[AlertRule] = Field(max_length=MAX_ALERT_RULES)

    _webhook = field_validator("webhook")(check_name)


class AlertFiringResponse(BaseModel):
    model_config = ConfigDict(title="AlertFiring")

    id: int
    rule_index: int = Field(description="The rule's place in the rules when it fired")
    rule: AlertRule
    value: float = Field(description="The value that passed the threshold")
    detail: dict[str, Any] = Field(description="Where it was seen (e.g. version, feature) and the window's requests")
    fired_at: str = _datetime()
    cleared_at: str | None = Field(description="When the rule stopped being breached; null while it lasts")
    state: str | None = Field(json_schema_extra={"enum": [*ALERT_STATES, None]},
                              description="Delivery to the webhook: pending (retried), delivered, failed (attempts "
                              "used up); null: there was no webhook")
    attempts: int
    last_error: str | None

    @classmethod
    def of(cls, firing) -> AlertFiringResponse:
        return cls(id=firing.id, rule_index=firing.rule_index, rule=AlertRule.model_validate(firing.rule),
                   value=firing.value, detail=firing.detail, fired_at=iso(firing.fired_at),
                   cleared_at=iso(firing.cleared_at), state=firing.state, attempts=firing.attempts,
                   last_error=firing.last_error)


class EndpointAlertsResponse(BaseModel):
    model_config = ConfigDict(title="EndpointAlerts")

    webhook: str | None
    rules: list[AlertRule]
    updated_at: str | None = Field(description="When the rules were last set; null: never")
    updated_by: str | None
    firings: list[AlertFiringResponse] = Field(description="The most recent firings, newest first")


class ShadowSide(BaseModel):
    model: str
    version: str
    requests: int = Field(description="Requests copied to the shadows in the window (a live version: those it answered)")
    errors: int = Field(description="Of those, answered with an error (a shadow: or not at all)")
    latency_ms: Latency


class ShadowComparison(ShadowSide):
    traffic_percent: int | None = Field(description="The percent of the requests copied to it now (null: no longer a shadow)")
    dropped: int = Field(description="Copies not sent since the executor started: the shadow had too many in flight")
    compared: int = Field(description="Requests answered by both the live version and the shadow (their predictions readable)")
    agreement_rate: float | None = Field(description="Of the compared requests, the fraction where the shadow's prediction "
                                                     "equals the live one's; null when none was compared")
    task: str | None = Field(description="classification or regression (declared, else inferred); null: no labels yet")
    labelled: int = Field(description="Labelled prediction rows of the shadow in the window (labels posted for the live request ids)")
    quality: dict[str, float] = Field(description="As GET endpoints/{name}/quality, for the shadow's predictions; {} without labels")


class EndpointShadow(BaseModel):
    window: str
    since: str = _datetime()
    live: list[ShadowSide] = Field(description="The live versions, over the requests copied to at least one shadow")
    shadows: list[ShadowComparison]
