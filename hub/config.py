"""JupyterHub configuration for local mode, as code.

``jupyterhub_config.py`` (shipped beside this file) calls ``apply_defaults(c)``, then loads the
operator's config file (``notebench up --config FILE``: ordinary traitlets config, e.g.
``c.Profiles.profiles = [...]`` or ``c.JupyterHub.authenticator_class = "generic-oauth"``),
then ``apply_services(c)``, which wires the hub-managed services from the final settings.

What both modes share lives here too: scopes and roles (``apply_scopes``), the bootstrap admin
(``apply_bootstrap_admin``) and the services with their roles (``add_*_service``); the user
servers' arguments are notebench.hub.singleuser's (``singleuser_args``).
Kubernetes mode (notebench.hub.kubernetes) uses them with the chart's values.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from tornado import web
from traitlets import Bool, Integer, Unicode
from traitlets.config import Configurable

from notebench.hub.admin_page import ADMIN_PAGE_PATH
from notebench.hub.auth import NotebenchNativeAuthenticator
from notebench.hub.culling import CULL_RECORD_PATH, CULL_RECORD_SCOPE
from notebench.hub.platform.audit_outbox import audit_url as outbox_url
from notebench.hub.platform.gpus import GPUInventory
from notebench.hub.platform.scopes import AUDIT_APPEND_SCOPE, ENDPOINT_INVOKE_SCOPE


class Notebench(Configurable):
    """Settings of a local Notebench (``c.Notebench``)."""

    data_dir = Unicode(help="Where all state lives (hub DB, secrets, MLflow store, homes, logs).").tag(config=True)
    ip = Unicode("127.0.0.1", help="Address of the one public port.").tag(config=True)
    port = Integer(8000, help="The one public port.").tag(config=True)

    cull_idle_timeout = Integer(3600, help="Seconds of inactivity before a server is culled (0: never).").tag(
        config=True
    )
    cull_every = Integer(300, help="Seconds between idle-culler passes.").tag(config=True)
    cull_notice_seconds = Integer(
        600,
        help="How long before an idle server is culled JupyterLab shows a notice, in seconds (0: no notice).",
    ).tag(config=True)

    mlflow_enabled = Bool(True, help="Run the MLflow tracking service at /services/mlflow/.").tag(config=True)
    executor_enabled = Bool(True, help="Run the notebook execution service at /services/executor/.").tag(config=True)
    mlflow_default_permission = Unicode(
        "READ",
        help="What users may do with experiments/models they do not own: READ (shared reading) or NO_PERMISSIONS.",
    ).tag(config=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_file(path: Path, make) -> str:
    """Read a secret kept in ``path`` (mode 0600), creating it once with ``make()``."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make())
    return path.read_text().strip()


def internal_ports(data_dir: Path) -> dict:
    """Loopback ports of the hub, the proxy API and the services; kept across restarts so running
    servers (which know the hub's URL) keep working after the hub restarts."""
    path = data_dir / "ports.json"
    ports = json.loads(path.read_text()) if path.exists() else {}
    for name in ("hub", "proxy_api", "mlflow", "executor"):
        ports.setdefault(name, free_port())
    path.write_text(json.dumps(ports, indent=1))
    return ports


