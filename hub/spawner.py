"""The local spawner: one JupyterLab process per user, as that user's own OS account.

Like The Littlest JupyterHub: when the hub runs as root every JupyterHub user gets an OS
account (``nb-<name>``) with a 0700 home, and their server runs as that account. When the hub
runs as an ordinary user there is no isolation: every server runs as that user, with its
home under the data dir (said loudly at start and in the README).

Profiles choose CPU/memory limits (cgroup v2 where available) and a number of GPUs, leased
from the GPU inventory the executor shares and handed over as CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import asyncio
import html
import os
import sys
import time

from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Integer, Unicode, default

from notebench.hub.platform.accounts import AccountClash, UserAccounts
from notebench.hub.platform.cgroups import CgroupLimits
from notebench.hub.platform.environment import workload_env
from notebench.hub.platform.gpus import GPUInventory, NoFreeGPUs
from notebench.hub.platform.profiles import ProfileError, Profiles
from notebench.hub.singleuser import singleuser_args


class NotebenchSpawner(LocalProcessSpawner):
    """LocalProcessSpawner with profiles, GPU leases, OS-account isolation and limits."""

    mlflow_url = Unicode(help="MLflow tracking URI handed to servers as MLFLOW_TRACKING_URI.").tag(config=True)
    notebench_url = Unicode(
        help="The hub's base URL handed to servers as NOTEBENCH_URL (the CLI and the JupyterLab extension use it)."
    ).tag(config=True)
    kernel_cull_idle_timeout = Integer(3600, help="Seconds before an idle kernel is culled (0: never).").tag(
        config=True
    )
    kernel_cull_interval = Integer(300, help="Seconds between checks for idle kernels.").tag(config=True)
    activity_interval = Integer(
        300, help="Seconds between the server's activity reports to the hub (busy kernels count as activity)."
    ).tag(config=True)

    @default("cmd")
    def _cmd_default(self):
        # Absolute, from this environment: the hub's PATH may hold directories users cannot read.
        return [os.path.join(sys.prefix, "bin", "jupyterhub-singleuser")]

    @default("default_url")
    def _default_url(self):
        return "/lab"

    @default("options_form")
    def _options_form_default(self):
        return self._render_options_form

    # --- profiles -----------------------------------------------------------------------------

    @property
    def profiles(self) -> Profiles:
        return Profiles(parent=self)

    @property
    def gpu_inventory(self) -> GPUInventory:
        return GPUInventory.shared(self.config)

    @property
    def lease_holder(self) -> str:
        return f"server:{self.user.name}/{self.name}"

    def _render_options_form(self, spawner) -> str:
        choices = []
        for i, p in enumerate(self.profiles.all()):
            checked = " checked" if (p.default or (i == 0 and not any(q.default for q in self.profiles.all()))) else ""
            choices.append(
                f'<label class="list-group-item"><input type="radio" name="profile" value="{html.escape(p.name)}"{checked}>'
                f" <strong>{html.escape(p.display_name)}</strong> <span class=\"text-muted\">{html.escape(p.description)}</span></label>"
            )
        return '<div class="list-group">' + "".join(choices) + "</div>"

    def options_from_form(self, formdata) -> dict:
        return {"profile": formdata.get("profile", [""])[0]}

    def chosen_profile(self):
        options = self.user_options or {}
        if isinstance(options.get("user_options"), dict):
            # JupyterHub 6's API shape ({"user_options": {...}}) on JupyterHub 5, which takes the body as is.
            options = options["user_options"]
        try:
            return self.profiles.get(options.get("profile"))
        except ProfileError as e:
            raise web.HTTPError(400, str(e), reason=str(e))

    # --- where and as whom ----------------------------------------------------------------------

    @property
    def accounts(self) -> UserAccounts:
        return UserAccounts(parent=self)

    @property
    def os_user(self) -> str:
        return self.accounts.os_user(self.user.name)

    def make_preexec_fn(self, name):
        cgroup = getattr(self, "_cgroup", None)
        return self.accounts.preexec(self.user.name, before=(lambda: CgroupLimits.enter(cgroup)) if cgroup else None)

    def user_env(self, env):
        env.update(self.accounts.env(self.user.name))
        return env

    def get_env(self):
        env = super().get_env()
        env["JUPYTERHUB_ACTIVITY_INTERVAL"] = str(self.activity_interval)
        env.update(workload_env(getattr(self, "_profile", None), gpus=getattr(self, "_gpus", None) or [],
                                mlflow_url=self.mlflow_url, mlflow_token=self.api_token,
                                notebench_url=self.notebench_url))
        return env

    def get_args(self):
        args = super().get_args() + singleuser_args(self.kernel_cull_idle_timeout, self.kernel_cull_interval)
        if os.geteuid() == 0 and not self.accounts.isolate_users:
            args.append("--allow-root")
        return args

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self):
        profile = self._profile = self.chosen_profile()
        self.cpu_limit = profile.cpu_limit
        self.mem_limit = profile.mem_limit
        try:
            self.accounts.prepare(self.user.name)
        except AccountClash as e:  # "%s": a hub name may hold a '%'
            raise web.HTTPError(409, "%s", str(e), reason="OS account clash")
        try:
            self._gpus = self.gpu_inventory.acquire(self.lease_holder, profile.gpus)
        except NoFreeGPUs as e:
            message = f"Cannot start a {profile.name!r} server: {e}"
            raise web.HTTPError(409, message, reason=message)
        self._cgroup = None
        cgroups = CgroupLimits()
        ok, why = cgroups.available()
        if ok and (profile.cpu_limit or profile.mem_limit):
            self._cgroup = cgroups.create(self.os_user, profile.cpu_limit, profile.mem_limit)
        elif profile.cpu_limit or profile.mem_limit:
            self.log.warning("Limits of profile %s not enforced for %s: %s", profile.name, self.user.name, why)
        try:
            result = await super().start()
        except Exception:
            self.gpu_inventory.release(self.lease_holder)
            raise
        self.gpu_inventory.set_pid(self.lease_holder, self.pid)
        await self._wait_until_up(*result)
        return result

    async def _wait_until_up(self, ip: str, port: int, interval: float = 0.02) -> None:
        """Return as soon as the server answers. JupyterHub's own wait backs off (up to seconds
        between polls); waiting here first lets its check succeed at once (bench/spawn: ~1.3 s saved)."""
        url = f"http://{ip}:{port}" + url_path_join(self.server.base_url, "api")
        deadline = time.monotonic() + self.http_timeout
        client = AsyncHTTPClient()
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                return  # it died: JupyterHub's own check reports that
            try:
                _, writer = await asyncio.open_connection(ip, port)
                writer.close()
                response = await client.fetch(url, follow_redirects=False, raise_error=False, request_timeout=5)
                if response.code < 500:
                    return
            except (OSError, asyncio.TimeoutError, HTTPClientError):
                pass
            await asyncio.sleep(interval)

    def _release(self):
        self.gpu_inventory.release(self.lease_holder)
        try:
            CgroupLimits().remove(self.os_user)
        except AccountClash:  # refused at start: no cgroup of theirs (that account's is not theirs)
            pass

    async def poll(self):
        status = await super().poll()
        if status is not None:
            self._release()
        return status

    async def stop(self, now=False):
        await super().stop(now=now)
        self._release()
