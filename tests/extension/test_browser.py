"""The whole journey of a new data scientist, as one user story in Chromium (Playwright): sign up;
the admin sees the sign-up waiting and approves it; start a server from the spawn form; find the
examples in the home; run train-model.ipynb in JupyterLab (its MLflow run lands in the notebook's
own experiment); run the same notebook as a job and watch its live log and detail; register both
runs, set an alias, deploy them 80/20, "Try it"; open MLflow's UI from the panel. The README's
screenshots (docs/screenshots/) are taken from this run."""

import re
import secrets
import shutil

import pytest
import requests

from tests.extension.conftest import (
    REPO,
    SCREENSHOTS,
    axe_violations,
    chromium_or_skip,
    job_ends_succeeded,
    login,
    screenshot,
)
from tests.support.endpoints import RUN

pytestmark = pytest.mark.browser
chromium_or_skip()

from playwright.sync_api import expect  # noqa: E402

# Generous: the first job of a user starts its runner, the first deploy its scoring host.
JOB_TIMEOUT_MS = 180_000
ENDPOINT_TIMEOUT_MS = 240_000
MODEL = f"iris-{RUN}"
ENDPOINT = f"iris-{RUN}"


def sign_up(page, hub, name: str, password: str) -> None:
    page.goto(f"{hub.url}/hub/signup")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.fill("#password_confirmation_input", password)
    page.click("#signup_submit")
    expect(page.locator("body")).to_contain_text("sent to the admin", timeout=30_000)  # to be approved


def approve_as_admin(page, hub, name: str) -> None:
    """The admin finds the waiting sign-up from the hub's home and authorizes it."""
    login(page, hub, "admin", hub.admin_password)
    page.goto(f"{hub.url}/hub/home")
    expect(page.locator("#nb-signups-waiting")).to_contain_text("waiting for approval")
    page.locator("#nb-signups-link").click()
    page.wait_for_url("**/hub/authorize")
    page.locator("tr", has_text=name).get_by_role("button", name="Authorize").click()
    expect(page.locator("tr", has_text=name).get_by_role("button", name="Unauthorize")).to_be_visible()


def run_all_cells(page) -> None:
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()


def experiment_runs(hub, token: str, experiment: str) -> list[dict]:
    headers = {"Authorization": f"token {token}"}
    r = requests.get(f"{hub.url}/services/mlflow/api/2.0/mlflow/experiments/get-by-name",
                     params={"experiment_name": experiment}, headers=headers, timeout=30)
    if r.status_code != 200:
        return []
    experiment_id = r.json()["experiment"]["experiment_id"]
    r = requests.post(f"{hub.url}/services/mlflow/api/2.0/mlflow/runs/search", headers=headers,
                      json={"experiment_ids": [experiment_id]}, timeout=30)
    return r.json().get("runs", [])


