"""Users created through the hub's REST API (the automation path) get their password from an admin,
on the admin's change-password page (/hub/change-password/NAME). Nobody else can set it, nor
claim the name by signing up."""

from tests.support.accounts import logged_in, set_password

PASSWORD = "ada's first password"


def changed(response, name) -> bool:
    return response.status_code == 200 and f"The password for {name} has been changed successfully" in response.text


def test_admin_sets_the_password_of_a_user_made_through_the_api(hub):
    ada_token = hub.new_user("apiada")
    bob_token = hub.new_user("apibob")
    assert not logged_in(hub.browser_login("apiada", PASSWORD), hub)  # no password at all yet

    # Anonymous, another user, and the user herself (with her API token) cannot set it.
    assert set_password(hub, "apiada", PASSWORD).status_code in (302, 403)
    assert set_password(hub, "apiada", PASSWORD, token=bob_token).status_code == 403
    assert set_password(hub, "apiada", PASSWORD, token=ada_token).status_code == 403
    hub.signup("pwcarl", "carl's own password")
    hub.approve("pwcarl")
    carl = hub.browser_login("pwcarl", "carl's own password")  # another user, in the browser
    assert logged_in(carl, hub)
    assert carl.get(f"{hub.url}/hub/change-password/apiada", allow_redirects=False).status_code == 403
    assert set_password(hub, "apiada", PASSWORD, session=carl).status_code == 403
    assert not logged_in(hub.browser_login("apiada", PASSWORD), hub)

    # The admin, in the browser: the page exists for her (it answered 404), and says what is wrong.
    admin = hub.browser_login("admin", hub.admin_password)
    assert admin.get(f"{hub.url}/hub/change-password/apiada", timeout=30).status_code == 200
    assert "at least 8 characters" in set_password(hub, "apiada", "short", session=admin).text
    assert "match the confirmation" in set_password(hub, "apiada", PASSWORD, PASSWORD + "x", session=admin).text
    assert not logged_in(hub.browser_login("apiada", PASSWORD), hub)
    assert changed(set_password(hub, "apiada", PASSWORD, session=admin), "apiada")

    # Ada logs in through the login form: she is approved, as the admin made her.
    ada = hub.browser_login("apiada", PASSWORD)
    assert ada.login_response.status_code == 302 and logged_in(ada, hub)
    assert not logged_in(hub.browser_login("apiada", PASSWORD + "x"), hub)
    assert "apiada" in admin.get(f"{hub.url}/hub/authorize", timeout=30).text  # listed, approved
    # Setting it again is changing it.
    assert changed(set_password(hub, "apiada", PASSWORD + "2", session=admin), "apiada")
    assert logged_in(hub.browser_login("apiada", PASSWORD + "2"), hub)
    assert not logged_in(hub.browser_login("apiada", PASSWORD), hub)


def test_a_user_that_does_not_exist_is_not_found(hub):
    admin = hub.browser_login("admin", hub.admin_password)
    assert admin.get(f"{hub.url}/hub/change-password/nobody-here", timeout=30).status_code == 404
    # Not advice about the password's length.
    assert set_password(hub, "nobody-here", PASSWORD, session=admin).status_code == 404


def test_nobody_claims_a_user_made_through_the_api_by_signing_up(hub):
    hub.new_user("apidee")
    r = hub.signup("apidee", "the squatter's password")
    assert "already in use" in r.text
    admin = hub.browser_login("admin", hub.admin_password)
    assert "apidee" not in admin.get(f"{hub.url}/hub/authorize", timeout=30).text  # nothing to approve
    assert not logged_in(hub.browser_login("apidee", "the squatter's password"), hub)
    # New names still sign up as before.
    assert "sent to the admin" in hub.signup("apidee-new", "a new user's password").text
