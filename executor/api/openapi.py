"""The OpenAPI description of the executor API, built from its request and response models.

Served at /services/executor/api/openapi.json; the checked-in copy (executor/api/openapi.json) is
compared with it by the tests, so the file in the repo is always the API that runs.
"""

from __future__ import annotations

import json

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from notebench.executor.audit import ACTIONS, FAMILIES
from notebench.executor.schemas import (
    AuditAppended,
    AuditBatch,
    AuditPage,
    EndpointAlertsRequest,
    EndpointAlertsResponse,
    EndpointCreate,
    EndpointHistoryPage,
    EndpointList,
    EndpointLogs,
    EndpointMetrics,
    EndpointMonitoring,
    EndpointPatch,
    EndpointQuality,
    EndpointResponse,
    EndpointRollback,
    EndpointShadow,
    ErrorResponse,
    FeedbackResult,
    FeedbackRow,
    JobPage,
    JobRequest,
    JobResponse,
    ProfilesResponse,
    PromotionDecisionPage,
    QuotaLimits,
    QuotaResponse,
    ScheduleList,
    SchedulePatch,
    ScheduleRequest,
    ScheduleResponse,
    UsageReport,
)
from notebench.hub.platform.statuses import JOB_STATUSES

# Component names of the response models (their classes are named apart from the store's rows).
COMPONENT_NAMES = {"EndpointAlertsResponse": "EndpointAlerts", "AlertFiringResponse": "AlertFiring", "AuditEntryResponse": "AuditEntry", "QuotaResponse": "Quota", "ErrorResponse": "Error", "JobResponse": "Job", "ScheduleResponse": "Schedule",
                   "EndpointResponse": "Endpoint", "EndpointHistoryResponse": "EndpointHistoryEntry",
                   "PromotionDecisionResponse": "PromotionDecision"}
REQUESTS = (JobRequest, ScheduleRequest, SchedulePatch, EndpointCreate, EndpointPatch, EndpointRollback, QuotaLimits,
            AuditBatch, FeedbackRow, EndpointAlertsRequest)
RESPONSES = (ErrorResponse, JobResponse, JobPage, ScheduleResponse, ScheduleList, ProfilesResponse, EndpointResponse,
             EndpointList, EndpointMetrics, EndpointLogs, EndpointMonitoring, EndpointHistoryPage, AuditPage, QuotaResponse,
             UsageReport, AuditAppended, FeedbackResult, EndpointQuality, EndpointAlertsResponse,
             EndpointShadow, PromotionDecisionPage)


def component_schemas() -> dict:
    """The request and response models' JSON schemas, and the models they are made of."""
    schemas = {}
    modes: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "validation") for m in REQUESTS]
    modes += [(m, "serialization") for m in RESPONSES]
    for model, mode in modes:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    text = json.dumps(schemas)
    for name, component in COMPONENT_NAMES.items():
        text = text.replace(f'"#/components/schemas/{name}"', f'"#/components/schemas/{component}"')
    schemas = json.loads(text)
    return {COMPONENT_NAMES.get(name, name): schema for name, schema in schemas.items()}


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema):
    return {"application/json": {"schema": schema}}


def _errors(*codes):
    text = {400: "Bad input (the body names the field)", 401: "Not authenticated", 403: "Not allowed",
            404: "Not found (or not yours)", 409: "Conflict (the field says with what)",
            413: "Body over c.Executor.max_body_bytes (field: body)",
            429: "A quota that is full now (quota, limit and current say which): try again later", 502: "MLflow's model registry failed",
            503: "MLflow is not enabled here, or cannot be reached now"}
    return {str(c): {"description": text[c], "content": _json(_ref("Error"))} for c in codes}


