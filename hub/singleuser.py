"""A jupyter_server extension loaded into every user server: busy kernels count as activity.

jupyter_server's ``last_activity`` only moves when a kernel sends a message, so a kernel busy
for an hour in one long cell looks idle and its server would be culled. Every check we stamp
``busy_kernels_last_activity`` (settings ending in ``_last_activity`` are counted by
jupyter_server) while any kernel is busy; jupyterhub-singleuser reports it to the hub.
"""

import os
from datetime import datetime, timezone

from tornado.ioloop import PeriodicCallback

from notebench.hub.platform.service_auth import TOKEN_CACHE_SECONDS


def singleuser_args(kernel_cull_idle_timeout: int, kernel_cull_interval: int = 300) -> list[str]:
    """Arguments of every user server: idle kernels are culled, busy ones never (and count as
    activity, through notebench.hub.singleuser), connected ones too."""
    return [
        f"--MappingKernelManager.cull_idle_timeout={kernel_cull_idle_timeout}",
        f"--MappingKernelManager.cull_interval={kernel_cull_interval}",
        "--MappingKernelManager.cull_busy=False",
        "--MappingKernelManager.cull_connected=True",
        # A revoked token stops reaching the server within this, as on the services.
        f"--HubOAuth.cache_max_age={TOKEN_CACHE_SECONDS}",
        "--ServerApp.jpserver_extensions=notebench.hub.singleuser=True",
        # Off by default in JupyterLab 4 anyway; loading it scans for language servers at start.
        "--ServerApp.jpserver_extensions=jupyter_lsp=False",
    ]


def _jupyter_server_extension_points():
    return [{"module": "notebench.hub.singleuser"}]


def _load_jupyter_server_extension(serverapp):
    settings = serverapp.web_app.settings
    kernels = serverapp.kernel_manager

    def stamp_if_busy():
        if any(getattr(k, "execution_state", None) == "busy" for k in kernels._kernels.values()):
            settings["busy_kernels_last_activity"] = datetime.now(timezone.utc)

    interval_s = float(os.environ.get("NOTEBENCH_BUSY_CHECK_INTERVAL", "30"))
    PeriodicCallback(stamp_if_busy, interval_s * 1000).start()
