"""The service's own paths: what a job may ask for (profiles, kernels), the OpenAPI document, health,
Prometheus metrics, and the pages a person sees in a browser (the service's root, not found)."""

from __future__ import annotations

import asyncio
import html
import json
import os

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado import web
from tornado.httpclient import AsyncHTTPClient

from notebench.executor.api.base import APIHandler, NotFoundHandler
from notebench.executor.errors import NotebenchError
from notebench.executor.schemas import ProfileInfo, ProfilesResponse
from notebench.hub.platform.service_auth import browser_navigation


class ProfilesHandler(APIHandler):
    """What a job may ask for: the hub's profiles and the kernels installed (the panel's pickers)."""

    async def get(self):
        default = self.app.profiles.get(None).name
        profiles = [
            ProfileInfo(name=p.name, display_name=p.display_name, description=p.description, gpus=p.gpus,
                        cpu_limit=p.cpu_limit, mem_limit=p.mem_limit, default=p.name == default)
            for p in self.app.profiles.all()
        ]
        self.write_json(ProfilesResponse(profiles=profiles, kernels=sorted(self.app.kernel_names())))
        # Asked for by the job form: a job is likely to follow, let it start on a warm kernel.
        self.app.dispatcher.tasks.start(self.app.dispatcher.prewarm(self.user_name))


class OpenAPIHandler(APIHandler):
    async def get(self):
        from notebench.executor.api.openapi import spec

        self.write_json(spec(self.settings["prefix"]))


class HealthHandler(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": "ok"}))


def _page(title: str, body: str) -> str:
    """A plain HTML page for people who open the service in a browser (the Services menu)."""
    hub = html.escape(os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} — Notebench</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;line-height:1.5;color:#1b1b1b}}
code{{background:#f2f2f2;padding:0 .2em}}a{{color:#0b57d0}}</style></head>
<body><main><h1>{html.escape(title)}</h1>{body}
<p><a href="{hub}user-redirect/lab">Open JupyterLab</a> · <a href="{hub}home">Hub home</a></p></main></body></html>"""


class RootHandler(APIHandler):
    """``/services/executor/``: what this service is, for a person (HTML) or a program (JSON)."""

    async def get(self):
        prefix = self.settings["prefix"]
        if not browser_navigation(self.request):
            self.write_json({"service": "executor", "api": prefix + "api/", "openapi": prefix + "api/openapi.json"})
            return
        api = html.escape(prefix + "api/")
        body = (
            "<p>Notebench's executor runs notebooks as jobs (batch, scheduled or distributed on Dask) and serves "
            "registered MLflow models behind endpoints.</p>"
            "<p>In JupyterLab, use the <strong>Jobs</strong> panel (or <em>Run as job</em> on a notebook) and the "
            "<strong>Models</strong> panel. Programs use the REST API at <code>" + api + "</code> with a JupyterHub "
            "API token: see its <a href=\"" + api + "openapi.json\">OpenAPI description</a>.</p>"
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(_page("Notebench executor", body))


class PageNotFoundHandler(NotFoundHandler):
    """404 as JSON for programs, and as a page with a way on for a person in a browser."""

    def write_error(self, status_code, **kwargs):
        if status_code != 404 or not browser_navigation(self.request) or self._finished:
            return super().write_error(status_code, **kwargs)
        prefix = html.escape(self.settings["prefix"])
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(_page("Not found", f"<p>There is nothing at <code>{html.escape(self.request.path)}</code>. "
                                       f"The executor's page is <a href=\"{prefix}\">{prefix}</a>.</p>"))


class MetricsHandler(APIHandler):
    """``/services/executor/metrics``: Prometheus' text format (executor/metrics.py), for tokens
    with the ``read:metrics`` scope (admins have it; a scraper is a service with a role holding it
    and access to this service), as JupyterHub's /hub/metrics asks."""

    services_may_call = True

    async def get(self):
        if "read:metrics" not in self.current_user.get("scopes", ()):
            raise NotebenchError(403, None, "reading metrics needs the read:metrics scope")
        metrics = self.app.metrics
        if self.app.mlflow_url:
            metrics.mlflow_up.set(1 if await mlflow_answers(self.app.mlflow_url) else 0)
        body = await asyncio.to_thread(generate_latest, metrics.registry)  # reads the store
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(body)


async def mlflow_answers(mlflow_url: str) -> bool:
    """Whether the MLflow service answers its (anonymous) health route within a few seconds."""
    response = await AsyncHTTPClient().fetch(f"{mlflow_url.rstrip('/')}/health", request_timeout=5,
                                             connect_timeout=2, raise_error=False)
    return response.code == 200
