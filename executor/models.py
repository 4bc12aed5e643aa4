"""What clients send: request bodies of the executor API, validated with pydantic.

A validation error becomes a 400 whose JSON body names the field (see handlers.py). These models
also give the OpenAPI description its schemas (openapi.py).
"""

from __future__ import annotations

import json
from typing import Any

import nbformat
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_PARAMETERS_BYTES = 64 * 1024


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
        bad = [k for k in value if not k.isidentifier()]
        if bad:
            raise ValueError(f"parameter names must be Python identifiers: {bad}")
        return value

    @field_validator("cwd")
    @classmethod
    def _relative(cls, value):
        if value.startswith("/") or ".." in value.split("/") or "\0" in value:
            raise ValueError("cwd must be a path inside your home, relative to it (no '..', no leading '/')")
        return value


def check_cron(value: str | None) -> str | None:
    if value is not None and (len(value.split()) != 5 or not croniter.is_valid(value)):
        raise ValueError(f"{value!r} is not a valid five-field cron expression")
    return value


def check_timezone(value: str | None) -> str | None:
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
    return value


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=255)
    cron: str = Field(description="Five-field cron expression, e.g. '0 6 * * 1-5'.")
    timezone: str = Field(default="UTC", description="IANA time zone the cron expression is read in.")
    active: bool = True
    job: JobRequest = Field(description="The job to submit at each tick.")

    _cron = field_validator("cron")(check_cron)
    _timezone = field_validator("timezone")(check_timezone)


class SchedulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=255)
    cron: str | None = None
    timezone: str | None = None
    active: bool | None = None
    job: JobRequest | None = None

    _cron = field_validator("cron")(check_cron)
    _timezone = field_validator("timezone")(check_timezone)
