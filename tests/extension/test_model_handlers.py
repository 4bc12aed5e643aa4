"""The Models panel's server side added for issue 15 (models/context, can_edit on registered
models, an endpoint's logs and request samples, its input example) and issue 18 (an endpoint's
monitoring, quality, history and rollback; its shadow comparison and alerts, and shadow versions
in deploys and updates), in a real
jupyter_server (pytest-jupyter) forwarding to the real executor and MLflow of the session's hub,
as the owner, another user and an admin."""

import pytest
from jupyterlab_notebench.handlers import REQUEST_SAMPLES_SHOWN

# pytest-jupyter's fixtures for this module only (see test_extension.py).
from pytest_jupyter.jupyter_core import *  # noqa: E402,F401,F403
from pytest_jupyter.jupyter_server import *  # noqa: E402,F401,F403
from tornado.httpclient import HTTPClientError

from notebench.hub.platform.names import ENDPOINT_NAME
from tests.extension.test_extension import fetch_json, jp_server_config, on_server_loop  # noqa: F401
from tests.extension.test_job_handlers import refused
from tests.support.endpoints import RUN, deploy, invoke, wait_status
from tests.support.launcher import wait_for
from tests.support.registry import register_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def people(hub):
    names = {"owner": f"mp-h-owner-{RUN}", "other": f"mp-h-other-{RUN}", "admin": f"mp-h-admin-{RUN}"}
    return {role: (name, hub.new_user(name, admin=role == "admin")) for role, name in names.items()}


@pytest.fixture(scope="module")
def served(hub, people):
    """The owner's model (versions 1, 2, 3) and an endpoint serving version 1; deleted at the end."""
    model, endpoint = f"mp-h-model-{RUN}", f"mp-h-{RUN}"
    payload = register_model(hub.url, people["owner"][1], model)
    deploy(hub, people["owner"][1], endpoint, [{"model": model, "version": "1", "weight": 100}])
    wait_status(hub, endpoint, people["owner"][1])
    yield {"model": model, "endpoint": endpoint, "payload": payload}
    hub.executor("DELETE", f"endpoints/{endpoint}")


@pytest.fixture
def as_user(hub, monkeypatch):
    """``as_user(role)``: the in-process server becomes that person's (as the spawner sets it up)."""

    def become(person):
        name, token = person
        monkeypatch.setenv("NOTEBENCH_URL", hub.url)
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
        monkeypatch.setenv("JUPYTERHUB_USER", name)
        monkeypatch.setenv("JUPYTERHUB_BASE_URL", "/")

    return become


NEW_ROUTES = ["models/context", "endpoints/e1/logs", "endpoints/e1/requests", "endpoints/e1/monitoring",
              "endpoints/e1/quality", "endpoints/e1/history", "endpoints/e1/shadow", "endpoints/e1/alerts"]


@pytest.mark.parametrize("auth", ["none", "wrong token"])
@on_server_loop
async def test_the_new_handlers_require_authentication(jp_fetch, hub, people, as_user, auth):
    as_user(people["owner"])
    header = {"Authorization": "" if auth == "none" else "token not-a-real-token"}
    for path in NEW_ROUTES:
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch(*f"notebench/{path}".split("/"), headers=dict(header), follow_redirects=False)
        assert e.value.code in (401, 403), (path, e.value.code)
    for method, path, body in (("POST", "rollback", '{"to": 1}'), ("PUT", "alerts", '{"rules": []}')):
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("notebench", "endpoints", "e1", path, method=method, body=body,
                           headers=dict(header), follow_redirects=False)
        assert e.value.code in (401, 403), (path, e.value.code)


@on_server_loop
async def test_context_names_the_user_the_admin_flag_and_the_executors_name_rule(jp_fetch, people, as_user):
    for role, admin in (("owner", False), ("other", False), ("admin", True)):
        as_user(people[role])
        context = await fetch_json(jp_fetch, "models", "context")
        assert context == {"user": people[role][0], "admin": admin, "endpoint_name_pattern": ENDPOINT_NAME,
                           "mlflow_url": "/services/mlflow/", "token_url": "/hub/token"}


