"""The Jobs panel as a new data scientist uses it (issue 15), in Chromium: the form keeps its notebook
and what was typed, takes Python literals and shows errors at their field; a job's detail with its
live log, parameters, MLflow metrics and links; re-run with edited parameters; Cancel and Delete
after a confirmation; filters and pages; schedules made from the form, paused, resumed, deleted."""

import json
import re

import pytest

from tests.extension.conftest import (
    axe_violations,
    chromium_or_skip,
    job_ends_succeeded,
    login,
    open_lab,
    person_with_server,
    put_notebook,
    screenshot,
)
from tests.support.jobs import unique
from tests.support.launcher import notebook

pytestmark = pytest.mark.browser
chromium_or_skip()

from playwright.sync_api import expect  # noqa: E402

JOB_TIMEOUT_MS = 180_000

# n ticks, `pause` seconds apart, printed as they go; then a metric for MLflow.
WORK = notebook(
    "import time\nfor i in range(n):\n    print('tick', i, opts, maybe, flush=True)\n    time.sleep(pause)",
    "import mlflow\nmlflow.log_metric('score', n * 1.5)",
    parameters="n = 3  # how many ticks\npause = 1.0\nopts = {'a': 1}\nmaybe = None",
)
OTHER = notebook("print('other')", parameters="k = 1")

# Console errors these tests cause on purpose: the values the form sends wrong (Chromium logs every 400 answer).
REFUSED = re.compile(r"status of 400 \(Bad Request\) \(at \S+/notebench/(jobs|schedules)\?")


@pytest.fixture(scope="module")
def person(hub):
    name, password, token = person_with_server(hub, unique("jp-panel"), notebooks=())
    put_notebook(hub, name, token, "work.ipynb", json.loads(json.dumps(WORK)))
    put_notebook(hub, name, token, "other.ipynb", json.loads(json.dumps(OTHER)))
    return name, password, token


def submitted(form) -> str:
    message = form.locator(".nb-ok")
    expect(message).to_have_text(re.compile(r"Submitted job #\d+"), timeout=60_000)
    return re.search(r"#(\d+)", message.inner_text()).group(1)


def confirm_dialog(page, button: str) -> None:
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=button, exact=True).click()
    expect(dialog).to_have_count(0)


def open_job_form(page, hub, person, notebook: str):
    """JupyterLab on ``notebook`` and its Run-as-job form; returns (panel, form)."""
    name, password, _ = person
    login(page, hub, name, password)
    open_lab(page, hub, name, notebook)
    page.locator(".nb-run-as-job-button").first.click(timeout=120_000)
    panel = page.locator("#notebench-jobs")
    form = panel.locator('form[aria-label="Run as job"]')
    expect(form.locator(".nb-form-title")).to_contain_text(notebook)
    return panel, form


