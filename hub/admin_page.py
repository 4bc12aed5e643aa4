"""The admins' page of the hub, ``/hub/notebench/admin``: what runs now (servers with their profile
and GPUs, jobs, endpoints, GPU leases), usage per day as charts per user and per group, quotas
(editable) and the audit log. Every row that is someone's thing says whose it is.

What the hub knows itself (servers, their profiles, the GPU leases it shares with the executor)
is rendered here, server-side. What the executor knows (jobs, endpoints, quotas, usage, audit) the
page's script fetches from the executor's admin API, as the admin, with a token this handler mints
for the page: short-lived (``PAGE_TOKEN_SECONDS``), of the admin themselves, and scoped to the
executor only (``access:services!service=executor``: it cannot use the hub's API nor anyone's
server). Why a token rather than fetching server-side: the quota form PUTs and the audit and
usage views re-query with the admin's filters; proxying each of those through the hub would
repeat the executor's API (and its JSON errors, which the form shows at the field) in a second
place. The hub's cookie does not reach the executor (it is a separate OAuth client), so the page
needs some credential; a token minted per page view, only after the admin check, leaks nothing
to non-admins and expires by itself.
"""

from __future__ import annotations

from jupyterhub import orm
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.scopes import needs_scope
from jupyterhub.utils import url_path_join
from tornado import web

from notebench.hub.platform.gpus import GPUInventory
from notebench.hub.platform.profiles import Profiles

ADMIN_PAGE_PATH = "/notebench/admin"  # under the hub's prefix (/hub/)
PAGE_TOKEN_SECONDS = 3600
PAGE_TOKEN_SCOPES = ["access:services!service=executor"]
PAGE_TOKEN_NOTE = "notebench admin page"
SERVER_HOLDER = "server:"  # GPU lease holders: "server:<user>/<server name>", "job:<id>" (the executor's)


def server_profile(spawner) -> str:
    """The name of the profile a server was started with ('' if the spawner does not say)."""
    chosen = getattr(spawner, "chosen_profile", None)
    if callable(chosen):
        try:
            return chosen().name
        except Exception:  # an unknown profile (a config changed since): show what was asked
            pass
    options = spawner.user_options or {}
    if isinstance(options.get("user_options"), dict):  # JupyterHub 6's API shape
        options = options["user_options"]
    profile = options.get("profile")
    return profile if isinstance(profile, str) else ""


def lease_owner(holder: str) -> str | None:
    """Whose a lease is, when the holder says it (a server's); None for a job's (the page's
    script finds that job's owner in the executor's list)."""
    if holder.startswith(SERVER_HOLDER):
        return holder[len(SERVER_HOLDER):].partition("/")[0]
    return None


class AdminPageHandler(BaseHandler):
    """``GET /hub/notebench/admin``: anonymous → the login page; not an admin → 403."""

    @web.authenticated
    @needs_scope("admin-ui")
    async def get(self):
        user = self.current_user
        if not user.admin:
            # admin-ui may come from a custom role, but the executor's admin APIs answer hub admins only.
            raise web.HTTPError(403, "the Notebench admin page is for hub admins")
        leases, leases_note, leased_here = self._leases()
        token = user.new_api_token(expires_in=PAGE_TOKEN_SECONDS, scopes=PAGE_TOKEN_SCOPES, note=PAGE_TOKEN_NOTE)
        self.set_header("Cache-Control", "no-store")  # the page holds a token
        html = await self.render_template(
            "notebench-admin.html",
            servers=self._servers(leases, leased_here),
            leases=[{**lease, "owner": lease_owner(lease["holder"])} for lease in leases],
            leases_note=leases_note,
            executor_token=token,
            executor_api=url_path_join(self.base_url, "services/executor/api/"),  # base_url: the public prefix
            token_seconds=PAGE_TOKEN_SECONDS,
        )
        self.finish(html)

    def _leases(self) -> tuple[list[dict], str, bool]:
        """GPU leases (local mode keeps them in a table shared with the executor), a note when
        there are none to show, and whether this hub leases GPUs at all."""
        config = self.settings.get("config")
        if config is None or not config.get("GPUInventory", {}).get("db_url"):  # (reading, not adding, the section)
            return [], "GPU leases are not kept by this hub (on Kubernetes the scheduler places GPUs).", False
        try:
            leases = GPUInventory.shared(config).leases()
        except Exception as e:  # the page still shows the rest
            self.log.warning("Admin page: could not read the GPU leases: %s", e)
            return [], "The GPU leases could not be read now (see the hub's log).", True
        return leases, "" if leases else "No GPU is leased now.", True

    def _servers(self, leases: list[dict], leased_here: bool) -> list[dict]:
        """Servers running or starting: owner, profile, GPUs (the leased devices; where this hub
        leases none, e.g. on Kubernetes, the profile's count)."""
        profile_gpus = self._profile_gpus() if not leased_here else {}
        gpus_of: dict[str, list[str]] = {}
        for lease in leases:
            gpus_of.setdefault(lease["holder"], []).append(str(lease["device"]))
        servers = []
        # Every server the hub has, running or starting (as JupyterHub's own admin lists them).
        active = self.db.query(orm.Spawner).filter(orm.Spawner.server_id.isnot(None) | orm.Spawner.started.isnot(None))
        for orm_spawner in sorted(active, key=lambda s: (s.user.name, s.name)):
            user = self.users[orm_spawner.user]
            spawner = user.spawners[orm_spawner.name]
            if not (spawner.active or spawner.ready):
                continue
            profile = server_profile(spawner)
            if leased_here:
                gpus = ", ".join(gpus_of.get(f"{SERVER_HOLDER}{user.name}/{orm_spawner.name}", [])) or "none"
            else:
                gpus = f"{profile_gpus.get(profile, '?')} (the profile's)"
            servers.append({
                "owner": user.name,
                "name": orm_spawner.name,
                "profile": profile,
                "gpus": gpus,
                "status": "ready" if spawner.ready else (spawner.pending or "starting"),
                "started": orm_spawner.started,
                "last_activity": orm_spawner.last_activity,
            })
        return servers

    def _profile_gpus(self) -> dict[str, int]:
        """Each profile's GPUs (for servers whose GPUs are not leased here, e.g. on Kubernetes)."""
        try:
            return {p.name: p.gpus for p in Profiles(config=self.settings.get("config")).all()}
        except Exception:
            return {}
