"""JupyterHub's own commands on Notebench's data dir: `jupyterhub token --db=…` (which loads JupyterHub's
default configuration and so would delete the services' roles and cut the users' role down to
"self") is refused, naming `notebench token`, and the roles stay; `notebench token` makes tokens."""

import json
import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest
import requests
from jupyterhub import orm
from jupyterhub.roles import create_role
from sqlalchemy.exc import IntegrityError

from notebench.hub.config import ENDPOINT_INVOKE_SCOPE, keep_roles
from tests.support.launcher import BASE_CONFIG, NOTEBENCH, notebook, running_hub, wait_for


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    # A hub of this module's own: no other test should run on one whose roles may have been lost.
    with running_hub(tmp_path_factory, "hubcommands", config=BASE_CONFIG) as h:
        yield h


def stored_roles(hub) -> tuple[dict, set]:
    """The roles in the hub's database ({name: scopes}) and which service holds which role."""
    with closing(sqlite3.connect(hub.data_dir / "jupyterhub.sqlite")) as db:
        roles = {name: set(json.loads(scopes)) for name, scopes in db.execute("SELECT name, scopes FROM roles")}
        held = set(
            db.execute(
                "SELECT services.name, roles.name FROM service_role_map"
                " JOIN services ON services.id = service_id JOIN roles ON roles.id = role_id"
            )
        )
    return roles, held


def reload_roles(hub) -> None:
    """Make the running hub read its roles from the database again: a database error rolls its
    session back, and what it had loaded is read anew. (It keeps what it loaded at start until then.)"""
    with closing(sqlite3.connect(hub.data_dir / "jupyterhub.sqlite", isolation_level=None)) as db:
        db.execute("BEGIN EXCLUSIVE")
        # The hub waits for the lock (SQLite's 5 s), gives up, and rolls back.
        assert hub.api("POST", "/users/cmd-locked-out").status_code >= 400
        db.execute("ROLLBACK")


def works(hub, token: str, name: str, job: bool = False) -> None:
    """The token has the users' role (services, invoking), and the services answer it."""
    me = requests.get(f"{hub.url}/hub/api/user", headers={"Authorization": f"token {token}"}, timeout=30).json()
    assert me["name"] == name
    assert {"access:services", f"{ENDPOINT_INVOKE_SCOPE}!user={name}"} <= set(me["scopes"]), me["scopes"]
    assert hub.executor("GET", "jobs", token).status_code == 200
    r = requests.get(f"{hub.url}/services/mlflow/api/2.0/mlflow/experiments/search", params={"max_results": 5},
                     headers={"Authorization": f"token {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    if job:
        r = hub.executor("POST", "jobs", token, json={"notebook": notebook("print(6 * 7)")})
        assert r.status_code == 201, r.text
        # The executor mints a token for the job's owner (its role's "tokens" scope) and makes
        # the job's MLflow run with it.
        path = f"jobs/{r.json()['id']}"

        def run_made():
            job = hub.executor("GET", path, token).json()
            return job if job["mlflow_run_id"] or job["status"] in ("succeeded", "failed", "timed_out") else None

        assert wait_for(run_made, 180, message="the job's MLflow run")["mlflow_run_id"]


def test_jupyterhub_token_is_refused_and_the_roles_stay(hub, tmp_path):
    token = hub.new_user("cmdada")
    before = stored_roles(hub)
    roles, held = before
    assert {"access:services", f"{ENDPOINT_INVOKE_SCOPE}!user"} <= roles["user"]
    assert {("executor", "executor"), ("idle-culler", "idle-culler")} <= held

    # Run as JupyterHub's documentation says, from a directory without Notebench's config.
    db_url = f"sqlite:///{hub.data_dir / 'jupyterhub.sqlite'}"
    r = subprocess.run([sys.executable, "-m", "jupyterhub", "token", f"--db={db_url}", "cmdada"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "notebench token USER" in r.stderr, r.stderr[-3000:]
    assert r.stdout.strip() == ""  # no token was made

    assert stored_roles(hub) == before
    reload_roles(hub)
    works(hub, token, "cmdada", job=True)


def test_notebench_token(hub, tmp_path):
    hub.new_user("cmdbob")
    before = stored_roles(hub)
    r = subprocess.run(NOTEBENCH + ["token", "cmdbob", "--data-dir", str(hub.data_dir)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    works(hub, r.stdout.strip(), "cmdbob")
    assert stored_roles(hub) == before
    # The audit log has it (from the hub's outbox, which the command adds to), by whoever ran it.

    def reported():
        found = hub.executor("GET", "audit", None, params={"user": "cmdbob", "action": "token.create"}).json()["entries"]
        return [e for e in found if e["actor"].startswith("notebench-cli:")]

    (made,) = wait_for(reported, 60, message="the token in the audit log")
    assert (made["owner"], made["target"], made["detail"]["note"]) == ("cmdbob", "tokens of cmdbob", "notebench token")

    r = subprocess.run(NOTEBENCH + ["token", "nobody", "--data-dir", str(hub.data_dir)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no user 'nobody'" in r.stderr
    r = subprocess.run(NOTEBENCH + ["token", "cmdbob", "--data-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no hub database" in r.stderr


def test_a_restart_keeps_the_roles_and_the_tokens(hub):
    token = hub.new_user("cmdcyd")
    before = stored_roles(hub)
    hub.stop()
    hub.start()
    assert stored_roles(hub) == before
    works(hub, token, "cmdcyd")


def test_the_guard_follows_notebenchs_own_configuration(tmp_path):
    """What keep_roles refuses: losing a role or a scope the configuration has. The Notebench hub
    starting with another configuration (the executor off, fewer scopes) replaces what is kept."""
    url = f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    user = {"name": "user", "scopes": ["self", "access:services"]}
    executor = {"name": "executor", "scopes": ["tokens", "access:services"]}
    keep_roles(url, [user, executor])  # a new database: made, as the hub would
    db = orm.new_session_factory(url)()
    for role in (user, executor):
        create_role(db, role)

    def refused(change) -> bool:
        change()
        try:
            db.commit()
            return False
        except IntegrityError as e:
            db.rollback()
            assert "notebench token USER" in str(e)
            return True

    role = lambda name: orm.Role.find(db, name)  # noqa: E731
    assert refused(lambda: db.delete(role("executor")))
    assert refused(lambda: setattr(role("user"), "scopes", ["self"]))  # what JupyterHub's defaults do
    assert not refused(lambda: setattr(role("user"), "scopes", ["access:services", "self", "read:hub"]))

    keep_roles(url, [{"name": "user", "scopes": ["self"]}])
    assert not refused(lambda: setattr(role("user"), "scopes", ["self"]))
    assert not refused(lambda: db.delete(role("executor")))
