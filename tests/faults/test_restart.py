"""Restarting `notebench up` keeps users, tokens, servers and their GPU leases."""

import pytest
import requests

from tests.support.launcher import Hub, wait_for

pytestmark = pytest.mark.slow

CONFIG = 'c.GPUInventory.devices = ["0"]\nc.Notebench.mlflow_enabled = False\n'


def test_restart_keeps_users_tokens_and_running_servers(tmp_path):
    hub = Hub(tmp_path / "data", config=CONFIG).start()
    try:
        token = hub.new_user("survivor")
        hub.spawn("survivor", "gpu", token=token)
        pid = hub.api("GET", "/users/survivor").json()["servers"][""]["state"]["pid"]
        ports = (hub.data_dir / "ports.json").read_text()

        hub.stop(stop_servers=False)  # like Ctrl-C on `notebench up`
        hub.start()

        assert (hub.data_dir / "ports.json").read_text() == ports
        me = requests.get(f"{hub.url}/hub/api/user", headers={"Authorization": f"token {token}"})
        assert me.status_code == 200 and me.json()["name"] == "survivor"  # user and token kept
        # The server kept running and is reachable again through the new proxy.
        server = hub.server("survivor")
        assert server and server["ready"] and server["state"]["pid"] == pid
        wait_for(
            lambda: requests.get(
                f"{hub.url}/user/survivor/api/status", headers={"Authorization": f"token {token}"}
            ).status_code
            == 200,
            60,
            message="server reachable after restart",
        )
        # Its GPU lease survived the restart, so nobody else can take that GPU.
        hub.new_user("latecomer")
        assert hub.spawn("latecomer", "gpu", wait=False).status_code == 409
        # The admin password still works (it is not regenerated).
        assert hub.browser_login("admin", hub.admin_password).login_response.status_code == 302
    finally:
        hub.stop()
