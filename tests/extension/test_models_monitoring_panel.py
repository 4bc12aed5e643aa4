"""An endpoint card's Drift, Quality and History sections in Chromium, against the session's real
hub, MLflow, executor and scoring servers: the drift model of tests/support/drift.py (trained on
synthetic data, version 1 with a training profile) gets traffic shifted on feature b; its owner
sees b drifted and only b, the quality of labels posted through the API, and rolls the endpoint
back from its history (with a reason that is markup, shown as text). Another user sees neither
the card nor a rollback button. Every page fails its test on a console error (``new_page``)."""

import re
import time

import pytest
import requests
from playwright.sync_api import expect
from sklearn.metrics import accuracy_score, f1_score

from tests.extension.conftest import axe_violations, chromium_or_skip, login, open_lab, person_with_server
from tests.support.drift import frame, register_drift_model, split
from tests.support.endpoints import RUN, deploy, invoke, versions_answering, wait_status
from tests.support.launcher import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]
chromium_or_skip()

REQUESTS = 7  # under the sample's 10 a second: every one is sampled
MARKUP = "<img src=x onerror=window.__xss=1>"  # a reason that would run script if it were HTML
# A rollback tried while the previous change still ends is refused (409, "try again"); Chromium
# logs that answer as a console error.
CHANGING = re.compile(r"409 \(Conflict\)")


@pytest.fixture(scope="module")
def people(hub):
    names = {"owner": f"mm-owner-{RUN}", "other": f"mm-other-{RUN}"}
    return {role: person_with_server(hub, name, notebooks=()) for role, name in names.items()}


@pytest.fixture(scope="module")
def endpoint(hub, people):
    """The owner's drift model, version 1 (training profile) behind an endpoint, given REQUESTS
    requests shifted on b; its name, the model's and the requests' (ids, payloads, predictions)."""
    owner, _, token = people["owner"]
    model = register_drift_model(hub, f"mm-drift-{RUN}", token)
    name = f"mm-ep-{RUN}"
    deploy(hub, token, name, [{"model": model, "version": "1", "weight": 100}])
    wait_status(hub, name, token)
    frames = [frame(100 + seed, shift_b=2.0) for seed in range(REQUESTS)]
    sent = []
    for df in frames:
        r = invoke(hub, name, token, split(df))
        assert r.status_code == 200, r.text
        sent.append({"id": r.headers["X-Notebench-Request-Id"], "frame": df, "predictions": r.json()["predictions"]})

    def sampled():
        report = hub.executor("GET", f"endpoints/{name}/monitoring", token).json()
        return sum(v["requests"] for v in report["versions"]) >= REQUESTS

    wait_for(sampled, 60, message=f"{REQUESTS} sampled requests of {name}")
    yield {"name": name, "model": model, "sent": sent}
    hub.executor("DELETE", f"endpoints/{name}")


def open_card(page, hub, person, name):
    login(page, hub, person[0], person[1])
    open_lab(page, hub, person[0])
    page.locator('.lm-TabBar-tab[data-id="notebench-models"]').click()
    panel = page.locator("#notebench-models")
    expect(panel.locator('[data-section="endpoints"]')).to_be_visible(timeout=60_000)
    return panel.locator(f'.nb-endpoint[data-endpoint="{name}"]')


def shown(value: float) -> str:
    """A figure as the panel writes it (an integer as is, else three decimals)."""
    return str(int(value)) if value == int(value) else f"{value:.3f}"


def labels_of(df) -> list[int]:
    """The true labels of the drift model's synthetic data (tests/support/drift.py's rule)."""
    return ((df["a"] + df["b"] + (df["d"] == "x")) > 0.5).astype(int).tolist()


def post_labels(hub, name, token, sent) -> None:
    """Every request's labels, posted until all are taken (predictions reach the store every
    few seconds: until then their ids are unknown)."""
    body = [{"request_id": s["id"], "label": labels_of(s["frame"])} for s in sent]

    def accepted():
        r = requests.post(f"{hub.url}/services/executor/api/endpoints/{name}/feedback", json=body,
                          headers={"Authorization": f"token {token}"}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json() == {"accepted": len(sent), "unknown": []}

    wait_for(accepted, 60, interval=1, message="every label accepted")


def test_the_owner_sees_drift_quality_and_rolls_back_from_the_history(hub, new_page, people, endpoint):
    owner, _, token = people["owner"]
    name, model = endpoint["name"], endpoint["model"]
    page = new_page(allowed_errors=[CHANGING])
    card = open_card(page, hub, people["owner"], name)
    expect(card.locator(".nb-job-head .nb-badge")).to_have_text("ready", timeout=60_000)

    # Drift: feature b, and only b, is marked drifted, in words; against the training profile.
    card.locator('[data-section="drift"] > summary').click()
    drift = card.locator('[data-section="drift"] .nb-monitoring-version[data-version="1"]')
    rows = drift.locator("tr[data-feature]")
    expect(rows).to_have_count(4, timeout=60_000)
    expect(drift.locator('tr[data-drifted="true"]')).to_have_count(1)
    expect(drift.locator('tr[data-feature="b"]')).to_have_attribute("data-drifted", "true")
    expect(drift.locator('tr[data-feature="b"] td').last).to_have_text("⚠ drifted")
    for feature in "acd":
        expect(drift.locator(f'tr[data-feature="{feature}"] td').last).to_have_text("no")
    expect(drift).to_contain_text(f"{REQUESTS} requests sampled")
    expect(drift.locator(".nb-baseline")).to_contain_text("Baseline: the training profile (2000 rows).")
    expect(drift.locator(".nb-drifted-list")).to_have_text("Drifted: b")
    chart = drift.get_by_role("img", name=f"Drift score per feature of {model}/1")
    expect(chart.locator("[data-bar]")).to_have_count(4)
    expect(drift.locator(".nb-prediction-drift")).to_contain_text("Prediction drift:")
    # The day's window holds the same requests.
    card.locator('select[name="drift-window"]').select_option("1d")
    expect(card.locator('[data-section="drift"] tr[data-drifted="true"]')).to_have_count(1)
    expect(card.locator('[data-section="drift"] tr[data-feature="b"]')).to_have_attribute("data-drifted", "true")

    # Quality: none before labels, then the figures scikit-learn gives, over every window.
    card.locator('[data-section="quality"] > summary').click()
    quality = card.locator(f'[data-section="quality"] [aria-label="Quality of {model}/1"]')
    expect(quality).to_contain_text("No labels yet.", timeout=60_000)
    card.get_by_text("How to send labels").click()
    feedback_url = f"{hub.url}/services/executor/api/endpoints/{name}/feedback"
    expect(card.locator(".nb-feedback-url")).to_have_text(feedback_url)
    expect(card.get_by_label("Feedback curl example", exact=True)).to_contain_text(feedback_url)
    post_labels(hub, name, token, endpoint["sent"])
    truth = [label for s in endpoint["sent"] for label in labels_of(s["frame"])]
    predicted = [p for s in endpoint["sent"] for p in s["predictions"]]
    for metric, value in (("accuracy", accuracy_score(truth, predicted)), ("f1", f1_score(truth, predicted))):
        cells = quality.locator(f'tr[data-metric="{metric}"] td')
        expect(cells).to_have_text([metric, shown(value), shown(value), shown(value)], timeout=60_000)
    expect(quality.locator('tr[data-metric="labelled"] td')).to_have_text(["labelled rows"] + [str(len(truth))] * 3)
    assert axe_violations(page, f'.nb-endpoint[data-endpoint="{name}"]') == []

    # History: an update to version 2 (its reason markup), then back to the first state.
    def patched():
        r = hub.executor("PATCH", f"endpoints/{name}", token,
                         json={"versions": [{"model": model, "version": "2", "weight": 100}], "reason": MARKUP})
        return [r] if r.status_code != 409 else None

    assert wait_for(patched, 180, message="the PATCH accepted")[0].status_code == 200
    wait_status(hub, name, token)
    card.locator('[data-section="history"] > summary').click()
    history = card.locator('[data-section="history"]')
    entries = history.locator("tr[data-entry]")
    expect(entries).to_have_count(2, timeout=60_000)
    update, deployed = entries.nth(0), entries.nth(1)
    expect(update.locator(".nb-action")).to_have_text("update")
    expect(update.locator(".nb-reason")).to_have_text(MARKUP)  # as text
    expect(update.locator(".nb-versions")).to_have_text(f"{model}/2 100%")
    expect(update).to_contain_text("current")
    expect(update.get_by_role("button", name="Roll back to this")).to_have_count(0)
    expect(deployed.locator(".nb-action")).to_have_text("deploy")
    expect(deployed.locator(".nb-actor")).to_have_text(owner)
    expect(deployed.locator(".nb-versions")).to_have_text(f"{model}/1 100%")
    first = int(deployed.get_attribute("data-entry"))

    deadline = time.monotonic() + 180
    while True:  # a rollback asked while the update still ends is refused: asked again then
        deployed.get_by_role("button", name="Roll back to this").click()
        dialog = page.locator(".jp-Dialog")
        expect(dialog).to_contain_text(f"Serve {model}/1 100% again")
        dialog.locator('input[name="rollback-reason"]').fill(MARKUP)
        dialog.get_by_role("button", name="Roll back", exact=True).click()
        expect(dialog).to_have_count(0)

        def outcome():
            if hub.executor("GET", f"endpoints/{name}/history", token).json()["entries"][0]["action"] == "rollback":
                return "rolled back"
            refused = history.locator(".nb-error")
            return refused.count() and refused.first.inner_text()

        answer = wait_for(outcome, 60, interval=0.5, message="the rollback's outcome")
        if answer == "rolled back":
            break
        assert "try again" in answer and time.monotonic() < deadline, answer

    # The card shows the endpoint served by version 1 again, and the history the rollback.
    expect(card.locator(".nb-job-head .nb-badge")).to_have_text("ready", timeout=180_000)
    expect(card.locator(".nb-table").first).to_contain_text(f"{model}/1")
    expect(card.locator(".nb-table").first).not_to_contain_text(f"{model}/2")
    expect(entries).to_have_count(3, timeout=60_000)
    newest = entries.nth(0)
    expect(newest.locator(".nb-action")).to_have_text(f"rollback (to {first})")
    expect(newest.locator(".nb-reason")).to_have_text(MARKUP)
    expect(newest.locator(".nb-actor")).to_have_text(owner)
    expect(history.locator("img")).to_have_count(0)
    assert page.evaluate("window.__xss") is None
    # The executor's own answer, and the version that answers requests.
    served = wait_status(hub, name, token)
    assert [(v["model"], v["version"], v["weight"]) for v in served["versions"]] == [(model, "1", 100)]
    assert versions_answering(hub, name, token, split(frame(1)), 5) == {f"{model}/1"}


def test_another_user_sees_no_card_and_no_rollback_button(hub, new_page, people, endpoint):
    page = new_page()
    login(page, hub, people["other"][0], people["other"][1])
    open_lab(page, hub, people["other"][0])
    page.locator('.lm-TabBar-tab[data-id="notebench-models"]').click()
    panel = page.locator("#notebench-models")
    expect(panel.locator('[data-section="endpoints"]')).to_be_visible(timeout=60_000)
    expect(panel.locator(".nb-endpoint")).to_have_count(0)  # others' endpoints are not listed
    expect(panel.get_by_role("button", name="Roll back to this")).to_have_count(0)
    # Nor would the executor take it from them.
    first = hub.executor("GET", f"endpoints/{endpoint['name']}/history").json()["entries"][-1]["id"]
    r = hub.executor("POST", f"endpoints/{endpoint['name']}/rollback", people["other"][2], json={"to": first})
    assert r.status_code == 404, r.text
