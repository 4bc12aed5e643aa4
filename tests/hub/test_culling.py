"""Idle culling: idle servers are culled (and their GPU lease freed), busy ones never; idle kernels too."""

import sqlite3
import time

import pytest

from tests.support.kernels import execute_until_busy, kernels, start_kernel
from tests.support.launcher import running_hub, wait_for

TIMEOUT, EVERY = 15, 5
KERNEL_TIMEOUT = 6

CULL_CONFIG = f"""
c.GPUInventory.devices = ["0"]
c.Notebench.cull_idle_timeout = {TIMEOUT}
c.Notebench.cull_every = {EVERY}
c.Notebench.mlflow_enabled = False
c.NotebenchSpawner.activity_interval = 2
c.NotebenchSpawner.kernel_cull_idle_timeout = {KERNEL_TIMEOUT}
c.NotebenchSpawner.kernel_cull_interval = 2
c.Spawner.environment = {{"NOTEBENCH_BUSY_CHECK_INTERVAL": "1"}}
"""


@pytest.fixture(scope="module")
def cull_hub(tmp_path_factory):
    with running_hub(tmp_path_factory, "cull", CULL_CONFIG) as h:
        yield h


def gpu_holders(hub):
    with sqlite3.connect(hub.data_dir / "notebench.sqlite") as db:
        return {holder for (holder,) in db.execute("select holder from gpu_leases")}


def test_idle_server_is_culled_busy_server_is_kept(cull_hub):
    hub = cull_hub
    idle_token = hub.new_user("idle-user")
    busy_token = hub.new_user("busy-user")
    hub.spawn("busy-user", "cpu")
    busy_kernel = start_kernel(hub.url, "busy-user", busy_token)
    execute_until_busy(hub.url, "busy-user", busy_token, busy_kernel, "import time; time.sleep(3600)")
    idle_kernel = start_kernel(hub.url, "busy-user", busy_token)

    started = time.monotonic()
    hub.spawn("idle-user", "gpu", token=idle_token)
    assert "server:idle-user/" in gpu_holders(hub)

    # Kernel culling inside the busy server: the idle kernel goes, the busy one stays.
    wait_for(lambda: idle_kernel not in kernels(hub.url, "busy-user", busy_token), 60, message="idle kernel culled")
    assert kernels(hub.url, "busy-user", busy_token)[busy_kernel]["execution_state"] == "busy"

    # The idle server is culled within timeout + interval (plus the time to stop it).
    wait_for(lambda: hub.server("idle-user") is None, 120, interval=0.5, message="idle server culled")
    culled_after = time.monotonic() - started
    assert TIMEOUT <= culled_after <= TIMEOUT + EVERY + 15, culled_after
    assert "server:idle-user/" not in gpu_holders(hub)  # its GPU lease is freed

    # By now the busy server has been idle-by-messages far longer than the timeout,
    # through several culler passes, and is still there with its kernel still running.
    wait_for(lambda: time.monotonic() - started > TIMEOUT + 2 * EVERY, 60, interval=0.5, message="two more passes")
    assert (hub.server("busy-user") or {}).get("ready")
    assert kernels(hub.url, "busy-user", busy_token)[busy_kernel]["execution_state"] == "busy"

    # The audit log says who stopped the idle server and why: the culler (its reason), then its stop.
    def reported():
        found = hub.executor("GET", "audit", None, params={"user": "idle-user", "action": "server"}).json()["entries"]
        return found if {e["action"] for e in found} >= {"server.cull", "server.stop"} else None

    by_action = {e["action"]: e for e in wait_for(reported, 60, message="the cull in the audit log")}
    cull, stop = by_action["server.cull"], by_action["server.stop"]
    assert (cull["actor"], cull["owner"], cull["target"]) == ("idle-culler", "idle-user", "server idle-user/")
    assert cull["detail"]["inactive_seconds"] >= TIMEOUT and cull["at"] <= stop["at"]
    assert (stop["actor"], stop["detail"]["actor_kind"]) == ("idle-culler", "service")
