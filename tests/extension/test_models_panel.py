"""The Models panel in Chromium at JupyterLab's default side-bar width, as three people use it:
the owner of a model (register, alias, deploy, the endpoint card: URL and code, "Try it" with an
edited body, logs, request samples, Delete asked first), another user (the owner's model read
only, nothing offered that would be refused) and an admin (every endpoint with its owner).
Models are made with MLflow's client as the owner (no jobs: faster). Every page fails its test on
a console error (``new_page``); axe-core finds no violation in the panel."""

import json
import os
import re
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from notebench.hub.platform.names import ENDPOINT_NAME
from tests.extension.conftest import axe_violations, chromium_or_skip, login, open_lab, person_with_server, screenshot
from tests.support.endpoints import RUN

pytestmark = [pytest.mark.browser, pytest.mark.slow]
chromium_or_skip()

ENDPOINT_TIMEOUT_MS = 240_000  # the owner's first deploy starts their scoring process

# Two runs in the owner's namespace with metrics and params; the first registered as version 1
# (alias champion), the second left for the panel to register.
LOG_RUNS = r"""
import sys
import mlflow, numpy as np, pandas as pd
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

owner, name = sys.argv[1:3]
rng = np.random.RandomState(0)
X = pd.DataFrame(rng.rand(60, 3), columns=["a", "b", "c"])
y = (X["a"] > 0.5).astype(int)
mlflow.set_experiment(f"{owner}/iris-panel")
for i, C in enumerate([0.5, 2.0]):
    with mlflow.start_run(run_name=f"C={C}"):
        model = LogisticRegression(C=C).fit(X, y)
        mlflow.log_params({"C": C})
        mlflow.log_metrics({"accuracy": 0.9 + i / 100, "f1": 0.8 + i / 100, "log_loss": 0.3 - i / 100})
        mlflow.sklearn.log_model(model, name="model", input_example=X.head(2),
                                 registered_model_name=name if i == 0 else None)
MlflowClient().set_registered_model_alias(name, "champion", "1")
"""


