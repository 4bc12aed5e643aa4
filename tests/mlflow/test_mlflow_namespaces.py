"""Reserved MLflow namespaces and owners' grants, through /services/mlflow/ on a real hub.

- The hub user ``bob`` owns the names ``bob/...`` of experiments and registered models (the
  executor names a job's experiment ``<owner>/<job name>``): nobody else but an admin creates
  or renames anything to such a name, on any path MLflow serves, however the name is spelt.
- The owner of an experiment or registered model grants READ, EDIT or MANAGE on it to another
  user with MLflow's permission API, also to a user who has not used MLflow yet.

This module runs its own hub with ``mlflow_default_permission = "NO_PERMISSIONS"``: under the
default (READ) everyone reads everything, and a READ grant would show nothing.
"""

import json
import uuid

import pytest
import requests

from tests.support.launcher import BASE_CONFIG, running_hub, wait_for

PREFIX = "/services/mlflow/"
CONFIG = BASE_CONFIG + 'c.Notebench.mlflow_default_permission = "NO_PERMISSIONS"\n'


def unique(stem):
    return f"{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def nbhub(tmp_path_factory):
    with running_hub(tmp_path_factory, "mlflow-ns", CONFIG) as h:
        yield h


@pytest.fixture(scope="module")
def base(nbhub):
    url = nbhub.url + PREFIX

    def ready():
        r = requests.get(url + "health", timeout=5)
        return r.status_code == 200 and r.json()["mlflow"]["ready"]

    wait_for(ready, message="the MLflow service to be ready")
    return url


@pytest.fixture(scope="module")
def tokens(nbhub, base):
    """API tokens of bob, of bo (a name that is a prefix of bob's), of alice, and the admin's."""
    return {name: nbhub.new_user(name) for name in ("bob", "bo", "alice")} | {
        "admin": nbhub.admin_token
    }


def call(base, token, method, path, **kwargs):
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, base + path, headers=headers, timeout=60, **kwargs)


def assert_refused(r, namespace):
    assert r.status_code == 403, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    error = r.json()
    assert error["error_code"] == "PERMISSION_DENIED"
    assert f"namespace {namespace!r}" in error["message"], error["message"]


# ---- item 6: reserved namespaces

# What each naming endpoint needs: how to make an object of one's own to rename (None: the
# endpoint creates), the path, and the body naming the new name.
NAMING = {
    "create experiment": (None, "mlflow/experiments/create", lambda own, name: {"name": name}),
    "rename experiment": (
        "experiment",
        "mlflow/experiments/update",
        lambda own, name: {"experiment_id": own, "new_name": name},
    ),
    "create model": (None, "mlflow/registered-models/create", lambda own, name: {"name": name}),
    "rename model": (
        "model",
        "mlflow/registered-models/rename",
        lambda own, name: {"name": own, "new_name": name},
    ),
}


def make_own(base, token, what):
    """An experiment (its id) or a registered model (its name) of the token's user."""
    name = unique(f"own-{what}")
    if what == "experiment":
        r = call(base, token, "POST", "api/2.0/mlflow/experiments/create", json={"name": name})
        assert r.status_code == 200, r.text
        return r.json()["experiment_id"]
    r = call(base, token, "POST", "api/2.0/mlflow/registered-models/create", json={"name": name})
    assert r.status_code == 200, r.text
    return name


def give_name(base, token, endpoint, api, name, own=None):
    """Send ``endpoint``'s request under ``api`` (e.g. ``api/2.0``) to give something ``name``."""
    what, path, body = NAMING[endpoint]
    if what and own is None:
        own = make_own(base, token, what) if token else "1"
    return call(base, token, "POST", f"{api}/{path}", json=body(own, name))


@pytest.mark.parametrize("api", ["api/2.0", "ajax-api/2.0"])
@pytest.mark.parametrize("endpoint", list(NAMING))
def test_namespace_is_reserved_on_every_naming_endpoint(base, tokens, endpoint, api):
    name = unique("bob/nightly")
    assert give_name(base, None, endpoint, api, name).status_code == 401
    assert_refused(give_name(base, tokens["alice"], endpoint, api, name), "bob/")
    for who in ("bob", "admin"):
        r = give_name(base, tokens[who], endpoint, api, unique("bob/nightly"))
        if "experiment" in endpoint:
            assert r.status_code == 200, (who, r.text)
        else:  # MLflow allows no '/' in model names, for anyone; this is not the namespace rule
            assert r.status_code == 400, (who, r.text)
            assert "cannot contain '/'" in r.json()["message"]


