"""The Jobs and Models panels in a real browser (Playwright driving Debian's Chromium): log in
through the hub's page, run a training notebook as a job, register two versions, deploy them 80/20
and "Try it". Screenshots of each panel go to tests/artifacts/screenshots/."""

import json
import os
import re
import secrets
import shutil
from pathlib import Path

import pytest
import requests

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "tests" / "artifacts" / "screenshots"
TRAIN_NOTEBOOK = REPO / "examples" / "train-model.ipynb"
# Generous: the first job of a user starts its runner, the first deploy its scoring host.
JOB_TIMEOUT_MS = 180_000
ENDPOINT_TIMEOUT_MS = 180_000

pytestmark = pytest.mark.browser

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: scripts/install --test installs the 'chromium' package", pytrace=False)
    pytest.skip(f"{CHROMIUM} is missing (install the 'chromium' package)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def person(hub):
    """A user who signed up and was approved, with their server started and the training notebook."""
    name, password = "grace", "pw-" + secrets.token_hex(8)
    assert hub.signup(name, password).status_code == 200
    hub.approve(name)
    token = hub.new_user(name)  # the hub knows a signed-up user only from the first login: add them now
    assert hub.spawn(name).status_code in (201, 202)
    r = requests.put(
        f"{hub.url}/user/{name}/api/contents/train-model.ipynb",
        headers={"Authorization": f"token {token}"},
        json={"type": "notebook", "format": "json", "content": json.loads(TRAIN_NOTEBOOK.read_text())},
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text
    return name, password


def screenshot(page, locator, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    locator.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.screenshot(path=str(SCREENSHOTS / f"{name}-window.png"))


def run_job(page, c_value: str, previous_job: str | None = None) -> str:
    form = page.locator('form[aria-label="Run as job"]')
    form.locator('input[name="param-C"]').fill(c_value)
    form.locator('button[type="submit"]').click()
    message = form.locator(".nb-ok")
    # The form clears its message on submit and then names the new job.
    expect(message).to_have_text(re.compile(r"Submitted job #\d+"), timeout=30_000)
    if previous_job:
        expect(message).not_to_contain_text(f"#{previous_job} ")
    job_id = re.search(r"#(\d+)", message.inner_text()).group(1)
    badge = page.locator(f'.nb-job[data-job-id="{job_id}"] .nb-badge')
    expect(badge).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    return job_id


def test_run_register_deploy_try(hub, browser, person):
    name, password = person
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(60_000)

    # Log in through the hub's login page.
    page.goto(f"{hub.url}/hub/login")
    page.fill('input[name="username"]', name)
    page.fill('input[name="password"]', password)
    page.click('[type="submit"]')
    page.wait_for_url(re.compile(r"/hub/(home|spawn|spawn-pending)|/user/"), timeout=60_000)

    # Open the notebook; its toolbar has "Run as job", which opens the Jobs panel with the form.
    # `?reset`: JupyterLab starts from its default layout, not the workspace an earlier run left in
    # grace's home (homes outlive runs where OS accounts are kept), with other notebooks open and
    # the side bar already widened.
    page.goto(f"{hub.url}/user/{name}/lab/tree/train-model.ipynb?reset")
    page.locator(".nb-run-as-job-button").first.click(timeout=120_000)
    form = page.locator('form[aria-label="Run as job"]')
    expect(form).to_contain_text("train-model.ipynb")

    # The file browser's context menu has it too, for notebooks.
    page.locator('.lm-TabBar-tab[data-id="filebrowser"]').click()
    page.locator('.jp-DirListing-item[data-file-type="notebook"]', has_text="train-model.ipynb").click(button="right")
    page.locator(".lm-Menu-item", has_text="Run as job").click()
    expect(form).to_be_visible()
    expect(form).to_contain_text("train-model.ipynb")
    expect(form.locator('input[name="param-C"]')).to_have_value("1.0")
    expect(form.locator('select[name="profile"]')).to_have_value("cpu")

    first_job = run_job(page, "0.5")
    second_job = run_job(page, "2.0", previous_job=first_job)
    assert second_job != first_job
    expect(page.locator(".nb-job .nb-badge", has_text="running")).to_have_count(0)
    news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's "news?" prompt
    if news.is_visible():
        news.click()
    screenshot(page, page.locator("#notebench-jobs"), "jobs-panel")

    # The output opens as a notebook in JupyterLab (copied into job-outputs/), the HTML in a tab.
    job_card = page.locator(f'.nb-job[data-job-id="{first_job}"]')
    job_card.get_by_role("button", name="Open output").click()
    expect(page.locator(".lm-TabBar-tab", has_text=f"train-model-{first_job}.ipynb")).to_be_visible()
    job_card.get_by_role("button", name="HTML").click()
    html = page.frame_locator(f"#notebench-job-html-{first_job} iframe")
    expect(html.locator("body")).to_contain_text("accuracy", timeout=30_000)

    # Models panel: the two runs with their metrics; register both as versions of one model.
    page.locator('.lm-TabBar-tab[data-id="notebench-models"]').click()
    panel = page.locator("#notebench-models")
    # Widen the side bar (drag its splitter), as one does for tables.
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first.bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + 300)
    page.mouse.down()
    # First a move over the side bar: Lumino's drag backdrop takes the pointer capture on a pointer
    # move in the page. A first move that lands on the HTML output's iframe (right of the handle)
    # goes to the iframe's document instead, and the drag never sees the button released.
    page.mouse.move(handle["x"] - 10, handle["y"] + 300)
    page.mouse.move(700, handle["y"] + 300, steps=5)
    page.mouse.up()
    model = "iris-classifier"
    for job_id in (first_job, second_job):
        row = panel.locator("tr[data-model-id]", has_text=f"job #{job_id}")
        panel.locator("h2 button").click()  # refresh: the runs logged since the panel opened
        expect(row).to_be_visible(timeout=30_000)
        expect(row).to_contain_text("0.9")  # accuracy
        row.get_by_role("button", name="Register…").click()
        register = panel.locator('form[aria-label="Register version"]')
        register.locator('input[name="model-name"]').fill(model)
        register.locator('input[name="description"]').fill(f"from job {job_id}")
        register.get_by_role("button", name="Register").click()
        expect(register).to_have_count(0)
    versions = panel.locator(f'.nb-model[data-model="{model}"] tr[data-version]')
    expect(versions).to_have_count(2)

    # Aliases: champion on version 1, challenger on version 2.
    for alias, version in (("champion", "1"), ("challenger", "2")):
        alias_form = panel.locator(f'form[aria-label="Set alias of {model}"]')
        alias_form.locator('input[name="alias"]').fill(alias)
        alias_form.locator('select[name="version"]').select_option(version)
        alias_form.get_by_role("button", name="Set alias").click()
        expect(panel.locator(f'.nb-model[data-model="{model}"] tr[data-version="{version}"]')).to_contain_text(f"@{alias}")

    # Deploy both versions 80/20.
    deploy = panel.locator('form[aria-label="Deploy"]')
    deploy.locator('input[name="endpoint-name"]').fill("iris")
    deploy.locator('select[name="model-0"]').select_option(model)
    deploy.locator('select[name="version-0"]').select_option("1")
    deploy.locator('input[name="weight-0"]').fill("80")
    deploy.get_by_role("button", name="+ version").click()
    deploy.locator('select[name="model-1"]').select_option(model)
    deploy.locator('select[name="version-1"]').select_option("2")
    deploy.locator('input[name="weight-1"]').fill("20")
    expect(deploy.locator("[data-total]")).to_have_text("total 100%")
    deploy.get_by_role("button", name="Deploy").click()
    endpoint = panel.locator('.nb-endpoint[data-endpoint="iris"]')
    expect(endpoint.locator(".nb-job-head .nb-badge")).to_have_text("ready", timeout=ENDPOINT_TIMEOUT_MS)
    expect(endpoint).to_contain_text("80%")
    expect(endpoint).to_contain_text("20%")

    # Try it: the model's input example goes to the endpoint; the prediction and the version show.
    answered = set()
    for _ in range(5):
        endpoint.get_by_role("button", name="Try it").click()
        prediction = endpoint.locator(".nb-prediction")
        expect(prediction).to_have_text(re.compile(r"^\[\s*\d"), timeout=30_000)
        answered.add(endpoint.locator(".nb-answered-by").inner_text())
    assert answered <= {f"{model}/1", f"{model}/2"} and answered
    expect(endpoint.locator("svg[aria-label='Requests / min'] polyline").first).to_be_attached(timeout=30_000)
    page.set_viewport_size({"width": 1600, "height": 1500})  # the whole panel, unscrolled
    screenshot(page, panel, "models-panel")
    page.close()
    # Scoring servers outlive the hub (as jobs do): stop this one.
    assert hub.executor("DELETE", "endpoints/iris", hub.admin_token).status_code == 204

    # The latest screenshots are the ones the README shows.
    docs = REPO / "docs" / "screenshots"
    docs.mkdir(parents=True, exist_ok=True)
    for png in ("jobs-panel.png", "models-panel.png"):
        shutil.copy(SCREENSHOTS / png, docs / png)
