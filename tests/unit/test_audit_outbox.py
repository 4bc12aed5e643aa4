"""The audit outbox (hub/platform/audit_outbox.py) against a stand-in executor: events are kept on
disk before anything is sent, go out in order once the executor answers, are deleted only once
accepted, survive a new outbox on the same file (a restarted reporter), and one the executor refuses
for good (400 naming entries.N) does not hold back the others. The MLflow front's reading of
registry requests (hub/mlflow_service/audit.py) too."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from notebench.hub.mlflow_service import audit as mlflow_audit
from notebench.hub.platform.audit_outbox import AuditOutbox, audit_url
from tests.support.launcher import wait_for


class StandIn:
    """An executor's POST /api/audit: answers ``status`` (200: keeps the entries, skipping known event_ids)."""

    def __init__(self):
        self.status = 200
        self.entries: list[dict] = []
        self.auth: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.auth.append(self.headers["Authorization"])
                status, answer = stand_in.status, {}
                if status == 200:
                    bad = [i for i, e in enumerate(body["entries"]) if e["action"] == "refused.forever"]
                    if bad:
                        status, answer = 400, {"status": 400, "field": f"entries.{bad[0]}.action"}
                    else:
                        known = {e["event_id"] for e in stand_in.entries}
                        stand_in.entries += [e for e in body["entries"] if e["event_id"] not in known]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(answer).encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/executor/api/audit"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def executor():
    stand_in = StandIn()
    yield stand_in
    stand_in.server.shutdown()


def test_events_wait_on_disk_while_the_executor_is_down_and_arrive_once(tmp_path, executor):
    path = tmp_path / "audit-outbox.sqlite"
    executor.status = 503
    outbox = AuditOutbox(path, executor.url, "secret", max_backoff=0.2).start()
    for i in range(5):
        outbox.add(f"user{i}", "user.login", f"user user{i}", f"user{i}", ip="127.0.0.1")
    assert (path.stat().st_mode & 0o777) == 0o600
    wait_for(lambda: len(executor.auth) >= 2, 30, message="retries")
    assert outbox.pending() == 5 and executor.entries == []
    outbox.stop()  # the reporter is gone (as after kill -9: nothing was deleted)

    executor.status = 200
    again = AuditOutbox(path, executor.url, "secret", max_backoff=0.2).start()  # the reporter restarted
    wait_for(lambda: again.pending() == 0, 30, message="the outbox emptied")
    again.stop()
    assert [e["actor"] for e in executor.entries] == [f"user{i}" for i in range(5)]
    assert len({e["event_id"] for e in executor.entries}) == 5
    assert executor.auth[-1] == "token secret"
    first = executor.entries[0]
    assert first["action"] == "user.login" and first["owner"] == "user0" and first["detail"] == {"ip": "127.0.0.1"}
    assert first["at"].endswith("Z")


def test_a_batch_sent_again_is_not_appended_twice(tmp_path, executor):
    outbox = AuditOutbox(tmp_path / "o.sqlite", executor.url, "t")
    outbox.add("ada", "token.create", "tokens of ada", "ada")
    rows = outbox.flush_once()
    assert rows == 1 and outbox.pending() == 0
    # The answer was lost after the executor appended: the reporter sends the same event again.
    event = executor.entries[0]
    with outbox._connect() as db:
        db.execute("INSERT INTO outbox (event) VALUES (?)", (json.dumps(event),))
    assert outbox.flush_once() == 1
    assert len(executor.entries) == 1


def test_an_entry_refused_for_good_is_dropped_and_the_rest_go_on(tmp_path, executor):
    outbox = AuditOutbox(tmp_path / "o.sqlite", executor.url, "t", max_backoff=0.2).start()
    outbox.add("ada", "user.login", "user ada", "ada")
    outbox.add("ada", "refused.forever", "x")
    outbox.add("bob", "user.login", "user bob", "bob")
    wait_for(lambda: outbox.pending() == 0, 30, message="the outbox emptied")
    outbox.stop()
    assert [e["actor"] for e in executor.entries] == ["ada", "bob"]


def test_long_names_are_cut_to_what_the_log_stores(tmp_path, executor):
    outbox = AuditOutbox(tmp_path / "o.sqlite", executor.url, "t")
    outbox.add("a" * 300, "user.login", "t" * 300, "o" * 300)
    outbox.flush_once()
    (entry,) = executor.entries
    assert len(entry["actor"]) == len(entry["target"]) == len(entry["owner"]) == 255


def test_audit_url_keeps_the_services_prefix():
    assert audit_url("http://nb-executor:8090/") == "http://nb-executor:8090/services/executor/api/audit"


@pytest.mark.parametrize("method,rest,action", [
    ("POST", "api/2.0/mlflow/registered-models/create", "model.register"),
    ("POST", "ajax-api/2.0/mlflow/model-versions/create", "model.version_create"),
    ("POST", "api/2.0/mlflow/registered-models/alias", "alias.set"),
    ("DELETE", "api/2.0/mlflow/registered-models/alias", "alias.delete"),
    ("POST", "api/3.0/mlflow/users/permissions/grant", "permission.grant"),
    ("GET", "api/2.0/mlflow/registered-models/alias", None),
    ("POST", "api/2.0/mlflow/registered-models/create/x", None),
    ("POST", "api/2.0/mlflow/runs/create", None),
])
def test_the_mlflow_front_knows_what_to_report(method, rest, action):
    assert mlflow_audit.audited(method, rest) == action


class Kept:
    def __init__(self):
        self.events = []

    def add(self, *args, **detail):
        self.events.append((*args, detail))


def recorded(action, request, response=b"", query=""):
    recorder = mlflow_audit.Recorder(action)
    recorder.keep(recorder.request, json.dumps(request).encode())
    recorder.keep(recorder.response, response)
    kept = Kept()
    mlflow_audit.report(kept, recorder, "ada", query)
    return kept.events


def test_the_mlflow_front_reports_what_was_asked_and_answered():
    answer = gzip.compress(json.dumps({"model_version": {"name": "iris", "version": "3"}}).encode())
    assert recorded("model.version_create", {"name": "iris", "source": "runs:/r1/model", "run_id": "r1"}, answer) == [
        ("ada", "model.version_create", "model iris", "ada", {"version": "3", "run_id": "r1", "model_source": "runs:/r1/model"})]
    assert recorded("alias.set", {"name": "iris", "alias": "champion", "version": 3}) == [
        ("ada", "alias.set", "model iris", None, {"alias": "champion", "version": "3"})]
    assert recorded("alias.delete", {}, query="name=iris&alias=champion") == [
        ("ada", "alias.delete", "model iris", None, {"alias": "champion", "version": None})]
    grant = {"username": "bob", "resource_type": "registered_model", "resource_id": "iris", "permission": "READ"}
    assert recorded("permission.grant", grant) == [
        ("ada", "permission.model", "registered model iris", None, {"change": "grant", "username": "bob", "permission": "READ"})]
    assert recorded("permission.grant", {**grant, "resource_type": "prompt"}) == []  # not a kind the log knows
    # A body that is not a registry request's (too large, not JSON) leaves the fields unknown.
    assert recorded("model.register", "x" * (mlflow_audit.MAX_COPY + 1)) == [("ada", "model.register", "model ?", "ada", {})]
