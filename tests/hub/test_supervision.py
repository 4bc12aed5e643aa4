"""`notebench up` supervises the hub: a killed hub comes back by itself, a start after a kill -9
cleans up what the dead one left, and a data dir runs one Notebench at a time.

Each test starts hubs of its own (they are killed on purpose)."""

import os
import signal
import subprocess
import sys

import psutil
import pytest
import requests

from notebench.hub import supervisor
from tests.support.launcher import NOTEBENCH, Hub, free_port, wait_for

pytestmark = pytest.mark.slow

CONFIG = 'c.GPUInventory.devices = ["0"]\n'


def hub_process(hub: Hub) -> psutil.Process:
    """The JupyterHub process `notebench up` runs (its other children are adopted orphans)."""
    children = psutil.Process(hub.proc.pid).children()
    return next(p for p in children if p.cmdline()[1:3] == ["-m", "jupyterhub"])


def server_answers(hub: Hub, name: str, token: str) -> bool:
    r = requests.get(f"{hub.url}/user/{name}/api/status", headers={"Authorization": f"token {token}"}, timeout=5)
    return r.status_code == 200


def mlflow_answers(hub: Hub, token: str) -> bool:
    url = f"{hub.url}/services/mlflow/api/2.0/mlflow/experiments/search?max_results=1"
    return requests.get(url, headers={"Authorization": f"token {token}"}, timeout=10).ok


def start_with_server(tmp_path, name: str) -> tuple[Hub, str, int]:
    """A hub of its own with ``name``'s server running: (hub, their token, the server's pid).

    MLflow is up too: a kill during the MLflow backend's first start (its database migration)
    is another matter."""
    hub = Hub(tmp_path / "data", config=CONFIG).start()
    token = hub.new_user(name)
    hub.spawn(name, token=token)
    wait_for(lambda: mlflow_answers(hub, token), 180, message="MLflow up")
    return hub, token, hub.server(name)["state"]["pid"]


def assert_taken_over(hub: Hub, name: str, token: str, server_pid: int, old: list[psutil.Process]) -> None:
    """None of the old infrastructure is left, the new hub answers, and ``name``'s server (the same
    process) answers through the new proxy."""
    # is_running compares create times (pid reuse). The old hub may still answer for a moment.
    wait_for(lambda: not any(p.is_running() for p in old), 60, message="the old infrastructure gone")
    wait_for(hub._healthy, 120, message="the new hub healthy")
    wait_for(lambda: server_answers(hub, name, token), 120, message=f"{name}'s server reachable")
    assert hub.server(name)["state"]["pid"] == server_pid
    assert psutil.pid_exists(server_pid)


def test_killed_hub_is_restarted_and_takes_over(tmp_path):
    hub, token, server_pid = start_with_server(tmp_path, "phoenix")
    try:
        old_hub = hub_process(hub)
        old = supervisor.infrastructure(hub.data_dir)
        assert {old_hub.pid} < {p.pid for p in old}  # with the proxy and the services

        old_hub.kill()
        # Killed again while it starts (before it answers), it still comes back.
        second = wait_for(lambda: hub_process(hub).pid != old_hub.pid and hub_process(hub), 60, message="a new hub")
        second.kill()
        wait_for(lambda: hub_process(hub).pid not in (old_hub.pid, second.pid) and hub._healthy(), 180,
                 message="hub restarted")
        assert_taken_over(hub, "phoenix", token, server_pid, old)
        assert hub.proc.poll() is None
        assert "starting it again" in hub.log()

        # Jobs run again: the restarted executor is up behind the new proxy.
        r = hub.executor("GET", "jobs", token)
        assert r.status_code == 200, r.text
    finally:
        hub.stop()
    # SIGTERM still stops everything cleanly (the users' servers were stopped through the API).
    assert supervisor.infrastructure(hub.data_dir) == []


