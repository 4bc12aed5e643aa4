"""The admins' page, /hub/notebench/admin (notebench.hub.admin_page), in Chromium: an admin finds
it from the hub's menu and sees a user's running server with its profile and owner, a running job
with its owner, the usage section (charts of what the executor's meter recorded),
edits that user's quotas (a refused value is shown at its field; a saved one reads back through the
API) and finds the change in the audit log; axe-core finds no violation. Others are refused: a
user who is not an admin gets 403, anonymous is sent to the login; the page's token reaches the
executor only."""

import json
import re
import secrets

import pytest
import requests

import tests.extension.conftest as browser_fixtures
from tests.extension.conftest import login, screenshot
from tests.hub.test_hub_pages import approved, axe_violations
from tests.support.jobs import submit

pytestmark = pytest.mark.browser
browser, new_page = browser_fixtures.browser, browser_fixtures.new_page

from playwright.sync_api import expect  # noqa: E402

PAGE = "/hub/notebench/admin"
# Chromium logs every 4xx answer on the console; these the test causes on purpose:
EXPECTED_ERRORS = [
    re.compile(r"status of 400 .*/services/executor/api/quotas/users/"),  # the refused quota value
]


@pytest.fixture(scope="module")
def busy_user(hub):
    """A user with a GPU server and a GPU job running (the session's hub has two GPUs, both taken
    here); both stopped afterwards."""
    name, password, token = approved(hub, f"ap-{secrets.token_hex(3)}")
    assert hub.spawn(name, "gpu").status_code in (201, 202)
    job = submit(hub, token, "import time; time.sleep(600)", name="admin-page-sleeper", profile="gpu")
    hub.wait_job(job["id"], token, until=("running",))
    yield {"name": name, "token": token, "job": job["id"]}
    hub.executor("POST", f"jobs/{job['id']}/cancel", token)
    hub.stop_server(name)


def test_an_admin_sees_what_runs_edits_a_quota_and_finds_it_audited(hub, new_page, busy_user):
    owner, job = busy_user["name"], busy_user["job"]
    page = new_page(allowed_errors=EXPECTED_ERRORS)
    login(page, hub, "admin", hub.admin_password)
    page.goto(f"{hub.url}/hub/home")
    page.locator("#nb-admin-link").click()
    page.wait_for_url(f"**{PAGE}")
    expect(page.get_by_role("heading", name="Notebench admin", level=1)).to_be_visible()

    # What runs now: the server with its profile, GPU and owner, the job with its owner, the GPU
    # leases of both with their owner (a job's lease names the job: the page finds its owner).
    server = page.locator(f'#nb-servers tr[data-owner="{owner}"]')
    expect(server).to_have_count(1)
    expect(server.locator("td").nth(0)).to_have_text(owner)
    expect(server.locator("td").nth(2)).to_have_text("gpu")
    expect(server.locator("td").nth(3)).to_have_text(re.compile(r"^[01]$"))
    row = page.locator(f'#nb-jobs tr[data-job="{job}"]')
    expect(row).to_be_visible()
    expect(row.locator("td").nth(1)).to_have_text(owner)
    expect(row.locator("td").nth(3)).to_have_text("running")
    expect(page.locator("#nb-endpoints tbody td").first).not_to_have_text("Loading…")
    for holder in (f"server:{owner}/", f"job:{job}"):
        expect(page.locator(f'#nb-leases tr[data-holder="{holder}"] .nb-lease-owner')).to_have_text(owner)

    # Usage: what the executor's meter recorded (GET /api/usage), charted per user and per group.
    expect(page.locator("#nb-usage-status")).to_have_text(re.compile(r"^\d+ usage records since "))
    expect(page.locator("#nb-usage-users")).to_be_visible()
    expect(page.locator("#nb-usage-groups")).to_be_visible()

    # Quotas: look the user up; a value the API refuses is shown at its field, not saved.
    page.get_by_label("Quotas of a").select_option("users")
    page.get_by_label("Name", exact=True).fill(owner)
    page.get_by_role("button", name="Look up").click()
    expect(page.locator("#nb-quota-title")).to_have_text(f"Quotas of user {owner}")
    running = page.get_by_label("Running jobs", exact=True)
    running.fill("2.5")
    page.get_by_role("button", name="Save quotas").click()
    expect(running).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#nb-q-running_jobs-error")).to_contain_text("running_jobs")
    assert hub.executor("GET", f"quotas/users/{owner}").json()["set"] == {}

    running.fill("3")
    page.locator("#nb-q-queued_jobs-unlimited").check()
    page.get_by_role("button", name="Save quotas").click()
    expect(page.locator("#nb-quota-status")).to_have_text("Saved.")
    expect(running).not_to_have_attribute("aria-invalid", "true")
    saved = hub.executor("GET", f"quotas/users/{owner}").json()
    assert saved["set"] == {"running_jobs": 3, "queued_jobs": None}
    assert saved["running_jobs"] == 3 and saved["queued_jobs"] is None
    expect(page.locator("#nb-q-running_jobs-now")).to_contain_text("Applies now: 3 (user)")

    # The audit log shows the change, by whom and to whose quotas.
    entry = page.locator("#nb-audit-log tr[data-action='quota.update']", has_text=f"user {owner}").first
    expect(entry).to_be_visible()
    expect(entry.locator("td").nth(1)).to_have_text("admin")
    expect(entry.locator("td").nth(4)).to_have_text(owner)
    page.get_by_label("Action (e.g. quota or job.submit)").fill("quota")
    page.get_by_label("User (who did it, or whose thing)").fill(owner)
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#nb-audit-log tbody tr")).to_have_count(1)
    expect(page.locator("#nb-audit-log tbody tr").first).to_have_attribute("data-action", "quota.update")

    assert axe_violations(page, "#nb-admin") == []
    screenshot(page, page.locator("#nb-admin"), "admin-page")


