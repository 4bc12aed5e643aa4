"""The endpoints API under /services/executor/api/endpoints (contract: docs/endpoints-api.md).

Same rules as jobs (base.APIHandler): others' endpoints answer 404, admins see all, errors
name the field. Invocations (and an endpoint's ping, health and version) are not here: see invocations.py.
"""

from __future__ import annotations

import json
from datetime import timedelta

from notebench.executor.api.base import APIHandler, attachment
from notebench.executor.api.invocations import InvocationHandler, ScoringInfoHandler
from notebench.executor.db import EndpointHistoryEntry, iso, utcnow
from notebench.executor.errors import NotebenchError
from notebench.executor.schemas import (
    EndpointAlertsRequest,
    EndpointAlertsResponse,
    EndpointCreate,
    EndpointHistoryPage,
    EndpointHistoryResponse,
    EndpointList,
    EndpointLogs,
    EndpointMetrics,
    EndpointMonitoring,
    EndpointPatch,
    EndpointQuality,
    EndpointRollback,
    EndpointShadow,
    FeedbackResult,
)
from notebench.executor.serving import feedback, history
from notebench.hub.platform.names import ENDPOINT_NAME


def _versions(request: EndpointCreate | EndpointPatch) -> list[dict]:
    """The versions and weights asked for, as the audit log keeps them (aliases as given)."""
    return [v.model_dump() for v in request.versions]


class EndpointAPIHandler(APIHandler):
    @property
    def endpoints(self):
        return self.app.endpoints

    def load_endpoint(self, name: str):
        endpoint = self.endpoints.find(name)
        if endpoint is None or not self.visible(endpoint.owner):
            raise NotebenchError(404, None, f"no endpoint {name}")
        return endpoint

    async def owner_groups(self, endpoint) -> list[str]:
        """The groups of the endpoint's owner, for its quota (an admin may change others' endpoints)."""
        mine = endpoint.owner == self.user_name
        groups = self.current_user.get("groups", []) if mine else await self.app.quotas.groups_of(endpoint.owner)
        return groups or []


class EndpointsHandler(EndpointAPIHandler):
    async def get(self):
        endpoints = self.endpoints.listing(None if self.is_admin else self.user_name)
        self.write_json(EndpointList(endpoints=[self.endpoints.describe(e) for e in endpoints]))
        if self.app.mlflow_url:
            # Listed by the Models panel, which deploys: a user's first deploy then finds a scoring
            # process with its imports done (cold, it takes 4-10 s here; warm, about 1 s).
            self.endpoints.backend.prewarm(self.user_name)

    async def post(self):
        request = self.parse(EndpointCreate)
        endpoint = await self.endpoints.create(self.user_name, request, self.current_user.get("groups", []))
        self.audit("endpoint.deploy", f"endpoint {endpoint.name}", endpoint.owner, versions=_versions(request))
        self.set_header("Location", f"{self.settings['prefix']}api/endpoints/{endpoint.name}")
        self.write_json(self.endpoints.describe(endpoint), 201)


class EndpointHandler(EndpointAPIHandler):
    async def get(self, name):
        self.write_json(self.endpoints.describe(self.load_endpoint(name)))

    async def patch(self, name):
        endpoint = self.load_endpoint(name)
        request = self.parse(EndpointPatch)
        endpoint = await self.endpoints.update(endpoint, request, await self.owner_groups(endpoint),
                                               history.Change(self.user_name))
        self.audit("endpoint.update", f"endpoint {endpoint.name}", endpoint.owner, versions=_versions(request),
                   reason=request.reason)
        self.write_json(self.endpoints.describe(endpoint))

    async def delete(self, name):
        endpoint = self.load_endpoint(name)
        await self.endpoints.delete(endpoint, history.Change(self.user_name))
        self.audit("endpoint.delete", f"endpoint {endpoint.name}", endpoint.owner)
        self.set_status(204)
        self.finish()


class EndpointHistoryHandler(EndpointAPIHandler):
    """Newest first, paged. A deleted endpoint's history: admins read it, and so does its former owner."""

    query_params = frozenset({"limit", "cursor"})

    async def get(self, name):
        endpoint = self.endpoints.find(name)
        if endpoint is not None:
            q = history.listing(self.load_endpoint(name))  # others': 404
        else:
            q = history.listing_deleted(name, None if self.is_admin else self.user_name)
        page, next_cursor = self.page(q, EndpointHistoryEntry.id)
        if endpoint is None and not page and not self.get_argument("cursor", None):
            raise NotebenchError(404, None, f"no endpoint {name}")
        self.write_json(EndpointHistoryPage(entries=[EndpointHistoryResponse.of(e) for e in page], next_cursor=next_cursor))


class EndpointRollbackHandler(EndpointAPIHandler):
    async def post(self, name):
        endpoint = self.load_endpoint(name)
        request = self.parse(EndpointRollback)
        endpoint, versions = await history.rollback(self.endpoints, endpoint, request.to, self.user_name,
                                                    await self.owner_groups(endpoint), request.reason)
        self.audit("endpoint.rollback", f"endpoint {endpoint.name}", endpoint.owner, to=request.to, versions=versions,
                   reason=request.reason)
        self.write_json(self.endpoints.describe(endpoint))


class EndpointMetricsHandler(EndpointAPIHandler):
    async def get(self, name):
        self.write_json(EndpointMetrics.model_validate(self.endpoints.metrics(self.load_endpoint(name))))