@pytest.mark.parametrize(
    "name,namespace",
    [
        ("Bob/nightly", "Bob/"),
        ("BOB/nightly", "BOB/"),
        (" bob/nightly", " bob/"),
        ("bob /nightly", "bob /"),
        ("bob\t/nightly", "bob\t/"),
        ("\u200bbob/nightly", "\u200bbob/"),  # a zero-width space in front
        ("ｂｏｂ/nightly", "bob/"),  # full-width letters
        ("bob／nightly", "bob/"),  # a full-width slash
        ("/nightly", "/"),
        ("bob//nightly", "bob/"),
        ("bob/a/b", "bob/"),
        ("alice/../bob/nightly", None),  # alice's own: allowed
        ("bo/nightly", "bo/"),
    ],
)
def test_spellings_of_another_namespace_are_refused(base, tokens, name, namespace):
    for endpoint in ("create experiment", "rename experiment"):
        r = give_name(base, tokens["alice"], endpoint, "api/2.0", name + unique(""))
        if namespace is None:
            assert r.status_code == 200, r.text
        else:
            assert_refused(r, namespace)


def test_user_whose_name_is_a_prefix_of_another(base, tokens):
    assert_refused(give_name(base, tokens["bo"], "create experiment", "api/2.0",
                             unique("bob/x")), "bob/")
    assert_refused(give_name(base, tokens["bob"], "create experiment", "api/2.0",
                             unique("bo/x")), "bo/")
    r = give_name(base, tokens["bo"], "create experiment", "api/2.0", unique("bo/x"))
    assert r.status_code == 200, r.text


