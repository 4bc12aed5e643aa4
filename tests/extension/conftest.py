"""Browser tests' shared pieces: Debian's Chromium driven by Playwright, pages that fail their test
on any console error, logging in through the hub's page, a user with a running server, and
axe-core's accessibility rules run on a part of the page."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import pytest
import requests

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "tests" / "artifacts" / "screenshots"
EXAMPLES = REPO / "examples"

# Console messages that are not the product's errors. Each entry says why it is allowed.
ALLOWED_CONSOLE_ERRORS = [
    # Chromium logs a failed favicon fetch of an iframe's about:blank document.
    re.compile(r"favicon\.ico"),
]


def chromium_or_skip() -> None:
    """Skip (or, where CI is set, fail) the calling module when Chromium is not installed."""
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: scripts/install --test installs the 'chromium' package", pytrace=False)
    pytest.skip(f"{CHROMIUM} is missing (install the 'chromium' package)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


class ConsoleErrors:
    """Every console error and uncaught exception of the pages it watches."""

    def __init__(self):
        self.errors: list[str] = []

    def watch(self, page, allowed=()) -> None:
        page.on("console", lambda message: self._console(message, allowed))
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _console(self, message, allowed=()) -> None:
        if message.type != "error":
            return
        text = f"{message.text} (at {message.location.get('url', '?')})"
        if not any(pattern.search(text) for pattern in [*ALLOWED_CONSOLE_ERRORS, *allowed]):
            self.errors.append(text)


@pytest.fixture
def new_page(browser):
    """``new_page(**context_options)``: a page in a fresh browser context (its own cookies). The
    test fails at teardown if any page it made logged a console error or threw.
    ``new_page(allowed_errors=[regex, ...])``: console errors the test causes on purpose (Chromium
    logs every 4xx answer, e.g. a form's value the server refuses), each said why by the caller."""
    console = ConsoleErrors()
    contexts = []

    def make(allowed_errors=(), **options):
        options.setdefault("viewport", {"width": 1600, "height": 1000})
        context = browser.new_context(**options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        console.watch(page, allowed_errors)
        return page

    yield make
    for context in contexts:
        context.close()
    assert not console.errors, "the browser console showed errors:\n" + "\n".join(console.errors)


def login(page, hub, name: str, password: str) -> None:
    """Log in through the hub's login page, as a person does."""
    page.goto(f"{hub.url}/hub/login")
    page.fill('input[name="username"]', name)
    page.fill('input[name="password"]', password)
    page.click('[type="submit"]')
    page.wait_for_url(re.compile(r"/hub/(home|spawn|spawn-pending)|/user/"), timeout=60_000)


def person_with_server(hub, name: str, notebooks=("train-model.ipynb",)) -> tuple[str, str, str]:
    """A user who signed up and was approved, with their server started and copies of the given
    examples in their home. Returns (name, password, API token)."""
    password = "pw-" + secrets.token_hex(8)
    assert hub.signup(name, password).status_code == 200
    hub.approve(name)
    token = hub.new_user(name)  # the hub knows a signed-up user only from the first login: add them now
    assert hub.spawn(name).status_code in (201, 202)
    for notebook in notebooks:
        put_notebook(hub, name, token, notebook, json.loads((EXAMPLES / notebook).read_text()))
    return name, password, token


def put_notebook(hub, name: str, token: str, path: str, content: dict) -> None:
    r = requests.put(
        f"{hub.url}/user/{name}/api/contents/{path}",
        headers={"Authorization": f"token {token}"},
        json={"type": "notebook", "format": "json", "content": content},
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text


def open_lab(page, hub, name: str, path: str = "") -> None:
    """JupyterLab from its default layout (`?reset`: not the workspace an earlier run left in a
    home that outlived it), on ``path`` if given."""
    page.goto(f"{hub.url}/user/{name}/lab/tree/{path}?reset" if path else f"{hub.url}/user/{name}/lab?reset")
    page.locator(".jp-LauncherCard, .jp-NotebookPanel").first.wait_for(timeout=120_000)
    news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's "news?" prompt
    if news.is_visible():
        news.click()


def job_ends_succeeded(row, hub, token: str, job_id, timeout_ms: int) -> None:
    """The job's row shows "succeeded"; if it ends otherwise, the failure says why (the job's
    record from the API: its error, history and log tail), not only the badge's text."""
    from playwright.sync_api import expect

    badge = row.locator(".nb-job-head .nb-badge")
    expect(badge).not_to_have_text(re.compile(r"^\s*(queued|running|pending)?\s*$"), timeout=timeout_ms)
    if badge.inner_text().strip() != "succeeded":
        job = hub.executor("GET", f"jobs/{job_id}", token).json()
        log = hub.executor("GET", f"jobs/{job_id}/log", token)
        raise AssertionError(f"job {job_id} ended {badge.inner_text()!r}: {json.dumps(job)[:4000]}\n"
                             f"log tail: {log.text[-3000:]!r}")


def axe_violations(page, selector: str) -> list[str]:
    """axe-core's violations (WCAG 2.x A and AA, and best practices) inside ``selector``, one line each."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, context=selector, options={"resultTypes": ["violations"]})
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — " + "; ".join(node["target"][0] if isinstance(node["target"][0], str)
                                                             else str(node["target"]) for node in v["nodes"][:5])
        for v in results.response["violations"]
    ]


def screenshot(page, locator, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    locator.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.screenshot(path=str(SCREENSHOTS / f"{name}-window.png"))
