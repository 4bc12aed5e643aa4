"""OIDC login: a hub configured with oauthenticator's GenericOAuthenticator against a real,
local OpenID Connect provider (oidc-provider-mock), driven as a browser would be.

The provider knows a few predefined users (``sub`` plus claims, ``groups`` among them). Its
authorization page is a form where the person logging in submits their ``sub``; we submit it as a
user would, the provider redirects back to /hub/oauth_callback, and the hub decides.

Who may log in (see OIDC_CONFIG):
- alice   listed in allowed_users
- bob     in the IdP group "data-science", listed in allowed_groups
- carol   in the IdP group "platform-admins", listed in admin_groups (admins are allowed)
- dave    listed in admin_users
- mallory in the IdP group "marketing" only: refused
- admin   an IdP account named like the bootstrap admin: refused (the name is reserved)
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from urllib.parse import parse_qs, urljoin, urlparse

import pytest
import requests

from tests.support.launcher import Hub, free_port, wait_for

# Subjects are opaque ids, as real providers issue them; the hub username comes from the
# `preferred_username` claim (username_claim), groups from the `groups` claim.
IDP_USERS = {
    "alice": {"sub": "0f1e7c2a-alice", "groups": ["staff"]},
    "bob": {"sub": "5b0d91aa-bob", "groups": ["staff", "data-science"]},
    "carol": {"sub": "9c3e4f10-carol", "groups": ["platform-admins"]},
    "dave": {"sub": "d4a7e2b3-dave", "groups": []},
    "mallory": {"sub": "7e8a6b5c-mallory", "groups": ["marketing"]},
    # An IdP account that claims the bootstrap admin's name, even in an admin group.
    "admin": {"sub": "3f3f3f3f-impostor", "groups": ["platform-admins"]},
}

# The operator's config file (`notebench up --config FILE`); {idp} and {hub} are filled in.
OIDC_CONFIG = """
c.JupyterHub.authenticator_class = "generic-oauth"
c.GenericOAuthenticator.login_service = "Example IdP"
c.GenericOAuthenticator.client_id = "notebench"
c.GenericOAuthenticator.client_secret = "notebench-client-secret"
c.GenericOAuthenticator.authorize_url = "{idp}/oauth2/authorize"
c.GenericOAuthenticator.token_url = "{idp}/oauth2/token"
c.GenericOAuthenticator.userdata_url = "{idp}/userinfo"
c.GenericOAuthenticator.oauth_callback_url = "{hub}/hub/oauth_callback"
c.GenericOAuthenticator.scope = ["openid", "profile", "email"]
c.GenericOAuthenticator.username_claim = "preferred_username"
# Groups come from the userinfo `groups` claim (auth_state["oauth_user"]["groups"]).
c.GenericOAuthenticator.manage_groups = True
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
c.GenericOAuthenticator.allowed_users = {{"alice"}}
c.GenericOAuthenticator.allowed_groups = {{"data-science"}}
c.GenericOAuthenticator.admin_groups = {{"platform-admins"}}
# Notebench merges its bootstrap "admin" account into this set (it stays an admin too).
c.GenericOAuthenticator.admin_users = {{"dave"}}
"""


class Provider:
    """oidc-provider-mock in its own process (its CLI: uvicorn, plain HTTP allowed)."""

    def __init__(self, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(self.port)]
        for name, user in IDP_USERS.items():
            claims = {
                "sub": user["sub"],
                "preferred_username": name,
                "name": name.title(),
                "email": f"{name}@example.org",
                "email_verified": True,
                "groups": user["groups"],
            }
            args += ["--user-claims", json.dumps(claims)]
        self.log_file = open(log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log_file, stderr=subprocess.STDOUT)
        wait_for(self._ready, 60, message=f"OIDC provider at {self.url} (log: {log_path})")

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"oidc-provider-mock exited with {self.proc.returncode}")
        r = requests.get(f"{self.url}/.well-known/openid-configuration", timeout=2)
        return r.status_code == 200 and r.json()["issuer"] == self.url

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    provider = Provider(tmp_path_factory.mktemp("idp") / "oidc-provider.log")
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def oidc_hub(idp, tmp_path_factory):
    port = free_port()
    config = OIDC_CONFIG.format(idp=idp.url, hub=f"http://127.0.0.1:{port}")
    h = Hub(tmp_path_factory.mktemp("oidc-hub") / "data", config=config, port=port).start()
    yield h
    h.stop()


def oidc_login(hub: Hub, idp: Provider, username: str) -> tuple[requests.Session, requests.Response]:
    """Log in as ``username`` the way a browser does; returns the session and the last response."""
    s = requests.Session()
    # An anonymous visit to the hub lands on its login page, which offers the IdP's button.
    page = s.get(f"{hub.url}/hub/home", timeout=30)
    assert page.status_code == 200 and urlparse(page.url).path == "/hub/login", page.url
    button = re.search(r"href='([^']*oauth_login[^']*)'", page.text)
    assert button and "Sign in with Example IdP" in page.text, page.text
    # The button goes to /hub/oauth_login, which redirects to the provider's authorization page.
    page = s.get(urljoin(page.url, html.unescape(button.group(1))), timeout=30)
    assert page.status_code == 200, page.text
    assert page.url.startswith(f"{idp.url}/oauth2/authorize?"), page.url
    query = parse_qs(urlparse(page.url).query)
    assert query["client_id"] == ["notebench"]
    assert query["redirect_uri"] == [f"{hub.url}/hub/oauth_callback"]
    assert query["response_type"] == ["code"] and query["state"]
    assert set(query["scope"][0].split()) == {"openid", "profile", "email"}
    # The form posts back to this same URL (no action attribute); the user submits their subject.
    assert '<form method="post"' in page.text and 'name="sub"' in page.text, page.text
    r = s.post(page.url, data={"sub": IDP_USERS[username]["sub"]}, timeout=60)
    # provider -> 302 /hub/oauth_callback?code=...&state=...
    callback = r.history[0] if r.history else r
    assert callback.status_code == 302, callback.text
    assert callback.headers["Location"].startswith(f"{hub.url}/hub/oauth_callback?"), callback.headers
    return s, r


def api_as_browser(hub: Hub, s: requests.Session, path: str) -> requests.Response:
    """Call the hub API with the session cookie, as JupyterLab's fetch() does (xsrf header)."""
    headers = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}
    xsrf = s.cookies.get("_xsrf")
    if xsrf:
        headers["X-XSRFToken"] = xsrf
    return s.get(f"{hub.url}/hub/api{path}", headers=headers, timeout=30, allow_redirects=False)


