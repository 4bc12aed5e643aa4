"""JupyterHub in the hub pod of the Helm chart (``NOTEBENCH_MODE=kubernetes``).

``jupyterhub_config.py`` calls ``configure(c, load_values(path), os.environ)`` with the chart's
values (``NOTEBENCH_VALUES``, secrets stripped) and the env the chart sets; docs/kubernetes.md is
the contract between them. Roles, scopes, services and the user servers' arguments are local
mode's (notebench.hub.config); only where things run differs: user servers are KubeSpawner pods
built from the same profiles, the proxy, the executor and MLflow run in pods of their own.
"""

from __future__ import annotations

from typing import Mapping

from kubespawner import KubeSpawner
from tornado import web

from notebench.hub.audit import apply_hub_audit
from notebench.hub.config import (
    add_audit_reporter,
    add_executor_service,
    add_idle_culler_service,
    add_metrics_scraper,
    add_mlflow_service,
    apply_bootstrap_admin,
    apply_pages,
    apply_scopes,
)
from notebench.hub.platform.audit_outbox import audit_url
from notebench.hub.platform.chart_values import ConfigError, image_name, required, required_env
from notebench.hub.platform.environment import workload_env
from notebench.hub.platform.home_storage import (
    ACCESS_MODES,
    HOME_CLAIM,
    SINGLEUSER_COMPONENT,
    HomeStorage,
    kubespawner_common_labels,
)
from notebench.hub.platform.profiles import Profiles
from notebench.hub.singleuser import singleuser_args
from notebench.hub.spawn_quotas import SpawnQuotas

HUB_PORT = 8081
PROXY_PORT = 8000
HOME = "/home/jovyan"
DATA_DIR = "/srv/notebench"
# How often a user server tells the hub it is active (local mode's default too).
ACTIVITY_INTERVAL = 300


class NotebenchKubeSpawner(SpawnQuotas, KubeSpawner):
    """KubeSpawner taking the spawn requests local mode takes: ``{"profile": NAME}``, also in
    JupyterHub 6's shape ``{"user_options": {"profile": NAME}}``; an unknown profile is a 400
    naming the choices. Quotas are checked before the pod is made."""

    async def _start(self):  # KubeSpawner.start wraps this in the future its progress() follows
        profile = Profiles(parent=self).get((self.user_options or {}).get("profile"))
        await self.check_quota(profile)
        return await super()._start()

    async def load_user_options(self):
        if isinstance(self.user_options.get("user_options"), dict):
            self.user_options = self.user_options["user_options"]
        try:
            await super().load_user_options()
        except ValueError as e:  # KubeSpawner's "No such profile: ... Options include: ..."
            raise web.HTTPError(400, str(e), reason=str(e)) from None


def configure(c, values: dict, env: Mapping[str, str]) -> None:
    """The whole hub configuration for Kubernetes mode."""
    configure_hub(c, env)
    configure_auth(c, values, env)
    configure_spawner(c, values, env)
    configure_services(c, values, env)


def configure_hub(c, env: Mapping[str, str]) -> None:
    data = env.get("NOTEBENCH_DATA_DIR", DATA_DIR)
    # The proxy runs in its own pod (public port 8000, API at NOTEBENCH_PROXY_API_URL; the hub
    # reads its token from CONFIGPROXY_AUTH_TOKEN); the hub listens on every interface for it
    # and for the user pods, which reach it through its Service.
    c.JupyterHub.bind_url = f"http://0.0.0.0:{PROXY_PORT}"
    c.JupyterHub.hub_bind_url = f"http://0.0.0.0:{HUB_PORT}"
    c.JupyterHub.hub_connect_url = required_env(env, "NOTEBENCH_HUB_URL")
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = required_env(env, "NOTEBENCH_PROXY_API_URL")
    c.JupyterHub.db_url = env.get("NOTEBENCH_HUB_DB_URL") or f"sqlite:///{data}/jupyterhub.sqlite"
    # Used only without JPY_COOKIE_SECRET (which JupyterHub reads itself).
    c.JupyterHub.cookie_secret_file = f"{data}/jupyterhub_cookie_secret"
    # User pods outlive a hub restart; the hub finds them again from its database.
    c.JupyterHub.cleanup_servers = False
    apply_scopes(c)
    apply_pages(c)


