"""Quotas at spawn (issue 17): a server whose profile would take its user past their ``gpus``, ``cpu``
or ``memory`` quota is refused (403) with the quota, its limit and the current use in the message.

The executor keeps the quotas and counts what each user holds (their jobs, Dask workers, scoring
servers and servers: executor/quotas.py); the spawner asks it, with the server's own token (the
user's credentials, scope access:services), before it takes anything. An executor that does not
answer delays the spawn (retried up to ``quota_wait_seconds``); after that the server starts
unchecked, with a warning in the hub's log: a quota service that is down never locks users out of
their notebooks.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Float, Unicode
from traitlets.config import LoggingConfigurable

from notebench.hub.platform.profiles import Profile

HELD_BY_SERVERS = ("gpus", "cpu", "memory")
UNITS = {"gpus": "GPU(s)", "cpu": "CPU core(s)", "memory": "GiB of memory"}


class SpawnQuotas(LoggingConfigurable):
    """Spawner mixin (configurable, so its settings are traits of the spawner): ``await self.check_quota(profile)`` before taking any resource."""

    executor_url = Unicode(
        "", help="The executor's URL as the hub reaches it (its API under /services/executor/api/); '': no quota checks."
    ).tag(config=True)
    # What the spawner it is mixed into has (annotations only, for the type checker).
    user: Any
    name: str
    api_token: str

    quota_wait_seconds = Float(60.0, help="How long a spawn waits for an executor that does not answer.").tag(config=True)

    async def check_quota(self, profile: Profile) -> None:
        if not self.executor_url:
            return
        quota = await self._ask_executor()
        if quota is None:
            self.log.warning("Quotas of %s not checked for this spawn: the executor did not answer for %.0f s",
                             self.user.name, self.quota_wait_seconds)
            return
        cpu, memory, gpus = profile.reserved()
        wanted = {"gpus": gpus, "cpu": cpu, "memory": memory / 2**30}
        used_today, daily = (quota.get("usage") or {}).get("gpu_hours_per_day", 0), quota.get("gpu_hours_per_day")
        if gpus and daily is not None and used_today >= daily:
            message = (f"Cannot start a {profile.name!r} server: your GPUs were in use {used_today:.2f} hours in the "
                       f"last 24 hours (quota gpu_hours_per_day, limit {daily:g}, current {used_today:.2f}).")
            raise web.HTTPError(403, "%s", message, reason=message)
        for name in HELD_BY_SERVERS:
            limit, held = quota.get(name), (quota.get("usage") or {}).get(name, 0)
            if wanted[name] and limit is not None and held + wanted[name] > limit:
                message = (f"Cannot start a {profile.name!r} server: it needs {wanted[name]:g} {UNITS[name]}; you hold "
                           f"{held:g} of your quota of {limit:g} (quota {name}, limit {limit:g}, current {held:g}). "
                           "Stop a server, job or endpoint first.")
                raise web.HTTPError(403, "%s", message, reason=message)

    async def _ask_executor(self) -> dict | None:
        # server=: this server is listed by the hub already (pending): the executor leaves it out.
        url = (f"{self.executor_url.rstrip('/')}/services/executor/api/quotas/users/{quote(self.user.name, safe='')}"
               f"?server={quote(self.name, safe='')}")
        deadline, wait = time.monotonic() + self.quota_wait_seconds, 0.5
        while True:
            try:
                response = await AsyncHTTPClient().fetch(url, headers={"Authorization": f"token {self.api_token}"},
                                                         request_timeout=10)
                return json.loads(response.body)
            except (HTTPClientError, OSError, asyncio.TimeoutError) as e:
                code = getattr(e, "code", 599)
                if code not in (502, 503, 504, 599):
                    raise web.HTTPError(500, "%s", f"the quota check failed ({code})") from e
            if time.monotonic() + wait > deadline:
                return None
            await asyncio.sleep(wait)
            wait = min(wait * 2, 10.0)
