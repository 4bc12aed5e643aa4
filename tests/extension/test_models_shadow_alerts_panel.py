"""An endpoint card's Shadow and Alerts sections in Chromium, against the session's real hub, MLflow,
executor and scoring servers: the owner deploys from the panel a live version and a shadow of
another version (half of the requests copied to it), the card and its history mark the shadow as
such (an endpoint without one says "No shadow version"), and after requests through the API the Shadow section shows the shadow's requests and
agreement as GET .../shadow gives them. In the Alerts section the owner sets an error-rate rule (a
refused threshold, then a refused webhook whose message holds markup, each shown at its field, as
text), bad requests follow, and the firing appears with its value and delivery. Every page fails
its test on a console error (``new_page``)."""

import re

import pytest
from playwright.sync_api import expect

from tests.extension.conftest import axe_violations, chromium_or_skip, login, open_lab, person_with_server
from tests.support.endpoints import RUN, invoke, wait_status
from tests.support.endpoints import deploy as deploy_by_api
from tests.support.launcher import wait_for
from tests.support.registry import register_model

pytestmark = [pytest.mark.browser, pytest.mark.slow]
chromium_or_skip()

ENDPOINT_TIMEOUT_MS = 240_000  # the owner's first deploy starts their scoring servers
REQUESTS = 6  # the shadow takes 50 %: exactly 3 of them (every second one)
BAD_REQUESTS = 6  # then the error rate is 6 of 12, above the rule's 0.2
MARKUP = "<img src=x onerror=window.__xss=1>"
# The saves the executor refuses on purpose (400): Chromium logs each answer as a console error.
REFUSED = re.compile(r"400 \(Bad Request\)")
# The executor's alerts loop checks every c.Alerts.check_seconds (30 by default in the test hub).
FIRING_TIMEOUT_MS = 150_000


@pytest.fixture(scope="module")
def owner(hub):
    return person_with_server(hub, f"msa-owner-{RUN}", notebooks=())


@pytest.fixture(scope="module")
def model(hub, owner):
    """The owner's model: versions 1 and 2 fitted to different labels (they disagree on some rows)."""
    name = f"msa-model-{RUN}"
    payload = register_model(hub.url, owner[2], name)
    yield {"name": name, "payload": payload}
    for endpoint in hub.executor("GET", "endpoints").json()["endpoints"]:
        if endpoint["name"].startswith("msa-"):
            hub.executor("DELETE", f"endpoints/{endpoint['name']}")


def shown(value: float) -> str:
    """A figure as the panel writes it (an integer as is, else three decimals)."""
    return str(int(value)) if value == int(value) else f"{value:.3f}"


def shown_percent(rate: float) -> str:
    """A rate as the panel writes it in percent (one decimal at most)."""
    return f"{round(rate * 1000) / 10:g}%"