def configure_auth(c, values: dict, env: Mapping[str, str]) -> None:
    auth = values.get("auth") or {}
    kind = auth.get("type", "native")
    admins = set(auth.get("adminUsers") or [])
    if kind == "native":
        if not env.get("NOTEBENCH_ADMIN_PASSWORD"):
            # Without it the first person to sign up as 'admin' would become hub admin.
            raise ConfigError("NOTEBENCH_ADMIN_PASSWORD is not set: the bootstrap account 'admin' needs it")
        c.JupyterHub.authenticator_class = "notebench.hub.auth.NotebenchNativeAuthenticator"
        c.NotebenchNativeAuthenticator.admin_users = admins
    elif kind == "oidc":
        oidc = auth.get("oidc") or {}
        public_url = values.get("publicUrl") or ""
        if not public_url:
            raise ConfigError("publicUrl is required with auth.type oidc (the OIDC callback is <publicUrl>/hub/oauth_callback)")
        c.JupyterHub.authenticator_class = "generic-oauth"
        oauth = c.GenericOAuthenticator
        oauth.login_service = oidc.get("loginService") or "OpenID Connect"
        oauth.client_id = required(oidc, "clientId", "auth.oidc")
        oauth.client_secret = required_env(env, "NOTEBENCH_OIDC_CLIENT_SECRET")
        oauth.authorize_url = required(oidc, "authorizeUrl", "auth.oidc")
        oauth.token_url = required(oidc, "tokenUrl", "auth.oidc")
        oauth.userdata_url = required(oidc, "userdataUrl", "auth.oidc")
        oauth.oauth_callback_url = public_url.rstrip("/") + "/hub/oauth_callback"
        oauth.scope = list(oidc.get("scope") or ["openid", "profile", "email"])
        oauth.username_claim = oidc.get("usernameClaim") or "preferred_username"
        if oidc.get("groupsKey"):
            # IdP groups become hub groups (allowed_groups and admin_groups need them).
            oauth.manage_groups = True
            oauth.auth_state_groups_key = oidc["groupsKey"]
        oauth.allowed_users = set(oidc.get("allowedUsers") or [])
        oauth.allowed_groups = set(oidc.get("allowedGroups") or [])
        oauth.admin_groups = set(oidc.get("adminGroups") or [])
        oauth.admin_users = admins
    else:
        raise ConfigError(f"auth.type must be native or oidc, got {kind!r}")
    # As in local mode: 'admin' is a hub admin, and no IdP account may log in under that name.
    apply_bootstrap_admin(c, env)


