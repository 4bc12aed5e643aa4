"""Idle culling that users can see: why their server was stopped, and a notice before it is.

jupyterhub-idle-culler stops a server through the hub API when the hub's ``last_activity`` of
that server is older than the timeout (it checks every ``cull_every`` seconds). The hub's
``last_activity`` is what the server itself reports (jupyterhub-singleuser, every
``activity_interval`` seconds); what counts as activity there is decided in
notebench.hub.singleuser. The proxy's own record of traffic is left out (``NotebenchProxy``):
an open JupyterLab tab polls its server every few seconds, and that alone must not keep a server
(and its GPU) forever.

Why a server was stopped is kept with the server itself, in its spawner's state in the hub
database (``CulledRecord``): the culler runs as ``python -m notebench.hub.culling``, which is
jupyterhub-idle-culler with an arbiter that, when it decides to cull, first tells the hub
(``POST /hub/api/notebench/culls``, a scope only the culler's role holds). The hub home page
shows it until the server is started again.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.proxy import ConfigurableHTTPProxy
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from notebench.hub.audit import of_handler

# Held by the idle culler's role only: recording why a server is stopped.
CULL_RECORD_SCOPE = "custom:notebench-culls:record"
CULL_RECORD_PATH = "/api/notebench/culls"  # under the hub's prefix (/hub/)


def describe_duration(seconds: float) -> str:
    """'45 seconds', '1 minute', '60 minutes', '3 hours' (as people say how long they were away)."""
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = seconds // 60
    if minutes < 180:
        return f"{minutes} minutes"
    return f"{minutes // 60} hours"


class CulledRecord:
    """Spawner mixin: ``culled`` ({"at": ISO time, "inactive_seconds": n}) while a culled server
    stays stopped. Kept in the spawner's state (the hub database): JupyterHub clears the state of
    a stopped server through ``clear_state``, which leaves this alone; ``start`` forgets it."""

    culled: dict | None = None

    def get_state(self):
        state = super().get_state()
        if self.culled:
            state["culled"] = self.culled
        return state

    def load_state(self, state):
        super().load_state(state)
        self.culled = state.get("culled")

    def forget_culled(self) -> None:
        self.culled = None

    @property
    def cull_notice(self) -> dict | None:
        """What the home page says about the last cull, or None."""
        if not self.culled:
            return None
        at = datetime.fromisoformat(self.culled["at"])
        return {
            "at": at.isoformat(),
            "at_text": at.strftime("%H:%M UTC"),
            "idle_text": describe_duration(self.culled["inactive_seconds"]),
        }


class CullRecordHandler(APIHandler):
    """``POST /hub/api/notebench/culls`` {"server": "<user>/<server name>", "inactive_seconds": n}:
    the culler records why it is about to stop that server."""

    async def post(self):
        if CULL_RECORD_SCOPE not in self.parsed_scopes:
            raise web.HTTPError(403, f"recording a cull needs the {CULL_RECORD_SCOPE} scope (the idle culler's)")
        body = self.get_json_body()
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        full_name, inactive = body.get("server"), body.get("inactive_seconds")
        if not isinstance(full_name, str) or "/" not in full_name:
            raise web.HTTPError(400, "server must be '<user>/<server name>'")
        if isinstance(inactive, bool) or not isinstance(inactive, (int, float)) or not 0 <= inactive < 10**9:
            raise web.HTTPError(400, "inactive_seconds must be a number of seconds")
        user_name, _, server_name = full_name.partition("/")
        user = self.find_user(user_name)
        if user is None or server_name not in user.orm_user.orm_spawners:
            raise web.HTTPError(404, f"no server {full_name}")
        spawner = user.spawners[server_name]
        if not isinstance(spawner, CulledRecord):
            raise web.HTTPError(409, f"{type(spawner).__name__} keeps no cull records")
        spawner.culled = {"at": datetime.now(timezone.utc).isoformat(), "inactive_seconds": int(inactive)}
        spawner.orm_spawner.state = spawner.get_state()
        self.db.commit()
        audit = of_handler(self)
        if audit is not None:
            audit.add(self.current_user.name, "server.cull", f"server {full_name}", user_name, inactive_seconds=int(inactive))
        self.set_status(201)
        self.finish(json.dumps({"server": full_name, **spawner.culled}))


class NotebenchProxy(ConfigurableHTTPProxy):
    """configurable-http-proxy, minus its record of traffic as activity: the hub then takes a
    server's activity from the server's own reports only (see the module's docstring)."""

    async def get_all_routes(self, client=None):
        routes = await super().get_all_routes(client)
        for route in routes.values():
            route["data"].pop("last_activity", None)
        return routes


# --- the culler's side (runs in the idle-culler service's process) ----------------------------


async def record_then_cull(*, inactive, inactive_limit, server, **_):
    """jupyterhub-idle-culler's arbiter: the classic check; before a cull, the hub is told why."""
    if inactive.total_seconds() < inactive_limit:
        return False
    request = HTTPRequest(
        os.environ["JUPYTERHUB_API_URL"].rstrip("/") + "/notebench/culls",
        method="POST",
        headers={"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}", "Content-Type": "application/json"},
        body=json.dumps({"server": server["full_name"], "inactive_seconds": int(inactive.total_seconds())}),
        request_timeout=30,
    )
    try:
        await AsyncHTTPClient().fetch(request)
    except Exception as e:  # the cull goes on: a missing reason is better than a server kept forever
        print(f"notebench: could not record the cull of {server.get('full_name')}: {e}", flush=True)
    return True


def main() -> None:
    from jupyterhub_idle_culler import IdleCuller
    from traitlets.config import Config

    config = Config()
    config.IdleCuller.cull_arbiter_hook = record_then_cull
    IdleCuller.launch_instance(config=config)


if __name__ == "__main__":
    main()
