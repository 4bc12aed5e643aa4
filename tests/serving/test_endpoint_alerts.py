"""Alerts on endpoints (PUT/GET endpoints/{name}/alerts, executor/serving/alerts.py) against a real
hub, MLflow, executor and scoring servers of this module's own (short check and retry intervals),
with a webhook receiver of the test's on 127.0.0.1:

- an error-rate rule breached by bad requests (the scoring server's 400s) is posted to the webhook,
  on the 3rd attempt when the receiver fails the first 2 (HTTP 500); it fires once while the breach
  lasts and again only after it cleared; each firing is in the audit log and the Prometheus counter;
- a p99-latency rule fires on traffic slower than its threshold, one with a high threshold does not;
- a drift rule fires when traffic shifted on one feature arrives, naming that feature;
- a firing still pending when the executor is killed -9 is delivered after its restart;
- the rules and the webhook are validated field by field, the webhook's host against the allow-list;
- the anonymous / other user / owner / admin matrix.
"""

from __future__ import annotations

import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.support.drift import frame, register_drift_model, split
from tests.support.endpoints import RUN, delete_endpoints, deploy_ready, invoke, owner_and_other
from tests.support.launcher import BASE_CONFIG, executor_process, running_hub, wait_for
from tests.support.metrics import samples, value

pytestmark = pytest.mark.slow

CONFIG = BASE_CONFIG + """
c.Alerts.check_seconds = 0.5
c.Alerts.retry_seconds = 0.5
c.Alerts.max_retry_seconds = 2
c.Alerts.max_attempts = 60
# The test's receiver listens on 127.0.0.1: listed literally, so allowed although it is loopback.
# A pattern that covers the cloud metadata address does not make that allowed: it is not public.
c.Alerts.allowed_webhook_hosts = ["127.0.0.1", "169.254.*"]
"""


class Receiver:
    """A webhook receiver: answers 500 to the first ``fail_first`` attempts of each alert (all of
    them while ``down``), 200 to the others, and keeps the JSON bodies it accepted."""

    def __init__(self):
        self.fail_first = 0
        self.down = False
        self.attempts: dict[str, int] = {}
        self.accepted: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                alert = self.headers.get("X-Notebench-Alert-Id", "")
                with receiver.lock:
                    receiver.attempts[alert] = receiver.attempts.get(alert, 0) + 1
                    ok = not receiver.down and receiver.attempts[alert] > receiver.fail_first
                    if ok:
                        receiver.accepted.append({"content_type": self.headers["Content-Type"], **json.loads(body)})
                self.send_response(200 if ok else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, endpoint: str) -> list[dict]:
        with self.lock:
            return [b for b in self.accepted if b["endpoint"] == endpoint]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """This module's own hub (it overrides the session's: the model fixture uses it too)."""
    with running_hub(tmp_path_factory, "alerts", CONFIG) as h:
        yield h


@pytest.fixture(scope="module")
def people(hub):
    return owner_and_other(hub, "al")


@pytest.fixture(scope="module", autouse=True)
def cleanup(hub):
    yield
    delete_endpoints(hub, "al-")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def endpoint(hub, people, model):
    name = f"al-lat-{RUN}"
    deploy_ready(hub, people["owner_token"], name, [{"model": model["name"], "version": "1", "weight": 100}])
    return name


def put(hub, name, token, body):
    return hub.executor("PUT", f"endpoints/{name}/alerts", token, json=body)


def alerts(hub, name, token):
    r = hub.executor("GET", f"endpoints/{name}/alerts", token)
    assert r.status_code == 200, r.text
    return r.json()


def bad_requests(hub, name, token, n):
    for _ in range(n):
        r = invoke(hub, name, token, {"dataframe_split": {"columns": ["x"], "data": [["not a number"]]}})
        assert r.status_code == 400, r.text


def delivered(hub, name, token, firing_id):
    """The firing once the store says it was delivered (the executor records that after the receiver's answer)."""
    def found():
        firing = next(f for f in alerts(hub, name, token)["firings"] if f["id"] == firing_id)
        return firing if firing["state"] == "delivered" else None

    return wait_for(found, 60, message=f"firing {firing_id} recorded as delivered")


def good_requests(hub, name, token, payload, n):
    with requests.Session() as session:
        for _ in range(n):
            r = invoke(hub, name, token, payload, session)
            assert r.status_code == 200, r.text


