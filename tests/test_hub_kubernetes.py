"""The hub on Kubernetes, without a cluster.

JupyterHub itself loads and initializes hub/jupyterhub_config.py with NOTEBENCH_MODE=kubernetes,
the chart's values (helm/notebench/values.yaml, and with ci/gpu-oidc-values.yaml on top) and the
env the chart gives the hub pod (docs/kubernetes.md). For every profile, JupyterHub makes the
user's KubeSpawner, KubeSpawner applies the profile (load_user_options) and builds the pod and the
home PVC it would create; both are validated against Kubernetes 1.37 (strict) and inspected.
Nothing here talks to a Kubernetes API server: building manifests needs none.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes_asyncio.config.kube_config
import pytest
import yaml
from jupyterhub import orm
from jupyterhub.app import JupyterHub
from kube import validate
from kubernetes_asyncio.client import ApiClient
from kubespawner.slugs import safe_slug

from notebench.hub.config import ENDPOINT_INVOKE_SCOPE, refuse_bootstrap_admin_login
from notebench.hub.kubernetes import ConfigError
from notebench.hub.profiles import Profiles, parse_bytes

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "notebench"
HUB_CONFIG = ROOT / "hub" / "jupyterhub_config.py"

# What the chart's hub Deployment sets (docs/kubernetes.md), for a release "nb" in namespace "team".
HUB_ENV = {
    "NOTEBENCH_MODE": "kubernetes",
    "NOTEBENCH_RELEASE": "nb",
    "POD_NAMESPACE": "team",
    "POD_NAME": "nb-hub-7d9f8-abcde",
    "NOTEBENCH_HUB_URL": "http://nb-notebench-hub:8081",
    "NOTEBENCH_EXECUTOR_URL": "http://nb-notebench-executor:8090",
    "NOTEBENCH_MLFLOW_URL": "http://nb-notebench-mlflow:5000",
    "NOTEBENCH_PROXY_API_URL": "http://nb-notebench-proxy-api:8001",
    "NOTEBENCH_PROXY_PUBLIC_URL": "http://nb-notebench-proxy-public",
    "CONFIGPROXY_AUTH_TOKEN": "proxy-token-" + "0" * 20,
    "NOTEBENCH_ADMIN_PASSWORD": "bootstrap-password",
    "NOTEBENCH_EXECUTOR_API_TOKEN": "executor-token-" + "1" * 20,
    "NOTEBENCH_MLFLOW_API_TOKEN": "mlflow-token-" + "2" * 20,
    "NOTEBENCH_CULLER_API_TOKEN": "culler-token-" + "3" * 20,
    "NOTEBENCH_OIDC_CLIENT_SECRET": "oidc-client-secret",
}
USER = "Ada.Lovelace@Example.org"  # a name KubeSpawner has to slug
SERVER_TOKEN = "server-token-of-ada"


def merged(base: dict, override: dict) -> dict:
    """Helm's merge of a values file onto the defaults: maps merge, everything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def chart_values(*files: str) -> dict:
    """The values the hub reads from its ConfigMap: the chart's defaults with ``files`` on top,
    secrets stripped and empty image tags set to the appVersion (as the chart renders them)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for name in files:
        values = merged(values, yaml.safe_load((CHART / name).read_text()))
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    for image in (values["hub"]["image"], values["singleuser"]["image"], values["executor"]["image"]):
        image["tag"] = image.get("tag") or app_version
    values["auth"]["oidc"].pop("clientSecret", None)
    return values


@dataclass
class Hub:
    """What JupyterHub made of the config: the app and, per profile, KubeSpawner's objects."""

    app: JupyterHub
    values: dict
    pods: dict = field(default_factory=dict)  # profile name -> Pod manifest
    pvcs: dict = field(default_factory=dict)  # profile name -> PVC manifest
    users: dict = field(default_factory=dict)  # profile name -> user name

    @property
    def profiles(self):
        return Profiles(profiles=self.values["singleuser"]["profiles"]).all()

    def env(self, profile: str) -> dict:
        return {e["name"]: e["value"] for e in container(self.pods[profile])["env"]}


def container(pod: dict) -> dict:
    (notebook,) = pod["spec"]["containers"]
    return notebook