def test_the_owner_deploys_a_shadow_compares_it_and_sees_an_alert_fire(hub, new_page, owner, model):
    name, token = f"msa-ep-{RUN}", owner[2]
    plain = f"msa-plain-{RUN}"  # an endpoint without a shadow, deployed through the API meanwhile
    deploy_by_api(hub, token, plain, [{"model": model["name"], "version": "1", "weight": 100}])
    page = new_page(allowed_errors=[REFUSED])
    login(page, hub, owner[0], owner[1])
    open_lab(page, hub, owner[0])
    page.locator('.lm-TabBar-tab[data-id="notebench-models"]').click()
    panel = page.locator("#notebench-models")
    expect(panel.locator('[data-section="endpoints"]')).to_be_visible(timeout=60_000)

    # Deploy: version 1 live (100 %), version 2 a shadow of half the requests; only live rows make the total.
    deploy = panel.locator('form[aria-label="Deploy"]')
    deploy.locator('input[name="endpoint-name"]').fill(name)
    deploy.get_by_label("Model of version 1").select_option(model["name"])
    deploy.get_by_label("Version 1", exact=True).select_option("1")
    deploy.get_by_role("button", name="+ version").click()
    deploy.get_by_label("Version 2", exact=True).select_option("2")
    deploy.locator('input[name="weight-1"]').fill("30")
    expect(deploy.locator("[data-total]")).to_have_text("total 130%")
    expect(deploy.get_by_role("button", name="Deploy")).to_be_disabled()
    deploy.locator('input[name="shadow-1"]').check()
    expect(deploy.locator('input[name="weight-1"]')).to_have_count(0)
    deploy.get_by_label("Percent of the requests copied to shadow version 2").fill("50")
    expect(deploy.locator("[data-total]")).to_have_text("total 100%")
    deploy.get_by_role("button", name="Deploy").click()

    card = panel.locator(f'.nb-endpoint[data-endpoint="{name}"]')
    expect(card.locator(".nb-job-head .nb-badge")).to_have_text("ready", timeout=ENDPOINT_TIMEOUT_MS)
    served = wait_for(lambda: (e := wait_status(hub, name, token)) and all(v["status"] == "ready" for v in e["versions"])
                      and e, 240, message="the live version and the shadow ready")
    assert [(v["version"], v["weight"], v["shadow"], v["traffic_percent"]) for v in served["versions"]] == [
        ("1", 100, False, None), ("2", 0, True, 50)]
    versions = card.locator(".nb-table").first
    expect(versions.locator("tr").nth(0)).to_contain_text(f"{model['name']}/1")
    expect(versions.locator("tr").nth(0)).to_contain_text("100%")
    expect(versions.locator("tr").nth(1)).to_contain_text(f"{model['name']}/2")
    expect(versions.locator("tr").nth(1).locator(".nb-shadow")).to_have_text("shadow, 50 % of requests")

    # The endpoint without one says so, and how to add one.
    plain_card = panel.locator(f'.nb-endpoint[data-endpoint="{plain}"]')
    plain_card.locator('[data-section="shadow"] > summary').click()
    expect(plain_card.locator(".nb-no-shadow")).to_contain_text("No shadow version.", timeout=60_000)
    expect(plain_card.locator(".nb-no-shadow")).to_contain_text('mark one "shadow"')
    expect(plain_card.locator(".nb-shadow")).to_have_count(0)

    # The history's deploy lists the shadow as one.
    card.locator('[data-section="history"] > summary').click()
    expect(card.locator('[data-section="history"] tr[data-entry] .nb-versions')).to_have_text(
        f"{model['name']}/1 100%, {model['name']}/2 shadow 50%", timeout=60_000)

    # Requests through the API; the Shadow section shows what GET .../shadow says of them.
    for _ in range(REQUESTS):
        r = invoke(hub, name, token, model["payload"])
        assert r.status_code == 200 and r.headers["X-Notebench-Model-Version"].endswith("/1"), r.text

    def compared():
        answer = hub.executor("GET", f"endpoints/{name}/shadow?window=1h", token).json()
        shadow = answer["shadows"][0] if answer["shadows"] else {}
        return shadow.get("requests") == REQUESTS // 2 and shadow.get("compared") == REQUESTS // 2 and answer

    expected = wait_for(compared, 120, message="the shadow's copies recorded and compared")
    shadow = expected["shadows"][0]
    card.locator('[data-section="shadow"] > summary').click()
    section = card.locator('[data-section="shadow"]')
    row = section.locator('tr[data-side="shadow"][data-version="2"]')
    expect(row.locator(".nb-requests")).to_have_text(str(REQUESTS // 2), timeout=60_000)
    expect(row.locator(".nb-agreement")).to_have_text(shown_percent(shadow["agreement_rate"]))
    expect(row.locator(".nb-compared")).to_have_text(str(shadow["compared"]))
    expect(row.locator(".nb-dropped")).to_have_text(str(shadow["dropped"]))
    expect(row.locator(".nb-shadow-quality")).to_have_text("no labels yet")
    expect(row).to_contain_text("shadow, 50 % of requests")
    live = section.locator('tr[data-side="live"][data-version="1"]')
    expect(live.locator(".nb-requests")).to_have_text(str(expected["live"][0]["requests"]))
    section.locator('select[name="shadow-window"]').select_option("7d")
    expect(row.locator(".nb-requests")).to_have_text(str(REQUESTS // 2))

    # Alerts: none yet; the owner adds an error-rate rule. A threshold the executor refuses is
    # named at its field, so is a webhook (its message, holding markup, shown as text).
    card.locator('[data-section="alerts"] > summary').click()
    alerts = card.locator('[data-section="alerts"]')
    expect(alerts.locator(".nb-no-rules")).to_have_text("No alert rules.", timeout=60_000)
    expect(alerts.locator(".nb-no-firings")).to_have_text("No alert has fired.")
    expect(alerts.locator(".nb-webhook")).to_have_text("Webhook: none (firings are only recorded)")
    alerts.get_by_role("button", name="Edit rules").click()
    editor = alerts.locator("form.nb-alerts-editor")
    editor.get_by_role("button", name="+ rule").click()
    editor.locator('select[name="rule-kind-0"]').select_option("error_rate")
    editor.locator('input[name="rule-threshold-0"]').fill("2")
    editor.get_by_role("button", name="Save").click()
    expect(editor.locator('[data-error-for="rules.0.threshold"]')).not_to_be_empty()
    editor.locator('input[name="rule-threshold-0"]').fill("0.2")
    editor.locator('input[name="alerts-webhook"]').fill(f"https://{MARKUP}/")
    editor.get_by_role("button", name="Save").click()
    webhook_error = editor.locator('[data-error-for="webhook"]')
    expect(webhook_error).not_to_be_empty()
    expect(editor.locator('[data-error-for="rules.0.threshold"]')).to_have_count(0)
    assert alerts.locator("img").count() == 0
    editor.locator('input[name="alerts-webhook"]').fill("")
    editor.get_by_role("button", name="Save").click()
    rule = alerts.locator(".nb-alert-rules tr[data-rule]")
    expect(rule.locator("td")).to_have_text(["error_rate", "0.200", "1h", "", "1"], timeout=60_000)
    expect(alerts).to_contain_text(f"Set by {owner[0]}")
    saved = hub.executor("GET", f"endpoints/{name}/alerts", token).json()
    assert saved["rules"] == [{"kind": "error_rate", "threshold": 0.2, "window": "1h", "metric": None,
                               "min_requests": 1}] and saved["webhook"] is None

    # Bad requests (the scoring server's 400s): the rule fires, and the section shows the firing.
    for _ in range(BAD_REQUESTS):
        r = invoke(hub, name, token, {"dataframe_split": {"columns": ["x"], "data": [["not a number"]]}})
        assert r.status_code == 400, r.text
    firing = alerts.locator("tr[data-firing]")
    expect(firing).to_have_count(1, timeout=FIRING_TIMEOUT_MS)
    fired = hub.executor("GET", f"endpoints/{name}/alerts", token).json()["firings"][0]
    expect(firing).to_have_attribute("data-firing", str(fired["id"]))
    expect(firing.locator(".nb-firing-kind")).to_have_text("error_rate")
    expect(firing.locator(".nb-firing-value")).to_have_text(shown(fired["value"]))
    expect(firing.locator(".nb-firing-breach")).to_have_text("ongoing")
    expect(firing.locator(".nb-firing-delivery")).to_have_text("no webhook")
    for key, value in fired["detail"].items():
        expect(firing.locator(".nb-firing-detail")).to_contain_text(f"{key} {value}")
    assert fired["value"] > 0.2 and fired["cleared_at"] is None and fired["state"] is None

    assert axe_violations(page, f'.nb-endpoint[data-endpoint="{name}"]') == []
    expect(card.locator("img")).to_have_count(0)
    assert page.evaluate("window.__xss") is None