def test_who_may_set_and_read_alerts(hub, people, endpoint, receiver):
    owner, other, admin = people["owner_token"], people["other_token"], hub.admin_token
    body = {"webhook": receiver.url, "rules": [{"kind": "p99_latency_ms", "threshold": 60000}]}
    for method in ("GET", "PUT"):
        r = hub.executor(method, f"endpoints/{endpoint}/alerts", "", json=body if method == "PUT" else None)
        assert r.status_code == 401, (method, r.text)
        r = hub.executor(method, f"endpoints/{endpoint}/alerts", other, json=body if method == "PUT" else None)
        assert r.status_code == 404 and r.json()["status"] == 404, (method, r.text)
    assert alerts(hub, endpoint, owner) == {"webhook": None, "rules": [], "updated_at": None, "updated_by": None,
                                            "firings": []}
    r = put(hub, endpoint, owner, body)
    assert r.status_code == 200, r.text
    stored = r.json()
    # The window is filled in with the first monitoring window; the defaults are shown.
    assert stored["rules"] == [{"kind": "p99_latency_ms", "threshold": 60000.0, "window": "1h", "metric": None,
                                "min_requests": 1}]
    assert stored["webhook"] == receiver.url and stored["updated_by"] == people["owner"]
    assert alerts(hub, endpoint, admin) == alerts(hub, endpoint, owner) == stored
    # An admin may change them too, and is named as who did.
    r = put(hub, endpoint, admin, {"webhook": None, "rules": []})
    assert r.status_code == 200, r.text
    assert r.json()["rules"] == [] and r.json()["updated_by"] == hub.api("GET", "/user").json()["name"]
    # Changes are in the audit log (without the webhook's URL, which may hold a secret).
    entries = hub.executor("GET", "audit", params={"action": "endpoint.alerts"}).json()["entries"]
    mine = [e for e in entries if e["target"] == f"endpoint {endpoint}"]
    assert [e["detail"]["webhook"] for e in mine] == [False, True]


@pytest.mark.parametrize("body, field", [
    ({"rules": [{"kind": "latency", "threshold": 1}]}, "rules.0.kind"),
    ({"rules": [{"kind": "drift", "threshold": -0.1}]}, "rules.0.threshold"),
    ({"rules": [{"kind": "drift", "threshold": "1"}]}, "rules.0.threshold"),
    ({"rules": [{"kind": "error_rate", "threshold": 2}]}, "rules.0.threshold"),
    ({"rules": [{"kind": "drift", "threshold": 1, "window": "2h"}]}, "rules.0.window"),
    ({"rules": [{"kind": "drift", "threshold": 1}, {"kind": "p99_latency_ms", "threshold": 1, "window": "1d"}]},
     "rules.1.window"),
    ({"rules": [{"kind": "quality", "threshold": 0.8}]}, "rules.0.metric"),
    ({"rules": [{"kind": "quality", "metric": "auc", "threshold": 0.8}]}, "rules.0.metric"),
    ({"rules": [{"kind": "drift", "threshold": 1, "min_requests": 0}]}, "rules.0.min_requests"),
    ({"rules": [{"kind": "drift", "threshold": 1, "above": 2}]}, "rules.0.above"),
    ({"webhook": "http://127.0.0.1/x"}, "rules"),
    ({"rules": [], "email": "a@b.c"}, "email"),
    ({"rules": [], "webhook": "ftp://127.0.0.1/x"}, "webhook"),
    ({"rules": [], "webhook": "127.0.0.1/hook"}, "webhook"),
    ({"rules": [], "webhook": "http://127.0.0.1:99999/"}, "webhook"),
    ({"rules": [], "webhook": 5}, "webhook"),
])
def test_bad_rules_are_refused_naming_the_field(hub, people, endpoint, body, field):
    r = put(hub, endpoint, people["owner_token"], body)
    assert r.status_code == 400 and r.json()["field"] == field, r.text


@pytest.mark.parametrize("webhook, why", [
    ("http://169.254.169.254/latest/meta-data/", "not a public address"),  # matches "169.254.*", yet refused
    ("http://localhost:8080/hook", "not allowed"),  # loopback by another name: not listed
    ("https://hooks.example.com/x", "not allowed"),
])
def test_webhooks_to_hosts_not_allowed_are_refused(hub, people, endpoint, webhook, why):
    before = alerts(hub, endpoint, people["owner_token"])
    r = put(hub, endpoint, people["owner_token"], {"webhook": webhook, "rules": [{"kind": "error_rate", "threshold": 0}]})
    assert r.status_code == 400 and r.json()["field"] == "webhook" and why in r.json()["message"], r.text
    assert alerts(hub, endpoint, people["owner_token"]) == before