def log_runs(hub, token, owner, model):
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"{hub.url}/services/mlflow", MLFLOW_TRACKING_TOKEN=token)
    out = subprocess.run([sys.executable, "-c", LOG_RUNS, owner, model], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.fixture(scope="module")
def people(hub):
    names = {"owner": f"mp-owner-{RUN}", "other": f"mp-other-{RUN}", "admin": f"mp-admin-{RUN}"}
    people = {role: person_with_server(hub, name, notebooks=()) for role, name in names.items()}
    r = hub.api("PATCH", f"/users/{names['admin']}", json={"admin": True})
    assert r.status_code == 200, r.text
    return people


@pytest.fixture(scope="module")
def model(hub, people):
    owner, _, token = people["owner"]
    name = f"mp-iris-{RUN}"
    log_runs(hub, token, owner, name)
    yield name
    for endpoint in hub.executor("GET", "endpoints").json()["endpoints"]:  # the admin sees all
        if RUN in endpoint["name"]:
            hub.executor("DELETE", f"endpoints/{endpoint['name']}")


def open_models(page, hub, person):
    name, password, _ = person
    login(page, hub, name, password)
    open_lab(page, hub, name)
    page.locator('.lm-TabBar-tab[data-id="notebench-models"]').click()
    panel = page.locator("#notebench-models")
    expect(panel.locator('[data-section="endpoints"]')).to_be_visible(timeout=60_000)
    return panel


def inside(inner: dict, outer: dict) -> bool:
    return inner["x"] >= outer["x"] - 1 and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 1


def no_violations(page):
    assert axe_violations(page, "#notebench-models") == []


def test_the_owner_registers_aliases_deploys_and_uses_the_endpoint_card(hub, new_page, people, model):
    page = new_page()
    panel = open_models(page, hub, people["owner"])
    endpoint_name = f"mp-ep-{RUN}"

    # At the default side-bar width the runs' buttons are in view, inside the panel.
    rows = panel.locator("tr[data-model-id]")
    expect(rows).to_have_count(2, timeout=60_000)
    panel_box = panel.bounding_box()
    assert panel_box["width"] < 400, panel_box  # the default width, not a widened side bar
    for i in range(2):
        register = rows.nth(i).get_by_role("button", name="Register…")
        expect(register).to_be_visible()
        assert inside(register.bounding_box(), panel_box)
    no_violations(page)
    screenshot(page, panel, "models-panel-narrow")

    # Sorting by a metric with the keyboard alone.
    accuracy = panel.get_by_role("button", name="accuracy")
    accuracy.focus()
    page.keyboard.press("Enter")
    expect(panel.locator("th[aria-sort='descending']")).to_contain_text("accuracy")
    expect(rows.first).to_contain_text("C=2.0")
    page.keyboard.press("Enter")
    expect(panel.locator("th[aria-sort='ascending']")).to_contain_text("accuracy")
    expect(rows.first).to_contain_text("C=0.5")

    # Links to the run and the model version in MLflow's UI.
    run_link = rows.first.get_by_role("link", name="Run C=0.5 in MLflow")
    assert re.fullmatch(r"/services/mlflow/#/experiments/\d+/runs/[0-9a-f]{32}", run_link.get_attribute("href"))
    assert run_link.get_attribute("target") == "_blank"
    with page.expect_popup() as popup:
        run_link.click()
    mlflow_page = popup.value  # MLflow's UI (after the hub's OAuth), on the run
    mlflow_page.wait_for_url(re.compile(r"/services/mlflow/#/experiments/\d+/runs/"), timeout=120_000)
    expect(mlflow_page.locator("body")).to_contain_text("C=0.5", timeout=120_000)
    mlflow_page.close()

    # Register the second run as version 2.
    row = rows.filter(has_text="C=2.0")
    row.get_by_role("button", name="Register…").click()
    form = panel.locator('form[aria-label="Register version"]')
    form.get_by_label("Registered model name").fill(model)
    form.get_by_role("button", name="Register").click()
    expect(form).to_have_count(0)
    card = panel.locator(f'.nb-model[data-model="{model}"]')
    expect(card.locator("tr[data-version]")).to_have_count(2)
    version_link = card.get_by_role("link", name=f"{model} version 1 in MLflow")
    assert version_link.get_attribute("href") == f"/services/mlflow/#/models/{model}/versions/1"

    # Set an alias: the form is empty again afterwards (not primed to move the same alias).
    alias_form = panel.locator(f'form[aria-label="Set alias of {model}"]')
    expect(alias_form.get_by_label("Alias")).to_have_value("")
    expect(alias_form.get_by_role("button", name="Set alias")).to_be_disabled()
    alias_form.get_by_label("Alias").fill("challenger")
    alias_form.get_by_label("Version").select_option("2")
    alias_form.get_by_role("button", name="Set alias").click()
    expect(card.locator('tr[data-version="2"]')).to_contain_text("@challenger")
    expect(alias_form.get_by_label("Alias")).to_have_value("")

    # The endpoint name's pattern is the executor's rule, and valid in the browser.
    deploy = panel.locator('form[aria-label="Deploy"]')
    name_input = deploy.locator('input[name="endpoint-name"]')
    assert name_input.get_attribute("pattern") == ENDPOINT_NAME
    name_input.fill("Not_A_Name")
    assert name_input.evaluate("e => e.validity.patternMismatch") is True
    name_input.fill(endpoint_name)
    assert name_input.evaluate("e => e.validity.valid") is True
    deploy.get_by_label("Model of version 1").select_option(model)
    deploy.get_by_label("Version 1", exact=True).select_option("1")
    deploy.get_by_role("button", name="Deploy").click()
    endpoint = panel.locator(f'.nb-endpoint[data-endpoint="{endpoint_name}"]')
    expect(endpoint.locator(".nb-job-head .nb-badge")).to_have_text("ready", timeout=ENDPOINT_TIMEOUT_MS)
    expect(endpoint.locator(".nb-owner")).to_have_count(0)  # your own endpoint: no owner named

    # How to call it: the URL, and curl and Python reading a token the user makes at /hub/token.
    endpoint.get_by_text("Call it from code").click()
    url = f"{hub.url}/services/executor/endpoints/{endpoint_name}/invocations"
    expect(endpoint.locator(".nb-url")).to_have_text(url)
    curl = endpoint.get_by_label("curl example", exact=True)
    expect(curl).to_contain_text("$NOTEBENCH_TOKEN")
    expect(curl).to_contain_text(f"{hub.url}/hub/token")
    expect(curl).to_contain_text(url)
    python = endpoint.get_by_label("Python example", exact=True)
    expect(python).to_contain_text("os.environ['NOTEBENCH_TOKEN']")
    for code in (curl.inner_text(), python.inner_text()):
        assert not re.search(r"[0-9a-f]{32}", code), code  # no token in the page
    endpoint.get_by_role("button", name="Copy curl example").click()
    expect(page.get_by_text("curl example copied")).to_be_visible()

    # Try it: the input example to start from, edited to one row.
    body = endpoint.locator('textarea[name="payload"]')
    expect(body).to_contain_text("dataframe_split", timeout=30_000)
    body.fill("{not json")
    expect(endpoint).to_contain_text("Not JSON")
    expect(endpoint.get_by_role("button", name="Try it")).to_be_disabled()
    one_row = {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[0.9, 0.1, 0.1]]}}
    body.fill(json.dumps(one_row))
    endpoint.get_by_role("button", name="Try it").click()
    expect(endpoint.locator(".nb-prediction")).to_have_text("[1]", timeout=60_000)
    expect(endpoint.locator(".nb-answered-by")).to_have_text(f"{model}/1")

    # The sample of requests (newest first); one goes back into Try it.
    endpoint.get_by_text("Recent requests (stored sample)").click()
    sample = endpoint.locator(".nb-sample").first
    expect(sample).to_contain_text(f"{model}/1", timeout=30_000)
    expect(sample.locator(".nb-badge")).to_have_text("200")
    body.fill("")
    sample.get_by_role("button", name=re.compile("^Use the request")).click()
    expect(body).to_contain_text("0.9")

    # The scoring server's log, as text.
    endpoint.get_by_text("Scoring servers' logs").click()
    expect(endpoint.get_by_label(f"Log of {model}/1")).to_contain_text("Application startup complete", timeout=30_000)
    no_violations(page)
    page.set_viewport_size({"width": 1600, "height": 2600})  # the whole card, unscrolled
    screenshot(page, endpoint, "models-endpoint-card")
    page.set_viewport_size({"width": 1600, "height": 1000})

    # Delete asks first; Cancel keeps the endpoint.
    endpoint.get_by_role("button", name="Delete…").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text(f"Delete endpoint {endpoint_name}?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(endpoint).to_be_visible()
    assert hub.executor("GET", f"endpoints/{endpoint_name}").status_code == 200


def test_another_user_sees_the_model_read_only_and_an_admin_sees_owners(hub, new_page, people, model):
    endpoint_name = f"mp-ep-{RUN}"
    owner = people["owner"][0]
    assert hub.executor("GET", f"endpoints/{endpoint_name}").status_code == 200, "the first test deploys it"

    # Another user: the owner's model without alias controls; not offered for deploying.
    page = new_page()
    panel = open_models(page, hub, people["other"])
    card = panel.locator(f'.nb-model[data-model="{model}"]')
    expect(card).to_be_visible(timeout=60_000)
    expect(card).to_contain_text("read only")
    expect(card.locator("form")).to_have_count(0)
    expect(card.get_by_role("button")).to_have_count(0)  # no alias to remove either
    deploy = panel.locator('form[aria-label="Deploy"]')
    expect(deploy.get_by_label("Model of version 1").locator("option", has_text=model)).to_have_count(0)
    expect(panel.locator(".nb-endpoint")).to_have_count(0)  # others' endpoints are not listed
    no_violations(page)
    screenshot(page, panel, "models-panel-other-user")

    # An admin: every endpoint, each with its owner; the model is theirs to change too.
    page = new_page()
    panel = open_models(page, hub, people["admin"])
    endpoint = panel.locator(f'.nb-endpoint[data-endpoint="{endpoint_name}"]')
    expect(endpoint.locator(".nb-owner")).to_contain_text(f"owner {owner}", timeout=60_000)
    expect(panel.locator(f'form[aria-label="Set alias of {model}"]')).to_be_visible()
    no_violations(page)

    # The owner deletes it, after saying so in the dialog.
    page = new_page()
    panel = open_models(page, hub, people["owner"])
    endpoint = panel.locator(f'.nb-endpoint[data-endpoint="{endpoint_name}"]')
    endpoint.get_by_role("button", name="Delete…").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Delete").click()
    expect(endpoint).to_have_count(0, timeout=120_000)
    assert hub.executor("GET", f"endpoints/{endpoint_name}").status_code == 404
