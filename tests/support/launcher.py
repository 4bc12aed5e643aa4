"""Start and drive a real `notebench up` (JupyterHub + configurable-http-proxy + services).

Used by the test fixtures and by the benchmarks, so both measure the product as a user runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from notebench.hub.platform.statuses import FINAL

REPO = Path(__file__).resolve().parents[2]
NOTEBENCH = [sys.executable, "-m", "notebench.hub.cli"]
IS_ROOT = os.geteuid() == 0

# The settings of the test session's hub (tests/conftest.py), which hubs of a module's own start from.
# Two fake GPU indices: there is no GPU in CI, and the inventory may be set in config.
# Servers are polled often so a crashed server's lease is noticed quickly.
BASE_CONFIG = """
c.GPUInventory.devices = ["0", "1"]
c.Spawner.poll_interval = 2
c.NotebenchSpawner.kernel_cull_idle_timeout = 0
# Endpoint monitoring's first-requests baseline (tests/serving/test_endpoint_monitoring.py): 5, not 200.
c.Monitoring.first_requests = 5
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout=60.0, interval=0.1, message="condition"):
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < end:
        try:
            result = condition()
            if result:
                return result
        except Exception as e:  # a service still starting answers with connection errors
            last_error = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {message} (last error: {last_error!r})")