@on_server_loop
async def test_can_edit_is_mlflows_answer_for_each_person(jp_fetch, people, served, as_user):
    for role, can_edit in (("owner", True), ("other", False), ("admin", True)):
        as_user(people[role])
        models = (await fetch_json(jp_fetch, "models", "registered"))["registered_models"]
        mine = next(m for m in models if m["name"] == served["model"])
        assert mine["can_edit"] is can_edit, role
    # The other user's alias change is refused by MLflow all the same (the flag only hides controls).
    as_user(people["other"])
    with pytest.raises(HTTPClientError) as e:
        await fetch_json(jp_fetch, "models", "aliases", method="POST",
                         body={"name": served["model"], "alias": "mine", "version": "1"})
    assert e.value.code == 403


@on_server_loop
async def test_logs_and_request_samples_for_the_owner_and_an_admin_only(hub, jp_fetch, people, served, as_user):
    endpoint = served["endpoint"]

    def sampled():  # at most 10 requests a second are sampled: invoke until more than are shown are
        assert invoke(hub, endpoint, people["owner"][1], served["payload"]).status_code == 200
        stored = hub.executor("GET", f"endpoints/{endpoint}/requests", people["owner"][1]).text.splitlines()
        return len(stored) > REQUEST_SAMPLES_SHOWN

    wait_for(sampled, 120, message="more invocations sampled than the panel shows")
    for role in ("owner", "admin"):
        as_user(people[role])
        logs = await fetch_json(jp_fetch, "endpoints", endpoint, "logs")
        assert [(v["version"], v["status"]) for v in logs["versions"]] == [("1", "ready")]
        assert "Application startup complete" in logs["versions"][0]["log"]
        samples = (await fetch_json(jp_fetch, "endpoints", endpoint, "requests"))["requests"]
        assert len(samples) == REQUEST_SAMPLES_SHOWN
        assert [s["time"] for s in samples] == sorted((s["time"] for s in samples), reverse=True)  # newest first
        assert samples[0]["inputs"] == served["payload"] and samples[0]["status"] == 200
    as_user(people["other"])
    for part in ("logs", "requests", "example"):
        with pytest.raises(HTTPClientError) as e:
            await fetch_json(jp_fetch, "endpoints", endpoint, part)
        assert e.value.code == 404, part


@on_server_loop
async def test_the_input_example(hub, jp_fetch, people, served, as_user):
    as_user(people["owner"])
    example = await fetch_json(jp_fetch, "endpoints", served["endpoint"], "example")
    assert example["reason"] is None and example["payload"]["dataframe_split"]["columns"] == ["a", "b", "c"]


@on_server_loop
async def test_monitoring_quality_and_history_for_the_owner_and_an_admin_only(jp_fetch, people, served, as_user):
    endpoint = served["endpoint"]
    for role in ("owner", "admin"):
        as_user(people[role])
        drift = await fetch_json(jp_fetch, "endpoints", endpoint, "monitoring", params={"window": "1d"})
        assert drift["window"] == "1d" and [v["version"] for v in drift["versions"]] == ["1"]
        quality = await fetch_json(jp_fetch, "endpoints", endpoint, "quality", params={"window": "7d"})
        assert quality["window"] == "7d" and [v["version"] for v in quality["versions"]] == ["1"]
        history = await fetch_json(jp_fetch, "endpoints", endpoint, "history", params={"limit": "5"})
        deployed = history["entries"][-1]
        assert (deployed["action"], deployed["actor"]) == ("deploy", people["owner"][0])
        assert [(v["version"], v["weight"]) for v in deployed["versions"]] == [("1", 100)]
    as_user(people["other"])
    for part in ("monitoring", "quality", "history"):
        status, body = await refused(jp_fetch, "endpoints", endpoint, part)
        assert status == 404, (part, body)
    # Checked here before anything is asked of the executor; a monitoring window it lacks, by it.
    as_user(people["owner"])
    bad = [("monitoring", "window", "../1h"), ("monitoring", "window", "2h"), ("quality", "window", "2d"),
           ("history", "limit", "0"), ("history", "limit", "x"), ("history", "cursor", "-1"),
           ("history", "cursor", "１")]
    for part, field, value in bad:
        status, body = await refused(jp_fetch, "endpoints", endpoint, part, params={field: value})
        assert (status, body["field"]) == (400, field), (part, value, body)