async def user_objects(app: JupyterHub, name: str, profile: str | None) -> tuple[dict, dict]:
    """The pod and PVC KubeSpawner makes when ``name`` starts a server with ``profile``
    (everything KubeSpawner.start does before it calls the Kubernetes API)."""
    orm_user = orm.User(name=name)
    app.db.add(orm_user)
    app.db.commit()
    spawner = app.users.add(orm_user).spawners[""]  # made by JupyterHub, as at a spawn
    spawner.user_options = {"profile": profile} if profile else {}
    await spawner.load_user_options()  # what KubeSpawner.start does first
    spawner.api_token = SERVER_TOKEN
    async with ApiClient() as client:
        return (
            client.sanitize_for_serialization(await spawner.get_pod_manifest()),
            client.sanitize_for_serialization(spawner.get_pvc_manifest()),
        )


def make_hub(values: dict, tmp_path: Path, env: dict | None = None) -> Hub:
    """JupyterHub initialized from hub/jupyterhub_config.py with ``values``; a user per profile."""
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    kubeconfig = tmp_path / "kubeconfig"  # KubeSpawner loads one; nothing ever connects to it
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "none", "user": {"token": "none"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )

    async def run() -> Hub:
        app = JupyterHub(config_file=str(HUB_CONFIG))
        await app.initialize([])  # loads the config file as `jupyterhub -f` does, and checks it
        hub = Hub(app=app, values=values)
        try:
            for profile in hub.profiles:
                hub.users[profile.name] = user = f"{USER}-{profile.name}"
                hub.pods[profile.name], hub.pvcs[profile.name] = await user_objects(app, user, profile.name)
            hub.users[""] = "ada"  # no profile chosen
            hub.pods[""], hub.pvcs[""] = await user_objects(app, "ada", None)

        finally:
            app.db.close()
        return hub

    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**HUB_ENV, "NOTEBENCH_VALUES": str(values_file), "NOTEBENCH_DATA_DIR": str(tmp_path), **(env or {})}.items():
            if value is None:
                mp.delenv(key, raising=False)
            else:
                mp.setenv(key, value)
        mp.delenv("JPY_COOKIE_SECRET", raising=False)
        mp.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in-cluster, even in a CI pod
        mp.setattr(kubernetes_asyncio.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        return asyncio.run(run())


@pytest.fixture(scope="module")
def default_hub(tmp_path_factory):
    return make_hub(chart_values(), tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def gpu_oidc_hub(tmp_path_factory):
    return make_hub(chart_values("ci/gpu-oidc-values.yaml"), tmp_path_factory.mktemp("gpu-oidc"))


@pytest.fixture(scope="module", params=["default", "gpu-oidc"])
def hub(request):
    return request.getfixturevalue({"default": "default_hub", "gpu-oidc": "gpu_oidc_hub"}[request.param])


# --- the hub in its pod -------------------------------------------------------------------------


def test_hub_listens_for_the_proxy_pod_and_user_pods(default_hub):
    app = default_hub.app
    assert app.hub_bind_url == "http://0.0.0.0:8081/hub/"
    assert app.hub.url == "http://nb-notebench-hub:8081/hub/"  # how user pods and services reach it
    assert app.bind_url == "http://0.0.0.0:8000"  # the proxy's public port (in the proxy pod)
    assert app.proxy.should_start is False
    assert app.proxy.api_url == HUB_ENV["NOTEBENCH_PROXY_API_URL"]
    assert app.proxy.auth_token == HUB_ENV["CONFIGPROXY_AUTH_TOKEN"]
    assert app.cleanup_servers is False  # user pods outlive a hub restart


def test_hub_database_is_the_one_the_chart_names(tmp_path):
    url = f"sqlite:///{tmp_path}/from-the-chart.sqlite"  # stands in for the chart's PostgreSQL URL
    hub = make_hub(chart_values(), tmp_path, env={"NOTEBENCH_HUB_DB_URL": url})
    assert hub.app.db_url == url
    assert (tmp_path / "from-the-chart.sqlite").exists()


def test_services_and_roles_are_local_modes(hub):
    app = hub.app
    services = {s["name"]: s for s in app.services}
    assert set(services) == {"idle-culler", "executor", "mlflow"}
    # The executor and MLflow run in their own pods: the hub routes to their Services and knows their tokens.
    assert services["executor"]["url"] == HUB_ENV["NOTEBENCH_EXECUTOR_URL"]
    assert services["executor"]["api_token"] == HUB_ENV["NOTEBENCH_EXECUTOR_API_TOKEN"]
    assert services["mlflow"]["url"] == HUB_ENV["NOTEBENCH_MLFLOW_URL"]
    assert services["mlflow"]["api_token"] == HUB_ENV["NOTEBENCH_MLFLOW_API_TOKEN"]
    assert "command" not in services["executor"] and "command" not in services["mlflow"]
    roles = {r["name"]: r for r in app.load_roles}
    assert roles["user"]["scopes"] == ["self", "access:services", ENDPOINT_INVOKE_SCOPE + "!user"]
    assert roles["executor"] == {"name": "executor", "scopes": ["tokens", "access:services"], "services": ["executor"]}
    assert ENDPOINT_INVOKE_SCOPE in app.custom_scopes
    # JupyterHub registered them (initialize checked the roles and scopes).
    assert set(app._service_map) == {"idle-culler", "executor", "mlflow"}


def test_idle_culler_runs_in_the_hub_pod_with_least_privilege(hub):
    cull = hub.values["cull"]
    culler = next(s for s in hub.app.services if s["name"] == "idle-culler")
    assert culler["command"][1:] == [
        "-m",
        "jupyterhub_idle_culler",
        f"--timeout={cull['timeout']}",
        f"--cull-every={cull['every']}",
        "--url=http://127.0.0.1:8081/hub/api",
    ]
    assert culler["api_token"] == HUB_ENV["NOTEBENCH_CULLER_API_TOKEN"]
    (role,) = [r for r in hub.app.load_roles if "idle-culler" in r.get("services", [])]
    assert sorted(role["scopes"]) == ["delete:servers", "list:users", "read:servers", "read:users:activity"]


def test_culling_can_be_turned_off(tmp_path):
    values = chart_values()
    values["cull"]["enabled"] = False
    hub = make_hub(values, tmp_path)
    assert "idle-culler" not in {s["name"] for s in hub.app.services}
    assert not [r for r in hub.app.load_roles if r["name"] == "idle-culler"]
    assert "--MappingKernelManager.cull_idle_timeout=0" in container(hub.pods["cpu"])["args"]


def test_user_pods_get_the_image_pull_secrets(tmp_path):
    values = chart_values()
    values["imagePullSecrets"] = ["registry-credentials"]
    hub = make_hub(values, tmp_path)
    for pod in hub.pods.values():
        assert pod["spec"]["imagePullSecrets"] == [{"name": "registry-credentials"}]


# --- authentication -----------------------------------------------------------------------------


def test_native_auth_with_the_bootstrap_admin(default_hub):
    auth = default_hub.app.authenticator
    assert type(auth).__name__ == "NotebenchNativeAuthenticator"
    assert auth.admin_users == {"admin"} | set(default_hub.values["auth"]["adminUsers"])
    assert auth.admin_password == HUB_ENV["NOTEBENCH_ADMIN_PASSWORD"]


def test_native_auth_refuses_to_start_without_the_admin_password(tmp_path):
    # Else whoever signs up first as 'admin' would be hub admin.
    with pytest.raises(ConfigError, match="NOTEBENCH_ADMIN_PASSWORD"):
        make_hub(chart_values(), tmp_path, env={"NOTEBENCH_ADMIN_PASSWORD": None})


def test_oidc_settings_come_from_the_values(gpu_oidc_hub):
    oidc = gpu_oidc_hub.values["auth"]["oidc"]
    auth = gpu_oidc_hub.app.authenticator
    assert type(auth).__name__ == "GenericOAuthenticator"
    assert auth.login_service == oidc["loginService"]
    assert auth.client_id == oidc["clientId"]
    assert auth.client_secret == HUB_ENV["NOTEBENCH_OIDC_CLIENT_SECRET"]  # never from the values
    assert (auth.authorize_url, auth.token_url, auth.userdata_url) == (
        oidc["authorizeUrl"], oidc["tokenUrl"], oidc["userdataUrl"]
    )
    assert auth.oauth_callback_url == gpu_oidc_hub.values["publicUrl"] + "/hub/oauth_callback"
    assert auth.scope == oidc["scope"]
    assert auth.username_claim == oidc["usernameClaim"]
    assert auth.manage_groups is True and auth.auth_state_groups_key == oidc["groupsKey"]
    assert auth.allowed_groups == set(oidc["allowedGroups"])
    assert auth.admin_groups == set(oidc["adminGroups"])
    assert auth.admin_users == {"admin", *gpu_oidc_hub.values["auth"]["adminUsers"]}
    # The name 'admin' is the bootstrap account's: an IdP account of that name is refused.
    assert auth.post_auth_hook is refuse_bootstrap_admin_login


def test_oidc_needs_the_public_url_for_its_callback(tmp_path):
    values = chart_values("ci/gpu-oidc-values.yaml")
    values["publicUrl"] = ""
    with pytest.raises(ConfigError, match="publicUrl"):
        make_hub(values, tmp_path)


def test_missing_env_is_named(tmp_path):
    with pytest.raises(ConfigError, match="NOTEBENCH_PROXY_API_URL"):
        make_hub(chart_values(), tmp_path, env={"NOTEBENCH_PROXY_API_URL": None})


# --- user pods ----------------------------------------------------------------------------------


def test_every_user_pod_and_pvc_is_a_valid_kubernetes_object(hub):
    assert set(hub.pods) == {p.name for p in hub.profiles} | {""}
    for profile in hub.pods:
        validate(hub.pods[profile])
        validate(hub.pvcs[profile])


def test_the_spawn_form_lists_the_profiles(hub):
    spawner_config = hub.app.config.KubeSpawner
    listed = [(p["slug"], p["display_name"]) for p in spawner_config.profile_list]
    assert listed == [(p.name, p.display_name) for p in hub.profiles]


def test_resources_follow_the_profile(hub):
    for profile in hub.profiles:
        resources = container(hub.pods[profile.name])["resources"]
        assert float(resources["limits"]["cpu"]) == profile.cpu_limit
        assert int(resources["limits"]["memory"]) == profile.mem_limit
        if profile.cpu_request:
            assert float(resources["requests"]["cpu"]) == profile.cpu_request
        if profile.mem_request:
            assert int(resources["requests"]["memory"]) == profile.mem_request


def test_gpus_only_on_gpu_profiles(hub):
    assert any(p.gpus for p in hub.profiles) and any(not p.gpus for p in hub.profiles)
    for profile in hub.profiles:
        resources = container(hub.pods[profile.name])["resources"]
        env = hub.env(profile.name)
        if profile.gpus:
            assert resources["limits"]["nvidia.com/gpu"] == str(profile.gpus)
            assert "NVIDIA_VISIBLE_DEVICES" not in env  # the device plugin sets it
        else:
            assert "nvidia.com/gpu" not in resources["limits"]
            assert "nvidia.com/gpu" not in resources.get("requests", {})
            # A CUDA image on a GPU node must not see the node's GPUs.
            assert env["NVIDIA_VISIBLE_DEVICES"] == "void"
        assert env["NOTEBENCH_PROFILE"] == profile.name


def test_placement_and_image_follow_the_profile(hub):
    default_image = "{repository}:{tag}".format(**hub.values["singleuser"]["image"])
    for profile in hub.profiles:
        spec = hub.pods[profile.name]["spec"]
        assert container(hub.pods[profile.name])["image"] == (profile.image or default_image)
        assert (spec.get("nodeSelector") or {}) == profile.node_selector
        assert (spec.get("tolerations") or []) == profile.tolerations


def test_gpu_oidc_values_place_gpu_pods_on_gpu_nodes(gpu_oidc_hub):
    spec = gpu_oidc_hub.pods["a100x4"]["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert container(gpu_oidc_hub.pods["a100x4"])["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert "nodeSelector" not in gpu_oidc_hub.pods["cpu"]["spec"]


def test_no_profile_chosen_gets_the_default_one(hub):
    (default,) = [p for p in hub.profiles if p.default] or hub.profiles[:1]
    assert hub.env("")["NOTEBENCH_PROFILE"] == default.name


def test_user_pods_carry_the_labels_the_network_policies_select(hub):
    for profile, pod in hub.pods.items():
        labels = pod["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "notebench"
        assert labels["app.kubernetes.io/instance"] == HUB_ENV["NOTEBENCH_RELEASE"]
        assert labels["app.kubernetes.io/component"] == "singleuser"
        assert labels["notebench.io/workload"] == "user"
        assert labels["notebench.io/owner"] == safe_slug(hub.users[profile], max_length=48)
    assert hub.pods[""]["metadata"]["labels"]["notebench.io/owner"] == "ada"


def test_user_pods_are_restricted(hub):
    for pod in hub.pods.values():
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["fsGroup"] == hub.values["singleuser"]["fsGid"]
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        security = container(pod)["securityContext"]
        assert security["runAsUser"] == hub.values["singleuser"]["uid"] != 0
        assert security["runAsGroup"] == hub.values["singleuser"]["fsGid"]
        assert security["runAsNonRoot"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not security.get("privileged")


def test_each_user_has_a_home_pvc(hub):
    storage = hub.values["singleuser"]["storage"]
    for profile, pvc in hub.pvcs.items():
        name = "home-" + safe_slug(hub.users[profile], max_length=48)
        assert pvc["metadata"]["name"] == name
        assert pvc["spec"]["resources"]["requests"]["storage"] == storage["size"]
        assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
        if storage["storageClass"]:
            assert pvc["spec"]["storageClassName"] == storage["storageClass"]
        else:
            assert "storageClassName" not in pvc["spec"]  # the cluster's default class
        spec = hub.pods[profile]["spec"]
        (volume,) = spec["volumes"]
        assert volume["persistentVolumeClaim"] == {"claimName": name}
        assert container(hub.pods[profile])["volumeMounts"] == [{"name": volume["name"], "mountPath": "/home/jovyan"}]
    assert hub.pvcs[""]["metadata"]["name"] == "home-ada"


def test_gpu_oidc_values_set_the_storage_class_and_size(gpu_oidc_hub):
    pvc = gpu_oidc_hub.pvcs["cpu"]
    assert pvc["spec"]["storageClassName"] == "fast-rwx"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"


def test_user_servers_cull_idle_kernels_and_find_the_services(hub):
    kernel_timeout = hub.values["cull"]["kernelTimeout"]
    for profile in hub.pods:
        args = container(hub.pods[profile])["args"]
        assert args[0] == "jupyterhub-singleuser"
        assert f"--MappingKernelManager.cull_idle_timeout={kernel_timeout}" in args
        assert "--MappingKernelManager.cull_busy=False" in args
        assert "--ServerApp.jpserver_extensions=notebench.hub.singleuser=True" in args  # busy kernels are activity
        env = hub.env(profile)
        assert env["JUPYTERHUB_API_URL"] == HUB_ENV["NOTEBENCH_HUB_URL"] + "/hub/api"
        assert env["JUPYTERHUB_ACTIVITY_INTERVAL"] == "300"
        assert env["NOTEBENCH_URL"] == HUB_ENV["NOTEBENCH_PROXY_PUBLIC_URL"]
        assert env["MLFLOW_TRACKING_URI"] == HUB_ENV["NOTEBENCH_MLFLOW_URL"] + "/services/mlflow"
        assert env["MLFLOW_TRACKING_TOKEN"] == env["JUPYTERHUB_API_TOKEN"] == SERVER_TOKEN
        assert container(hub.pods[profile])["ports"] == [{"name": "notebook-port", "containerPort": 8888}]


def test_profile_requests_cannot_exceed_limits():
    with pytest.raises(ValueError, match="cannot exceed"):
        Profiles(profiles=[{"name": "x", "cpu_request": 4, "cpu_limit": 2}]).all()
    with pytest.raises(ValueError, match="mem_request"):
        Profiles(profiles=[{"name": "x", "mem_request": "lots"}]).all()
    (profile,) = Profiles(profiles=[{"name": "x", "mem_request": "1G", "mem_limit": "2G"}]).all()
    assert (profile.mem_request, profile.mem_limit) == (parse_bytes("1G"), parse_bytes("2G"))