def configure_spawner(c, values: dict, env: Mapping[str, str]) -> None:
    singleuser = values.get("singleuser") or {}
    c.JupyterHub.spawner_class = NotebenchKubeSpawner
    spawner = c.KubeSpawner
    spawner.namespace = required_env(env, "POD_NAMESPACE")
    image = singleuser.get("image") or {}
    spawner.image = image_name(image, "singleuser.image")
    spawner.image_pull_policy = image.get("pullPolicy") or "IfNotPresent"
    if values.get("imagePullSecrets"):
        spawner.image_pull_secrets = list(values["imagePullSecrets"])
    c.Profiles.profiles = required(singleuser, "profiles", "singleuser")  # the quota check reads them too
    spawner.profile_list = Profiles(profiles=c.Profiles.profiles).kubespawner_profile_list()
    spawner.start_timeout = int(singleuser.get("startTimeout") or 300)
    spawner.http_timeout = 60
    spawner.default_url = "/lab"
    # Explicit: KubeSpawner drops the arguments below when it uses the image's own command.
    spawner.cmd = ["jupyterhub-singleuser"]

    # The labels the chart's NetworkPolicies select (docs/kubernetes.md). component_label also
    # sets the `component` label KubeSpawner finds its pods by.
    spawner.component_label = SINGLEUSER_COMPONENT
    spawner.common_labels = kubespawner_common_labels(required_env(env, "NOTEBENCH_RELEASE"))
    spawner.extra_labels = {"notebench.io/workload": "user", "notebench.io/owner": "{username}"}

    # Non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp, no API token.
    uid, gid = int(singleuser.get("uid", 1000)), int(singleuser.get("fsGid", 100))
    spawner.uid = uid
    spawner.gid = gid
    spawner.fs_gid = gid
    spawner.allow_privilege_escalation = False
    spawner.pod_security_context = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    spawner.container_security_context = {
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    spawner.automount_service_account_token = False

    # Each user's home: the PVC home-<slug>, made at first spawn (or by the executor, the same,
    # for a job of a user who never spawned) and kept when the server stops.
    storage = HomeStorage.from_values(values)
    spawner.pvc_name_template = HOME_CLAIM
    spawner.storage_pvc_ensure = True
    spawner.storage_capacity = storage.size
    spawner.storage_access_modes = list(ACCESS_MODES)
    spawner.delete_pvc = False  # deleting a user in the hub must not delete their files
    if storage.storage_class:
        spawner.storage_class = storage.storage_class  # else the cluster's default class
    # {pvc_name}: the name KubeSpawner remembers for this user, even if the template changes.
    spawner.volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]
    spawner.volume_mounts = [{"name": "home", "mountPath": HOME}]

    cull = values.get("cull") or {}
    kernel_timeout = int(cull.get("kernelTimeout", 3600)) if cull.get("enabled", True) else 0
    spawner.args = singleuser_args(kernel_cull_idle_timeout=kernel_timeout)
    mlflow_url = required_env(env, "NOTEBENCH_MLFLOW_URL").rstrip("/")
    # The CLI and the JupyterLab panels reach /services/executor/ and /services/mlflow/ through
    # the proxy, as in local mode; MLflow clients go straight to MLflow. The profile's variables
    # come with the profile (Profile.to_kubespawner).
    spawner.environment = {
        **workload_env(notebench_url=required_env(env, "NOTEBENCH_PROXY_PUBLIC_URL"),
                       mlflow_url=f"{mlflow_url}/services/mlflow", mlflow_token=server_api_token),
        "JUPYTERHUB_ACTIVITY_INTERVAL": str(ACTIVITY_INTERVAL),
    }


def server_api_token(spawner) -> str:
    """The server's own hub token: notebooks log to MLflow as their user with no set-up."""
    return spawner.api_token


def configure_services(c, values: dict, env: Mapping[str, str]) -> None:
    """The idle culler runs in the hub pod, the executor and MLflow in pods of their own."""
    services: list = []
    roles = list(c.JupyterHub.load_roles)
    cull = values.get("cull") or {}
    if cull.get("enabled", True):
        add_idle_culler_service(
            services,
            roles,
            int(cull.get("timeout", 3600)),
            int(cull.get("every", 300)),
            hub_api_url=f"http://127.0.0.1:{HUB_PORT}/hub/api",  # the hub in the same pod
            api_token=required_env(env, "NOTEBENCH_CULLER_API_TOKEN"),
        )
    c.NotebenchKubeSpawner.executor_url = required_env(env, "NOTEBENCH_EXECUTOR_URL")  # quotas at spawn
    add_executor_service(
        services,
        roles,
        required_env(env, "NOTEBENCH_EXECUTOR_URL"),
        api_token=required_env(env, "NOTEBENCH_EXECUTOR_API_TOKEN"),
    )
    add_mlflow_service(
        services, roles, required_env(env, "NOTEBENCH_MLFLOW_URL"), api_token=required_env(env, "NOTEBENCH_MLFLOW_API_TOKEN")
    )
    # The hub reports logins, servers, tokens and groups to the executor's audit log; its outbox
    # is in the pod's data dir (it outlives a container restart).
    token = required_env(env, "NOTEBENCH_AUDIT_REPORTER_API_TOKEN")
    add_audit_reporter(services, roles, api_token=token)
    apply_hub_audit(c, env.get("NOTEBENCH_DATA_DIR", DATA_DIR), audit_url(required_env(env, "NOTEBENCH_EXECUTOR_URL")), token)
    if env.get("NOTEBENCH_METRICS_API_TOKEN"):  # the chart's ServiceMonitor scrapes with it
        add_metrics_scraper(services, roles, api_token=env["NOTEBENCH_METRICS_API_TOKEN"])
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles



