"""The trust boundary in local mode: OS accounts, private homes, no reaching another user's server."""

import os
import pwd
import subprocess

import pytest
import requests

from tests.support.accounts import set_password
from tests.support.launcher import IS_ROOT

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="per-user OS accounts need the hub to run as root (CI does)")


@pytest.fixture(scope="module")
def two_users(hub):
    tokens = {name: hub.new_user(name) for name in ("iso-a", "iso-b")}
    for name in tokens:
        hub.spawn(name, "cpu")
    yield tokens
    for name in tokens:
        hub.stop_server(name)


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
