"""The user servers running now, as the hub lists them (``GET /hub/api/users?state=active``).

Used by the usage meter (executor/usage.py) and meant for quota checks too. The executor's hub
role grants what this needs (hub/config.py ``add_executor_service``): ``list:users`` to list the
users, ``read:servers`` for their servers (each with ``started`` and ``user_options``, the profile
chosen), ``read:users:groups`` for their groups. A hub that cannot be asked raises
``HubUnavailable``: callers keep what they knew and ask again later.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse

PAGINATION = "application/jupyterhub-pagination+json"
PAGE = 200  # JupyterHub's largest page


class HubUnavailable(Exception):
    """The hub did not answer the listing (down, restarting, or an error): nothing is known now."""


@dataclass(frozen=True)
class RunningServer:
    user: str
    name: str  # "" for the user's default server
    profile: str  # as the user chose it ("" if they chose none: the default profile)
    started: datetime | None  # when its spawn began, as the hub recorded it
    groups: tuple[str, ...] = ()
    ready: bool = False  # False while it is still starting (or stopping)

    @property
    def ref(self) -> str:
        return f"server {self.user}/{self.name}"


def profile_of(user_options) -> str:
    """The profile in a server's ``user_options`` (hub/spawner.py ``chosen_profile``: JupyterHub 6's
    nested {"user_options": {...}} shape is read too)."""
    options = user_options if isinstance(user_options, dict) else {}
    if isinstance(options.get("user_options"), dict):
        options = options["user_options"]
    profile = options.get("profile")
    return profile if isinstance(profile, str) else ""


def _moment(text) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_users(users: list) -> list[RunningServer]:
    """The servers in a page of the hub's user models."""
    servers = []
    for user in users:
        for name, server in (user.get("servers") or {}).items():
            servers.append(RunningServer(
                user=user["name"], name=name, profile=profile_of(server.get("user_options")),
                started=_moment(server.get("started")), groups=tuple(user.get("groups") or ()),
                ready=bool(server.get("ready"))))
    return servers


async def _get(app, path: str) -> HTTPResponse:
    tokens = app.tokens
    headers = {"Authorization": f"token {tokens.service_token}", "Accept": PAGINATION}
    try:
        return await AsyncHTTPClient().fetch(f"{tokens.api_url}{path}", headers=headers, raise_error=False,
                                             request_timeout=30)
    except (OSError, HTTPClientError, asyncio.TimeoutError) as e:  # refused, reset, timed out
        raise HubUnavailable(f"GET {path}: {e}") from e


async def user_now(app, user: str) -> tuple[list[str], list[RunningServer]]:
    """A user's groups and active servers as the hub has them now (none for a user it no longer knows)."""
    response = await _get(app, f"/users/{quote(user, safe='')}")
    if response.code == 404:
        return [], []
    if response.code != 200:
        raise HubUnavailable(f"GET /users/{user} answered {response.code}")
    try:
        model = json.loads(response.body)
        return list(model.get("groups") or []), parse_users([model])
    except (ValueError, AttributeError, KeyError, TypeError) as e:
        raise HubUnavailable(f"GET /users/{user} answered what is not a user: {e}") from e


async def groups_of(app, user: str) -> list[str]:
    """A user's groups as the hub has them now (none for a user it no longer knows)."""
    return (await user_now(app, user))[0]


async def running_servers(app) -> list[RunningServer]:
    """Every active server (starting, running or stopping) of every user, from the hub."""
    servers: list[RunningServer] = []
    offset = 0
    while True:
        response = await _get(app, f"/users?state=active&offset={offset}&limit={PAGE}")
        if response.code != 200:
            raise HubUnavailable(f"GET /users answered {response.code}")
        try:
            page = json.loads(response.body)
            servers += parse_users(page["items"])
            following = (page.get("_pagination") or {}).get("next")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise HubUnavailable(f"GET /users answered what is not a page of users: {e}") from e
        if not following:
            return servers
        offset = int(following["offset"])
