"""MLflow ``authorization_function`` that trusts the Notebench front, and nothing else.

Configured in the auth app's ini as
``authorization_function = notebench.hub.mlflow_service.authz:authenticate_request``.
MLflow calls it (inside a Flask request context, also for its FastAPI routes) for every request
that needs a user. The front authenticates callers with JupyterHub and forwards their identity in
headers, together with a secret generated at each start of the front and handed to this process
in ``$NOTEBENCH_MLFLOW_FRONT_SECRET``. A request without the right secret gets 401, whatever it
says about who it is.

On first sight of a user, an MLflow auth user of the same name is created with a random password
(nobody logs in to MLflow with a password: identity always comes from the hub). Its ``is_admin``
follows the hub's admin flag and is updated whenever the two differ. (:mod:`.policy` also
creates the MLflow user that a grant names, when that user has not been seen yet.)
"""

import hmac
import logging
import os
import secrets
import threading
from urllib.parse import unquote

from flask import make_response, request
from werkzeug.datastructures import Authorization

from notebench.hub.mlflow_service import ADMIN_HEADER, SECRET_ENV, SECRET_HEADER, USER_HEADER

log = logging.getLogger(__name__)

_lock = threading.Lock()


def _unauthorized(message):
    resp = make_response({"error_code": "UNAUTHENTICATED", "message": message}, 401)
    return resp


def _expected_secret():
    secret = os.environ.get(SECRET_ENV, "")
    if len(secret) < 16:
        raise RuntimeError(f"{SECRET_ENV} is not set in the MLflow backend")
    return secret


def sync_user(username, is_admin=None):
    """Make sure MLflow has a user ``username``; ``is_admin`` (unless None) follows the hub."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth import store

    # One indexed SQLite read per call; no cache, so changes made through MLflow's own user
    # API (deleting a user, flipping is_admin) are corrected on the user's next request.
    try:
        user = store.get_user(username)
    except MlflowException:
        user = None
    if user is not None and is_admin in (None, user.is_admin):
        return
    with _lock:
        if user is None:
            try:
                store.create_user(username, secrets.token_urlsafe(32), is_admin=bool(is_admin))
                log.info("Created MLflow user %r (admin=%s)", username, bool(is_admin))
                return
            except MlflowException:
                pass  # created concurrently by another worker
        if is_admin is not None:
            store.update_user(username, is_admin=is_admin)
            log.info("MLflow user %r: admin=%s (from the hub)", username, is_admin)


def authenticate_request():
    secret = request.headers.get(SECRET_HEADER, "")
    if not secret or not hmac.compare_digest(
        secret.encode("utf-8", "replace"), _expected_secret().encode()
    ):
        return _unauthorized(
            "Not authenticated: reach MLflow through the Notebench hub "
            "(/services/mlflow/) with a JupyterHub token or login."
        )
    # percent-encoded by the front: hub user names need not be latin-1
    username = unquote(request.headers.get(USER_HEADER, ""))
    if not username:
        return _unauthorized("No user named by the Notebench front.")
    is_admin = request.headers.get(ADMIN_HEADER, "0") == "1"
    sync_user(username, is_admin)
    return Authorization("basic", {"username": username, "password": ""})
