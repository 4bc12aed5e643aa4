"""The hub's pages as a person sees them, in Chromium: a GPU profile that cannot start now is
disabled on the spawn form with the reason; admins find the sign-ups waiting for approval; the
Services menu leads to pages, not JSON; a newcomer finds the examples in their home."""

import os
import pwd
import secrets

import pytest
import requests

import tests.extension.conftest as browser_fixtures
from tests.extension.conftest import login, open_lab
from tests.support.launcher import IS_ROOT, wait_for

pytestmark = pytest.mark.browser
# The browser fixtures of tests/extension (Chromium, pages that fail on console errors).
browser, new_page = browser_fixtures.browser, browser_fixtures.new_page

from playwright.sync_api import expect  # noqa: E402

EXAMPLES = ("distributed-training.ipynb", "gpu-training.ipynb", "train-model.ipynb")


def axe_violations(page, selector: str) -> list[str]:
    """axe-core's violations inside ``selector``, as tests/extension's helper, but without axe's
    preloading of style sheets: on the hub's pages it fetches the @imports of JupyterHub's
    style.min.css relative to the page (/hub/components/...), 404s the console reports."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, context=selector, options={"resultTypes": ["violations"], "preload": False})
    return [f"{v['id']} ({v['impact']}): {v['help']}" for v in results.response["violations"]]


def approved(hub, name: str) -> tuple[str, str, str]:
    password = "pw-" + secrets.token_hex(8)
    assert hub.signup(name, password).status_code == 200
    hub.approve(name)
    return name, password, hub.new_user(name)


def test_a_gpu_profile_without_a_free_gpu_is_disabled_with_the_reason(hub, new_page):
    name, password, _ = approved(hub, "hp-spawner")
    holders = [approved(hub, f"hp-gpu{i}")[0] for i in (1, 2)]
    for holder in holders:  # the session's hub has two GPUs: both taken
        assert hub.spawn(holder, "gpu").status_code in (201, 202)
    page = new_page()
    login(page, hub, name, password)
    page.goto(f"{hub.url}/hub/spawn")
    gpu = page.locator('input[name="profile"][value="gpu"]')
    expect(gpu).to_be_disabled()
    reason = page.locator("#profile-gpu-reason")
    expect(reason).to_have_text("Not available now: needs 1 GPU(s), 0 free. Try again when another server or job stops.")
    assert gpu.get_attribute("aria-describedby") == "profile-gpu-reason"
    expect(page.locator('input[name="profile"][value="cpu"]')).to_be_checked()
    assert axe_violations(page, "#nb-profiles") == []

    hub.stop_server(holders[0])
    page.reload()
    expect(page.locator('input[name="profile"][value="gpu"]')).to_be_enabled()
    expect(page.locator("#profile-gpu-reason")).to_have_count(0)
    hub.stop_server(holders[1])


def test_admins_see_the_sign_ups_waiting(hub, new_page):
    assert hub.signup("hp-newcomer", "pw-" + secrets.token_hex(8)).status_code == 200  # not approved
    page = new_page()
    login(page, hub, "admin", hub.admin_password)
    page.goto(f"{hub.url}/hub/home")
    link = page.locator("#nb-signups-link")
    expect(link).to_be_visible()
    expect(link).to_contain_text("waiting for approval")
    expect(page.locator("#nb-signups-waiting")).to_contain_text("waiting for approval")
    page.locator("#nb-signups-waiting").get_by_role("link", name="review sign-ups").click()
    page.wait_for_url("**/hub/authorize")
    expect(page.get_by_text("hp-newcomer")).to_be_visible()

    # Not for other users.
    name, password, _ = approved(hub, "hp-not-admin")
    other = new_page()
    login(other, hub, name, password)
    other.goto(f"{hub.url}/hub/home")
    expect(other.get_by_role("link", name="Home")).to_be_visible()
    expect(other.locator("#nb-signups-link")).to_have_count(0)
    expect(other.locator("#nb-signups-waiting")).to_have_count(0)


def test_the_services_menu_leads_to_pages(hub, new_page):
    name, password, token = approved(hub, "hp-services")
    page = new_page()
    login(page, hub, name, password)
    page.goto(f"{hub.url}/hub/home")
    page.get_by_role("button", name="Services").click()
    page.get_by_role("link", name="executor").click()
    expect(page.get_by_role("heading", name="Notebench executor")).to_be_visible()
    expect(page.get_by_role("link", name="Open JupyterLab")).to_have_attribute("href", "/hub/user-redirect/lab")
    assert axe_violations(page, "main") == []
    page.go_back()
    page.get_by_role("button", name="Services").click()
    page.get_by_role("link", name="mlflow").click()
    expect(page.get_by_role("link", name="Experiments", exact=True)).to_be_visible(timeout=120_000)
    # A mistyped address under the executor is a page for a person, JSON for a program. (Not
    # opened in Chromium: it reports every page answered 404 on its console.)
    as_browser = {"Authorization": f"token {token}", "Accept": "text/html", "Sec-Fetch-Mode": "navigate"}
    r = requests.get(f"{hub.url}/services/executor/no-such-page", headers=as_browser, timeout=30)
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("text/html")
    assert "<h1>Not found</h1>" in r.text and 'href="/services/executor/"' in r.text
    r = requests.get(f"{hub.url}/services/executor/no-such-page", headers={"Authorization": f"token {token}"}, timeout=30)
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/json")
    r = requests.get(f"{hub.url}/services/executor/", headers={"Authorization": f"token {token}"}, timeout=30)
    assert r.status_code == 200 and r.json()["openapi"] == "/services/executor/api/openapi.json"
    # Anonymous: the browser goes to the login, a program is refused.
    r = requests.get(f"{hub.url}/services/executor/", headers={"Accept": "text/html", "Sec-Fetch-Mode": "navigate"},
                     allow_redirects=False, timeout=30)
    assert r.status_code == 302
    assert requests.get(f"{hub.url}/services/executor/", timeout=30).status_code == 401


def test_a_newcomer_finds_the_examples_in_their_home(hub, new_page):
    name, password, token = approved(hub, "hp-fresh")
    page = new_page()
    login(page, hub, name, password)
    page.goto(f"{hub.url}/hub/home")
    expect(page.locator("#nb-welcome")).to_contain_text("examples/")
    for notebook in EXAMPLES:
        expect(page.locator("#nb-welcome")).to_contain_text(notebook)

    page.locator("#start").click()
    page.wait_for_url("**/hub/spawn**")
    page.get_by_role("button", name="Start").click()
    page.locator(".jp-LauncherCard, .jp-DirListing").first.wait_for(timeout=180_000)
    open_lab(page, hub, name)
    page.locator('.jp-DirListing-item[title^="Name: examples"]').dblclick()
    for notebook in EXAMPLES:
        expect(page.locator(f'.jp-DirListing-item[title^="Name: {notebook}"]')).to_be_visible()

    def contents(path):
        return requests.get(f"{hub.url}/user/{name}/api/contents/{path}", headers={"Authorization": f"token {token}"},
                            timeout=30)

    if IS_ROOT:  # the user's own files, as their own account
        home = pwd.getpwnam(f"nb-{name}").pw_dir
        assert os.stat(f"{home}/examples/train-model.ipynb").st_uid == pwd.getpwnam(f"nb-{name}").pw_uid

    # Copied once, at the first start: changes are kept, deleted examples stay deleted.
    changed = contents("examples/train-model.ipynb").json()["content"]
    changed["cells"][0]["source"] = "# mine now"
    r = requests.put(f"{hub.url}/user/{name}/api/contents/examples/train-model.ipynb",
                     headers={"Authorization": f"token {token}"},
                     json={"type": "notebook", "format": "json", "content": changed}, timeout=30)
    assert r.status_code == 200, r.text
    r = requests.delete(f"{hub.url}/user/{name}/api/contents/examples/gpu-training.ipynb",
                        headers={"Authorization": f"token {token}"}, timeout=30)
    assert r.status_code == 204
    page.goto(f"{hub.url}/hub/home")  # leave the lab before its server stops
    hub.stop_server(name)
    assert hub.spawn(name).status_code in (201, 202)
    wait_for(lambda: contents("examples/train-model.ipynb").status_code == 200, 60, message="server answers")
    assert contents("examples/train-model.ipynb").json()["content"]["cells"][0]["source"] == "# mine now"
    assert contents("examples/gpu-training.ipynb").status_code == 404
    page.goto(f"{hub.url}/hub/home")
    expect(page.locator("#nb-welcome")).to_have_count(0)  # no longer new
    hub.stop_server(name)
