"""Idle culling made visible, on a hub of its own with short timeouts: with JupyterLab open and
nobody using it, a notice says the server will be stopped (and why), "Keep my server running"
counts as activity; after the cull the hub's home page says when and why; a culled idle kernel
is announced too."""

import secrets

import pytest
import requests

from tests.extension.conftest import login, open_lab
from tests.support.launcher import running_hub, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

from playwright.sync_api import expect  # noqa: E402

TIMEOUT, EVERY, NOTICE = 100, 5, 90
KERNEL_TIMEOUT = 10
RECORDER_TOKEN = secrets.token_hex(16)

CONFIG = f"""
c.Notebench.cull_idle_timeout = {TIMEOUT}
c.Notebench.cull_every = {EVERY}
c.Notebench.cull_notice_seconds = {NOTICE}
c.NotebenchSpawner.activity_interval = 5
c.NotebenchSpawner.kernel_cull_idle_timeout = {KERNEL_TIMEOUT}
c.NotebenchSpawner.kernel_cull_interval = 2
# A service that may record culls as the culler does, to try the hub API's bad input with.
c.JupyterHub.services = [{{"name": "hp-recorder", "api_token": "{RECORDER_TOKEN}"}}]
c.JupyterHub.load_roles.append({{"name": "hp-recorder", "scopes": ["custom:notebench-culls:record"],
                                "services": ["hp-recorder"]}})  # besides Notebench's own roles
"""


@pytest.fixture(scope="module")
def cull_hub(tmp_path_factory):
    with running_hub(tmp_path_factory, "hp-cull", CONFIG) as hub:
        yield hub


def person(hub, name):
    password = "pw-" + secrets.token_hex(8)
    assert hub.signup(name, password).status_code == 200
    hub.approve(name)
    token = hub.new_user(name)
    assert hub.spawn(name).status_code in (201, 202)
    return name, password, token


def server_notice(page):
    # Toasts on their way out (react-toastify's exit animation) are not counted: one closed by a
    # click is still in the page for a moment when the next one comes.
    return page.locator(".Toastify__toast:not([class*='-exit'])").filter(
        has_text="your server will be stopped at about")


def test_notice_before_the_cull_and_the_reason_after(cull_hub, new_page):
    hub = cull_hub
    name, password, token = person(hub, "hp-idle")
    auth = {"Authorization": f"token {token}"}
    # A notebook's kernel, left idle: culled after KERNEL_TIMEOUT s, and announced.
    r = requests.post(f"{hub.url}/user/{name}/api/sessions", headers=auth, timeout=60,
                      json={"path": "hp-notes.ipynb", "type": "notebook", "kernel": {"name": "python3"}})
    assert r.status_code == 201, r.text

    page = new_page()
    login(page, hub, name, password)
    open_lab(page, hub, name)
    kernel_notice = page.locator(".Toastify__toast").filter(has_text="The kernel of hp-notes.ipynb was stopped")
    expect(kernel_notice).to_be_visible(timeout=120_000)

    # Nobody uses the open tab: the notice comes.
    notice = server_notice(page)
    expect(notice).to_be_visible(timeout=120_000)
    expect(notice).to_contain_text("An open tab alone is not activity.")
    notice.get_by_role("button", name="Why?").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("An open JupyterLab tab that nobody uses is not activity.")
    dialog.get_by_role("button", name="OK").click()

    # Keeping the server running is activity the hub hears of at once.
    before = hub.server(name)["last_activity"]
    notice = server_notice(page)
    expect(notice).to_have_count(1)  # one notice, not a copy: the one "Why?" closed is gone
    notice.get_by_role("button", name="Keep my server running").click()
    wait_for(lambda: hub.server(name)["last_activity"] > before, 30, message="activity reported to the hub")
    expect(notice).to_have_count(0, timeout=30_000)

    # Left alone again: the notice comes back; the server goes; the home page says why.
    expect(server_notice(page)).to_be_visible(timeout=120_000)
    page.goto(f"{hub.url}/hub/home")  # off the lab before its server stops under it
    wait_for(lambda: hub.server(name) is None, 240, interval=1, message="idle server culled")
    page.reload()
    reason = page.locator("#nb-cull-reason")
    expect(reason).to_contain_text("Your server was stopped at")
    expect(reason).to_contain_text("without activity")

    # Started again, the reason is history.
    assert hub.spawn(name).status_code in (201, 202)
    page.reload()
    expect(page.locator("#nb-cull-reason")).to_have_count(0)
    hub.stop_server(name)
    page.reload()
    expect(page.locator("#nb-cull-reason")).to_have_count(0)  # stopped by hand: no cull to explain


