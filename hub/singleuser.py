"""A jupyter_server extension loaded into every user server: busy kernels count as activity.

jupyter_server's ``last_activity`` only moves when a kernel sends a message, so a kernel busy
for an hour in one long cell looks idle and its server would be culled. Every check we stamp
``busy_kernels_last_activity`` (settings ending in ``_last_activity`` are counted by
jupyter_server) while any kernel is busy; jupyterhub-singleuser reports it to the hub.
"""

import os
from datetime import datetime, timezone

from tornado.ioloop import PeriodicCallback


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
