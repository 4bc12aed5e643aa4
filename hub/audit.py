"""What the hub reports to the audit log (issue 17): logins, server spawns and stops, culls, tokens,
and changes to users (the admin flag), groups and group members.

The executor keeps the log; the hub reports through an outbox (notebench.hub.platform.audit_outbox:
kept on disk first, sent when the executor takes it) with the token of the ``audit-reporter``
service, whose role holds only the append scope. ``apply_hub_audit(c, ...)`` wires it in the hub's
configuration, with JupyterHub's own hooks:

- logins: the authenticator's ``post_auth_hook`` (after the allow checks; wrapped around one
  already configured);
- spawns: ``Spawner.pre_spawn_hook`` (the requester is the spawn's handler's user);
- stops, tokens, users and groups: the hub's request log (``tornado_settings["log_function"]``,
  JupyterHub's ``log_request`` still runs): each REST API request that changed something (2xx)
  is reported with the caller as the actor;
- culls: the idle culler's ``POST /hub/api/notebench/culls`` (notebench.hub.culling).

Nothing here may fail the action it records: a report that cannot be kept is logged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from notebench.hub.platform.audit_outbox import AuditOutbox

log = logging.getLogger("JupyterHub")

OUTBOX_FILE = "audit-outbox.sqlite"
MAX_BODY_BYTES = 64 * 1024  # request bodies read for details (the hub's API takes small ones)


class HubAudit:
    """The hub process's outbox, made (and its flusher started) at first use. One per hub
    configuration: the hooks hold it, and the hub's handlers find it in their settings
    (``settings["notebench_audit"]``)."""

    def __init__(self, path: str, url: str, token: str) -> None:
        self.settings = (path, url, token)
        self._outbox: AuditOutbox | None = None

    def __deepcopy__(self, memo):
        return self  # the configuration is copied as it loads: the copy is this same reporter

    @property
    def outbox(self) -> AuditOutbox:
        if self._outbox is None:
            self._outbox = AuditOutbox(*self.settings).start()
        return self._outbox

    def add(self, actor: str, action: str, target: str, owner: str | None = None, **detail) -> None:
        try:
            outbox = self.outbox
        except Exception:
            log.exception("the audit outbox cannot be opened: %s of %s by %s not recorded", action, target, actor)
            return
        outbox.add(actor, action, target, owner, **detail)


def of_handler(handler) -> HubAudit | None:
    """The reporter of the hub a handler of it runs in (None: this hub reports nothing)."""
    return handler.settings.get("notebench_audit")


def server_target(user_name: str, server_name: str) -> str:
    return f"server {user_name}/{server_name}"


# --- the hooks --------------------------------------------------------------------------------


def chain_post_auth_hook(audit: HubAudit, previous):
    """A post_auth_hook that reports the login after ``previous`` (if any) let it through."""

    async def post_auth_hook(authenticator, handler, authentication):
        if previous is not None:
            from jupyterhub.utils import maybe_future

            authentication = await maybe_future(previous(authenticator, handler, authentication))
        if authentication:
            name = authentication["name"]
            audit.add(name, "user.login", f"user {name}", name,
                          authenticator=type(authenticator).__name__, ip=handler.request.remote_ip)
        return authentication

    setattr(post_auth_hook, "chained", previous)  # what it runs first (tests look)
    return post_auth_hook


def chain_pre_spawn_hook(audit: HubAudit, previous):
    """A pre_spawn_hook that reports the spawn, by whoever asked for it, before ``previous``."""

    async def pre_spawn_hook(spawner):
        requester = getattr(getattr(spawner, "handler", None), "current_user", None)
        owner = spawner.user.name
        options = spawner.user_options if isinstance(spawner.user_options, dict) else {}
        if isinstance(options.get("user_options"), dict):  # JupyterHub 6's shape of a spawn request
            options = options["user_options"]
        profile = options.get("profile")
        audit.add(getattr(requester, "name", owner), "server.spawn", server_target(owner, spawner.name), owner,
                      profile=profile if isinstance(profile, str) else None)
        if previous is not None:
            from jupyterhub.utils import maybe_future

            await maybe_future(previous(spawner))

    setattr(pre_spawn_hook, "chained", previous)
    return pre_spawn_hook


def _body(handler) -> dict:
    body = handler.request.body or b""
    if len(body) > MAX_BODY_BYTES:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _names(value) -> list[str] | None:
    return [str(v)[:255] for v in value[:100]] if isinstance(value, list) else None


def api_change(handler) -> tuple[str, str, str | None, dict] | None:
    """(action, target, owner, detail) of a REST API request of the hub that changed something, or None."""
    from jupyterhub.apihandlers import groups, users

    method, args = handler.request.method, handler.path_args
    body = _body(handler)  # DELETE too: removing group members names them in the body
    if isinstance(handler, users.UserServerAPIHandler) and method == "DELETE":
        name, server = args[0], args[1] if len(args) > 1 else ""
        return "server.stop", server_target(name, server), name, {}
    if isinstance(handler, users.UserTokenListAPIHandler) and method == "POST":
        detail = {k: body.get(k) for k in ("note", "expires_in") if isinstance(body.get(k), (str, int))}
        return "token.create", f"tokens of {args[0]}", args[0], {**detail, "scopes": _names(body.get("scopes"))}
    if isinstance(handler, users.UserTokenAPIHandler) and method == "DELETE":
        return "token.delete", f"token {args[1]} of {args[0]}", args[0], {}
    if isinstance(handler, users.UserListAPIHandler) and method == "POST":
        return "user.create", "users", None, {"usernames": _names(body.get("usernames")), "admin": body.get("admin") is True}
    if isinstance(handler, users.UserAPIHandler) and method in ("POST", "PATCH", "DELETE"):
        action = {"POST": "user.create", "PATCH": "user.update", "DELETE": "user.delete"}[method]
        detail = {k: body[k] for k in ("name", "admin") if isinstance(body.get(k), (str, bool))}
        return action, f"user {args[0]}", args[0], detail
    if isinstance(handler, groups.GroupListAPIHandler) and method == "POST":
        return "permission.group_create", "groups", None, {"groups": _names(body.get("groups"))}
    if isinstance(handler, groups.GroupAPIHandler) and method in ("POST", "DELETE"):
        action = "permission.group_create" if method == "POST" else "permission.group_delete"
        return action, f"group {args[0]}", None, {"users": _names(body.get("users"))} if method == "POST" else {}
    if isinstance(handler, groups.GroupUsersAPIHandler) and method in ("POST", "DELETE"):
        change = "added" if method == "POST" else "removed"
        return "permission.group_members", f"group {args[0]}", None, {change: _names(body.get("users"))}
    if isinstance(handler, groups.GroupPropertiesAPIHandler) and method == "PUT":
        return "permission.group_update", f"group {args[0]}", None, {"properties": sorted(body)[:100]}
    return None


def report_api_change(handler) -> None:
    audit = of_handler(handler)
    if audit is None or handler.request.method in ("GET", "HEAD", "OPTIONS") or not 200 <= handler.get_status() < 300:
        return
    try:
        change = api_change(handler)
        if change is None:
            return
        caller = handler.current_user
        actor = getattr(caller, "name", None) or "unknown"
        action, target, owner, detail = change
        if getattr(caller, "kind", "user") == "service":
            detail["actor_kind"] = "service"
        audit.add(actor, action, target, owner, **detail)
    except Exception:
        log.exception("could not report %s %s to the audit log", handler.request.method, handler.request.path)


def log_request(handler) -> None:
    """JupyterHub's request log, then the audit report of a change the request made."""
    from jupyterhub.log import log_request as jupyterhub_log_request

    jupyterhub_log_request(handler)
    report_api_change(handler)


def apply_hub_audit(c, data_dir: str | Path, executor_api_url: str, token: str) -> None:
    """Report the hub's actions to the executor at ``executor_api_url`` (…/services/executor/api/audit)
    with ``token`` (the audit-reporter service's), through an outbox in ``data_dir``."""
    # (Config.get: a hook the configuration set, else None; never traitlets' placeholder.)
    audit = HubAudit(str(Path(data_dir) / OUTBOX_FILE), executor_api_url, token)
    c.Authenticator.post_auth_hook = chain_post_auth_hook(audit, c.Authenticator.get("post_auth_hook"))
    c.Spawner.pre_spawn_hook = chain_pre_spawn_hook(audit, c.Spawner.get("pre_spawn_hook"))
    settings = dict(c.JupyterHub.get("tornado_settings") or {})
    settings.update(log_function=log_request, notebench_audit=audit)
    c.JupyterHub.tornado_settings = settings