def test_a_new_data_scientist_from_sign_up_to_a_deployed_model(hub, new_page):
    name, password = f"ada-{RUN}", "pw-" + secrets.token_hex(8)

    # Sign up; until the admin approves, the login is refused.
    page = new_page()
    sign_up(page, hub, name, password)
    approve_as_admin(new_page(), hub, name)

    # Log in; the home offers the examples; Start opens the spawn form; the server starts.
    login(page, hub, name, password)
    page.goto(f"{hub.url}/hub/home")
    expect(page.locator("#nb-welcome")).to_contain_text("train-model.ipynb")
    page.locator("#start").click()
    page.wait_for_url("**/hub/spawn**")
    expect(page.locator('input[name="profile"][value="cpu"]')).to_be_checked()
    page.get_by_role("button", name="Start").click()
    page.locator(".jp-LauncherCard").first.wait_for(timeout=180_000)  # JupyterLab drawn and restored
    news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's "news?" prompt
    if news.is_visible():
        news.click()

    # The examples are in the home: open train-model.ipynb and run it here, in JupyterLab.
    if not page.locator("#filebrowser").is_visible():  # its tab toggles it: open it only if closed
        page.locator('.lm-TabBar-tab[data-id="filebrowser"]').click()
    page.locator('.jp-DirListing-item[title^="Name: examples"]').dblclick()
    page.locator('.jp-DirListing-item[title^="Name: train-model.ipynb"]').dblclick()
    notebook = page.locator(".jp-NotebookPanel:visible")
    expect(notebook.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_attached(timeout=120_000)
    # As a person waits for "Idle" in the status bar: the kernel is connected, not just started.
    expect(page.locator(".jp-StatusBar-Widget", has_text="| Idle")).to_be_visible(timeout=120_000)
    run_all_cells(page)
    expect(notebook.locator(".jp-OutputArea-output", has_text="accuracy")).to_be_visible(timeout=120_000)
    # The interactive run lands in the notebook's own experiment (users may not write Default).
    token = hub.api("POST", f"/users/{name}/tokens", json={"note": "journey"}).json()["token"]
    experiment = f"{name}/train-model"
    expect(notebook.locator(".jp-InputPrompt", has_text=re.compile(r"\[3\]"))).to_be_visible(timeout=120_000)  # its last cell
    assert [run["info"]["status"] for run in experiment_runs(hub, token, experiment)] == ["FINISHED"]

    # The same notebook as a job, from its toolbar: C edited in the form built from its parameters.
    page.locator(".nb-run-as-job-button").first.click()
    jobs = page.locator("#notebench-jobs")
    form = jobs.locator('form[aria-label="Run as job"]')
    expect(form.locator(".nb-form-title")).to_contain_text("train-model.ipynb")
    expect(form.locator('input[name="param-C"]')).to_have_value("1.0")
    form.locator('input[name="param-C"]').fill("0.5")
    form.get_by_role("button", name="Run as job").click()
    message = form.locator(".nb-ok")
    expect(message).to_have_text(re.compile(r"Submitted job #\d+"), timeout=60_000)
    job_id = re.search(r"#(\d+)", message.inner_text()).group(1)

    # Watch it: the live log, then the detail with its parameters, MLflow metrics and links.
    row = jobs.locator(f'.nb-job[data-job-id="{job_id}"]')
    row.locator("button.nb-job-name").click()
    detail = row.locator(".nb-job-detail")
    expect(detail.get_by_role("log")).to_contain_text("accuracy", timeout=JOB_TIMEOUT_MS)
    job_ends_succeeded(row, hub, token, job_id, JOB_TIMEOUT_MS)
    expect(detail.locator(".nb-parameters")).to_contain_text("C0.5")
    expect(detail.locator("tr", has_text="accuracy")).to_contain_text("0.9", timeout=60_000)
    expect(detail.get_by_role("link", name="Open the experiment")).to_be_visible()
    # Interactive and job runs of one notebook are together.
    runs = experiment_runs(hub, token, experiment)
    job_ids = [next((tag["value"] for tag in run["data"].get("tags", []) if tag["key"] == "notebench.job_id"), "")
               for run in runs]
    assert sorted(job_ids) == ["", job_id]
    assert axe_violations(page, "#notebench-jobs") == []
    screenshot(page, jobs, "jobs-panel")

    # MLflow's UI from the panel: the experiment, in the classic view.
    with page.expect_popup() as popup:
        detail.get_by_role("link", name="Open the experiment").click()
    mlflow_page = popup.value
    expect(mlflow_page.get_by_role("link", name="Model registry", exact=True)).to_be_visible(timeout=120_000)
    expect(mlflow_page.locator("body")).to_contain_text(experiment, timeout=120_000)
    mlflow_page.close()

    # Models panel: both runs; register each as a version of one model.
    page.locator('.lm-TabBar-tab[data-id="notebench-models"]').click()
    models = page.locator("#notebench-models")
    rows = models.locator("tr[data-model-id]")
    expect(rows).to_have_count(2, timeout=60_000)
    for row in (rows.filter(has_not_text=f"job #{job_id}"), rows.filter(has_text=f"job #{job_id}")):
        expect(row).to_contain_text("0.9")  # accuracy
        row.get_by_role("button", name="Register…").click()
        register = models.locator('form[aria-label="Register version"]')
        register.get_by_label("Registered model name").fill(MODEL)
        register.get_by_role("button", name="Register").click()
        expect(register).to_have_count(0)
    card = models.locator(f'.nb-model[data-model="{MODEL}"]')
    expect(card.locator("tr[data-version]")).to_have_count(2)

    # The champion alias on version 1; the form is empty again afterwards.
    alias_form = models.locator(f'form[aria-label="Set alias of {MODEL}"]')
    alias_form.get_by_label("Alias").fill("champion")
    alias_form.get_by_label("Version").select_option("1")
    alias_form.get_by_role("button", name="Set alias").click()
    expect(card.locator('tr[data-version="1"]')).to_contain_text("@champion")
    expect(alias_form.get_by_label("Alias")).to_have_value("")

    # Deploy both versions 80/20.
    deploy = models.locator('form[aria-label="Deploy"]')
    deploy.locator('input[name="endpoint-name"]').fill(ENDPOINT)
    deploy.get_by_label("Model of version 1").select_option(MODEL)
    deploy.get_by_label("Version 1", exact=True).select_option("1")
    deploy.locator('input[name="weight-0"]').fill("80")
    deploy.get_by_role("button", name="+ version").click()
    deploy.get_by_label("Model of version 2").select_option(MODEL)
    deploy.get_by_label("Version 2", exact=True).select_option("2")
    deploy.locator('input[name="weight-1"]').fill("20")
    expect(deploy.locator("[data-total]")).to_have_text("total 100%")
    deploy.get_by_role("button", name="Deploy").click()
    endpoint = models.locator(f'.nb-endpoint[data-endpoint="{ENDPOINT}"]')
    expect(endpoint.locator(".nb-job-head .nb-badge")).to_have_text("ready", timeout=ENDPOINT_TIMEOUT_MS)
    expect(endpoint).to_contain_text("80%")
    expect(endpoint).to_contain_text("20%")

    # Try it with the model's input example: a prediction, and the version that answered.
    expect(endpoint.locator('textarea[name="payload"]')).to_contain_text("dataframe_split", timeout=30_000)
    answered = set()
    for _ in range(5):
        endpoint.get_by_role("button", name="Try it").click()
        expect(endpoint.locator(".nb-prediction")).to_have_text(re.compile(r"^\[\s*\d"), timeout=60_000)
        answered.add(endpoint.locator(".nb-answered-by").inner_text())
    assert answered and answered <= {f"{MODEL}/1", f"{MODEL}/2"}
    endpoint.get_by_text("Call it from code").click()
    expect(endpoint.locator(".nb-url")).to_have_text(f"{hub.url}/services/executor/endpoints/{ENDPOINT}/invocations")
    assert axe_violations(page, "#notebench-models") == []
    page.set_viewport_size({"width": 1600, "height": 2400})  # the whole panel, unscrolled
    screenshot(page, models, "models-panel")

    # Scoring servers outlive the hub (as jobs do): delete it, as the user does, after the question.
    endpoint.get_by_role("button", name="Delete…").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Delete").click()
    expect(endpoint).to_have_count(0, timeout=120_000)

    # The latest screenshots are the ones the README shows.
    docs = REPO / "docs" / "screenshots"
    docs.mkdir(parents=True, exist_ok=True)
    for png in ("jobs-panel.png", "models-panel.png"):
        shutil.copy(SCREENSHOTS / png, docs / png)
