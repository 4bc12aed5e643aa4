"""Local accounts' logins (notebench.hub.auth.NotebenchNativeAuthenticator) on JupyterHub's own
database schema, without a hub: the password check runs off the hub's event loop (100 users at
9:00 would otherwise queue behind each other's bcrypt), and refuses what NativeAuthenticator refuses."""

import asyncio
import threading

import bcrypt
import pytest
from jupyterhub import orm

from notebench.hub.auth import NotebenchNativeAuthenticator

PASSWORD = "correct horse battery"


@pytest.fixture
def auth():
    authenticator = NotebenchNativeAuthenticator(db=orm.new_session_factory("sqlite://")(), allowed_failed_logins=3)
    authenticator.set_password("ada", PASSWORD)
    return authenticator


def login(auth, name, password):
    return asyncio.run(auth.authenticate(None, {"username": name, "password": password}))


def test_the_password_is_checked_while_the_hub_answers_others(auth, monkeypatch):
    started, go = threading.Event(), threading.Event()
    check = bcrypt.checkpw

    def slow_check(password, hashed):
        started.set()
        assert go.wait(60), "the hub's event loop waited for the password check"
        return check(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", slow_check)

    async def login_while_the_loop_runs():
        task = asyncio.create_task(auth.authenticate(None, {"username": "ada", "password": PASSWORD}))
        for _ in range(6000):  # at most 60 s
            if started.is_set() or task.done():
                break
            await asyncio.sleep(0.01)
        assert started.is_set(), "the password was not checked by bcrypt.checkpw"
        go.set()  # only reached when the loop is free while the password is checked
        return await task

    assert asyncio.run(login_while_the_loop_runs()) == "ada"


def test_a_wrong_password_unknown_name_or_unapproved_account_gets_nobody_in(auth):
    assert login(auth, "ada", PASSWORD) == "ada"
    assert login(auth, "Ada", PASSWORD) == "ada"  # names are normalized, as JupyterHub does
    assert login(auth, "ada", PASSWORD + "!") is None
    assert login(auth, "bob", PASSWORD) is None
    auth.get_user("ada").is_authorized = False
    assert login(auth, "ada", PASSWORD) is None


def test_failed_logins_block_the_account_for_a_while(auth):
    for _ in range(3):
        assert login(auth, "ada", "wrong password") is None
    assert login(auth, "ada", PASSWORD) is None  # blocked: even the right password
    auth.login_attempts.clear()  # the block has passed
    assert login(auth, "ada", PASSWORD) == "ada"