def test_jobs_panel(hub, person, new_page):
    name, password, token = person
    page = new_page(allowed_errors=[REFUSED])
    panel, form = open_job_form(page, hub, person, "work.ipynb")
    n = form.locator('input[name="param-n"]')
    expect(n).to_have_value("3")
    expect(form.locator('input[name="param-pause"]')).to_have_value("1.0")
    expect(form.locator('input[name="param-opts"]')).to_have_value("{'a': 1}")
    expect(form.locator('input[name="param-maybe"]')).to_have_value("None")

    # A wrong value is named at its field, by the server, and the field is marked invalid.
    n.fill("'three'")
    form.get_by_role("button", name="Run as job").click()
    expect(form.locator(".nb-field-error")).to_have_text("n must be an int (or None)")
    expect(n).to_have_attribute("aria-invalid", "true")
    n.fill("4")
    form.locator('input[name="timeout"]').fill("600")

    # Python literals as papermill users write them.
    form.locator('input[name="param-opts"]').fill("{'a': 2, 'b': None}")
    form.locator('input[name="param-maybe"]').fill("('x', True)")
    form.get_by_role("button", name="Run as job").click()
    job = submitted(form)
    expect(form.locator(".nb-field-error")).to_have_count(0)

    # Another notebook opened: the form stays on the chosen one, with what was typed.
    page.locator('.lm-TabBar-tab[data-id="filebrowser"]').click()
    page.locator('.jp-DirListing-item[data-file-type="notebook"]', has_text="other.ipynb").dblclick()
    expect(page.locator(".lm-TabBar-tab.lm-mod-current", has_text="other.ipynb")).to_be_visible()
    page.locator('.lm-TabBar-tab[data-id="notebench-jobs"]').click()
    expect(form.locator(".nb-form-title")).to_contain_text("work.ipynb")
    expect(n).to_have_value("4")
    expect(form.locator('input[name="param-opts"]')).to_have_value("{'a': 2, 'b': None}")

    # The detail, with the log as it is written.
    row = panel.locator(f'.nb-job[data-job-id="{job}"]')
    row.locator("button.nb-job-name").click()
    detail = row.locator(".nb-job-detail")
    expect(detail).to_be_visible()
    log = detail.get_by_role("log")
    expect(log).to_contain_text("tick 0 {'a': 2, 'b': None} ['x', True]", timeout=JOB_TIMEOUT_MS)
    job_ends_succeeded(row, hub, token, job, JOB_TIMEOUT_MS)
    expect(log).to_contain_text("tick 3")
    expect(detail.locator(".nb-parameters")).to_contain_text("opts{'a': 2, 'b': None}")
    expect(detail.locator(".nb-history")).to_contain_text("succeeded")
    expect(detail).to_contain_text("Duration")
    expect(detail.locator("tr", has_text="score")).to_contain_text("6", timeout=60_000)
    run_link = detail.get_by_role("link", name="Open the run in MLflow")
    expect(run_link).to_have_attribute("href", re.compile(r"^/services/mlflow/#/experiments/\d+/runs/[0-9a-f]+$"))
    expect(detail.get_by_role("link", name="Open the experiment")).to_have_attribute(
        "href", re.compile(r"^/services/mlflow/#/experiments/\d+$"))
    assert axe_violations(page, "#notebench-jobs") == []
    screenshot(page, panel, "jobs-detail")

    # Open output: the output opens, the form stays on the notebook and its values.
    row.get_by_role("button", name="Open output").click()
    expect(page.locator(".lm-TabBar-tab.lm-mod-current", has_text=f"work-{job}.ipynb")).to_be_visible()
    expect(form).to_be_visible()  # the panel stays open beside the output
    expect(form.locator(".nb-form-title")).to_contain_text("work.ipynb")
    expect(n).to_have_value("4")

    # Re-run with edited parameters: the job's values in the form, then changed.
    row.get_by_role("button", name="Re-run…").click()
    expect(form.locator('input[name="param-maybe"]')).to_have_value("['x', True]")
    expect(form.locator('input[name="timeout"]')).to_have_value("600")
    form.locator('input[name="param-pause"]').fill("60")
    form.get_by_role("button", name="Run as job").click()
    slow = submitted(form)
    slow_row = panel.locator(f'.nb-job[data-job-id="{slow}"]')
    expect(slow_row.locator(".nb-badge").first).to_have_text("running", timeout=JOB_TIMEOUT_MS)
    # Its log, live: the first tick is there while the job still runs (a minute per tick).
    slow_row.locator("button.nb-job-name").click()
    expect(slow_row.get_by_role("log")).to_contain_text("tick 0", timeout=JOB_TIMEOUT_MS)
    expect(slow_row.locator(".nb-job-head .nb-badge")).to_have_text("running")

    # Cancel asks first; keeping it keeps it running.
    slow_row.get_by_role("button", name="Cancel", exact=True).click()
    confirm_dialog(page, "Keep it")
    expect(slow_row.locator(".nb-job-head .nb-badge")).to_have_text("running")
    slow_row.get_by_role("button", name="Cancel", exact=True).click()
    confirm_dialog(page, "Cancel job")
    expect(slow_row.locator(".nb-job-head .nb-badge")).to_have_text("cancelled", timeout=60_000)
    assert hub.executor("GET", f"jobs/{slow}", token).json()["parameters"]["pause"] == 60.0

    # Delete asks first too, and the job is gone.
    slow_row.get_by_role("button", name="Delete").click()
    confirm_dialog(page, "Delete")
    expect(slow_row).to_have_count(0)
    assert hub.executor("GET", f"jobs/{slow}", token).status_code == 404

    # Filters.
    panel.locator('select[name="status-filter"]').select_option("cancelled")
    expect(panel.locator(".nb-jobs .nb-job")).to_have_count(0)
    expect(panel).to_contain_text("No jobs match.")
    panel.locator('select[name="status-filter"]').select_option("succeeded")
    expect(row).to_be_visible()
    panel.locator('select[name="status-filter"]').select_option("")
    panel.locator('input[name="name-filter"]').fill("zzz")
    expect(panel.locator(".nb-jobs .nb-job")).to_have_count(0)
    panel.locator('input[name="name-filter"]').fill("")