def test_culling_state_is_the_owners(cull_hub):
    hub = cull_hub
    owner, _, owner_token = person(hub, "hp-owner")
    other_token = hub.new_user("hp-other")
    url = f"{hub.url}/user/{owner}/notebench/culling"
    assert requests.get(url, timeout=30, allow_redirects=False).status_code in (302, 403)
    assert requests.get(url, headers={"Authorization": f"token {other_token}"}, timeout=30,
                        allow_redirects=False).status_code == 403
    r = requests.get(url, headers={"Authorization": f"token {owner_token}"}, timeout=30)
    assert r.status_code == 200
    state = r.json()
    assert state["server"]["timeout_seconds"] == TIMEOUT and state["server"]["notice_seconds"] == NOTICE
    assert state["kernels"]["timeout_seconds"] == KERNEL_TIMEOUT
    r = requests.get(url, headers={"Authorization": f"token {hub.admin_token}"}, timeout=30)
    assert r.status_code == 200  # admins may use every server (JupyterHub's admin role)
    # Reading the state is no activity; keeping the server is.
    before = hub.server(owner)["last_activity"]
    requests.get(url, headers={"Authorization": f"token {owner_token}"}, timeout=30)
    r = requests.post(url, headers={"Authorization": f"token {owner_token}"}, timeout=30)
    assert r.status_code == 200, r.text
    assert hub.server(owner)["last_activity"] > before
    hub.stop_server(owner)


def test_only_the_culler_records_culls(cull_hub):
    hub = cull_hub
    hub.new_user("hp-victim")
    assert hub.spawn("hp-victim").status_code in (201, 202)  # a server, stopped: the one to record about
    hub.stop_server("hp-victim")
    token = hub.new_user("hp-mallory")
    url = f"{hub.url}/hub/api/notebench/culls"
    body = {"server": "hp-victim/", "inactive_seconds": 10}
    for who in (None, token, hub.admin_token):  # anonymous, a user, an admin: none is the culler
        headers = {"Authorization": f"token {who}"} if who else {}
        assert requests.post(url, headers=headers, json=body, timeout=30).status_code == 403
    recorder = {"Authorization": f"token {RECORDER_TOKEN}"}
    for bad, field in (({"server": "hp-victim"}, "server"), ({"server": 3}, "server"),
                       ({"server": "hp-victim/", "inactive_seconds": -1}, "inactive_seconds"),
                       ({"server": "hp-victim/", "inactive_seconds": "10"}, "inactive_seconds"),
                       ({"server": "hp-victim/", "inactive_seconds": True}, "inactive_seconds")):
        r = requests.post(url, headers=recorder, json=bad, timeout=30)
        assert r.status_code == 400 and field in r.json()["message"], (bad, r.text)
    r = requests.post(url, headers=recorder, data=b"[1, 2", timeout=30)
    assert r.status_code == 400
    r = requests.post(url, headers=recorder, json={"server": "hp-nobody/", "inactive_seconds": 10}, timeout=30)
    assert r.status_code == 404
    r = requests.post(url, headers=recorder, json=body, timeout=30)
    assert r.status_code == 201 and r.json()["inactive_seconds"] == 10