def spec(prefix: str = "/services/executor/") -> dict:
    job_id = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "integer"}}]
    schedule_id = [{"name": "schedule_id", "in": "path", "required": True, "schema": {"type": "integer"}}]
    endpoint_name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    quota_name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[^/]+$"}}]
    schemas = component_schemas()
    common = _errors(400, 401, 403, 413)  # any request: unknown query parameters (400), a body over the limit (413)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Notebench executor", "version": "1", "description": "Notebook jobs and schedules; model endpoints (invoked at "
                 f"{prefix}endpoints/<name>/invocations with MLflow scoring input, its Content-Type said (415 if not), and a "
                 "token holding the custom:notebench-endpoints:invoke scope; MLflow's GET ping, health and version beside it, "
                 "e.g. endpoints/<name>/ping: 200 once a version serving it answers, else 503; errors there also carry "
                 "MLflow's error_code). Every request body, invocations included, is at most c.Executor.max_body_bytes "
                 "(16 MiB unless configured): a larger one is answered 413. Authenticate with a JupyterHub API token "
                 "(Authorization: token <token>, or Bearer) or the hub's OAuth cookie: a browser navigating here "
                 "without one is sent through the hub's login; writes with the cookie need the X-XSRFToken header. "
                 "Errors are {status, message, field}, field naming the offending request field or parameter."},
        "servers": [{"url": prefix + "api"}],
        "security": [{"token": []}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "description": "A JupyterHub API token"},
                "jobToken": {"type": "http", "scheme": "bearer",
                             "description": "A running job's own token (its pod's Secret, Kubernetes backend); no hub token works here"},
            },
        },
        "paths": {
            "/profiles": {
                "get": {"summary": "The profiles and kernels a job may ask for", "responses": {
                    "200": {"description": "Profiles and kernels", "content": _json(_ref("ProfilesResponse"))}, **common}},
            },
            "/jobs": {
                "get": {
                    "summary": "List your jobs (admins: everyone's), newest first",
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(JOB_STATUSES)}},
                        {"name": "name", "in": "query", "description": "Name prefix", "schema": {"type": "string"}},
                        {"name": "owner", "in": "query", "description": "Admins only", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
                        {"name": "cursor", "in": "query", "description": "next_cursor of the previous page",
                         "schema": {"type": "string", "pattern": "^[0-9]*$"}},
                    ],
                    "responses": {
                        "200": {"description": "A page of jobs", "content": _json(_ref("JobPage"))},
                        **common,
                    },
                },
                "post": {
                    "summary": "Submit a notebook as a job (quotas: dask_workers and one that could never start 403, queued_jobs 429; running_jobs, gpus, cpu and memory make it wait in the queue)",
                    "requestBody": {"required": True, "content": _json(_ref("JobRequest"))},
                    "responses": {"201": {"description": "Queued", "content": _json(_ref("Job"))}, **_errors(429), **common},
                },
            },
            "/jobs/{job_id}": {
                "get": {"summary": "One job", "parameters": job_id,
                        "responses": {"200": {"description": "The job", "content": _json(_ref("Job"))}, **_errors(404), **common}},
                "delete": {"summary": "Delete an ended job: its record, log and output (its MLflow run stays)", "parameters": job_id,
                           "responses": {"204": {"description": "Deleted"}, **_errors(404, 409), **common}},
            },
            "/jobs/{job_id}/cancel": {
                "post": {"summary": "Cancel a queued or running job", "parameters": job_id,
                         "responses": {"200": {"description": "The job after cancelling", "content": _json(_ref("Job"))}, **_errors(404), **common}},
            },
            "/jobs/{job_id}/log": {
                "get": {"summary": "The job's log (follow=1 streams until the job ends)",
                        "parameters": job_id + [{"name": "follow", "in": "query", "schema": {"type": "string", "enum": ["0", "1", "true", "false"]}},
                                                {"name": "offset", "in": "query", "description": "Start at this byte of the log (default 0)",
                                                 "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}],
                        "responses": {"200": {"description": "Log text", "content": {"text/plain": {"schema": {"type": "string"}}}}, **_errors(404), **common}},
            },
            "/jobs/{job_id}/output": {
                "get": {"summary": "The output notebook (partial while running)", "parameters": job_id,
                        "responses": {"200": {"description": "ipynb", "content": {"application/x-ipynb+json": {"schema": {"type": "object"}}}}, **_errors(404), **common}},
            },
            "/jobs/{job_id}/output.html": {
                "get": {"summary": "The output notebook as HTML", "parameters": job_id,
                        "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}, **_errors(404), **common}},
            },
            "/jobs/{job_id}/files/input": {
                "get": {"summary": "A job pod's own call (Kubernetes backend): the notebook it runs", "parameters": job_id,
                        "security": [{"jobToken": []}],
                        "responses": {"200": {"description": "ipynb", "content": {"application/x-ipynb+json": {"schema": {"type": "object"}}}},
                                      **_errors(401, 403, 404)}},
            },
            "/jobs/{job_id}/files/output": {
                "put": {"summary": "A job pod's own call (Kubernetes backend): its output notebook so far", "parameters": job_id,
                        "security": [{"jobToken": []}],
                        "requestBody": {"required": True, "content": {"application/x-ipynb+json": {"schema": {"type": "object"}}}},
                        "responses": {"204": {"description": "Stored"}, **_errors(401, 403, 404)}},
            },
            "/schedules": {
                "get": {"summary": "Your schedules (admins: everyone's)",
                        "responses": {"200": {"description": "Schedules", "content": _json(_ref("ScheduleList"))}, **common}},
                "post": {"summary": "Create a schedule (with a promotion policy: 400 naming promotion.model unless you may "
                                    "read the model in MLflow, promotion.endpoint unless the endpoint is yours)", "requestBody": {"required": True, "content": _json(_ref("ScheduleRequest"))},
                         "responses": {"201": {"description": "Created", "content": _json(_ref("Schedule"))}, **_errors(502, 503),
                                       **common}},
            },
            "/schedules/{schedule_id}": {
                "get": {"summary": "One schedule", "parameters": schedule_id,
                        "responses": {"200": {"description": "The schedule", "content": _json(_ref("Schedule"))}, **_errors(404), **common}},
                "patch": {"summary": "Change a schedule", "parameters": schedule_id,
                          "requestBody": {"required": True, "content": _json(_ref("SchedulePatch"))},
                          "responses": {"200": {"description": "The schedule", "content": _json(_ref("Schedule"))},
                                        **_errors(404, 502, 503), **common}},
                "delete": {"summary": "Delete a schedule (its past jobs stay)", "parameters": schedule_id,
                           "responses": {"204": {"description": "Deleted"}, **_errors(404), **common}},
            },
            "/schedules/{schedule_id}/decisions": {
                "get": {"summary": "The schedule's promotion decisions (gated retraining), newest first: after each job that "
                                   "succeeded, the challenger version it registered against the champion on the policy's "
                                   "metric, promoted or not, and why",
                        "parameters": schedule_id + [
                            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
                            {"name": "cursor", "in": "query", "description": "next_cursor of the previous page",
                             "schema": {"type": "string", "pattern": "^[0-9]*$"}},
                        ],
                        "responses": {"200": {"description": "A page of decisions", "content": _json(_ref("PromotionDecisionPage"))},
                                      **_errors(404), **common}},
            },
            "/endpoints": {
                "get": {"summary": "Your model endpoints (admins: everyone's)",
                        "responses": {"200": {"description": "Endpoints", "content": _json(_ref("EndpointList"))}, **common}},
                "post": {"summary": "Deploy model versions (or aliases, resolved now) behind a new endpoint, traffic split by "
                                    "weight (quota: endpoints, 409)",
                         "requestBody": {"required": True, "content": _json(_ref("EndpointCreate"))},
                         "responses": {"201": {"description": "Created; starting (poll until ready)", "content": _json(_ref("Endpoint"))},
                                       **_errors(409, 502, 503), **common}},
            },
            "/endpoints/{name}": {
                "get": {"summary": "One endpoint", "parameters": endpoint_name,
                        "responses": {"200": {"description": "The endpoint", "content": _json(_ref("Endpoint"))}, **_errors(404), **common}},
                "patch": {"summary": "Change versions and weights (rolling: no request fails)", "parameters": endpoint_name,
                          "requestBody": {"required": True, "content": _json(_ref("EndpointPatch"))},
                          "responses": {"200": {"description": "The endpoint, updating", "content": _json(_ref("Endpoint"))},
                                        **_errors(404, 409, 502, 503), **common}},
                "delete": {"summary": "Stop and delete an endpoint", "parameters": endpoint_name,
                           "responses": {"204": {"description": "Deleted"}, **_errors(404), **common}},
            },
            "/endpoints/{name}/metrics": {
                "get": {"summary": "Requests, errors and latency per version (since the executor started), per minute too",
                        "parameters": endpoint_name,
                        "responses": {"200": {"description": "Metrics", "content": _json(_ref("EndpointMetrics"))}, **_errors(404), **common}},
            },
            "/endpoints/{name}/history": {
                "get": {"summary": "The endpoint's history, newest first: each deploy, update, rollback and delete, who or what "
                                   "made it, when, why (reason), and the versions and weights asked for (an alias with the "
                                   "version it resolved to). A deleted endpoint's history: admins and its former owner",
                        "parameters": endpoint_name + [
                            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
                            {"name": "cursor", "in": "query", "description": "next_cursor of the previous page",
                             "schema": {"type": "string", "pattern": "^[0-9]*$"}},
                        ],
                        "responses": {"200": {"description": "A page of entries", "content": _json(_ref("EndpointHistoryPage"))},
                                      **_errors(404), **common}},
            },
            "/endpoints/{name}/rollback": {
                "post": {"summary": "Roll back to the versions and weights of one of the endpoint's history entries (by "
                                    "version number): a rolling update as PATCH makes, recorded as a rollback (400 naming "
                                    "`to`: not this endpoint's entry, or a delete)", "parameters": endpoint_name,
                         "requestBody": {"required": True, "content": _json(_ref("EndpointRollback"))},
                         "responses": {"200": {"description": "The endpoint, updating", "content": _json(_ref("Endpoint"))},
                                       **_errors(404, 409, 502, 503), **common}},
            },
            "/endpoints/{name}/logs": {
                "get": {"summary": "The last lines of each scoring server's log, per version being served (at most "
                                   "c.Endpoints.max_log_bytes each); the text is the model's code's: show it as text",
                        "parameters": endpoint_name + [{"name": "lines", "in": "query", "description": "Lines per version",
                                                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
                        "responses": {"200": {"description": "Logs", "content": _json(_ref("EndpointLogs"))}, **_errors(404), **common}},
            },
            "/endpoints/{name}/monitoring": {
                "get": {"summary": "Drift per version over a window: each feature and the predictions against the version's "
                                   "baseline (training profile, input example or first requests), from the sample of requests",
                        "parameters": endpoint_name + [{"name": "window", "in": "query",
                                                        "description": "One of c.Monitoring.windows (by default 1h, 1d)",
                                                        "schema": {"type": "string", "default": "1h"}}],
                        "responses": {"200": {"description": "Monitoring", "content": _json(_ref("EndpointMonitoring"))},
                                      **_errors(400, 404, 502, 503), **common}},
            },
            "/endpoints/{name}/feedback": {
                "post": {"summary": "True labels for the endpoint's predictions, by the X-Notebench-Request-Id each invocation "
                                    "answered with (at most 10000 per request; a request labelled again: the new label replaces "
                                    "the old). Ids that are no prediction of this endpoint come back in unknown",
                         "parameters": endpoint_name,
                         "requestBody": {"required": True, "content": {
                             "application/json": {"schema": {"type": "array", "maxItems": 10000, "items": _ref("FeedbackRow")}},
                             "text/csv": {"schema": {"type": "string", "description": "The header row request_id,label, then one "
                                                     "row per label (true/false: bools; integers and decimals: numbers)"}}}},
                         "responses": {"200": {"description": "Accepted and unknown", "content": _json(_ref("FeedbackResult"))},
                                       **_errors(404), "415": {"description": "Not JSON nor CSV", "content": _json(_ref("Error"))},
                                       **common}},
            },
            "/endpoints/{name}/quality": {
                "get": {"summary": "Per version: accuracy and F1 (classification) or MAE and RMSE (regression) of the "
                                   "predictions of the window that have labels",
                        "parameters": endpoint_name + [{"name": "window", "in": "query", "description": "Predictions made in the last ...",
                                                        "schema": {"type": "string", "enum": ["1h", "1d", "7d"], "default": "1d"}}],
                        "responses": {"200": {"description": "Quality", "content": _json(_ref("EndpointQuality"))}, **_errors(404), **common}},
            },
            "/endpoints/{name}/alerts": {
                "get": {"summary": "The endpoint's alert rules, its webhook and its most recent firings (newest first) with "
                                   "their delivery to the webhook (pending, delivered, failed; attempts, last error)",
                        "parameters": endpoint_name,
                        "responses": {"200": {"description": "Alerts", "content": _json(_ref("EndpointAlerts"))},
                                      **_errors(404), **common}},
                "put": {"summary": "Set the endpoint's alert rules and webhook (replacing them; firings still open are "
                                   "closed). 400 naming the field: an unknown kind or window, a negative threshold, a "
                                   "webhook that is not an http(s) URL or whose host is not allowed (c.Alerts."
                                   "allowed_webhook_hosts; non-public addresses only when listed)",
                        "parameters": endpoint_name, "requestBody": {"required": True, "content": _json(_ref("EndpointAlertsRequest"))},
                        "responses": {"200": {"description": "Alerts", "content": _json(_ref("EndpointAlerts"))},
                                      **_errors(404), **common}},
            },
            "/endpoints/{name}/shadow": {
                "get": {"summary": "The live versions and the shadow versions side by side over the requests copied to the "
                                   "shadows in the window: requests, errors, latency; per shadow its agreement with the live "
                                   "answers and its quality from the labels posted for the live requests",
                        "parameters": endpoint_name + [{"name": "window", "in": "query", "description": "Requests made in the last ...",
                                                        "schema": {"type": "string", "enum": ["1h", "1d", "7d"], "default": "1d"}}],
                        "responses": {"200": {"description": "Shadow comparison", "content": _json(_ref("EndpointShadow"))},
                                      **_errors(404), **common}},
            },
            "/endpoints/{name}/requests": {
                "get": {"summary": "The stored sample of requests, as JSON lines", "parameters": endpoint_name,
                        "responses": {"200": {"description": 'One {"time", "model", "version", "latency_ms", "status", "inputs", "outputs"} per line',
                                              "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}, **_errors(404), **common}},
            },
            "/quotas/users/{name}": {
                "get": {"summary": "The limits that apply to a user (their own, their groups', the defaults), where each "
                                   "comes from, and their current use. Admins: anyone's; a user: their own",
                        "parameters": quota_name,
                        "responses": {"200": {"description": "The quota", "content": _json(_ref("Quota"))}, **common}},
                "put": {"summary": "Set a user's own quota record (admins): each quantity a number or null (unlimited); "
                                   "one left out is not set (their groups' or the default applies)",
                        "parameters": quota_name, "requestBody": {"required": True, "content": _json(_ref("QuotaLimits"))},
                        "responses": {"200": {"description": "The quota", "content": _json(_ref("Quota"))}, **common}},
            },
            "/quotas/groups/{name}": {
                "get": {"summary": "What a group grants its members. Admins: any group; a user: their own groups",
                        "parameters": quota_name,
                        "responses": {"200": {"description": "The quota", "content": _json(_ref("Quota"))}, **common}},
                "put": {"summary": "Set a group's quota record (admins)", "parameters": quota_name,
                        "requestBody": {"required": True, "content": _json(_ref("QuotaLimits"))},
                        "responses": {"200": {"description": "The quota", "content": _json(_ref("Quota"))}, **common}},
            },
            "/audit": {
                "get": {
                    "summary": "The audit log (admins only), newest first: who submitted, cancelled or deleted jobs, changed "
                               "schedules, deployed, changed or deleted endpoints, changed quotas, logged in, started or "
                               "stopped servers, made tokens, changed users and groups, registered models, moved aliases, "
                               "and when. Read-only: nothing edits or deletes "
                               "an entry; entries older than c.Executor.audit_retention_days are dropped",
                    "parameters": [
                        {"name": "since", "in": "query", "description": "RFC 3339 time (UTC if no zone); entries at or after it",
                         "schema": {"type": "string", "format": "date-time"}},
                        {"name": "until", "in": "query", "description": "RFC 3339 time; entries before it",
                         "schema": {"type": "string", "format": "date-time"}},
                        {"name": "user", "in": "query", "description": "Entries by this user, or about their things",
                         "schema": {"type": "string"}},
                        {"name": "action", "in": "query", "description": "An action, or a family (job, schedule, endpoint, quota, user, server, token, permission, model, alias)",
                         "schema": {"type": "string", "enum": list(FAMILIES + ACTIONS)}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
                        {"name": "cursor", "in": "query", "description": "next_cursor of the previous page",
                         "schema": {"type": "string", "pattern": "^[0-9]*$"}},
                    ],
                    "responses": {"200": {"description": "A page of entries", "content": _json(_ref("AuditPage"))}, **common},
                },
                "post": {
                    "summary": "Append entries reported by the hub or the MLflow service (logins, servers, tokens, "
                               "permissions, models, aliases): only a token holding the custom:notebench-audit:append "
                               "scope may; the caller's name is kept as detail.source. An entry whose event_id is "
                               "already in the log is skipped (a batch may be sent again)",
                    "requestBody": {"required": True, "content": _json(_ref("AuditBatch"))},
                    "responses": {"200": {"description": "Appended", "content": _json(_ref("AuditAppended"))}, **common},
                },
            },
            "/usage": {
                "get": {
                    "summary": "Usage and cost per UTC day, user and profile: requested CPU-seconds (used: null, not measured), "
                               "memory GiB-hours, GPU-hours of servers, jobs, Dask workers and scoring servers, and a cost where "
                               "c.Usage.prices prices the profile. Admins: everyone's; a user: their own only (another user's, "
                               "a group's: 403)",
                    "parameters": [
                        {"name": "since", "in": "query", "description": "RFC 3339 time or date (UTC if no zone); default: "
                         "the start of the UTC day 29 days before until", "schema": {"type": "string"}},
                        {"name": "until", "in": "query", "description": "RFC 3339 time or date; default: now",
                         "schema": {"type": "string"}},
                        {"name": "user", "in": "query", "description": "Only this user's (a user: only their own name)",
                         "schema": {"type": "string"}},
                        {"name": "group", "in": "query", "description": "Only the usage of this group's members (admins)",
                         "schema": {"type": "string"}},
                        {"name": "by", "in": "query", "description": "Rows per user (default) or per group (admins)",
                         "schema": {"type": "string", "enum": ["user", "group"]}},
                        {"name": "format", "in": "query", "description": "csv: the rows as CSV with a header row "
                         "(so does Accept: text/csv)", "schema": {"type": "string", "enum": ["json", "csv"]}},
                    ],
                    "responses": {"200": {"description": "The usage", "content": {
                        **_json(_ref("UsageReport")), "text/csv": {"schema": {"type": "string"}}}}, **common},
                },
            },
        },
    }


if __name__ == "__main__":  # regenerate the checked-in copy: python -m notebench.executor.api.openapi
    from pathlib import Path

    Path(__file__).with_name("openapi.json").write_text(json.dumps(spec(), indent=1, sort_keys=True) + "\n")