def test_only_admins_get_the_page_and_its_token_reaches_the_executor_only(hub):
    # Anonymous: to the login page.
    r = requests.get(f"{hub.url}{PAGE}", allow_redirects=False, timeout=30)
    assert r.status_code == 302 and "/hub/login" in r.headers["Location"]

    # A user who is not an admin: 403, and no token in the page.
    name, password, _ = approved(hub, f"ap-plain-{secrets.token_hex(3)}")
    session = hub.browser_login(name, password)
    r = session.get(f"{hub.url}{PAGE}", timeout=30)
    assert r.status_code == 403
    assert "notebenchAdmin" not in r.text
    r = session.get(f"{hub.url}/hub/home", timeout=30)
    assert r.status_code == 200 and "nb-admin-link" not in r.text

    # The admin's page token: the executor's admin API yes, the hub's API no.
    admin = hub.browser_login("admin", hub.admin_password)
    r = admin.get(f"{hub.url}{PAGE}", timeout=30)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    token = re.search(r'"token": "([^"]+)"', r.text).group(1)
    assert hub.executor("GET", "audit?limit=1", token).status_code == 200
    assert hub.api("GET", "/users", token).status_code == 403
    model = hub.api("GET", "/user", token).json()
    assert model["name"] == "admin"
    assert set(model["scopes"]) == {"access:services!service=executor", "read:users:name!user=admin",
                                    "read:users:groups!user=admin"}  # and what any token may: identify itself


def test_usage_is_charted_per_user_and_per_group(hub, new_page):
    """The charts against the usage API's contract (rows per user, day and profile), answered here
    by the browser itself with known rows, so every bar and sum can be checked."""
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)  # the page's days are UTC days
    today, yesterday = now.date().isoformat(), (now - timedelta(days=1)).date().isoformat()

    def row(day, user, groups, profile, gpu_hours, memory):
        return {"day": day, "user": user, "groups": groups, "profile": profile, "cpu_seconds_requested": 3600.0,
                "cpu_seconds_used": None, "memory_gb_hours": memory, "gpu_hours": gpu_hours, "cost": None}

    rows = [
        row(yesterday, "ada", ["ml"], "gpu", 2.0, 8.0),
        row(today, "ada", ["ml"], "cpu", 0.0, 4.0),
        row(today, "bob", ["ml", "ops"], "gpu", 1.5, 2.0),
    ]
    page = new_page()
    asked = []

    def usage(route):
        asked.append(route.request.url)
        route.fulfill(status=200, content_type="application/json", body=json.dumps({"rows": rows}))

    page.route(re.compile(r".*/services/executor/api/usage\?.*"), usage)
    login(page, hub, "admin", hub.admin_password)
    page.goto(f"{hub.url}{PAGE}")
    expect(page.locator("#nb-usage-status")).to_have_text(re.compile(r"^3 usage records since "))
    assert "since=" in asked[0]
    # GPU-hours: ada yesterday and bob today (ada's 0 today draws nothing); per group, ml both days, ops today.
    users, groups = page.locator("#nb-usage-users"), page.locator("#nb-usage-groups")
    expect(users.locator("svg rect")).to_have_count(2)
    expect(users.locator(".nb-legend li")).to_have_text(["ada", "bob"])
    expect(groups.locator("svg rect")).to_have_count(3)
    expect(groups.locator(".nb-legend li")).to_have_text(["ml", "ops"])
    expect(users.locator("svg rect title").first).to_have_text(f"ada, {yesterday}: 2 GPU-hours")
    users.get_by_text("The numbers").click()
    expect(users.locator("table tbody th")).to_have_text(["ada", "bob"])
    expect(users.locator("table tbody td")).to_have_text(["2", "1.5"])

    page.get_by_label("Quantity").select_option("memory_gb_hours")
    expect(users.locator("svg rect")).to_have_count(3)
    groups.get_by_text("The numbers").click()
    expect(groups.locator("table tbody th")).to_have_text(["ml", "ops"])
    expect(groups.locator("table tbody td")).to_have_text(["14", "2"])
    assert axe_violations(page, "#nb-usage") == []
    screenshot(page, page.locator("#nb-usage"), "admin-page-usage")
