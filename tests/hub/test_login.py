"""Local accounts: password login, admin-approved sign-up, the bootstrap admin token."""

import requests

from tests.support.accounts import logged_in


def test_admin_logs_in_with_the_bootstrap_password(hub):
    s = hub.browser_login("admin", hub.admin_password)
    assert s.login_response.status_code == 302
    assert logged_in(s, hub)


def test_wrong_password_is_refused(hub):
    s = hub.browser_login("admin", hub.admin_password + "x")
    assert s.login_response.status_code == 200  # the login form again, with the error
    assert "Invalid username or password" in s.login_response.text
    assert not logged_in(s, hub)


def test_anonymous_is_sent_to_login(hub):
    r = requests.get(f"{hub.url}/hub/home", allow_redirects=False)
    assert r.status_code == 302 and "/hub/login" in r.headers["Location"]
    assert requests.get(f"{hub.url}/hub/api/users").status_code == 403


def test_signup_needs_admin_approval(hub):
    r = hub.signup("newcomer", "correct horse battery")
    assert r.status_code == 200 and "admin" in r.text.lower()

    # Not approved yet: the right password does not let them in.
    pending = hub.browser_login("newcomer", "correct horse battery")
    assert "has not been authorized by an administrator yet" in pending.login_response.text
    assert not logged_in(pending, hub)

    # The admin approves them on the authorization page.
    admin = hub.browser_login("admin", hub.admin_password)
    assert "newcomer" in admin.get(f"{hub.url}/hub/authorize").text
    hub.approve("newcomer")

    approved = hub.browser_login("newcomer", "correct horse battery")
    assert approved.login_response.status_code == 302
    assert logged_in(approved, hub)
    assert approved.get(f"{hub.url}/hub/authorize", allow_redirects=False).status_code == 403  # not an admin


def test_admin_token_can_create_users_and_their_tokens(hub):
    r = hub.api("POST", "/users/made-by-api")
    assert r.status_code in (201, 409)
    r = hub.api("POST", "/users/made-by-api/tokens", json={"note": "automation"})
    assert r.status_code == 201
    token = r.json()["token"]
    me = requests.get(f"{hub.url}/hub/api/user", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["name"] == "made-by-api" and me["admin"] is False
    # An ordinary user's token cannot create users.
    assert hub.api("POST", "/users/someone-else", token=token).status_code == 403
