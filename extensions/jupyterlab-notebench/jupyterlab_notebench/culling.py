"""What JupyterLab's notices about idle culling need: when this server will be stopped for
inactivity, and which idle kernels were stopped.

The hub's idle culler stops a server when the hub's ``last_activity`` of it is older than
``NOTEBENCH_CULL_IDLE_TIMEOUT`` seconds (checked every ``NOTEBENCH_CULL_EVERY``); the spawner
hands these settings, and the notice's lead time ``NOTEBENCH_CULL_NOTICE_SECONDS``, to the server.
The hub knows this server's activity from the server's own reports (notebench.hub.singleuser
says what counts), sent every few minutes: while a notice is due, newer activity is reported at
once, so working on makes the notice go away.

- ``GET  /notebench/culling``  the state: {"server": {...} or null when servers are not culled,
  "kernels": {"timeout_seconds"}, "culled_kernels": [...]}. Reading it is not activity.
- ``POST /notebench/culling``  "keep my server": counts as activity, reported to the hub at once.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

# Culled kernels remembered for the notice (the newest).
MAX_CULLED_KERNELS = 20


def _env_seconds(name: str) -> int:
    try:
        return max(0, int(os.environ.get(name, "0")))
    except ValueError:
        return 0


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


class Hub:
    """This server's own view of the hub, with the server's token."""

    def __init__(self):
        self.api_url = os.environ.get("JUPYTERHUB_API_URL", "").rstrip("/")
        self.token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        self.user = os.environ.get("JUPYTERHUB_USER", "")
        self.server_name = os.environ.get("JUPYTERHUB_SERVER_NAME", "")

    async def _fetch(self, path: str, method: str = "GET", body: dict | None = None):
        request = HTTPRequest(
            self.api_url + path,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            body=json.dumps(body) if body is not None else None,
            request_timeout=20,
        )
        return await AsyncHTTPClient().fetch(request)

    async def last_activity(self) -> datetime | None:
        """The hub's last activity of this server: what the idle culler decides on."""
        response = await self._fetch(f"/users/{quote(self.user, safe='')}")
        server = json.loads(response.body).get("servers", {}).get(self.server_name) or {}
        return _parse(server.get("last_activity"))

    async def report_activity(self, at: datetime) -> None:
        stamp = at.isoformat().replace("+00:00", "Z")
        await self._fetch(
            f"/users/{quote(self.user, safe='')}/activity",
            "POST",
            {"servers": {self.server_name: {"last_activity": stamp}}, "last_activity": stamp},
        )


class CullingHandler:
    """Mixed into the extension's handler base (handlers.NotebenchHandler) in setup_culling."""

    # Reading when the server will be culled must not itself count as activity.
    _track_activity = False

    @property
    def hub(self) -> Hub:
        return self.settings["notebench_hub"]

    async def state(self, report_if_due: bool = True) -> dict:
        timeout = _env_seconds("NOTEBENCH_CULL_IDLE_TIMEOUT")
        kernels = {"timeout_seconds": int(self.kernel_manager.cull_idle_timeout or 0)}
        culled = list(self.settings["notebench_culled_kernels"])
        if not timeout:
            return {"server": None, "kernels": kernels, "culled_kernels": culled}
        every = _env_seconds("NOTEBENCH_CULL_EVERY")
        notice = min(_env_seconds("NOTEBENCH_CULL_NOTICE_SECONDS"), timeout)
        now = _now()
        local = self.serverapp.web_app.last_activity()
        try:
            last = await self.hub.last_activity() or local
        except Exception as e:  # the hub restarting: this server's own view is the best there is
            self.log.warning("notebench: could not read this server's activity from the hub: %s", e)
            last = local
        cull_in = (last + timedelta(seconds=timeout) - now).total_seconds()
        if report_if_due and cull_in <= notice and local > last:
            # Worked on since the hub last heard: tell it now, not at the next periodic report.
            await self.hub.report_activity(local)
            last = local
            cull_in = (last + timedelta(seconds=timeout) - now).total_seconds()
        server = {
            "timeout_seconds": timeout,
            "every_seconds": every,
            "notice_seconds": notice,
            "idle_seconds": max(0, int((now - last).total_seconds())),
            # The culler stops it at its first check after this (within every_seconds).
            "cull_in_seconds": max(0, int(cull_in)),
        }
        return {"server": server, "kernels": kernels, "culled_kernels": culled}


def make_handler(base: type) -> type:
    class Handler(CullingHandler, base):
        @web.authenticated
        @authorized
        async def get(self):
            self.reply(await self.state())

        @web.authenticated
        @authorized
        async def post(self):
            now = _now()
            self.settings["changes_last_activity"] = now  # as notebench.hub.singleuser counts a change
            try:
                await self.hub.report_activity(now)
            except Exception as e:
                raise web.HTTPError(502, f"could not tell the hub: {e}")
            self.reply(await self.state(report_if_due=False))

    return Handler


def record_kernel_culls(kernel_manager, session_manager, culled: list) -> None:
    """Remember the kernels the kernel manager culls for inactivity (id, notebook, when, idle
    time), so that JupyterLab can say so; the newest MAX_CULLED_KERNELS."""
    cull_if_idle = kernel_manager.cull_kernel_if_idle

    async def cull_and_record(kernel_id):
        kernel = kernel_manager._kernels.get(kernel_id)
        last = getattr(kernel, "last_activity", None)
        timeout = kernel_manager.cull_idle_timeout
        path = None
        if last is not None and timeout and _now() - last > timedelta(seconds=timeout):
            try:
                session = await session_manager.get_session(kernel_id=kernel_id)
                path = session.get("path")
            except Exception:  # a kernel of no session (started through the API)
                path = None
        await cull_if_idle(kernel_id)
        if last is not None and kernel_id not in kernel_manager:
            culled.append({
                "id": kernel_id,
                "name": getattr(kernel, "kernel_name", ""),
                "path": path,
                "culled_at": _now().isoformat(),
                "idle_seconds": int((_now() - last).total_seconds()),
            })
            del culled[:-MAX_CULLED_KERNELS]

    kernel_manager.cull_kernel_if_idle = cull_and_record


def setup_culling(web_app, base: type, url: str) -> list:
    """The route of the culling API (for setup_handlers), and the record of culled kernels."""
    settings = web_app.settings
    settings["notebench_hub"] = Hub()
    settings["notebench_culled_kernels"] = []
    if settings.get("kernel_manager") is not None and settings.get("session_manager") is not None:
        record_kernel_culls(settings["kernel_manager"], settings["session_manager"], settings["notebench_culled_kernels"])
    return [(url, make_handler(base))]