def test_pages_of_jobs(hub, person, new_page):
    name, password, token = person
    ids = []
    for i in range(21):
        r = hub.executor("POST", "jobs", token, json={"notebook": notebook("1"), "name": f"page-{i:02d}"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    for job_id in ids:
        hub.executor("POST", f"jobs/{job_id}/cancel", token)
        hub.wait_job(job_id, token)
    page = new_page()
    login(page, hub, name, password)
    open_lab(page, hub, name)
    page.locator('.lm-TabBar-tab[data-id="notebench-jobs"]').click()
    panel = page.locator("#notebench-jobs")
    panel.locator('input[name="name-filter"]').fill("page-")
    jobs = panel.locator(".nb-jobs .nb-job")
    expect(jobs).to_have_count(20)
    expect(jobs.first).to_contain_text("page-20")
    pager = panel.get_by_role("navigation", name="Pages of jobs")
    expect(pager.get_by_role("button", name="‹ Newer")).to_be_disabled()
    pager.get_by_role("button", name="Older ›").click()
    expect(jobs).to_have_count(1)
    expect(jobs.first).to_contain_text("page-00")
    expect(pager).to_contain_text("Page 2")
    expect(pager.get_by_role("button", name="Older ›")).to_be_disabled()
    pager.get_by_role("button", name="‹ Newer").click()
    expect(jobs).to_have_count(20)


def test_schedules_from_the_form(hub, person, new_page):
    name, password, token = person
    page = new_page(allowed_errors=[REFUSED])
    panel, form = open_job_form(page, hub, person, "other.ipynb")
    form.get_by_label("Repeat on a schedule").check()
    form.locator('input[name="cron"]').fill("every morning")
    form.locator('input[name="timezone"]').fill("Europe/Paris")
    form.get_by_role("button", name="Create schedule").click()
    expect(form.locator(".nb-field-error")).to_contain_text("not a valid five-field cron expression")
    expect(form.locator('input[name="cron"]')).to_have_attribute("aria-invalid", "true")
    form.locator('input[name="cron"]').fill("30 6 * * 1-5")
    form.get_by_role("button", name="Create schedule").click()
    expect(form.locator(".nb-ok")).to_have_text(re.compile(r"Created schedule #\d+ \(other\)"))
    schedule_id = re.search(r"#(\d+)", form.locator(".nb-ok").inner_text()).group(1)
    stored = hub.executor("GET", f"schedules/{schedule_id}", token).json()
    assert (stored["cron"], stored["timezone"], stored["active"]) == ("30 6 * * 1-5", "Europe/Paris", True)

    row = panel.locator(f'.nb-schedule[data-schedule-id="{schedule_id}"]')
    expect(row).to_contain_text("30 6 * * 1-5 (Europe/Paris)")
    expect(row.locator(".nb-next-run")).to_contain_text("next run")
    expect(row.locator(".nb-badge")).to_have_text("active")
    assert axe_violations(page, "#notebench-jobs") == []
    row.get_by_role("button", name="Pause").click()
    expect(row.locator(".nb-badge")).to_have_text("paused")
    expect(row.locator(".nb-next-run")).to_have_text("no next run")
    assert hub.executor("GET", f"schedules/{schedule_id}", token).json()["active"] is False
    row.get_by_role("button", name="Resume").click()
    expect(row.locator(".nb-badge")).to_have_text("active")
    expect(row.locator(".nb-next-run")).to_contain_text("next run")
    row.get_by_role("button", name="Delete").click()
    confirm_dialog(page, "Delete")
    expect(row).to_have_count(0)
    assert hub.executor("GET", f"schedules/{schedule_id}", token).status_code == 404
