"""What the hub and the MLflow service report to the executor's audit log (issue 17): logins,
spawns, stops, tokens, users and groups from the hub; registrations, versions and alias moves from
MLflow; each with who did it and when. Only the reporters' scope may append (POST /api/audit),
what they send is validated strictly, and an entry sent twice is kept once."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from tests.support.jobs import unique
from tests.support.kernels import server_env
from tests.support.launcher import wait_for
from tests.support.registry import register_model

PASSWORD = "audited-pass-1"


def entries(hub, **params) -> list[dict]:
    r = hub.executor("GET", "audit", None, params={"limit": "200", **params})
    assert r.status_code == 200, r.text
    return r.json()["entries"]


def reported(hub, action: str, target: str, since: datetime, count: int = 1) -> list[dict]:
    """Wait until ``count`` entries of ``action`` on ``target`` (at or after ``since``) are in the log."""

    def found():
        mine = [e for e in entries(hub, action=action, since=since.isoformat()) if e["target"] == target]
        return mine if len(mine) >= count else None

    return wait_for(found, 60, interval=0.2, message=f"{count} {action} of {target} in the audit log")


def reporter_token(hub) -> str:
    return (hub.data_dir / "audit_reporter_token").read_text().strip()


def append(hub, token: str, body) -> requests.Response:
    return hub.executor("POST", "audit", token, json=body)


def event(**fields) -> dict:
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return {"event_id": uuid.uuid4().hex, "at": now, "actor": "ada", "action": "user.login", "target": "user ada",
            **fields}


def assert_in_window(entry: dict, since: datetime) -> None:
    assert since <= datetime.fromisoformat(entry["at"]) <= datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def person(hub):
    """A user who signed up (approved by the admin), so they log in with a password."""
    name = unique("aud")
    assert hub.signup(name, PASSWORD).status_code == 200
    hub.approve(name)
    return name


def test_login_spawn_and_stop_are_reported_with_who_and_when(hub, person):
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    session = hub.browser_login(person, PASSWORD)
    assert session.login_response.status_code == 302
    (login,) = reported(hub, "user.login", f"user {person}", since)
    assert (login["actor"], login["owner"]) == (person, person)
    assert login["detail"]["source"] == "audit-reporter" and login["detail"]["authenticator"] == "NotebenchNativeAuthenticator"
    assert_in_window(login, since)

    hub.spawn(person, "cpu")  # by the admin, for the user
    (spawn,) = reported(hub, "server.spawn", f"server {person}/", since)
    assert (spawn["actor"], spawn["owner"], spawn["detail"]["profile"]) == ("admin", person, "cpu")
    hub.stop_server(person)
    (stop,) = reported(hub, "server.stop", f"server {person}/", since)
    assert (stop["actor"], stop["owner"]) == ("admin", person)
    assert_in_window(spawn, since)
    assert spawn["at"] <= stop["at"]
    # The user's own view of it: everything they did, or that was done to their things.
    mine = {e["action"] for e in entries(hub, user=person, since=since.isoformat())}
    assert {"user.login", "server.spawn", "server.stop"} <= mine


def test_users_tokens_and_groups_are_reported_without_secrets(hub):
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    name, group = unique("aud-u"), unique("aud-g")
    token = hub.new_user(name)  # the admin makes the user and a token of theirs
    assert hub.api("PATCH", f"/users/{name}", json={"admin": True}).status_code == 200
    assert hub.api("POST", f"/groups/{group}", json={"users": [name]}).status_code == 201
    assert hub.api("DELETE", f"/groups/{group}/users", json={"users": [name]}).status_code == 200
    (made,) = reported(hub, "user.create", f"user {name}", since)
    (tok,) = reported(hub, "token.create", f"tokens of {name}", since)
    (update,) = reported(hub, "user.update", f"user {name}", since)
    (group_made,) = reported(hub, "permission.group_create", f"group {group}", since)
    (removed,) = reported(hub, "permission.group_members", f"group {group}", since)
    assert made["actor"] == tok["actor"] == update["actor"] == "admin"
    assert tok["owner"] == name and tok["detail"]["note"] == "test"
    assert update["detail"]["admin"] is True
    assert group_made["detail"]["users"] == [name] and removed["detail"]["removed"] == [name]
    assert token not in str(entries(hub, since=since.isoformat()))  # the token itself is nowhere
    # A user making their own token is the actor.
    r = requests.post(f"{hub.url}/hub/api/users/{name}/tokens", headers={"Authorization": f"token {token}"},
                      json={"note": "mine"}, timeout=60)
    assert r.status_code == 201, r.text
    own = reported(hub, "token.create", f"tokens of {name}", since, count=2)
    assert own[0]["actor"] == name and own[0]["detail"]["note"] == "mine"  # newest first


def test_model_registrations_and_alias_moves_through_mlflow_are_reported(hub):
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    owner = unique("aud-m")
    token = hub.new_user(owner)
    model = f"audited-{owner}"
    register_model(hub.url, token, model)  # versions 1 to 3, champion -> 1
    mlflow = f"{hub.url}/services/mlflow/api/2.0/mlflow/registered-models/alias"
    auth = {"Authorization": f"token {token}"}
    r = requests.post(mlflow, headers=auth, json={"name": model, "alias": "champion", "version": "2"}, timeout=60)
    assert r.status_code == 200, r.text  # the alias moves to version 2
    r = requests.delete(mlflow, headers=auth, json={"name": model, "alias": "champion"}, timeout=60)
    assert r.status_code == 200, r.text

    target = f"model {model}"
    (registered,) = reported(hub, "model.register", target, since)
    assert (registered["actor"], registered["owner"], registered["detail"]["source"]) == (owner, owner, "mlflow")
    versions = reported(hub, "model.version_create", target, since, count=3)
    assert sorted(v["detail"]["version"] for v in versions) == ["1", "2", "3"]
    moves = reported(hub, "alias.set", target, since, count=2)
    assert [(m["actor"], m["detail"]["alias"], m["detail"]["version"]) for m in moves] == [
        (owner, "champion", "2"), (owner, "champion", "1")]  # newest first
    (dropped,) = reported(hub, "alias.delete", target, since)
    assert dropped["detail"]["alias"] == "champion"
    assert_in_window(dropped, since)
    assert [e["action"] for e in entries(hub, action="alias", user=owner)] == ["alias.delete", "alias.set", "alias.set"]
    # A request MLflow refused is no change: nothing reported.
    r = requests.post(mlflow, headers=auth, json={"name": model, "alias": "champion", "version": "99"}, timeout=60)
    assert r.status_code >= 400
    assert len(reported(hub, "alias.set", target, since, count=2)) == 2


def test_only_the_reporters_scope_may_append(hub, person):
    body = {"entries": [event()]}
    user_token = hub.new_user(unique("aud-x"))
    for token in (user_token, None):  # a user's token, the admin's
        r = append(hub, token, body)
        assert r.status_code == 403 and "custom:notebench-audit:append" in r.json()["message"], r.text
    assert append(hub, "", body).status_code == 401
    # A server's own token.
    hub.spawn(person)
    assert append(hub, server_env(hub, person)["JUPYTERHUB_API_TOKEN"], body).status_code == 403
    hub.stop_server(person)
    # The reporter appends, and may not read the log (it is no admin).
    assert hub.executor("GET", "audit", reporter_token(hub)).status_code == 403
    r = append(hub, reporter_token(hub), body)
    assert r.status_code == 200 and r.json() == {"appended": 1, "duplicates": 0}, r.text


@pytest.mark.parametrize("body,field", [
    ({}, "entries"),
    ({"entries": []}, "entries"),
    ({"entries": [event(action="job.submit")]}, "entries.0.action"),  # the executor's own actions are its own
    ({"entries": [event(), event(action="user.explode")]}, "entries.1.action"),
    ({"entries": [event(at=(datetime.now(timezone.utc) + timedelta(hours=1)).isoformat())]}, "entries.0.at"),
    ({"entries": [event(at="2026-12-05T09:00:00")]}, "entries.0.at"),  # no zone
    ({"entries": [event(at="yesterday")]}, "entries.0.at"),
    ({"entries": [event(event_id="short")]}, "entries.0.event_id"),
    ({"entries": [event(actor="")]}, "entries.0.actor"),
    ({"entries": [event(actor="a\nb")]}, "entries.0.actor"),
    ({"entries": [event(target="x" * 256)]}, "entries.0.target"),
    ({"entries": [event(detail={"source": "hub"})]}, "entries.0.detail"),
    ({"entries": [event(detail={"x": "y" * 9000})]}, "entries.0.detail"),
    ({"entries": [event(id=7)]}, "entries.0.id"),
    ({"entries": [event(actor=7)]}, "entries.0.actor"),
    ({"entries": [event()] * 501}, "entries"),
])
def test_malformed_entries_are_refused_naming_the_field(hub, body, field):
    r = append(hub, reporter_token(hub), body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field, r.json()


def test_an_entry_sent_twice_is_kept_once(hub):
    first, second = event(actor="twice"), event(actor="twice")
    token = reporter_token(hub)
    assert append(hub, token, {"entries": [first]}).json() == {"appended": 1, "duplicates": 0}
    r = append(hub, token, {"entries": [first, second, second]})
    assert r.json() == {"appended": 1, "duplicates": 2}, r.text
    kept = [e for e in entries(hub, user="twice") if e["detail"]["event_id"] in (first["event_id"], second["event_id"])]
    assert len(kept) == 2
    assert {e["at"] for e in kept} == {first["at"], second["at"]}  # the time it happened, as reported
