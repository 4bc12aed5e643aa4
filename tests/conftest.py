"""Fixtures that start real Notebench hubs (JupyterHub, configurable-http-proxy, services)."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from launcher import Hub  # noqa: E402

# Two fake GPU indices: there is no GPU in CI, and the inventory may be set in config.
# Servers are polled often so a crashed server's lease is noticed quickly.
BASE_CONFIG = """
c.GPUInventory.devices = ["0", "1"]
c.Spawner.poll_interval = 2
c.NotebenchSpawner.kernel_cull_idle_timeout = 0
"""

IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """The shared hub of the test session (idle culling at its defaults: never during tests)."""
    h = Hub(tmp_path_factory.mktemp("hub") / "data", config=BASE_CONFIG).start()
    yield h
    h.stop()