class Hub:
    """A running Notebench: ``url``, ``admin_token``, ``admin_password``, ``data_dir``."""

    def __init__(self, data_dir: Path, config: str = "", port: int | None = None, env: dict | None = None):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_hex(16)
        self.admin_password = "admin-" + secrets.token_hex(8)
        self.config_file = self.data_dir.parent / f"{self.data_dir.name}-config.py"
        self.config_file.write_text(config)
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-notebench.log"
        # pytest's temporary directories are private (0700); jobs run as the users' own accounts
        # and must be able to traverse to their job directory, as under a real data dir.
        for parent in self.data_dir.parents:
            if parent == Path("/tmp") or parent == Path("/"):
                break
            os.chmod(parent, parent.stat().st_mode | 0o011)

    # --- process --------------------------------------------------------------------------

    def start(self, timeout=180.0) -> "Hub":
        env = dict(
            os.environ,
            NOTEBENCH_ADMIN_TOKEN=self.admin_token,
            NOTEBENCH_ADMIN_PASSWORD=self.admin_password,
            **self.extra_env,
        )
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            NOTEBENCH
            + ["up", "--port", str(self.port), "--data-dir", str(self.data_dir), "--config", str(self.config_file)],
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        try:
            wait_for(self._healthy, timeout, message=f"hub health at {self.url} (log: {self.log_path})")
        except BaseException:
            self.stop(stop_servers=False)  # leave nothing behind (proxy, services) when start fails
            raise
        return self

    def _healthy(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"notebench up exited with {self.proc.returncode}; log: {self.log_path}")
        return requests.get(f"{self.url}/hub/health", timeout=2).status_code == 200 and self.api("GET", "/users")

    def stop(self, stop_servers=True) -> None:
        if self.proc is None:
            return
        if stop_servers and self.proc.poll() is None:
            for user in self.api("GET", "/users").json():
                for name in user["servers"]:
                    self.api("DELETE", f"/users/{user['name']}/servers/{name}" if name else f"/users/{user['name']}/server")
            wait_for(
                lambda: not any(u["servers"] for u in self.api("GET", "/users").json()),
                60,
                message="all servers stopped",
            )
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.log_file.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # --- API helpers ------------------------------------------------------------------------

    def api(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {token or self.admin_token}"}
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=60, **kwargs)

    def executor(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        """Call the executor API (``path`` relative to /services/executor/api/) through the proxy."""
        headers = {"Authorization": f"token {token or self.admin_token}"} if token != "" else {}
        return requests.request(
            method, f"{self.url}/services/executor/api/{path.lstrip('/')}", headers=headers, timeout=60, **kwargs
        )

    def wait_job(self, job_id: int, token: str, timeout: float = 180, until=FINAL,
                 interval: float = 0.05) -> dict:
        """Wait until the job's status is one of ``until``; returns the job. Each poll is a request
        through the proxy, the executor and the hub's token check: benchmarks that time the job
        itself poll less often (``interval``), so as not to take CPU from it."""

        def done():
            job = self.executor("GET", f"jobs/{job_id}", token).json()
            return job if job["status"] in until else None

        return wait_for(done, timeout, interval=interval, message=f"job {job_id} to reach {until}")

    def new_user(self, name: str, admin: bool = False) -> str:
        """Create ``name`` through the hub API (admin token) and return an API token of theirs."""
        r = self.api("POST", f"/users/{name}", json={"admin": admin})
        assert r.status_code in (201, 409), r.text
        r = self.api("POST", f"/users/{name}/tokens", json={"note": "test"})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def server(self, name: str) -> dict | None:
        return self.api("GET", f"/users/{name}").json()["servers"].get("")

    def spawn(self, name: str, profile: str | None = None, token: str | None = None, wait=True) -> requests.Response:
        body = {"user_options": {"profile": profile}} if profile else {}
        r = self.api("POST", f"/users/{name}/server", token=token, json=body)
        if wait and r.status_code in (201, 202):
            wait_for(lambda: (self.server(name) or {}).get("ready"), 120, message=f"{name}'s server ready")
        return r

    def stop_server(self, name: str) -> None:
        r = self.api("DELETE", f"/users/{name}/server")
        assert r.status_code in (202, 204), r.text
        wait_for(lambda: self.server(name) is None, 60, message=f"{name}'s server stopped")

    def signup(self, username: str, password: str) -> requests.Response:
        """Fill in the sign-up form as a newcomer does."""
        s = requests.Session()
        page = s.get(f"{self.url}/hub/signup", timeout=30)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        form = {"_xsrf": xsrf, "username": username, "email": f"{username}@example.org"}
        form.update(signup_password=password, signup_password_confirmation=password)
        return s.post(f"{self.url}/hub/signup", data=form, timeout=60)

    def approve(self, username: str) -> None:
        """The admin approves a sign-up on the authorization page."""
        admin = self.browser_login("admin", self.admin_password)
        assert admin.get(f"{self.url}/hub/authorize/{username}", timeout=30).status_code == 200

    def browser_login(self, username: str, password: str) -> requests.Session:
        """Log in through the login form as a browser does; returns the session with its cookies."""
        s = requests.Session()
        page = s.get(f"{self.url}/hub/login", timeout=30)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        data = {"username": username, "password": password}
        if xsrf:
            data["_xsrf"] = xsrf.group(1)
        s.login_response = s.post(f"{self.url}/hub/login?next=", data=data, timeout=60, allow_redirects=False)
        return s


def executor_process(hub) -> psutil.Process | None:
    """The executor process of ``hub`` (the one its data dir names), or None."""
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "notebench.executor" in " ".join(p.info["cmdline"] or []) and p.environ().get("NOTEBENCH_DATA_DIR") == str(
                hub.data_dir
            ):
                return p
        except psutil.Error:
            continue
    return None


@contextlib.contextmanager
def running_hub(tmp_path_factory, name: str, config: str = ""):
    """A hub of a test module's own (when it needs other settings than the session's)."""
    hub = Hub(tmp_path_factory.mktemp(name) / "data", config=config).start()
    try:
        yield hub
    finally:
        hub.stop()


@contextlib.contextmanager
def users_with_servers(hub, *names: str, profile: str = "cpu"):
    """Users made through the hub's API, their servers running until the end: {name: API token}."""
    tokens = {name: hub.new_user(name) for name in names}
    for name in tokens:
        hub.spawn(name, profile)
    try:
        yield tokens
    finally:
        for name in tokens:
            hub.stop_server(name)


def lab_page_config(html: str) -> dict:
    """JupyterLab's page config: the JSON in its page's ``jupyter-config-data`` script ({} if none)."""
    found = re.search(r'<script id="jupyter-config-data"[^>]*>(.*?)</script>', html, re.S)
    return json.loads(found.group(1)) if found else {}


def notebook(*sources: str, parameters: str | None = None, kernel: str = "python3") -> dict:
    """An nbformat v4 notebook with a `parameters` cell (if given) and one code cell per source."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    if parameters is not None:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells += [nbformat.v4.new_code_cell(src) for src in sources]
    return nbformat.from_dict(nb)