class EndpointRequestsHandler(EndpointAPIHandler):
    async def get(self, name):
        endpoint = self.load_endpoint(name)
        samples = await self.endpoints.samples(endpoint)
        self.set_header("Content-Type", "application/x-ndjson")
        self.set_header("Content-Disposition", attachment(f"{endpoint.name}-requests.jsonl"))
        self.finish("".join(json.dumps(sample) + "\n" for sample in samples))


class EndpointLogsHandler(EndpointAPIHandler):
    """The last lines of each scoring server's log. The text is the owner's code's (untrusted):
    it goes out as JSON strings, never interpreted."""

    query_params = frozenset({"lines"})

    async def get(self, name):
        endpoint = self.load_endpoint(name)
        lines = self.get_argument("lines", str(LOG_LINES_DEFAULT))
        if not (lines.isascii() and lines.isdigit() and len(lines) <= 4 and 1 <= int(lines) <= LOG_LINES_MAX):
            raise NotebenchError(400, "lines", f"lines must be an integer from 1 to {LOG_LINES_MAX}")
        self.write_json(EndpointLogs.model_validate({"versions": await self.endpoints.logs(endpoint, int(lines))}))


class EndpointMonitoringHandler(EndpointAPIHandler):
    """Drift per version over a window, against each version's baseline (serving/monitoring.py),
    computed from the stored sample of requests in a worker thread, never on the router's path."""

    query_params = frozenset({"window"})

    async def get(self, name):
        endpoint = self.load_endpoint(name)
        windows = self.app.monitoring.windows
        window = self.get_argument("window", next(iter(windows), ""))
        if window not in windows:
            raise NotebenchError(400, "window", f"window must be one of {', '.join(windows)}")
        self.write_json(EndpointMonitoring.model_validate(await self.app.monitoring.report(endpoint, window)))


class EndpointFeedbackHandler(EndpointAPIHandler):
    """True labels for the endpoint's predictions (serving/feedback.py): JSON or CSV."""

    async def post(self, name):
        endpoint = self.load_endpoint(name)
        rows = feedback.parse(self.request.body, self.request.headers.get("Content-Type"))
        accepted, unknown = await self.endpoints.feedback(endpoint, rows, self.user_name)
        self.write_json(FeedbackResult(accepted=accepted, unknown=unknown))


class EndpointAlertsHandler(EndpointAPIHandler):
    """The endpoint's alert rules, webhook and recent firings (serving/alerts.py)."""

    async def get(self, name):
        endpoint = self.load_endpoint(name)
        self.write_json(EndpointAlertsResponse.model_validate(self.app.alerts.describe(endpoint)))

    async def put(self, name):
        endpoint = self.load_endpoint(name)
        request = self.parse(EndpointAlertsRequest)
        rules = await self.app.alerts.set(endpoint, request, self.user_name)
        # The webhook's URL may hold a secret (a token in its path): the audit log says only whether there is one.
        self.audit("endpoint.alerts", f"endpoint {endpoint.name}", endpoint.owner, rules=rules,
                   webhook=request.webhook is not None)
        self.write_json(EndpointAlertsResponse.model_validate(self.app.alerts.describe(endpoint)))


WINDOWS = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7)}


class WindowHandler(EndpointAPIHandler):
    query_params = frozenset({"window"})

    def window(self) -> str:
        window = self.get_argument("window", "1d")
        if window not in WINDOWS:
            raise NotebenchError(400, "window", f"window is one of {', '.join(WINDOWS)}")
        return window


class EndpointQualityHandler(WindowHandler):
    """Per version: accuracy and F1, or MAE and RMSE, of the labelled predictions of a window."""

    async def get(self, name):
        endpoint = self.load_endpoint(name)
        window = self.window()
        versions = await self.endpoints.quality(endpoint, utcnow() - WINDOWS[window])
        self.write_json(EndpointQuality.model_validate({"window": window, "versions": versions}))


class EndpointShadowHandler(WindowHandler):
    """The live versions and the shadow versions side by side over a window (serving/shadow.py)."""

    async def get(self, name):
        endpoint = self.load_endpoint(name)
        window = self.window()
        since = utcnow() - WINDOWS[window]
        report = await self.endpoints.shadow(endpoint, since)
        self.write_json(EndpointShadow.model_validate({"window": window, "since": iso(since), **report}))


LOG_LINES_DEFAULT = 100
LOG_LINES_MAX = 1000
NAME = f"({ENDPOINT_NAME})"


def routes(prefix: str) -> list:
    api = prefix + "api/"
    return [
        (api + "endpoints", EndpointsHandler),
        (api + f"endpoints/{NAME}", EndpointHandler),
        (api + f"endpoints/{NAME}/metrics", EndpointMetricsHandler),
        (api + f"endpoints/{NAME}/history", EndpointHistoryHandler),
        (api + f"endpoints/{NAME}/rollback", EndpointRollbackHandler),
        (api + f"endpoints/{NAME}/requests", EndpointRequestsHandler),
        (api + f"endpoints/{NAME}/logs", EndpointLogsHandler),
        (api + f"endpoints/{NAME}/monitoring", EndpointMonitoringHandler),
        (api + f"endpoints/{NAME}/feedback", EndpointFeedbackHandler),
        (api + f"endpoints/{NAME}/quality", EndpointQualityHandler),
        (api + f"endpoints/{NAME}/alerts", EndpointAlertsHandler),
        (api + f"endpoints/{NAME}/shadow", EndpointShadowHandler),
        (prefix + f"endpoints/{NAME}/invocations", InvocationHandler),
        (prefix + f"endpoints/{NAME}/(ping|health|version)", ScoringInfoHandler),
    ]
