"""The trust boundary in local mode: OS accounts, private homes, no reaching another user's server."""

import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.accounts import set_password
from tests.support.kernels import execute, start_kernel
from tests.support.launcher import IS_ROOT, users_with_servers

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="per-user OS accounts need the hub to run as root (CI does)")


@pytest.fixture(scope="module")
def two_users(hub):
    with users_with_servers(hub, "iso-a", "iso-b") as tokens:
        yield tokens


def as_os_user(account, *cmd):
    return subprocess.run(["runuser", "-u", account, "--", *cmd], capture_output=True, text=True)


def test_each_user_has_an_os_account_with_a_private_home(hub, two_users):
    for name in two_users:
        entry = pwd.getpwnam(f"nb-{name}")
        st = os.stat(entry.pw_dir)
        assert st.st_uid == entry.pw_uid
        assert st.st_mode & 0o777 == 0o700


def test_server_runs_as_the_users_account(hub, two_users):
    pid = hub.api("GET", "/users/iso-a").json()["servers"][""]["state"]["pid"]
    assert os.stat(f"/proc/{pid}").st_uid == pwd.getpwnam("nb-iso-a").pw_uid


def test_user_cannot_read_another_users_home(hub, two_users):
    secret = "/home/nb-iso-b/secret.txt"
    assert as_os_user("nb-iso-b", "sh", "-c", f"echo top-secret > {secret}").returncode == 0
    assert as_os_user("nb-iso-b", "cat", secret).stdout.strip() == "top-secret"
    denied = as_os_user("nb-iso-a", "cat", secret)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    assert as_os_user("nb-iso-a", "ls", "/home/nb-iso-b").returncode != 0


def test_token_of_a_cannot_reach_b_server(hub, two_users):
    own = requests.get(f"{hub.url}/user/iso-a/api/contents", headers={"Authorization": f"token {two_users['iso-a']}"})
    assert own.status_code == 200
    other = requests.get(
        f"{hub.url}/user/iso-b/api/contents", headers={"Authorization": f"token {two_users['iso-a']}"}, allow_redirects=False
    )
    assert other.status_code in (403, 404)
    assert "secret.txt" not in other.text


def test_cookie_of_a_cannot_reach_b_server(hub, two_users):
    # iso-a was made through the API: the admin gives them a password (signing up is for new names).
    admin = hub.browser_login("admin", hub.admin_password)
    assert set_password(hub, "iso-a", "iso-a-password-1", session=admin).status_code == 200
    browser = hub.browser_login("iso-a", "iso-a-password-1")
    assert browser.login_response.status_code == 302
    # Their own JupyterLab opens (the OAuth dance to the server completes with the hub cookie).
    own = browser.get(f"{hub.url}/user/iso-a/lab")
    assert own.status_code == 200 and "JupyterLab" in own.text
    # B's does not: the hub refuses to authorize A for B's server.
    other = browser.get(f"{hub.url}/user/iso-b/lab")
    assert other.status_code in (403, 404)
    assert browser.get(f"{hub.url}/user/iso-b/api/contents").status_code in (403, 404)


def test_kernels_listen_on_unix_sockets_only_their_user_can_reach(hub, two_users):
    """Not TCP ports: any account can connect to a port, and ports picked by many servers at once
    collide (bench/README.md, "Storm")."""
    token = two_users["iso-a"]
    kernel_id = start_kernel(hub.url, "iso-a", token)
    assert execute(hub.url, "iso-a", token, kernel_id, "print(1 + 1)").strip() == "2"
    uid = pwd.getpwnam("nb-iso-a").pw_uid
    runtime = Path(f"/run/notebench-runtime/{uid}")
    assert (runtime.stat().st_uid, runtime.stat().st_mode & 0o777) == (uid, 0o700)
    connection = json.loads((runtime / f"kernel-{kernel_id}.json").read_text())
    assert connection["transport"] == "ipc" and connection["ip"].startswith(str(runtime))
    # Its five channels are sockets in that directory (ipykernel's own output pipe stays on TCP,
    # bound where the system picks: it takes no connection from the server).
    prefix = Path(connection["ip"])
    channels = [connection[f"{name}_port"] for name in ("shell", "iopub", "stdin", "control", "hb")]
    assert all(stat.S_ISSOCK(Path(f"{prefix}-{port}").lstat().st_mode) for port in channels)
    denied = as_os_user("nb-iso-b", "ls", str(runtime))
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