@on_server_loop
async def test_rollback_for_the_owner_and_an_admin_only(hub, jp_fetch, people, served, as_user):
    endpoint = served["endpoint"]
    as_user(people["owner"])
    history = await fetch_json(jp_fetch, "endpoints", endpoint, "history")
    first = history["entries"][-1]["id"]
    bad = [({"to": str(first)}, "to"), ({"to": True}, "to"), ({"to": 2**63}, "to"), ({}, "to"),
           ({"to": first, "reason": "x" * 501}, "reason"), ({"to": first, "reason": 5}, "reason"),
           ({"to": 999_999_999}, "to")]  # the last: no entry of this endpoint (the executor's answer)
    for body, field in bad:
        status, answer = await refused(jp_fetch, "endpoints", endpoint, "rollback", method="POST", body=body)
        assert (status, answer["field"]) == (400, field), (body, answer)
    as_user(people["other"])
    status, _ = await refused(jp_fetch, "endpoints", endpoint, "rollback", method="POST", body={"to": first})
    assert status == 404
    # An admin rolls the owner's endpoint back to its first state; the history says who and why.
    as_user(people["admin"])
    rolled = await fetch_json(jp_fetch, "endpoints", endpoint, "rollback", method="POST",
                              body={"to": first, "reason": "  back to the start  "})
    assert [(v["version"], v["weight"]) for v in rolled["versions"]] == [("1", 100)]
    wait_status(hub, endpoint, people["owner"][1])
    newest = (await fetch_json(jp_fetch, "endpoints", endpoint, "history"))["entries"][0]
    assert (newest["action"], newest["actor"], newest["reason"], newest["detail"]) == (
        "rollback", people["admin"][0], "back to the start", {"to": first})


@on_server_loop
async def test_alerts_for_the_owner_and_an_admin_only_bad_values_named(jp_fetch, people, served, as_user):
    endpoint = served["endpoint"]
    rule = {"kind": "error_rate", "threshold": 0.5, "window": "1h", "min_requests": 3}
    as_user(people["owner"])
    assert (await fetch_json(jp_fetch, "endpoints", endpoint, "alerts"))["rules"] == []
    saved = await fetch_json(jp_fetch, "endpoints", endpoint, "alerts", method="PUT",
                             body={"rules": [rule], "webhook": "  https://1.1.1.1/notebench  "})
    assert saved["rules"] == [{**rule, "metric": None}] and saved["webhook"] == "https://1.1.1.1/notebench"
    assert saved["updated_by"] == people["owner"][0] and saved["firings"] == []
    # Checked here (the shape), then by the executor (the values): each 400 names its field.
    bad = [({"rules": {}}, "rules"), ({"rules": [rule] * 21}, "rules"), ({"rules": [5]}, "rules.0"),
           ({"rules": [rule, {**rule, "url": "x"}]}, "rules.1.url"), ({"rules": [], "webhook": 5}, "webhook"),
           ({"rules": [], "webhook": "https://h.example/" + "x" * 2048}, "webhook"),
           ({"rules": [{**rule, "threshold": 2}]}, "rules.0.threshold"),
           ({"rules": [{**rule, "kind": "latency"}]}, "rules.0.kind"),
           ({"rules": [{**rule, "kind": "quality"}]}, "rules.0.metric"),
           ({"rules": [], "webhook": "ftp://hooks.example.com/"}, "webhook")]
    for body, field in bad:
        status, answer = await refused(jp_fetch, "endpoints", endpoint, "alerts", method="PUT", body=body)
        assert (status, answer["field"]) == (400, field), (body, answer)
    status, answer = await refused(jp_fetch, "endpoints", endpoint, "alerts", method="PUT", body="[1]")
    assert (status, answer["field"]) == (400, "body"), answer
    # An admin sees and changes them; another user gets 404 for reading and for changing.
    as_user(people["admin"])
    seen = await fetch_json(jp_fetch, "endpoints", endpoint, "alerts")
    assert seen["rules"] == saved["rules"] and seen["webhook"] == saved["webhook"]
    cleared = await fetch_json(jp_fetch, "endpoints", endpoint, "alerts", method="PUT", body={"rules": []})
    assert (cleared["rules"], cleared["webhook"], cleared["updated_by"]) == ([], None, people["admin"][0])
    as_user(people["other"])
    for method, body in (("GET", None), ("PUT", {"rules": [rule]})):
        status, _ = await refused(jp_fetch, "endpoints", endpoint, "alerts", method=method, body=body)
        assert status == 404, method