def test_killed_proxy_and_services_are_restarted(tmp_path):
    """The hub restarts its proxy and managed services itself (the MLflow front its backend)."""
    hub, token, _ = start_with_server(tmp_path, "hydra")
    try:
        def below_hub():
            return {p.pid for p in supervisor.infrastructure(hub.data_dir)} - {hub_process(hub).pid}

        old = below_hub()
        assert len(old) == 5  # proxy, culler, executor, MLflow front and backend
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(below_hub() - old) == len(old), 120, message="the proxy and the services restarted")
        wait_for(lambda: server_answers(hub, "hydra", token), 60, message="hydra's server reachable")
        wait_for(lambda: hub.executor("GET", "jobs", token).status_code == 200, 60, message="the executor back")
        wait_for(lambda: mlflow_answers(hub, token), 180, message="MLflow back")
    finally:
        hub.stop()


def test_second_up_on_a_data_dir_in_use_is_refused(tmp_path):
    hub = Hub(tmp_path / "data", config=CONFIG).start()
    try:
        r = subprocess.run(
            NOTEBENCH + ["up", "--data-dir", str(hub.data_dir), "--port", str(hub.port + 1)],
            capture_output=True, text=True, timeout=60,
        )
        assert r.returncode == 2
        assert f"data dir {hub.data_dir}" in r.stderr and "in use" in r.stderr
        assert f"pid {hub.proc.pid}" in r.stderr
        assert hub._healthy()  # and the running one was left alone
    finally:
        hub.stop()


@pytest.mark.parametrize("killed", ["notebench up", "notebench up and the hub"])
def test_start_after_kill_takes_over(tmp_path, killed):
    hub, token, server_pid = start_with_server(tmp_path, "lazarus")
    try:
        old = supervisor.infrastructure(hub.data_dir)
        victims = [hub.proc.pid] + ([hub_process(hub).pid] if killed.endswith("hub") else [])
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        hub.proc.wait()
        hub.log_file.close()
        # The same data dir and port, and nobody kills anything by hand.
        hub.start()
        assert_taken_over(hub, "lazarus", token, server_pid, old)
    finally:
        hub.stop()
    assert supervisor.infrastructure(hub.data_dir) == []


# A "hub" that answers its health check once, then dies.
CRASHING_HUB = """
import http.server, threading
answered = threading.Event()
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        answered.set()
server = http.server.HTTPServer(("127.0.0.1", {port}), Health)
threading.Thread(target=server.serve_forever, daemon=True).start()
answered.wait()
raise SystemExit({status})
"""

SUPERVISE = """
import sys
from pathlib import Path
from notebench.hub import supervisor
sys.exit(supervisor.supervise(sys.argv[1:], {{"NOTEBENCH_DATA_DIR": "{data}"}}, Path("{data}"),
                              "http://127.0.0.1:{port}/", lambda: print("up", flush=True)))
"""


def supervise_fake_hub(tmp_path, status: int) -> subprocess.CompletedProcess:
    port = free_port()
    return subprocess.run(
        [sys.executable, "-c", SUPERVISE.format(data=tmp_path, port=port),
         sys.executable, "-c", CRASHING_HUB.format(port=port, status=status)],
        capture_output=True, text=True, timeout=120,
    )


def test_a_hub_that_keeps_dying_is_given_up(tmp_path):
    """Bounded restarts: after MAX_CRASHES restarts within the window, stop with a message."""
    r = supervise_fake_hub(tmp_path, status=3)
    assert r.returncode == 1, r.stderr
    assert r.stdout.count("up") == 1
    assert r.stderr.count("starting it again") == supervisor.MAX_CRASHES
    assert f"exited {supervisor.MAX_CRASHES + 1} times" in r.stderr and "giving up" in r.stderr


def test_a_hub_that_exits_with_status_0_is_not_restarted(tmp_path):
    """It was asked to stop (SIGTERM, the admin's shutdown API)."""
    r = supervise_fake_hub(tmp_path, status=0)
    assert r.returncode == 0, r.stderr
    assert "starting it again" not in r.stderr