def apply_defaults(c, data_dir: str) -> None:
    """Everything that does not depend on the operator's overrides."""
    data = Path(data_dir).resolve()
    for sub in ("logs", "homes", "mlflow"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    c.Notebench.data_dir = str(data)

    c.JupyterHub.db_url = f"sqlite:///{data / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(data / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(data / "jupyterhub.pid")
    c.ConfigurableHTTPProxy.pid_file = str(data / "jupyterhub-proxy.pid")
    c.ConfigurableHTTPProxy.auth_token = private_file(data / "proxy_token", lambda: secrets.token_hex(32))
    venv_chp = Path(sys.prefix) / "bin" / "configurable-http-proxy"
    if venv_chp.exists():
        c.ConfigurableHTTPProxy.command = [str(venv_chp)]
    # Users' servers outlive a hub restart; the hub finds them again from its database.
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.cleanup_proxy = True

    c.JupyterHub.authenticator_class = "notebench.hub.auth.NotebenchNativeAuthenticator"
    c.JupyterHub.spawner_class = "notebench.hub.spawner.NotebenchSpawner"
    c.UserAccounts.shared_homes_dir = str(data / "homes")
    c.Spawner.start_timeout = 120
    c.Spawner.http_timeout = 60
    c.GPUInventory.db_url = f"sqlite:///{data / 'notebench.sqlite'}"

    apply_scopes(c)
    apply_pages(c)

    c.Application.logging_config = {
        "handlers": {
            "notebench_file": {
                "class": "logging.FileHandler",
                "formatter": "notebench_file",
                "filename": str(data / "logs" / "jupyterhub.log"),
            }
        },
        "formatters": {"notebench_file": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "loggers": {"JupyterHub": {"handlers": ["console", "notebench_file"], "level": "INFO"}},
    }


TEMPLATES = Path(__file__).parent / "templates"


def apply_pages(c) -> None:
    """The hub's pages as Notebench shows them (hub/templates, extending JupyterHub's own), the
    hub API path where the idle culler records why it stops a server, the admins' page
    (notebench.hub.admin_page), and the proxy whose traffic
    does not count as activity (notebench.hub.culling)."""
    c.JupyterHub.template_paths = [str(TEMPLATES)]
    c.JupyterHub.template_vars = {"notebench_signups": pending_signups}
    c.JupyterHub.extra_handlers = [(CULL_RECORD_PATH, "notebench.hub.culling.CullRecordHandler"),
                                   (ADMIN_PAGE_PATH, "notebench.hub.admin_page.AdminPageHandler")]
    c.JupyterHub.proxy_class = "notebench.hub.culling.NotebenchProxy"


def pending_signups(user) -> int | None:
    """For an admin (who approves sign-ups at /hub/authorize): how many wait; None for others."""
    if user is None or not getattr(user, "admin", False):
        return None
    from nativeauthenticator.orm import UserInfo
    from sqlalchemy import inspect

    if not inspect(user.db.get_bind()).has_table(UserInfo.__tablename__):
        return None  # another authenticator (OAuth): no sign-ups here
    return user.db.query(UserInfo).filter(UserInfo.is_authorized.is_(False)).count()


def apply_scopes(c) -> None:
    """The custom scope, the users' role and what a server's own token may do."""
    # Users may reach every service; each service checks ownership itself.
    # Invoking one's own model endpoints is a scope of its own, so that a user can make a token
    # that can only invoke (POST /hub/api/users/NAME/tokens {"scopes": [ENDPOINT_INVOKE_SCOPE]}):
    # without access:services it cannot use the executor's API, nor the user's server.
    c.JupyterHub.custom_scopes = {
        ENDPOINT_INVOKE_SCOPE: {"description": "Invoke model endpoints (/services/executor/endpoints/*/invocations)."},
        CULL_RECORD_SCOPE: {"description": "Record why a server is stopped for inactivity (the idle culler's)."},
        AUDIT_APPEND_SCOPE: {"description": "Append to the audit log (the hub's reporter and the MLflow service)."},
    }
    c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self", "access:services", ENDPOINT_INVOKE_SCOPE + "!user"]}]
    # The server's own token also talks to MLflow (MLFLOW_TRACKING_TOKEN) and the executor
    # (the JupyterLab panel's "Try it" invokes endpoints).
    # It also reads its own server's last activity as the hub sees it (JupyterLab's notice before a cull).
    c.Spawner.server_token_scopes = [
        "users:activity!user", "read:servers!user", "access:servers!server", "access:services",
        ENDPOINT_INVOKE_SCOPE + "!user",
    ]


def _configured(section, key, default):
    """A value the config has set, else ``default`` (unset keys read as LazyConfigValue)."""
    return section[key] if key in section else default


def apply_services(c) -> None:
    """Wire ports, bootstrap tokens and the hub-managed services from the final settings."""
    nb = Notebench(config=c)
    data = Path(nb.data_dir)
    ports = internal_ports(data)
    c.JupyterHub.bind_url = f"http://{nb.ip}:{nb.port}"
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = ports["hub"]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{ports['proxy_api']}"
    public = f"http://127.0.0.1:{nb.port}"
    c.NotebenchSpawner.mlflow_url = f"{public}/services/mlflow"
    c.NotebenchSpawner.notebench_url = public
    # JupyterLab warns before a cull: the servers learn the culler's settings.
    c.NotebenchSpawner.cull_idle_timeout = nb.cull_idle_timeout
    c.NotebenchSpawner.cull_every = nb.cull_every
    c.NotebenchSpawner.cull_notice_seconds = nb.cull_notice_seconds

    apply_bootstrap_admin(c, os.environ)

    services = list(_configured(c.JupyterHub, "services", []))
    roles = list(_configured(c.JupyterHub, "load_roles", []))
    if nb.cull_idle_timeout:
        add_idle_culler_service(services, roles, nb.cull_idle_timeout, nb.cull_every)
    audit_url = outbox_url(f"http://127.0.0.1:{ports['executor']}") if nb.executor_enabled else ""
    if audit_url:  # the hub reports logins, servers, tokens and groups to the executor's audit log
        from notebench.hub.audit import apply_hub_audit

        token = private_file(data / "audit_reporter_token", lambda: secrets.token_hex(32))
        add_audit_reporter(services, roles, api_token=token)
        apply_hub_audit(c, data, audit_url, token)
    if nb.mlflow_enabled:
        mlflow_env = {"NOTEBENCH_DATA_DIR": nb.data_dir, "NOTEBENCH_MLFLOW_DEFAULT_PERMISSION": nb.mlflow_default_permission,
                      "NOTEBENCH_AUDIT_URL": audit_url}
        if os.environ.get("NOTEBENCH_USER_CONFIG"):
            mlflow_env["NOTEBENCH_USER_CONFIG"] = os.environ["NOTEBENCH_USER_CONFIG"]  # c.MlflowService
        add_mlflow_service(
            services,
            roles,
            f"http://127.0.0.1:{ports['mlflow']}",
            command=[sys.executable, "-m", "notebench.hub.mlflow_service"],
            environment=mlflow_env,
        )
    if nb.executor_enabled:
        mlflow_url = f"http://127.0.0.1:{ports['mlflow']}/services/mlflow" if nb.mlflow_enabled else ""
        env = {"NOTEBENCH_DATA_DIR": nb.data_dir, "NOTEBENCH_PUBLIC_URL": public, "NOTEBENCH_MLFLOW_URL": mlflow_url}
        if os.environ.get("NOTEBENCH_USER_CONFIG"):
            env["NOTEBENCH_USER_CONFIG"] = os.environ["NOTEBENCH_USER_CONFIG"]  # profiles, GPUs, c.Executor
        c.NotebenchSpawner.executor_url = f"http://127.0.0.1:{ports['executor']}"  # quotas at spawn
        add_executor_service(
            services,
            roles,
            f"http://127.0.0.1:{ports['executor']}",
            command=[sys.executable, "-m", "notebench.executor"],
            environment=env,
        )
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
    keep_roles(c.JupyterHub.db_url, roles)

    # Leases of servers that died while the hub was down are freed now; live ones are kept.
    GPUInventory(config=c).reap("server:")


# JupyterHub makes the roles in its database match the configuration it starts with, whichever
# that is: one of its commands run on the data dir without Notebench's configuration (`jupyterhub
# token --db=…`) deletes the services' roles and cuts the users' role down to "self", under the
# running hub, which reads that at its next database error. So the database itself refuses it.
KEEP_ROLES_REFUSAL = (
    "Notebench's roles would be lost: this is JupyterHub without Notebench's configuration."
    " Make API tokens with `notebench token USER --data-dir DIR`; run the hub with `notebench up`."
)


def keep_roles(db_url: str, roles: list[dict]) -> None:
    """Make the hub's SQLite database refuse to delete the roles ``roles`` defines, or to take
    scopes from them (the Notebench hub starting with another configuration replaces the list).
    Scopes are compared as JupyterHub loads them: merged into its default role of the same name."""
    if not db_url.startswith("sqlite:///"):
        return  # Kubernetes with PostgreSQL: no JupyterHub commands run next to the hub pod
    from jupyterhub import orm
    from jupyterhub.roles import get_default_roles

    path = db_url[len("sqlite:///") :]
    with closing(sqlite3.connect(path, timeout=60)) as db:
        if not db.execute("SELECT 1 FROM sqlite_master").fetchone():
            orm.new_session_factory(db_url)  # a new database: its schema, as the hub makes it at start
        if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'roles'").fetchone():
            return  # a database from before JupyterHub 2 (no roles): the hub asks for upgrade-db
        defaults = {role["name"]: role for role in get_default_roles()}
        kept = [(r["name"], json.dumps({**defaults.get(r["name"], {}), **r}.get("scopes", []))) for r in roles]
        refuse = "SELECT RAISE(ABORT, '%s');" % KEEP_ROLES_REFUSAL.replace("'", "''")
        with db:  # one transaction
            db.execute("CREATE TABLE IF NOT EXISTS notebench_roles (name TEXT PRIMARY KEY, scopes TEXT NOT NULL)")
            db.execute("DELETE FROM notebench_roles")
            db.executemany("INSERT INTO notebench_roles (name, scopes) VALUES (?, ?)", kept)
            db.execute("DROP TRIGGER IF EXISTS notebench_keep_roles")
            db.execute(
                "CREATE TRIGGER notebench_keep_roles BEFORE DELETE ON roles"
                f" WHEN old.name IN (SELECT name FROM notebench_roles) BEGIN {refuse} END"
            )
            db.execute("DROP TRIGGER IF EXISTS notebench_keep_role_scopes")
            db.execute(
                "CREATE TRIGGER notebench_keep_role_scopes BEFORE UPDATE OF scopes ON roles"
                " WHEN EXISTS (SELECT 1 FROM notebench_roles AS kept, json_each(kept.scopes) AS scope"
                "   WHERE kept.name = old.name AND scope.value NOT IN (SELECT value FROM json_each(new.scopes)))"
                f" BEGIN {refuse} END"
            )


def authenticator_class(c) -> type:
    from jupyterhub.app import JupyterHub

    return JupyterHub(config=c).authenticator_class


def apply_bootstrap_admin(c, env) -> None:
    """The bootstrap account 'admin': its API token and password from ``env``, and admin rights."""
    if env.get("NOTEBENCH_ADMIN_TOKEN"):
        c.JupyterHub.api_tokens = {env["NOTEBENCH_ADMIN_TOKEN"]: "admin"}
    if env.get("NOTEBENCH_ADMIN_PASSWORD"):
        c.NotebenchNativeAuthenticator.admin_password = env["NOTEBENCH_ADMIN_PASSWORD"]
    bootstrap_admin(c)


def bootstrap_admin(c) -> None:
    """Make 'admin' (the account NOTEBENCH_ADMIN_TOKEN/_PASSWORD belong to) a hub admin.

    admin_users is merged on the authenticator's own class, as an operator may have set it on
    c.GenericOAuthenticator (a more specific section wins over c.Authenticator). With any other
    authenticator than the local one, nobody may log in *as* 'admin' through it: the name is
    reserved for the bootstrap account, else an IdP user called 'admin' would become hub admin.
    """
    cls = authenticator_class(c)
    sections = [k.__name__ for k in reversed(cls.__mro__) if k.__name__ in c]
    admins = {"admin"}
    for name in sections:
        admins |= set(_configured(c[name], "admin_users", ()))
    c[cls.__name__].admin_users = admins
    c.Authenticator.admin_users = admins
    if not issubclass(cls, NotebenchNativeAuthenticator):
        c.Authenticator.post_auth_hook = refuse_bootstrap_admin_login


def refuse_bootstrap_admin_login(authenticator, handler, authentication):
    if authentication and authentication.get("name") == "admin":
        raise web.HTTPError(403, "The name 'admin' is reserved for Notebench's bootstrap account")
    return authentication


# The services. ``how`` says how the hub runs one (local mode: command and environment) or, when
# it runs elsewhere (Kubernetes), the api_token it registers with.

def add_idle_culler_service(services: list, roles: list, timeout: int, every: int, hub_api_url: str = "", **how) -> None:
    """jupyterhub-idle-culler, run by the hub, with only the scopes it needs: no admin, no tokens.
    Run as notebench.hub.culling, which records why it stops a server first."""
    command = [sys.executable, "-m", "notebench.hub.culling", f"--timeout={timeout}", f"--cull-every={every}"]
    if hub_api_url:
        command.append(f"--url={hub_api_url}")
    services.append({"name": "idle-culler", "command": command, **how})
    roles.append(
        {
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers", CULL_RECORD_SCOPE],
            "services": ["idle-culler"],
        }
    )


def add_executor_service(services: list, roles: list, url: str, **how) -> None:
    """The notebook execution service at /services/executor/."""
    services.append({"name": "executor", "url": url, "oauth_no_confirm": True, **how})
    # Mint per-user tokens (scope access:services) so jobs reach MLflow as their owner.
    # read:users:groups: the quotas that apply to a user come from their groups too (executor/quotas.py).
    # list:users + read:servers: the usage meter lists the running servers, each with its start and
    # user_options (the profile) (executor/hub_servers.py); no admin:server_state, no server access.
    roles.append({"name": "executor", "scopes": ["tokens", "access:services", "read:users:groups", "list:users",
                                                 "read:servers"], "services": ["executor"]})


def add_mlflow_service(services: list, roles: list, url: str, **how) -> None:
    """MLflow behind Notebench's front at /services/mlflow/: it identifies users, and reports model
    registrations, aliases and permissions to the executor's audit log (its role: that only)."""
    services.append({"name": "mlflow", "url": url, "oauth_no_confirm": True, **how})
    roles.append({"name": "mlflow", "scopes": AUDIT_REPORTER_SCOPES, "services": ["mlflow"]})


# Appending to the executor's audit log, and nothing else.
AUDIT_REPORTER_SCOPES = [AUDIT_APPEND_SCOPE, "access:services!service=executor"]


def add_metrics_scraper(services: list, roles: list, **how) -> None:
    """Prometheus (a service nobody runs, ``how``: its api_token): it reads /hub/metrics and the
    executor's /services/executor/metrics, and nothing else."""
    services.append({"name": "metrics-scraper", **how})
    roles.append({"name": "metrics-scraper", "scopes": ["read:metrics", "access:services!service=executor"],
                  "services": ["metrics-scraper"]})


def add_audit_reporter(services: list, roles: list, **how) -> None:
    """The hub's audit reporter (notebench.hub.audit): a service nobody runs, whose token (``how``:
    api_token) the hub process appends to the executor's audit log with."""
    services.append({"name": "audit-reporter", **how})
    roles.append({"name": "audit-reporter", "scopes": AUDIT_REPORTER_SCOPES, "services": ["audit-reporter"]})
