"""Start and stop the MLflow backend process (standard library only).

The backend runs in its own session / process group, so stopping it also stops anything it
started. It also watches its parent and stops by itself if the front disappears without
cleaning up (e.g. SIGKILL).
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import time

from notebench.hub.mlflow_service import SECRET_ENV

log = logging.getLogger("notebench.mlflow")

# Environment the MLflow process must not inherit from the hub-managed front.
_DROP_ENV_PREFIXES = ("JUPYTERHUB_", "MLFLOW_TRACKING_", "MLFLOW_AUTH_", "_MLFLOW_")


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class BackendProcess:
    """One MLflow backend process; ``start()`` again after it exits to restart it."""

    def __init__(self, paths, static_prefix, front_secret, secrets, host="127.0.0.1", port=None):
        self.paths = paths
        self.static_prefix = "/" + static_prefix.strip("/")
        self.front_secret = front_secret
        self.secrets = secrets
        self.host = host
        self.fixed_port = port
        self.port = None
        self.proc = None
        self.started_at = None

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def health_url(self):
        return f"{self.url}{self.static_prefix}/health"

    def environment(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_ENV_PREFIXES)}
        env.update({
            "MLFLOW_AUTH_CONFIG_PATH": str(self.paths.auth_ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.secrets["admin_password"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.secrets["flask_secret_key"],
            SECRET_ENV: self.front_secret,
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def start(self):
        self.port = self.fixed_port or free_port(self.host)
        cmd = [
            sys.executable, "-m", "notebench.hub.mlflow_service.backend",
            "--host", self.host,
            "--port", str(self.port),
            "--data-dir", str(self.paths.root.parent),
            "--static-prefix", self.static_prefix,
        ]
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            env=self.environment(),
            cwd=str(self.paths.root),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.info("Started MLflow backend (pid %s) on %s", self.proc.pid, self.url)
        return self.proc

    def poll(self):
        """Exit code if the process has exited, else None."""
        return None if self.proc is None else self.proc.poll()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal_group(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def begin_stop(self):
        """Ask the whole process group to stop (SIGTERM)."""
        if self.proc is not None:
            self._signal_group(signal.SIGTERM)

    def kill(self):
        """SIGKILL whatever is left of the process group, and reap the process."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.error("MLflow backend pid %s did not die", self.proc.pid)

    def stop(self, timeout=5.0):
        """Blocking stop: SIGTERM the group, wait up to ``timeout``, then SIGKILL."""
        if self.proc is None:
            return
        self.begin_stop()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("MLflow backend did not stop in %.0f s; killing it", timeout)
        # the group may still hold children even if the leader is gone
        self.kill()
