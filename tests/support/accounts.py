"""Hub accounts as a browser meets them: is a session logged in, an admin setting a password."""

import re

import requests


def logged_in(session, hub) -> bool:
    r = session.get(f"{hub.url}/hub/home", allow_redirects=False, timeout=30)
    return r.status_code == 200


def xsrf(session, hub) -> str:
    """The session's XSRF value, from a form every logged-in user has (their own change-password)."""
    page = session.get(f"{hub.url}/hub/change-password", timeout=30).text
    return re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)


def set_password(hub, name, password, confirmation=None, session=None, token=None) -> requests.Response:
    """Post the admin's change-password form, as a browser session (with its XSRF value) or a token
    (which JupyterHub's pages do not accept)."""
    url = f"{hub.url}/hub/change-password/{name}"
    form = {"new_password": password, "new_password_confirmation": confirmation or password}
    if session is not None:
        form["_xsrf"] = xsrf(session, hub)
        return session.post(url, data=form, allow_redirects=False, timeout=60)
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.post(url, data=form, headers=headers, allow_redirects=False, timeout=60)
