"""Hub-side probe for bench_spawn.py, loaded INTO the hub through the bench's config file.

It changes nothing the product does unless ``BenchSpawner.fast_wait`` is set; it only records,
as JSON lines with wall-clock times (``time.time()``, comparable with the bench's clock):

- ``start``          NotebenchSpawner.start() entered
- ``process``        the server's process exists: forked by the warm process (ServerForker.spawn
                     returned) or, cold, LocalProcessSpawner.start() returned (profile, OS account,
                     GPU lease, cgroup, fork+setuid+exec done)
- ``popen``          NotebenchSpawner's own start() returned (it waits until the server answers)
- ``listening``      the server's port accepts connections (connect attempts every 20 ms)
- ``answered``       the server answered GET <base_url>api, the URL JupyterHub's ``_wait_up`` polls
- ``start_returned`` start() returned to JupyterHub
- ``hub_saw_up``     JupyterHub's own ``User._wait_up`` finished (its exponential-backoff polling)
- ``route_added``    the proxy route for /user/<name>/ was added

``fast_wait = True`` measures a proposed product change: start() itself waits (connect every
20 ms, then one GET that the server answers as soon as its event loop runs) before returning, so
JupyterHub's first ``_wait_up`` poll succeeds at once instead of after its backoff sleeps
(0.2, 0.4, 0.8, 1.6, 3.2, 5 s caps with full jitter, hard-coded in jupyterhub.utils).

The bench's config file does::

    import sys; sys.path.insert(0, "<bench/spawn>")
    from hub_probe import install; BenchSpawner = install("<events file>", fast_wait=...)
    c.JupyterHub.spawner_class = BenchSpawner
"""

from __future__ import annotations

import asyncio
import json
import time

import jupyterhub.proxy as jh_proxy
import jupyterhub.spawner as jh_spawner
import jupyterhub.user as jh_user
from jupyterhub.utils import url_path_join
from tornado.httpclient import AsyncHTTPClient

from notebench.hub.server_forker import ServerForker
from notebench.hub.spawner import NotebenchSpawner

_events_file = None


def _event(user: str, event: str, **extra) -> None:
    if _events_file is None:
        return
    with open(_events_file, "a") as f:
        f.write(json.dumps({"user": user, "event": event, "t": time.time(), **extra}) + "\n")


async def wait_until_up(spawner, ip: str, port: int, interval: float = 0.02) -> bool:
    """Connect every ``interval`` s until the server listens, then GET its api URL (the same
    URL JupyterHub waits on). jupyter_server binds its port as its event loop starts, so the GET
    is answered the moment the server can serve. False if the process died or http_timeout passed."""
    url = f"http://{ip}:{port}" + url_path_join(spawner.server.base_url, "api")
    deadline = time.monotonic() + spawner.http_timeout
    proc = spawner.proc
    listening_seen = False
    client = AsyncHTTPClient()
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            _reader, writer = await asyncio.open_connection(ip, port)
        except OSError:
            await asyncio.sleep(interval)
            continue
        writer.close()
        if not listening_seen:
            listening_seen = True
            _event(spawner.user.name, "listening")
        try:
            resp = await client.fetch(
                url, follow_redirects=False, raise_error=False, request_timeout=max(1.0, deadline - time.monotonic())
            )
        except Exception:
            await asyncio.sleep(interval)
            continue
        if resp.code < 500:
            _event(spawner.user.name, "answered", code=resp.code)
            return True
        await asyncio.sleep(interval)
    return False


class BenchSpawner(NotebenchSpawner):
    """NotebenchSpawner + timestamps; with ``fast_wait`` also the proposed fast readiness wait.

    ``per_user`` (the bench's --knobs mode) gives some users their own settings, so that several
    settings are compared interleaved in one hub, under the same machine noise:
    ``{"bench-k-fastwait": {"fast_wait": True, "cmd": [...] or None, "args": [...]}}``."""

    fast_wait = False
    per_user: dict = {}
    _observing = 0

    async def _observe(self, ip, port):
        BenchSpawner._observing += 1
        try:
            await wait_until_up(self, ip, port)
        finally:
            BenchSpawner._observing -= 1

    async def start(self):
        _event(self.user.name, "start")
        knobs = self.per_user.get(self.user.name, {})
        if knobs.get("cmd"):
            self.cmd = list(knobs["cmd"])
        if knobs.get("args"):
            self.args = list(knobs["args"])
        fast_wait = knobs.get("fast_wait", self.fast_wait)
        ip, port = await super().start()
        _event(self.user.name, "popen", pid=self.pid, port=port)
        if fast_wait:
            await wait_until_up(self, ip, port)
        elif BenchSpawner._observing < 2:
            # Only observe: JupyterHub's own _wait_up decides, as in the product. Not during a
            # burst of spawns (the concurrent phase), so the observer adds no load there.
            asyncio.ensure_future(self._observe(ip, port))
        _event(self.user.name, "start_returned")
        return ip, port


def install(events_file: str, fast_wait: bool = False, per_user: dict | None = None):
    """Patch the timestamp hooks in (idempotent) and return the spawner class to configure."""
    global _events_file
    _events_file = events_file
    BenchSpawner.fast_wait = bool(fast_wait)
    BenchSpawner.per_user = dict(per_user or {})

    if not getattr(jh_user.User._wait_up, "_bench", False):
        original_wait_up = jh_user.User._wait_up

        async def _wait_up(self, spawner):
            try:
                return await original_wait_up(self, spawner)
            finally:
                _event(self.name, "hub_saw_up")

        _wait_up._bench = True
        jh_user.User._wait_up = _wait_up

    if not getattr(jh_spawner.LocalProcessSpawner.start, "_bench", False):
        original_start = jh_spawner.LocalProcessSpawner.start

        async def cold_start(self):
            result = await original_start(self)
            _event(self.user.name, "process", how="cold")
            return result

        cold_start._bench = True
        jh_spawner.LocalProcessSpawner.start = cold_start

    if not getattr(ServerForker.spawn, "_bench", False):
        original_spawn = ServerForker.spawn

        async def forked(self, request):
            pid = await original_spawn(self, request)
            _event(request["env"]["JUPYTERHUB_USER"], "process", how="forked")
            return pid

        forked._bench = True
        ServerForker.spawn = forked

    if not getattr(jh_proxy.Proxy.add_user, "_bench", False):
        original_add_user = jh_proxy.Proxy.add_user

        async def add_user(self, user, server_name="", client=None):
            result = await original_add_user(self, user, server_name, client)
            _event(user.name, "route_added")
            return result

        add_user._bench = True
        jh_proxy.Proxy.add_user = add_user

    return BenchSpawner
