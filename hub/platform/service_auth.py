"""How Notebench's services (the executor's API, the MLflow front) know their caller: one rule, on
JupyterHub's own client (jupyterhub.services.auth).

Import-light: the MLflow front reads it before it starts MLflow.
"""

from __future__ import annotations

from typing import NamedTuple

# HubAuth keeps the hub's answer about a token (or OAuth cookie) this long, so a token revoked at
# the hub still works on a service until its cached answer expires. JupyterHub's default is 300 s;
# the executor (its API and invocations), the MLflow front and users' servers use this bound
# instead, at the cost of one more hub request per token and period.
TOKEN_CACHE_SECONDS = 60


class Caller(NamedTuple):
    """``outcome`` is "allowed" (the hub vouches for the token or cookie, and it may use this
    service: access:services), "forbidden" (known, without that access), "login" (nobody, from a
    browser navigating here: send it through the hub's login) or "anonymous" (nobody)."""

    outcome: str
    model: dict | None


def browser_navigation(request) -> bool:
    """A browser loading a page (not a script's fetch, nor an API client)."""
    if request.method not in ("GET", "HEAD"):
        return False
    mode = request.headers.get("Sec-Fetch-Mode")
    if mode and mode != "navigate":
        return False
    return "text/html" in request.headers.get("Accept", "")


async def identify(handler) -> Caller:
    """Who calls a ``HubAuthenticated`` handler, as the hub says. Raises what the hub client raises
    when the hub cannot be asked."""
    from jupyterhub.services.auth import UserNotAllowed
    from tornado.web import HTTPError

    model = await handler.hub_auth.get_user(handler, sync=False)
    if not model:
        return Caller("login" if browser_navigation(handler.request) else "anonymous", None)
    try:
        allowed = handler.check_hub_user(model)
    except (UserNotAllowed, HTTPError):  # e.g. a token without the access:services scope
        return Caller("forbidden", model)
    return Caller("allowed", allowed) if allowed else Caller("forbidden", model)