@on_server_loop
async def test_shadow_versions_deployed_and_compared_for_the_owner_and_an_admin_only(hub, jp_fetch, people, served,
                                                                                    as_user):
    endpoint, model = served["endpoint"], served["model"]
    live = {"model": model, "version": "1", "weight": 100}
    as_user(people["owner"])
    # The shape of a shadow is checked here, its rules by the executor: each 400 names its field.
    bad = [({"shadow": "yes"}, "versions.1.shadow"), ({"traffic_percent": 0}, "versions.1.traffic_percent"),
           ({"traffic_percent": 101}, "versions.1.traffic_percent"), ({"traffic_percent": "50"}, "versions.1.traffic_percent"),
           ({"weight": 10}, "versions.1.weight")]
    for change, field in bad:
        versions = [live, {"model": model, "version": "2", "shadow": True, "traffic_percent": 50, **change}]
        for method, path in (("POST", ["endpoints"]), ("PATCH", ["endpoints", endpoint])):
            status, answer = await refused(jp_fetch, *path, method=method, body={"name": f"x-{endpoint}", "versions": versions})
            assert (status, answer["field"]) == (400, field), (method, change, answer)
    status, answer = await refused(jp_fetch, "endpoints", endpoint, "shadow", params={"window": "2h"})
    assert (status, answer["field"]) == (400, "window"), answer

    wait_status(hub, endpoint, people["owner"][1])
    shadow = {"model": model, "version": "2", "weight": 0, "shadow": True, "traffic_percent": 50}
    patched = await fetch_json(jp_fetch, "endpoints", endpoint, method="PATCH", body={"versions": [live, shadow]})
    assert [(v["version"], v["weight"], v["shadow"], v["traffic_percent"]) for v in patched["versions"]] == [
        ("1", 100, False, None), ("2", 0, True, 50)]
    wait_status(hub, endpoint, people["owner"][1])
    history = await fetch_json(jp_fetch, "endpoints", endpoint, "history", params={"limit": "1"})
    assert [(v["version"], v["shadow"], v["traffic_percent"]) for v in history["entries"][0]["versions"]] == [
        ("1", False, None), ("2", True, 50)]
    for _ in range(4):  # every other one copied to the shadow
        assert invoke(hub, endpoint, people["owner"][1], served["payload"]).status_code == 200

    def compared():
        answer = hub.executor("GET", f"endpoints/{endpoint}/shadow?window=1h", people["owner"][1]).json()
        return answer["shadows"] and answer["shadows"][0]["requests"] == 2 and answer

    expected = wait_for(compared, 60, message="the shadow's 2 copies recorded")
    for role in ("owner", "admin"):
        as_user(people[role])
        answer = await fetch_json(jp_fetch, "endpoints", endpoint, "shadow", params={"window": "1h"})
        assert (answer["window"], answer["shadows"], answer["live"]) == ("1h", expected["shadows"], expected["live"])
        assert (answer["shadows"][0]["version"], answer["shadows"][0]["traffic_percent"]) == ("2", 50)
    as_user(people["other"])
    status, _ = await refused(jp_fetch, "endpoints", endpoint, "shadow")
    assert status == 404
