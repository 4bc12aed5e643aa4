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
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import random_port, url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Bool, Integer, Unicode, default

from notebench.hub.culling import CulledRecord
from notebench.hub.platform.accounts import AccountClash, UserAccounts
from notebench.hub.platform.cgroups import CgroupLimits
from notebench.hub.platform.environment import workload_env
from notebench.hub.platform.gpus import GPUInventory, NoFreeGPUs
from notebench.hub.platform.profiles import ProfileError, Profiles
from notebench.hub.server_forker import ForkFailed, ServerForker
from notebench.hub.singleuser import singleuser_args
from notebench.hub.spawn_quotas import SpawnQuotas

# The repository's examples/ (beside hub/): what a new user finds in their home.
REPO_EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class NotebenchSpawner(SpawnQuotas, CulledRecord, LocalProcessSpawner):
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
    # The idle culler's settings (set from c.Notebench by the hub's config): JupyterLab warns before a cull.
    cull_idle_timeout = Integer(0, help="Seconds without activity before the idle culler stops a server (0: never).").tag(
        config=True
    )
    cull_every = Integer(300, help="Seconds between the idle culler's checks.").tag(config=True)
    cull_notice_seconds = Integer(
        600, help="How long before an idle server is culled JupyterLab shows a notice (0: no notice)."
    ).tag(config=True)
    examples_dir = Unicode(
        str(REPO_EXAMPLES) if REPO_EXAMPLES.is_dir() else "",
        help="Notebooks copied into examples/ of a user's home at their first start ('' for none); never overwrites.",
    ).tag(config=True)
    examples_offered = Bool(False)  # in the spawner's state: examples are offered once
    fork_servers = Bool(
        True,
        help="Start servers as forks of a warm, pre-imported process (notebench.hub.server_zygote) "
        "rather than a new Python each time; only with the default cmd. False: every start is cold.",
    ).tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._forks():  # warm before the first Start: its imports take seconds
            ServerForker.shared().start(self._known_env())

    @default("cmd")
    def _cmd_default(self):
        # This environment's Python (absolute: the hub's PATH may hold directories users cannot
        # read) running jupyterhub-singleuser without two slow imports (notebench.hub.server_command).
        return [sys.executable, "-m", "notebench.hub.server_command"]

    def _forks(self) -> bool:
        default = self._cmd_default()
        return self.fork_servers and list(self.cmd) == default and not self.shell_cmd and not self.popen_kwargs

    def _known_env(self) -> dict:
        """What get_env() will hold that is known before a spawn (what the warm process starts with)."""
        env = {key: os.environ[key] for key in self.env_keep if key in os.environ}
        env.update({key: value for key, value in self.environment.items() if isinstance(value, str)})
        return env

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

    def _free_gpus(self) -> int:
        """GPUs free now, counting those this server holds as its own."""
        leases = self.gpu_inventory.leases()
        taken = {lease["device"] for lease in leases if lease["holder"] != self.lease_holder}
        return len([d for d in self.gpu_inventory.all_devices() if d not in taken])

    def _unavailable_reason(self, profile, free_gpus: int) -> str:
        """Why ``profile`` cannot start now ('' when it can)."""
        if profile.gpus <= free_gpus:
            return ""
        if not self.gpu_inventory.all_devices():
            return "Not available: this machine has no GPUs."
        return (f"Not available now: needs {profile.gpus} GPU(s), {free_gpus} free. "
                "Try again when another server or job stops.")

    def _render_options_form(self, spawner) -> str:
        profiles = self.profiles.all()
        free = self._free_gpus() if any(p.gpus for p in profiles) else 0
        reasons = {p.name: self._unavailable_reason(p, free) for p in profiles}
        startable = [p for p in profiles if not reasons[p.name]]
        chosen = next((p for p in startable if p.default), startable[0] if startable else None)
        choices = []
        for p in profiles:
            name = html.escape(p.name)
            reason = reasons[p.name]
            attrs = " checked" if p is chosen else ""
            attrs += f' disabled aria-describedby="profile-{name}-reason"' if reason else ""
            why = (f' <span class="text-danger nb-profile-reason" id="profile-{name}-reason">{html.escape(reason)}</span>'
                   if reason else "")
            choices.append(
                f'<label class="list-group-item{" disabled" if reason else ""}" data-profile="{name}">'
                f'<input type="radio" name="profile" value="{name}"{attrs}>'
                f" <strong>{html.escape(p.display_name)}</strong> <span class=\"text-muted\">{html.escape(p.description)}</span>"
                f"{why}</label>"
            )
        return '<div class="list-group" id="nb-profiles" role="radiogroup" aria-label="Server profile">' + "".join(choices) + "</div>"

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
        # What JupyterLab's notice before a cull needs to know (jupyterlab_notebench/culling.py).
        env["NOTEBENCH_CULL_IDLE_TIMEOUT"] = str(self.cull_idle_timeout)
        env["NOTEBENCH_CULL_EVERY"] = str(self.cull_every)
        env["NOTEBENCH_CULL_NOTICE_SECONDS"] = str(self.cull_notice_seconds)
        if self.examples_dir and not self.examples_offered:
            env["NOTEBENCH_EXAMPLES_DIR"] = self.examples_dir  # copied by the server, as the user
        if getattr(self, "_runtime_dir", None):
            env["JUPYTER_RUNTIME_DIR"] = self._runtime_dir
        env.update(workload_env(getattr(self, "_profile", None), gpus=getattr(self, "_gpus", None) or [],
                                mlflow_url=self.mlflow_url, mlflow_token=self.api_token,
                                notebench_url=self.notebench_url))
        return env

    def get_args(self):
        args = super().get_args() + singleuser_args(self.kernel_cull_idle_timeout, self.kernel_cull_interval)
        # Kernels on unix sockets in the user's 0700 runtime directory, not TCP ports: ports picked
        # by many servers at once collide (a kernel then fails or hangs: bench/README.md, "Storm"),
        # and any local account can connect to a port.
        args.append("--KernelManager.transport=ipc")
        if os.geteuid() == 0 and not self.accounts.isolate_users:
            args.append("--allow-root")
        return args

    # --- lifecycle ----------------------------------------------------------------------------

    def get_state(self):
        state = super().get_state()
        if self.examples_offered:
            state["examples_offered"] = True
        return state

    def load_state(self, state):
        super().load_state(state)
        self.examples_offered = bool(state.get("examples_offered"))

    async def start(self):
        profile = self._profile = self.chosen_profile()
        await self.check_quota(profile)
        self.cpu_limit = profile.cpu_limit
        self.mem_limit = profile.mem_limit
        try:
            self.accounts.prepare(self.user.name)
        except AccountClash as e:  # "%s": a hub name may hold a '%'
            raise web.HTTPError(409, "%s", str(e), reason="OS account clash")
        self._runtime_dir = self.accounts.prepare_runtime_dir(self.user.name)
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
            result = await (self._start_forked() if self._forks() else super().start())
        except Exception:
            self.gpu_inventory.release(self.lease_holder)
            raise
        self.gpu_inventory.set_pid(self.lease_holder, self.pid)
        await self._wait_until_up(*result)
        # Started: the last cull is history, and the examples have been offered (the hub saves the state now).
        self.forget_culled()
        self.examples_offered = True
        return result

    async def _start_forked(self):
        """LocalProcessSpawner.start, with the process forked from the warm one (cold if that fails)."""
        if self.port == 0:
            self.port = random_port()
        request = {
            "cmd": list(self.cmd),  # what the child execs if it must start cold
            "args": self.get_args(),
            "env": self.get_env(),
            "os_user": self.os_user if self.accounts.isolate_users else None,
            "home": self.accounts.home(self.user.name),
            "cgroup": str(self._cgroup) if self._cgroup else None,
        }
        try:
            self.pid = await ServerForker.shared().spawn(request)
        except ForkFailed as e:
            self.log.warning("Starting %s's server cold: %s", self.user.name, e)
            return await super().start()
        self.proc = None
        self.log.info("Forked %s's server (pid %s)", self.user.name, self.pid)
        return (self.ip or "127.0.0.1", self.port)

    async def _wait_until_up(self, ip: str, port: int, interval: float = 0.02) -> None:
        """Return as soon as the server answers. JupyterHub's own wait backs off (up to seconds
        between polls); waiting here first lets its check succeed at once (bench/spawn: ~1.3 s saved)."""
        url = f"http://{ip}:{port}" + url_path_join(self.server.base_url, "api")
        deadline = time.monotonic() + self.http_timeout
        client = AsyncHTTPClient()
        while time.monotonic() < deadline:
            exited = self.proc.poll() is not None if self.proc is not None else not await self._signal(0)
            if exited:  # forked: the warm process reaps it, so a pid that answers is alive
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
