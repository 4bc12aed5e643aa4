"""Fixtures that start real Notebench hubs (JupyterHub, configurable-http-proxy, services)."""

import pytest

from tests.support.launcher import BASE_CONFIG, Hub
from tests.support.registry import register_model


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """The shared hub of the test session (idle culling at its defaults: never during tests)."""
    h = Hub(tmp_path_factory.mktemp("hub") / "data", config=BASE_CONFIG).start()
    yield h
    h.stop()


@pytest.fixture(scope="module")
def model(hub, people):
    """A registered model of ``people["owner"]`` (the requesting module's ``people`` fixture, on its
    ``hub``) with versions 1 (alias champion), 2, and 3 (broken); a scoring input.
    Used by serving/, faults/test_chaos.py: one model per owner (another user may not add versions
    to it, nor runs to its experiment)."""
    name = f"clf-{people['owner']}"
    return {"name": name, "input": register_model(hub.url, people["owner_token"], name)}
