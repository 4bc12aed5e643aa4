"""Notebench's rules on top of MLflow's auth app, in the backend process.

Installed by :mod:`.backend` as a Flask ``before_request`` hook that runs after MLflow's own
authentication and permission checks. It recognises requests by the view Flask routes them to
(so every path spelling MLflow accepts, REST or ajax, is covered) and reads their bodies with
MLflow's own parser (so it sees exactly the names MLflow's handler would store).

- **Reserved namespaces.** The hub user ``bob`` owns every experiment name that starts with
  ``bob/`` (the executor names a job's experiment ``<owner>/<job name>``). Creating or renaming
  an experiment or registered model to a name with a ``/`` is refused with 403 unless the name
  starts with exactly ``<caller>/``; admins are exempt. Hub user names never contain ``/``, so
  the part before the first ``/`` names one user at most. Matching is exact, so ``Bob/x``,
  `` bob/x`` or ``bob /x`` are not bob's either, and only an admin can create them (hub names
  are lower-case and unpadded). A name is also looked at in Unicode NFKC form, where a
  look-alike slash (``bob／x``) is a ``/``. Names without a ``/`` are shared by everyone, first
  come first served.
  (MLflow itself refuses ``/`` in registered model names; the rule covers them all the same.)
- **Grants to hub users MLflow has not seen yet.** MLflow users are created on a user's first
  request. A grant (``users/permissions/grant``) that names a user MLflow does not know yet
  creates that MLflow user first, so owners can share with colleagues who have not opened
  MLflow. This runs after MLflow checked that the caller may manage the resource.
"""

import unicodedata

from flask import make_response, request

from notebench.hub.mlflow_service import authz

# The longest name JupyterHub's and MLflow's user tables hold.
_MAX_USERNAME = 255


def namespace_refusal(name, username):
    """Why ``username`` (not an admin) may not give something this ``name``; None if they may."""
    if not isinstance(name, str) or name.startswith(username + "/"):
        return None
    normalized = unicodedata.normalize("NFKC", name)
    if "/" not in normalized:
        return None
    owner = normalized.partition("/")[0]
    whose = f"reserved for the hub user {owner!r}" if _is_hub_username(owner) else "reserved"
    return (
        f"The name {name!r} is in the namespace {owner + '/'!r}, {whose}. Names with a '/' "
        f"must start with your own user name: '{username}/'."
    )


def _is_hub_username(name):
    """Whether ``name`` could be a JupyterHub user name (its own validity rules)."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= _MAX_USERNAME
        and "/" not in name
        and name == name.strip()
        and set(name) != {"."}
        and name.isprintable()
    )


def install(app):
    """Add the rules to MLflow's Flask ``app``, after ``mlflow.server.auth.create_app(app)``."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import PERMISSION_DENIED
    from mlflow.protos.model_registry_pb2 import CreateRegisteredModel, RenameRegisteredModel
    from mlflow.protos.service_pb2 import CreateExperiment, UpdateExperiment
    from mlflow.server import auth
    from mlflow.server.handlers import _get_request_message, get_handler

    # view function -> (its request message, the field with the name it stores)
    naming = {
        get_handler(CreateExperiment): (CreateExperiment, "name"),
        get_handler(UpdateExperiment): (UpdateExperiment, "new_name"),
        get_handler(CreateRegisteredModel): (CreateRegisteredModel, "name"),
        get_handler(RenameRegisteredModel): (RenameRegisteredModel, "new_name"),
    }

    def check_name(message_class, field):
        try:
            name = getattr(_get_request_message(message_class()), field)
        except MlflowException:
            return None  # malformed: MLflow's handler refuses it the same way
        username = auth.authenticate_request().username
        refusal = namespace_refusal(name, username)
        if refusal is None or auth.store.get_user(username).is_admin:
            return None
        error = MlflowException(refusal, error_code=PERMISSION_DENIED)
        return make_response(error.serialize_as_json(), 403, {"Content-Type": "application/json"})

    def mirror_grantee():
        try:
            grantee = auth._get_request_param("username")
        except MlflowException:
            return  # MLflow's handler answers the missing parameter
        if _is_hub_username(grantee):
            authz.sync_user(grantee)

    def before_request():
        # MLflow's own hook ran first: the caller is authenticated and may do this request.
        view = app.view_functions.get(request.endpoint)
        if view in naming:
            return check_name(*naming[view])
        if view is auth.grant_user_permission:
            mirror_grantee()
        return None

    app.before_request(before_request)
