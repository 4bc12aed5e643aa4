"""MLflow's UI through Notebench, in Chromium: it opens in the classic ML view ("Model training"),
without the Assistant (whose API Notebench blocks), with a link back to JupyterLab, and with no
console errors."""

import secrets

import pytest
import requests

import tests.extension.conftest as browser_fixtures
from tests.extension.conftest import login

pytestmark = pytest.mark.browser
# The browser fixtures of tests/extension (Chromium, pages that fail on console errors).
browser, new_page = browser_fixtures.browser, browser_fixtures.new_page

from playwright.sync_api import expect  # noqa: E402

PREFIX = "/services/mlflow/"


@pytest.fixture(scope="module")
def person(hub):
    name, password = "hp-mlflow-ui", "pw-" + secrets.token_hex(8)
    assert hub.signup(name, password).status_code == 200
    hub.approve(name)
    return name, password, hub.new_user(name)


def test_mlflow_opens_in_the_classic_view_without_the_assistant(hub, new_page, person):
    name, password, _ = person
    page = new_page()
    login(page, hub, name, password)
    page.goto(hub.url + PREFIX)
    # The classic ML view: its navigation (Model registry), not GenAI's (Prompts).
    expect(page.get_by_role("link", name="Model registry", exact=True)).to_be_visible(timeout=120_000)
    expect(page.get_by_role("link", name="Prompts", exact=True)).to_have_count(0)
    assert page.evaluate("localStorage.getItem('mlflow.workflowType_v1')") == '"machine_learning"'
    # No Assistant: neither its panel (which MLflow opens on a first visit) nor its button.
    expect(page.get_by_text("Welcome to MLflow Assistant")).to_have_count(0)
    expect(page.locator("[data-assistant-ui]:visible")).to_have_count(0)
    expect(page.get_by_role("button", name="MLflow Assistant")).to_be_hidden()
    # Back to JupyterLab.
    lab = page.get_by_role("link", name="JupyterLab")
    expect(lab).to_be_visible()
    assert lab.get_attribute("href") == "/hub/user-redirect/lab"


def test_a_users_own_choice_of_view_is_kept(hub, new_page, person):
    name, password, _ = person
    page = new_page()
    login(page, hub, name, password)
    page.goto(hub.url + PREFIX)
    expect(page.get_by_role("link", name="Model registry", exact=True)).to_be_visible(timeout=120_000)
    page.get_by_text("GenAI", exact=True).click()
    expect(page.get_by_role("link", name="Prompts", exact=True)).to_be_visible()
    page.reload()
    expect(page.get_by_role("link", name="Prompts", exact=True)).to_be_visible(timeout=120_000)
    expect(page.locator("[data-assistant-ui]:visible")).to_have_count(0)
    expect(page.get_by_role("button", name="MLflow Assistant")).to_be_hidden()


def test_the_assistant_api_stays_blocked(hub, person):
    _, _, token = person
    auth = {"Authorization": f"token {token}"}
    base = hub.url + PREFIX
    # What the UI asks as it starts is answered "nothing set up", and only to the logged in.
    r = requests.get(base + "ajax-api/3.0/mlflow/assistant/config", headers=auth, timeout=30)
    assert r.status_code == 200 and r.json()["providers"] == {} and r.json()["remote_access_allowed"] is False
    r = requests.get(base + "ajax-api/3.0/mlflow/assistant/providers", headers=auth, timeout=30)
    assert r.status_code == 200 and r.json()["providers"] == []
    assert requests.get(base + "ajax-api/3.0/mlflow/assistant/config", timeout=30).status_code == 401
    # Everything else of it is refused, for users and admins alike.
    for who in (token, hub.admin_token):
        for method, path in (("POST", "ajax-api/3.0/mlflow/assistant/message"),
                             ("PUT", "ajax-api/3.0/mlflow/assistant/config"),
                             ("GET", "api/3.0/mlflow/assistant/config"),
                             ("GET", "ajax-api/3.0/mlflow/assistant/providers/claude_code/health")):
            r = requests.request(method, base + path, headers={"Authorization": f"token {who}"}, json={}, timeout=30)
            assert r.status_code == 403, (method, path, r.status_code)


def test_the_ui_page_needs_a_login(hub):
    r = requests.get(hub.url + PREFIX, headers={"Accept": "text/html", "Sec-Fetch-Mode": "navigate"},
                     allow_redirects=False, timeout=30)
    assert r.status_code == 302 and "/hub/" in r.headers["Location"]
    assert requests.get(hub.url + PREFIX, timeout=30, allow_redirects=False).status_code == 401
