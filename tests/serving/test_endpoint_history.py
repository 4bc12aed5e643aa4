"""An endpoint's history and rollback (GET endpoints/{name}/history, POST endpoints/{name}/rollback),
against the session's real hub, MLflow, executor and scoring servers.

The model is tests/support/registry.py's: versions 1 ("champion"), 2, and 3 (cannot load).
"""

import pytest

from tests.support.endpoints import (
    RUN,
    delete_endpoints,
    deploy,
    owner_and_other,
    versions_answering,
    wait_status,
)
from tests.support.launcher import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def people(hub):
    return owner_and_other(hub, "hist")


@pytest.fixture(scope="module", autouse=True)
def cleanup(hub):
    yield
    delete_endpoints(hub)


def versions_of(entry_or_endpoint) -> list[tuple]:
    return [(v["version"], v["alias"], v["weight"]) for v in entry_or_endpoint["versions"]]


def history(hub, name, token, **params) -> list[dict]:
    r = hub.executor("GET", f"endpoints/{name}/history", token, params=params)
    assert r.status_code == 200, r.text
    return r.json()["entries"]


def once_settled(hub, method, path, token, body):
    """The answer to a change, asked again while the previous change still ends (replaced versions
    finish their requests after the endpoint is ready again: 409 until then)."""
    def answered():
        r = hub.executor(method, path, token, json=body)
        return [r] if r.status_code != 409 else None  # in a list: a Response is false when it is a 4xx

    return wait_for(answered, 180, interval=0.05, message=f"{method} {path} accepted")[0]


def patch(hub, name, token, versions, **extra):
    r = once_settled(hub, "PATCH", f"endpoints/{name}", token, {"versions": versions, **extra})
    assert r.status_code == 200, r.text
    return wait_status(hub, name, token)


def rollback(hub, name, token, body):
    return once_settled(hub, "POST", f"endpoints/{name}/rollback", token, body)


@pytest.fixture(scope="module")
def changed(hub, people, model):
    """The owner's endpoint: deployed at champion (1) 100, then 1 at 80 / 2 at 20, then 2 at 100."""
    name, token, m = f"hist-main-{RUN}", people["owner_token"], model["name"]
    deploy(hub, token, name, [{"model": m, "version": "champion", "weight": 100}])
    wait_status(hub, name, token)
    patch(hub, name, token, [{"model": m, "version": "1", "weight": 80}, {"model": m, "version": "2", "weight": 20}],
          reason="try version 2 on a fifth of the traffic")
    patch(hub, name, token, [{"model": m, "version": "2", "weight": 100}])
    assert versions_answering(hub, name, token, model["input"], 10) == {f"{m}/2"}
    return name


def test_history_lists_every_change_newest_first(hub, people, model, changed):
    entries = history(hub, changed, people["owner_token"])
    assert [e["action"] for e in entries] == ["update", "update", "deploy"]
    assert [versions_of(e) for e in entries] == [
        [("2", None, 100)],
        [("1", None, 80), ("2", None, 20)],
        [("1", "champion", 100)],  # the alias, with the version it resolved to
    ]
    assert {e["actor"] for e in entries} == {people["owner"]}
    assert {e["endpoint"] for e in entries} == {changed} and {e["owner"] for e in entries} == {people["owner"]}
    assert [e["reason"] for e in entries] == [None, "try version 2 on a fifth of the traffic", None]
    assert entries[0]["id"] > entries[1]["id"] > entries[2]["id"]
    assert entries[0]["at"] >= entries[1]["at"] >= entries[2]["at"]
    assert all(e["versions"][0]["model"] == model["name"] for e in entries)
    # Paged like the other lists.
    r = hub.executor("GET", f"endpoints/{changed}/history", people["owner_token"], params={"limit": 2})
    page = r.json()
    assert [e["id"] for e in page["entries"]] == [e["id"] for e in entries[:2]] and page["next_cursor"]
    rest = history(hub, changed, people["owner_token"], limit=2, cursor=page["next_cursor"])
    assert [e["id"] for e in rest] == [entries[2]["id"]]
    r = hub.executor("GET", f"endpoints/{changed}/history", people["owner_token"], params={"limit": "x"})
    assert r.status_code == 400 and r.json()["field"] == "limit"


