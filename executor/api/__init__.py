"""The executor's REST API under /services/executor/api/ (OpenAPI description: openapi.py), and
the endpoints' scoring paths (invocations.py)."""

from jupyterhub.services.auth import HubOAuthCallbackHandler

from notebench.executor.api.audit import AuditHandler
from notebench.executor.api.endpoints import routes as endpoint_routes
from notebench.executor.api.job_files import JobFilesHandler
from notebench.executor.api.jobs import CancelHandler, JobHandler, JobsHandler, LogHandler, OutputHandler
from notebench.executor.api.quotas import QuotaHandler
from notebench.executor.api.schedules import ScheduleDecisionsHandler, ScheduleHandler, SchedulesHandler
from notebench.executor.api.service import (
    HealthHandler,
    MetricsHandler,
    OpenAPIHandler,
    PageNotFoundHandler,
    ProfilesHandler,
    RootHandler,
)
from notebench.executor.api.usage import UsageHandler


def routes(prefix: str) -> list:
    api = prefix + "api/"
    return [
        (prefix, RootHandler),
        (prefix + "health", HealthHandler),
        (prefix + "metrics", MetricsHandler),
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
        (api + r"schedules/([0-9]+)/decisions", ScheduleDecisionsHandler),
        *endpoint_routes(prefix),
        (api + "audit", AuditHandler),
        (api + r"quotas/(users|groups)/([^/]+)", QuotaHandler),
        (api + "usage", UsageHandler),
        (prefix + "(.*)", PageNotFoundHandler),
    ]