def test_error_rate_alert_is_posted_once_per_breach_with_retries(hub, people, model, receiver):
    token = people["owner_token"]
    name = f"al-err-{RUN}"
    deploy_ready(hub, token, name, [{"model": model["name"], "version": "1", "weight": 100}])
    receiver.fail_first = 2
    rule = {"kind": "error_rate", "threshold": 0.5, "window": "1h", "min_requests": 3}
    assert put(hub, name, token, {"webhook": receiver.url, "rules": [rule]}).status_code == 200

    bad_requests(hub, name, token, 5)  # every request an error: fires once 3 are seen (min_requests)
    [body] = wait_for(lambda: receiver.bodies(name), 60, message="the alert posted to the webhook")
    assert body["content_type"] == "application/json"
    assert (body["kind"], body["value"], body["owner"], body["attempt"]) == ("error_rate", 1.0, people["owner"], 3)
    assert body["rule"] == {**rule, "metric": None}
    assert body["detail"]["errors"] == body["detail"]["requests"] >= 3
    assert receiver.attempts[str(body["id"])] == 3  # two answered 500, then delivered
    firing = delivered(hub, name, token, body["id"])
    assert (firing["attempts"], firing["last_error"], firing["value"]) == (3, None, 1.0)
    assert firing["cleared_at"] is None  # the breach lasts...

    # ... and was checked again and again meanwhile (the retries took over a second, checks run
    # every half second): still one firing, now too after more errors.
    bad_requests(hub, name, token, 3)
    good_requests(hub, name, token, model["input"], 20)  # 8 errors in 28: below the threshold, it clears
    cleared = wait_for(lambda: alerts(hub, name, token)["firings"][0]["cleared_at"], 60, message="the breach cleared")
    assert len(alerts(hub, name, token)["firings"]) == 1 and len(receiver.bodies(name)) == 1

    bad_requests(hub, name, token, 30)  # 38 errors in 58: breached again, so it fires again
    second = wait_for(lambda: receiver.bodies(name)[1:], 60, message="the second alert posted")[0]
    assert second["id"] != body["id"] and second["value"] > 0.5
    assert second["value"] == pytest.approx(second["detail"]["errors"] / second["detail"]["requests"])
    delivered(hub, name, token, second["id"])
    firings = alerts(hub, name, token)["firings"]
    assert [(f["id"], f["state"]) for f in firings] == [(second["id"], "delivered"), (body["id"], "delivered")]
    assert firings[1]["cleared_at"] == cleared and firings[0]["cleared_at"] is None

    # Each firing is in the audit log (by the alerts loop) and in the Prometheus counter.
    entries = hub.executor("GET", "audit", params={"action": "endpoint.alert"}).json()["entries"]
    mine = [e for e in entries if e["target"] == f"endpoint {name}"]
    assert [(e["actor"], e["owner"], e["detail"]["firing"]) for e in mine] == [
        ("alerts", people["owner"], second["id"]), ("alerts", people["owner"], body["id"])]
    assert value(samples(hub), "notebench_endpoint_alerts_fired_total", endpoint=name, kind="error_rate") == 2


def test_p99_latency_alert(hub, people, model, endpoint, receiver):
    token = people["owner_token"]
    rules = [{"kind": "p99_latency_ms", "threshold": 60000, "min_requests": 5},  # a minute: never this slow
             {"kind": "p99_latency_ms", "threshold": 0.5, "min_requests": 5}]  # half a millisecond: always
    assert put(hub, endpoint, token, {"webhook": receiver.url, "rules": rules}).status_code == 200
    good_requests(hub, endpoint, token, model["input"], 10)
    [body] = wait_for(lambda: receiver.bodies(endpoint), 60, message="the latency alert posted")
    assert body["kind"] == "p99_latency_ms" and body["rule"]["threshold"] == 0.5 and body["value"] > 0.5
    assert body["detail"]["requests"] >= 5
    delivered(hub, endpoint, token, body["id"])
    firings = alerts(hub, endpoint, token)["firings"]
    assert [(f["id"], f["rule_index"]) for f in firings] == [(body["id"], 1)]  # the minute-long one never fired


def test_drift_alert_names_the_shifted_feature(hub, people, receiver):
    token = people["owner_token"]
    model = register_drift_model(hub, f"drift-{people['owner']}", token)
    name = f"al-drift-{RUN}"
    deploy_ready(hub, token, name, [{"model": model, "version": "1", "weight": 100}])  # with a training profile
    assert put(hub, name, token, {"webhook": receiver.url,
                                  "rules": [{"kind": "drift", "threshold": 0.2, "min_requests": 8}]}).status_code == 200
    for seed in range(8):  # fewer than the sample's 10 per second: all are sampled
        r = invoke(hub, name, token, split(frame(seed, shift_b=2.0)))
        assert r.status_code == 200, r.text
    [body] = wait_for(lambda: receiver.bodies(name), 90, message="the drift alert posted")
    assert body["kind"] == "drift" and body["value"] > 0.2
    assert body["detail"]["feature"] == "b" and body["detail"]["drifted"] == ["b"]
    assert body["detail"]["version"] == f"{model}/1"


def test_a_pending_alert_is_delivered_after_a_kill_9(hub, people, model, endpoint, receiver):
    token = people["owner_token"]
    receiver.down = True
    rules = [{"kind": "p99_latency_ms", "threshold": 0.5}]
    assert put(hub, endpoint, token, {"webhook": receiver.url, "rules": rules}).status_code == 200
    good_requests(hub, endpoint, token, model["input"], 3)

    def failing():
        firings = alerts(hub, endpoint, token)["firings"]
        return firings if firings and firings[0]["attempts"] >= 2 else None

    firing = wait_for(failing, 60, message="delivery attempts failing")[0]
    assert firing["state"] == "pending" and firing["last_error"] == "HTTP 500", firing

    executor = executor_process(hub)
    executor.send_signal(signal.SIGKILL)
    wait_for(lambda: (p := executor_process(hub)) and p.pid != executor.pid, 120, message="the executor restarted")
    receiver.down = False
    [body] = wait_for(lambda: receiver.bodies(endpoint), 120, message="the pending alert delivered after the restart")
    assert body["id"] == firing["id"] and body["attempt"] > firing["attempts"]
    assert delivered(hub, endpoint, token, firing["id"])["last_error"] is None
