"""A jupyter_server extension loaded into every user server: what counts as activity, and the
examples a new user finds in their home.

What counts as activity (reported to the hub by jupyterhub-singleuser; the idle culler decides on
it, see notebench.hub.culling): kernels running code or sending output, terminals, and requests
that change something (saving, creating, renaming, deleting, starting kernels: every API call that
is not a GET). An open JupyterLab tab that nobody uses still polls its server (kernels, sessions,
files) with GETs: that alone does not keep a server, nor its GPU.

jupyter_server's ``last_activity`` only moves when a kernel sends a message, so a kernel busy
for an hour in one long cell looks idle and its server would be culled. Every check we stamp
``busy_kernels_last_activity`` (settings ending in ``_last_activity`` are counted by
jupyter_server) while any kernel is busy; jupyterhub-singleuser reports it to the hub.
"""

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
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
    web_app = serverapp.web_app
    settings = web_app.settings
    kernels = serverapp.kernel_manager
    count_only_changes_as_activity(web_app)
    cache_extension_assets_for_good(settings)
    if not serverapp.jpserver_extensions.get("jupyter_lsp"):
        web_app.add_handlers(".*$", [(url_path_join(settings["base_url"], "lsp", "status"), NoLanguageServersHandler)])
    if os.environ.get("NOTEBENCH_EXAMPLES_DIR"):
        offer_examples(Path(os.environ["NOTEBENCH_EXAMPLES_DIR"]), Path(serverapp.root_dir), serverapp.log)

    def stamp_if_busy():
        if any(getattr(k, "execution_state", None) == "busy" for k in kernels._kernels.values()):
            settings["busy_kernels_last_activity"] = datetime.now(timezone.utc)

    interval_s = float(os.environ.get("NOTEBENCH_BUSY_CHECK_INTERVAL", "30"))
    PeriodicCallback(stamp_if_busy, interval_s * 1000).start()


def cache_extension_assets_for_good(settings: dict) -> None:
    """jupyterlab_server marks each prebuilt extension's ``static/`` (hashed file names) immutable,
    but by paths without the server's base URL, which under JupyterHub (``/user/<name>/``) never
    match: the browser revalidated those files on every visit (bench/README.md, "Browser"). Add
    the same paths under the base URL."""
    base = settings["base_url"]
    cache = settings.setdefault("static_immutable_cache", [])
    cache += [url_path_join(base, path) for path in list(cache)
              if "/lab/extensions/" in path and not path.startswith(base)]


def count_only_changes_as_activity(web_app) -> None:
    """Requests count as activity when they change something (not GET/HEAD/OPTIONS), except
    JupyterLab's saves of its layout (``lab/api/workspaces``), which it makes every few seconds on
    its own; jupyter_server counts every API request (``api_last_activity``), polling included."""
    settings = web_app.settings
    log_request = settings.get("log_function")

    def log_and_track(handler):
        request = handler.request
        if request.method not in ("GET", "HEAD", "OPTIONS") and handler.get_status() < 400 \
                and getattr(handler, "_jupyter_current_user", None) and "/lab/api/workspaces" not in request.path:
            settings["changes_last_activity"] = datetime.now(timezone.utc)
        if log_request is not None:
            log_request(handler)

    settings["log_function"] = log_and_track

    def last_activity():
        sources = [settings["started"], web_app.settings["kernel_manager"].last_kernel_activity]
        sources += [v for k, v in settings.items() if k.endswith("_last_activity") and k != "api_last_activity" and v]
        sources += settings.get("last_activity_times", {}).values()
        return max(sources)

    web_app.last_activity = last_activity


def offer_examples(source: Path, root: Path, log) -> None:
    """Copy the example notebooks into ``examples/`` of the user's home (this server runs as the
    user, so they are the user's), never over anything that is there."""
    target = root / "examples"
    try:
        target.mkdir(exist_ok=True)
        if target.is_symlink() or not target.is_dir():
            return
        for notebook in sorted(source.glob("*.ipynb")):
            try:
                fd = os.open(target / notebook.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as out, open(notebook, "rb") as src:
                shutil.copyfileobj(src, out)
        log.info("notebench: example notebooks offered in %s", target)
    except OSError as e:
        log.warning("notebench: could not copy the examples into %s: %s", target, e)


class NoLanguageServersHandler(APIHandler):
    """``lsp/status`` while jupyter_lsp is off (see singleuser_args): JupyterLab's list of running
    language servers asks it whenever its running sessions change; "none" rather than a 404."""

    _track_activity = False

    @web.authenticated
    def get(self):
        self.finish(json.dumps({"version": 2, "sessions": {}, "specs": {}}))