def hub_user(hub: Hub, name: str) -> dict | None:
    r = hub.api("GET", f"/users/{name}")
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return r.json()


def assert_logged_in_as(hub: Hub, s: requests.Session, r: requests.Response, name: str) -> dict:
    assert r.status_code == 200, r.text
    assert urlparse(r.url).path == "/hub/home", [h.url for h in r.history] + [r.url]
    assert "jupyterhub-hub-login" in {c.name for c in s.cookies}
    me = api_as_browser(hub, s, "/user")
    assert me.status_code == 200, me.text
    assert me.json()["name"] == name
    return me.json()


def test_allowed_user_logs_in(oidc_hub, idp):
    s, r = oidc_login(oidc_hub, idp, "alice")
    me = assert_logged_in_as(oidc_hub, s, r, "alice")
    assert me["admin"] is False
    # The hub's home page is theirs, and the hub knows the user (named by the username claim).
    home = s.get(f"{oidc_hub.url}/hub/home", allow_redirects=False, timeout=30)
    assert home.status_code == 200 and "alice" in home.text
    user = hub_user(oidc_hub, "alice")
    assert user and user["name"] == "alice" and not user["admin"]
    assert sorted(user["groups"]) == ["staff"]  # managed groups mirror the IdP's claim
    assert hub_user(oidc_hub, IDP_USERS["alice"]["sub"]) is None


def test_user_not_allowed_is_refused(oidc_hub, idp):
    assert hub_user(oidc_hub, "mallory") is None
    s, r = oidc_login(oidc_hub, idp, "mallory")
    # The callback answers 403 with the refusal page; no session, no user, no server.
    assert r.status_code == 403, r.text
    assert urlparse(r.url).path == "/hub/oauth_callback"
    assert "not currently authorized" in r.text
    assert "jupyterhub-hub-login" not in {c.name for c in s.cookies}
    assert api_as_browser(oidc_hub, s, "/user").status_code == 403
    home = s.get(f"{oidc_hub.url}/hub/home", allow_redirects=False, timeout=30)
    assert home.status_code == 302 and "/hub/login" in home.headers["Location"]
    spawn = s.get(f"{oidc_hub.url}/hub/spawn", allow_redirects=False, timeout=30)
    assert spawn.status_code == 302 and "/hub/login" in spawn.headers["Location"]
    assert hub_user(oidc_hub, "mallory") is None


@pytest.mark.parametrize("name", ["carol", "dave"], ids=["admin_groups", "admin_users"])
def test_admins_become_hub_admins(oidc_hub, idp, name):
    s, r = oidc_login(oidc_hub, idp, name)
    me = assert_logged_in_as(oidc_hub, s, r, name)
    assert me["admin"] is True
    assert hub_user(oidc_hub, name)["admin"] is True
    # and they can use the admin API with their browser session
    users = api_as_browser(oidc_hub, s, "/users")
    assert users.status_code == 200, users.text
    assert name in {u["name"] for u in users.json()}


def test_group_member_is_allowed(oidc_hub, idp):
    # bob is in no allowed_users list: only his IdP group lets him in, and he is created on login.
    assert hub_user(oidc_hub, "bob") is None
    s, r = oidc_login(oidc_hub, idp, "bob")
    me = assert_logged_in_as(oidc_hub, s, r, "bob")
    assert me["admin"] is False
    user = hub_user(oidc_hub, "bob")
    assert user and sorted(user["groups"]) == ["data-science", "staff"]
    # The IdP's groups exist as JupyterHub groups, usable in roles and service grants.
    group = oidc_hub.api("GET", "/groups/data-science")
    assert group.status_code == 200 and "bob" in group.json()["users"]


def test_idp_account_named_admin_cannot_become_the_bootstrap_admin(oidc_hub, idp):
    s, r = oidc_login(oidc_hub, idp, "admin")
    assert r.status_code == 403, r.text
    assert "reserved" in r.text
    assert "jupyterhub-hub-login" not in {c.name for c in s.cookies}
    # The bootstrap account itself is still an admin, reachable with NOTEBENCH_ADMIN_TOKEN.
    assert oidc_hub.api("GET", "/users").status_code == 200
    assert hub_user(oidc_hub, "admin")["admin"] is True