def test_rollback_restores_the_first_state(hub, people, model, changed):
    token, m = people["owner_token"], model["name"]
    first = history(hub, changed, token)[-1]
    r = rollback(hub, changed, token, {"to": first["id"], "reason": "version 2 answers worse"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == changed and r.json()["status"] == "updating"
    endpoint = wait_status(hub, changed, token)
    assert [(v["version"], v["weight"], v["status"]) for v in endpoint["versions"]] == [("1", 100, "ready")]
    assert versions_answering(hub, changed, token, model["input"], 10) == {f"{m}/1"}
    latest = history(hub, changed, token)[0]
    assert latest["action"] == "rollback" and latest["actor"] == people["owner"]
    assert latest["detail"] == {"to": first["id"]} and latest["reason"] == "version 2 answers worse"
    assert versions_of(latest) == [("1", None, 100)]  # restored by number: what served then
    audit = hub.executor("GET", "audit", params={"action": "endpoint.rollback"}).json()["entries"]
    assert any(a["target"] == f"endpoint {changed}" and a["detail"]["to"] == first["id"] and a["actor"] == people["owner"]
               for a in audit)


def test_rollback_refuses_a_bad_to(hub, people, model, changed):
    token = people["owner_token"]
    other_name = f"hist-second-{RUN}"
    deploy(hub, token, other_name, [{"model": model["name"], "version": "2", "weight": 100}])
    other_entry = history(hub, other_name, token)[0]
    wait_status(hub, other_name, token)
    for body in ({"to": other_entry["id"]}, {"to": 10**12}, {"to": "1"}, {"to": 0}, {"to": 2**70}, {"to": None}, {},
                 {"to": history(hub, changed, token)[-1]["id"], "reason": "x" * 501}):
        r = rollback(hub, changed, token, body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["field"] == ("reason" if "reason" in body else "to"), (body, r.text)
    assert rollback(hub, changed, token, {"to": 1, "extra": True}).json()["field"] == "extra"
    assert history(hub, changed, token)[0]["action"] == "rollback"  # nothing recorded for the refusals
    assert wait_status(hub, changed, token)["versions"][0]["version"] == "1"


def test_history_of_a_deleted_endpoint(hub, people, model):
    token, other, name = people["owner_token"], people["other_token"], f"hist-deleted-{RUN}"
    deploy(hub, token, name, [{"model": model["name"], "version": "2", "weight": 100}])
    wait_status(hub, name, token)
    deployed = history(hub, name, token)
    assert hub.executor("DELETE", f"endpoints/{name}", token).status_code == 204
    # Kept by name: admins (and its former owner) still read it; others do not see it.
    for reader in (None, token):
        entries = history(hub, name, reader)
        assert [e["action"] for e in entries] == ["delete", "deploy"]
        assert entries[1]["id"] == deployed[0]["id"]
        assert versions_of(entries[0]) == [("2", None, 100)]  # what it served when deleted
        assert entries[0]["actor"] == people["owner"]
    assert hub.executor("GET", f"endpoints/{name}/history", other).status_code == 404
    assert hub.executor("GET", f"endpoints/{name}/history", "").status_code == 401
    assert rollback(hub, name, token, {"to": deployed[0]["id"]}).status_code == 404
    assert hub.executor("GET", f"endpoints/no-such-{RUN}/history").status_code == 404
    # An endpoint deployed again under that name has a history of its own.
    deploy(hub, token, name, [{"model": model["name"], "version": "1", "weight": 100}])
    again = history(hub, name, token)
    assert [e["action"] for e in again] == ["deploy"] and versions_of(again[0]) == [("1", None, 100)]
    wait_status(hub, name, token)
    r = rollback(hub, name, token, {"to": deployed[0]["id"]})  # the earlier endpoint's state is not this one's
    assert r.status_code == 400 and r.json()["field"] == "to"


def test_ownership_matrix(hub, people, model, changed):
    owner, other, admin = people["owner_token"], people["other_token"], hub.admin_token
    to = history(hub, changed, owner)[-1]["id"]  # the deploy: champion (1) at 100
    for method, path in (("GET", f"endpoints/{changed}/history"), ("POST", f"endpoints/{changed}/rollback")):
        body = {"to": to} if method == "POST" else None
        r = hub.executor(method, path, "", json=body)
        assert r.status_code == 401, (method, r.text)
        r = hub.executor(method, path, other, json=body)
        assert r.status_code == 404 and r.json()["status"] == 404, (method, r.text)
    assert history(hub, changed, owner) == history(hub, changed, admin)
    # An admin rolls back someone else's endpoint: recorded as the admin's.
    second = history(hub, changed, owner)[-2]["id"]  # 1 at 80, 2 at 20
    r = rollback(hub, changed, admin, {"to": second})
    assert r.status_code == 200, r.text
    endpoint = wait_status(hub, changed, owner)
    assert [(v["version"], v["weight"]) for v in endpoint["versions"]] == [("1", 80), ("2", 20)]
    latest = history(hub, changed, owner)[0]
    admin_name = hub.api("GET", "/user").json()["name"]
    assert latest["action"] == "rollback" and latest["actor"] == admin_name != people["owner"]
    assert versions_answering(hub, changed, owner, model["input"], 20) == {f"{model['name']}/1", f"{model['name']}/2"}
    # And the owner rolls back to the rollback (a rollback entry is a state too).
    r = rollback(hub, changed, owner, {"to": history(hub, changed, owner)[1]["id"]})
    assert r.status_code == 200, r.text
    assert [(v["version"], v["weight"]) for v in wait_status(hub, changed, owner)["versions"]] == [("1", 100)]