def test_encodings_of_the_request_do_not_get_past(base, tokens):
    alice = tokens["alice"]
    name = unique("bob/nightly")
    headers = {"Content-Type": "application/json"}
    # the slash as a JSON escape
    raw = '{"name": "%s"}' % name.replace("/", "\\u002f")
    r = call(base, alice, "POST", "api/2.0/mlflow/experiments/create", data=raw, headers=headers)
    assert_refused(r, "bob/")
    # a JSON string holding the JSON body (MLflow decodes it twice, for old clients)
    raw = json.dumps(json.dumps({"name": name}))
    r = call(base, alice, "POST", "api/2.0/mlflow/experiments/create", data=raw, headers=headers)
    assert_refused(r, "bob/")
    # the name twice (the last one counts)
    raw = '{"name": "%s", "name": "%s"}' % (unique("mine"), name)
    r = call(base, alice, "POST", "api/2.0/mlflow/experiments/create", data=raw, headers=headers)
    assert_refused(r, "bob/")
    # UTF-16
    raw = json.dumps({"name": name}).encode("utf-16")
    r = call(base, alice, "POST", "api/2.0/mlflow/experiments/create", data=raw, headers=headers)
    assert_refused(r, "bob/")
    # the route percent-encoded
    r = call(base, alice, "POST", "api/2.0/mlflow/experiments%2Fcreate", json={"name": name})
    assert_refused(r, "bob/")
    # runs/create takes an experiment id only: it cannot name (and so create) one
    r = call(base, alice, "POST", "api/2.0/mlflow/runs/create", json={"experiment_name": name})
    assert r.status_code == 400, r.text
    # none of them made it
    r = call(base, tokens["admin"], "GET",
             "api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name})
    assert r.status_code == 404, r.text


def test_names_without_a_slash_are_shared(base, tokens):
    for who in ("alice", "bob"):
        r = give_name(base, tokens[who], "create experiment", "api/2.0", unique("nightly"))
        assert r.status_code == 200, r.text
        r = give_name(base, tokens[who], "create model", "api/2.0", unique("churn"))
        assert r.status_code == 200, r.text


def test_victims_job_experiment_after_a_squatting_attempt(base, tokens):
    """What the executor does for bob's job 'nightly' (MlflowRuns.start) still works."""
    experiment = unique("bob/nightly")
    r = call(base, tokens["alice"], "POST", "api/2.0/mlflow/experiments/create",
             json={"name": experiment})
    assert_refused(r, "bob/")
    bob = tokens["bob"]
    r = call(base, bob, "GET", "api/2.0/mlflow/experiments/get-by-name",
             params={"experiment_name": experiment})
    assert r.status_code == 404, r.text
    r = call(base, bob, "POST", "api/2.0/mlflow/experiments/create", json={"name": experiment})
    assert r.status_code == 200, r.text
    r = call(base, bob, "POST", "api/2.0/mlflow/runs/create",
             json={"experiment_id": r.json()["experiment_id"], "run_name": "job-1"})
    assert r.status_code == 200, r.text


def test_mlflow_client_shows_the_reason(base, tokens, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", tokens["alice"])
    client = MlflowClient(tracking_uri=base.rstrip("/"))
    with pytest.raises(MlflowException) as caught:
        client.create_experiment(unique("bob/nightly"))
    assert caught.value.error_code == "PERMISSION_DENIED"
    assert "reserved for the hub user 'bob'" in caught.value.message


# ---- item 9: owners grant access with MLflow's permission API

GRANT = "api/3.0/mlflow/users/permissions/grant"
REVOKE = "api/3.0/mlflow/users/permissions/revoke"

# How to read and to change each kind of resource.
RESOURCES = {
    "experiment": (
        lambda rid: ("GET", "api/2.0/mlflow/experiments/get", {"params": {"experiment_id": rid}}),
        lambda rid: ("POST", "api/2.0/mlflow/experiments/set-experiment-tag",
                     {"json": {"experiment_id": rid, "key": "k", "value": "v"}}),
    ),
    "registered_model": (
        lambda rid: ("GET", "api/2.0/mlflow/registered-models/get", {"params": {"name": rid}}),
        lambda rid: ("PATCH", "api/2.0/mlflow/registered-models/update",
                     {"json": {"name": rid, "description": "changed"}}),
    ),
}


def grant_body(username, resource_type, resource_id, permission="READ"):
    return {"username": username, "resource_type": resource_type, "resource_id": resource_id,
            "permission": permission}


def can(base, token, action, rid):
    method, path, kwargs = action(rid)
    status = call(base, token, method, path, **kwargs).status_code
    assert status in (200, 403), status
    return status == 200


@pytest.fixture
def bobs(base, tokens, request):
    """A new experiment (its id) or registered model (its name) of bob's."""
    what = "experiment" if request.param == "experiment" else "model"
    return request.param, make_own(base, tokens["bob"], what)


@pytest.mark.parametrize("bobs", list(RESOURCES), indirect=True)
@pytest.mark.parametrize(
    "permission,may_change,may_grant",
    [("READ", False, False), ("EDIT", True, False), ("MANAGE", True, True)],
)
def test_owner_grants_to_a_user_new_to_mlflow(nbhub, base, tokens, bobs, permission,
                                              may_change, may_grant):
    kind, rid = bobs
    read, change = RESOURCES[kind]
    assert not can(base, tokens["alice"], read, rid)  # not shared with anybody by default
    # carol and dave have not used MLflow yet: MLflow has no users of their names
    carol, dave = unique("carol"), unique("dave")
    carol_token = nbhub.new_user(carol)
    nbhub.new_user(dave)

    r = call(base, tokens["bob"], "POST", GRANT, json=grant_body(carol, kind, rid, permission))
    assert r.status_code == 200, r.text
    assert can(base, carol_token, read, rid)
    assert can(base, carol_token, change, rid) == may_change
    r = call(base, carol_token, "POST", GRANT, json=grant_body(dave, kind, rid))
    assert r.status_code == (200 if may_grant else 403), r.text
    r = call(base, carol_token, "GET", "api/3.0/mlflow/users/permissions/get",
             params={"username": carol, "resource_type": kind, "resource_id": rid})
    assert r.json()["permission"] == permission

    r = call(base, tokens["bob"], "POST", REVOKE,
             json={"username": carol, "resource_type": kind, "resource_id": rid})
    assert r.status_code == 200, r.text
    assert not can(base, carol_token, read, rid)


@pytest.mark.parametrize("bobs", list(RESOURCES), indirect=True)
def test_only_whoever_manages_it_grants(nbhub, base, tokens, bobs):
    kind, rid = bobs
    for api in ("api/3.0", "ajax-api/3.0"):
        path = f"{api}/mlflow/users/permissions/grant"
        for username in ("alice", "bo"):
            body = grant_body(username, kind, rid, "MANAGE")
            assert call(base, None, "POST", path, json=body).status_code == 401
            # alice neither gives herself nor anybody else access to bob's
            r = call(base, tokens["alice"], "POST", path, json=body)
            assert r.status_code == 403, r.text
    assert not can(base, tokens["alice"], RESOURCES[kind][0], rid)
    # the ajax path works for the owner as the REST one does
    r = call(base, tokens["bob"], "POST", "ajax-api/3.0/mlflow/users/permissions/grant",
             json=grant_body("alice", kind, rid))
    assert r.status_code == 200, r.text
    assert can(base, tokens["alice"], RESOURCES[kind][0], rid)
    # an admin grants on anything
    r = call(base, tokens["admin"], "POST", GRANT, json=grant_body("bo", kind, rid))
    assert r.status_code == 200, r.text
    assert can(base, tokens["bo"], RESOURCES[kind][0], rid)


def test_a_grantee_cannot_rename_into_the_owners_namespace(base, tokens):
    bob, alice = tokens["bob"], tokens["alice"]
    r = call(base, bob, "POST", "api/2.0/mlflow/experiments/create",
             json={"name": unique("bob/shared")})
    experiment_id = r.json()["experiment_id"]
    r = call(base, bob, "POST", GRANT,
             json=grant_body("alice", "experiment", experiment_id, "EDIT"))
    assert r.status_code == 200, r.text
    r = give_name(base, alice, "rename experiment", "api/2.0", unique("bob/renamed"),
                  own=experiment_id)
    assert_refused(r, "bob/")
    r = give_name(base, bob, "rename experiment", "api/2.0", unique("bob/renamed"),
                  own=experiment_id)
    assert r.status_code == 200, r.text


def test_mlflow_2_permission_api_says_what_replaced_it(base, tokens):
    r = call(base, tokens["bob"], "POST", "api/2.0/mlflow/experiments/permissions/create",
             json={"experiment_id": "0", "username": "alice", "permission": "READ"})
    assert r.status_code == 404
    assert r.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert "api/3.0/mlflow/users/permissions/grant" in r.json()["message"]
