"""The hub on Kubernetes, without a cluster.

The chart (helm/notebench) is rendered with Helm's own Go SDK, with its default values and with
ci/gpu-oidc-values.yaml. JupyterHub itself then loads and initializes hub/jupyterhub_config.py
with what the hub pod would get: the values file of the rendered ConfigMap and the env of the
rendered hub Deployment (docs/kubernetes.md is the contract). For every profile, JupyterHub makes
the user's KubeSpawner, KubeSpawner applies the profile (load_user_options) and builds the pod and
the home PVC it would create; both are validated against Kubernetes 1.37 (strict), inspected, and
matched against the chart's NetworkPolicies. Nothing talks to a Kubernetes API server (building
manifests needs none) nor to PostgreSQL (the hub's database is SQLite here).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import helm_python as helm
import kubernetes_asyncio.config.kube_config
import pytest
import sqlalchemy
import yaml
from jupyterhub import orm
from jupyterhub.app import JupyterHub
from kubernetes_asyncio.client import ApiClient
from kubespawner.slugs import safe_slug
from tornado import web

from notebench.executor.backends.base import JobSpec
from notebench.executor.backends.kubernetes.jobs import KubernetesBackend, config_from_values
from notebench.hub.config import AUDIT_APPEND_SCOPE, ENDPOINT_INVOKE_SCOPE, refuse_bootstrap_admin_login
from notebench.hub.kubernetes import NotebenchKubeSpawner
from notebench.hub.platform.chart_values import ConfigError
from notebench.hub.platform.profiles import Profiles, parse_bytes
from tests.support.kube import chart_objects, pod_labels, pod_spec, selector_matches, validate

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "notebench"
GPU_OIDC_VALUES = yaml.safe_load((CHART / "ci" / "gpu-oidc-values.yaml").read_text())
HUB_CONFIG = ROOT / "hub" / "jupyterhub_config.py"
RELEASE, NAMESPACE, FULLNAME = "nb", "team", "nb-notebench"
USER = "Ada.Lovelace@Example.org"  # a name KubeSpawner has to slug
SERVER_TOKEN = "server-token-of-ada"


@dataclass
class Rendered:
    """What the chart gives the hub pod: the values file, the env (as Kubernetes resolves it),
    and every object, for the NetworkPolicies."""

    values: dict
    env: dict
    objects: list


def render(values: dict | None = None) -> Rendered:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    objects = chart_objects(files)
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == f"{FULLNAME}-values"]
    (hub,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == f"{FULLNAME}-hub"]
    (container,) = hub["spec"]["template"]["spec"]["containers"]
    secrets = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "Secret"}
    return Rendered(yaml.safe_load(config_map["data"]["values.yaml"]), resolve_env(container["env"], secrets), objects)


def resolve_env(env: list[dict], secrets: dict) -> dict:
    """A container's env as the kubelet makes it: secret keys from the rendered Secrets (a stand-in
    for a Secret the chart does not make, such as an existing one named in the values), the
    downward API, and $(VAR) references to variables defined before."""
    resolved = {}
    for var in env:
        source = var.get("valueFrom", {})
        if "value" in var:
            value = re.sub(r"\$\((\w+)\)", lambda m: resolved.get(m[1], m[0]), var["value"])
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            data = secrets.get(ref["name"], {})
            value = base64.b64decode(data[ref["key"]]).decode() if ref["key"] in data else f"from-{ref['name']}-{ref['key']}"
        else:
            value = {"metadata.namespace": NAMESPACE, "metadata.name": f"{FULLNAME}-hub-0"}[source["fieldRef"]["fieldPath"]]
        resolved[var["name"]] = value
    return resolved


@dataclass
class Hub:
    """What JupyterHub made of the config: the app and, per profile, KubeSpawner's objects."""

    app: JupyterHub
    chart: Rendered
    pods: dict = field(default_factory=dict)  # profile name -> Pod manifest
    pvcs: dict = field(default_factory=dict)  # profile name -> PVC manifest
    users: dict = field(default_factory=dict)  # profile name -> user name

    @property
    def values(self) -> dict:
        return self.chart.values

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


@contextmanager
def in_hub_pod(chart: Rendered, tmp_path: Path, env: dict | None = None):
    """The environment of the hub pod of ``chart`` (``env`` changes it) in this process."""
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(chart.values))
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
    pod_env = {
        **chart.env,
        "NOTEBENCH_VALUES": str(values_file),  # the ConfigMap's file
        "NOTEBENCH_DATA_DIR": str(tmp_path),  # the pod's /srv/notebench
        "NOTEBENCH_HUB_DB_URL": f"sqlite:///{tmp_path}/jupyterhub.sqlite",  # no PostgreSQL here
        **(env or {}),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith(("NOTEBENCH_", "JUPYTERHUB_", "JPY_", "CONFIGPROXY_"))]:
            mp.delenv(key)  # only what the pod gets
        for key, value in pod_env.items():
            if value is not None:
                mp.setenv(key, value)
        mp.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in-cluster, even in a CI pod
        mp.setattr(kubernetes_asyncio.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        yield


def make_hub(chart: Rendered, tmp_path: Path, env: dict | None = None) -> Hub:
    """JupyterHub initialized from hub/jupyterhub_config.py in the hub pod of ``chart``; a user
    per profile, and one who chooses none."""

    async def run() -> Hub:
        app = JupyterHub(config_file=str(HUB_CONFIG))
        await app.initialize([])  # loads the config file as `jupyterhub -f` does, and checks it
        hub = Hub(app=app, chart=chart)
        try:
            for profile in hub.profiles:
                hub.users[profile.name] = user = f"{USER}-{profile.name}"
                hub.pods[profile.name], hub.pvcs[profile.name] = await user_objects(app, user, profile.name)
            hub.users[""] = "ada"  # no profile chosen
            hub.pods[""], hub.pvcs[""] = await user_objects(app, "ada", None)
        finally:
            app.db.close()
        return hub

    with in_hub_pod(chart, tmp_path, env):
        return asyncio.run(run())


@pytest.fixture(scope="module")
def default_hub(tmp_path_factory):
    return make_hub(render(), tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def gpu_oidc_hub(tmp_path_factory):
    return make_hub(render(GPU_OIDC_VALUES), tmp_path_factory.mktemp("gpu-oidc"))


@pytest.fixture(scope="module", params=["default", "gpu-oidc"])
def hub(request):
    return request.getfixturevalue({"default": "default_hub", "gpu-oidc": "gpu_oidc_hub"}[request.param])


# --- the hub in its pod -------------------------------------------------------------------------


def test_hub_listens_for_the_proxy_pod_and_user_pods(default_hub):
    app = default_hub.app
    assert app.hub_bind_url == "http://0.0.0.0:8081/hub/"
    assert app.hub.url == f"http://{FULLNAME}-hub:8081/hub/"  # how user pods and services reach it
    assert app.bind_url == "http://0.0.0.0:8000"  # the proxy's public port (in the proxy pod)
    assert app.proxy.should_start is False
    assert app.proxy.api_url == f"http://{FULLNAME}-proxy-api:8001"
    assert app.proxy.auth_token == default_hub.chart.env["CONFIGPROXY_AUTH_TOKEN"]  # from <fullname>-secrets
    assert app.cookie_secret == bytes.fromhex(default_hub.chart.env["JPY_COOKIE_SECRET"])
    assert app.cleanup_servers is False  # user pods outlive a hub restart


@pytest.mark.parametrize("values", [None, GPU_OIDC_VALUES], ids=["default", "gpu-oidc"])
def test_hub_database_is_the_one_the_chart_names(values, tmp_path):
    chart_url = sqlalchemy.make_url(render(values).env["NOTEBENCH_HUB_DB_URL"])
    assert chart_url.drivername == "postgresql+psycopg" and chart_url.database == "hub"
    sqlalchemy.create_engine(chart_url)  # its driver is installed (nothing connects yet)
    # The hub uses whatever URL it is given (here a SQLite file stands in for PostgreSQL).
    url = f"sqlite:///{tmp_path}/stand-in.sqlite"
    assert make_hub(render(values), tmp_path, env={"NOTEBENCH_HUB_DB_URL": url}).app.db_url == url
    assert (tmp_path / "stand-in.sqlite").exists()


def test_services_and_roles_are_local_modes(hub):
    app = hub.app
    services = {s["name"]: s for s in app.services}
    assert set(services) == {"idle-culler", "executor", "mlflow", "audit-reporter"}
    # The executor and MLflow run in their own pods: the hub routes to their Services and knows their tokens.
    assert services["executor"]["url"] == f"http://{FULLNAME}-executor:8090"
    assert services["executor"]["api_token"] == hub.chart.env["NOTEBENCH_EXECUTOR_API_TOKEN"]
    assert services["mlflow"]["url"] == f"http://{FULLNAME}-mlflow:5000"
    assert services["mlflow"]["api_token"] == hub.chart.env["NOTEBENCH_MLFLOW_API_TOKEN"]
    assert "command" not in services["executor"] and "command" not in services["mlflow"]
    roles = {r["name"]: r for r in app.load_roles}
    assert roles["user"]["scopes"] == ["self", "access:services", ENDPOINT_INVOKE_SCOPE + "!user"]
    assert roles["executor"] == {"name": "executor", "scopes": ["tokens", "access:services", "read:users:groups", "list:users",
                                                                "read:servers"], "services": ["executor"]}
    assert ENDPOINT_INVOKE_SCOPE in app.custom_scopes
    # JupyterHub registered them (initialize checked the roles and scopes).
    assert set(app._service_map) == {"idle-culler", "executor", "mlflow", "audit-reporter"}


def test_the_hub_and_mlflow_may_only_append_to_the_audit_log(hub):
    """The hub reports with the audit-reporter service's token (from the chart's Secret) to the
    executor's Service; both reporters' roles hold the append scope and nothing else."""
    from notebench.hub.audit import log_request

    services = {s["name"]: s for s in hub.app.services}
    token = hub.chart.env["NOTEBENCH_AUDIT_REPORTER_API_TOKEN"]
    assert services["audit-reporter"] == {"name": "audit-reporter", "api_token": token}
    roles = {r["name"]: r for r in hub.app.load_roles}
    for name in ("audit-reporter", "mlflow"):
        assert roles[name] == {"name": name, "services": [name],
                               "scopes": [AUDIT_APPEND_SCOPE, "access:services!service=executor"]}
    assert AUDIT_APPEND_SCOPE in hub.app.custom_scopes
    assert hub.app.tornado_settings["notebench_audit"].settings[1:] == (f"http://{FULLNAME}-executor:8090/services/executor/api/audit", token)
    assert hub.app.tornado_settings["log_function"] is log_request


def test_idle_culler_runs_in_the_hub_pod_with_least_privilege(hub):
    cull = hub.values["cull"]
    culler = next(s for s in hub.app.services if s["name"] == "idle-culler")
    assert culler["command"][1:] == [
        "-m",
        "notebench.hub.culling",  # jupyterhub-idle-culler, recording why it stops a server
        f"--timeout={cull['timeout']}",
        f"--cull-every={cull['every']}",
        "--url=http://127.0.0.1:8081/hub/api",
    ]
    assert culler["api_token"] == hub.chart.env["NOTEBENCH_CULLER_API_TOKEN"]
    (role,) = [r for r in hub.app.load_roles if "idle-culler" in r.get("services", [])]
    assert sorted(role["scopes"]) == [
        "custom:notebench-culls:record", "delete:servers", "list:users", "read:servers", "read:users:activity"
    ]


def test_culling_can_be_turned_off(tmp_path):
    hub = make_hub(render({"cull": {"enabled": False}}), tmp_path)
    assert "idle-culler" not in {s["name"] for s in hub.app.services}
    assert not [r for r in hub.app.load_roles if r["name"] == "idle-culler"]
    assert "--MappingKernelManager.cull_idle_timeout=0" in container(hub.pods["cpu"])["args"]


def test_user_pods_get_the_image_pull_secrets(tmp_path):
    hub = make_hub(render({"imagePullSecrets": ["registry-credentials"]}), tmp_path)
    for pod in hub.pods.values():
        assert pod["spec"]["imagePullSecrets"] == [{"name": "registry-credentials"}]


# --- authentication -----------------------------------------------------------------------------


def test_native_auth_with_the_bootstrap_admin(default_hub):
    auth = default_hub.app.authenticator
    assert type(auth).__name__ == "NotebenchNativeAuthenticator"
    assert auth.admin_users == {"admin"} | set(default_hub.values["auth"]["adminUsers"])
    assert auth.admin_password == default_hub.chart.env["NOTEBENCH_ADMIN_PASSWORD"]  # from <fullname>-secrets


def test_native_auth_refuses_to_start_without_the_admin_password(tmp_path):
    # Else whoever signs up first as 'admin' would be hub admin.
    with pytest.raises(ConfigError, match="NOTEBENCH_ADMIN_PASSWORD"):
        make_hub(render(), tmp_path, env={"NOTEBENCH_ADMIN_PASSWORD": None})


def test_oidc_settings_come_from_the_values(gpu_oidc_hub):
    oidc = gpu_oidc_hub.values["auth"]["oidc"]
    auth = gpu_oidc_hub.app.authenticator
    assert type(auth).__name__ == "GenericOAuthenticator"
    assert auth.login_service == oidc["loginService"]
    assert auth.client_id == oidc["clientId"]
    # From the Secret the values name (never from the values file: the chart strips it).
    assert auth.client_secret == "from-notebench-oidc-oidc-client-secret"
    assert "clientSecret" not in oidc
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
    # The name 'admin' is the bootstrap account's: an IdP account of that name is refused (before
    # the login is reported to the audit log).
    assert auth.post_auth_hook.chained is refuse_bootstrap_admin_login


def test_oidc_needs_the_public_url_for_its_callback(tmp_path):
    chart = render(GPU_OIDC_VALUES)
    chart.values["publicUrl"] = ""  # whether or not the chart's schema lets that through
    with pytest.raises(ConfigError, match="publicUrl"):
        make_hub(chart, tmp_path)


def test_missing_env_is_named(tmp_path):
    with pytest.raises(ConfigError, match="NOTEBENCH_PROXY_API_URL"):
        make_hub(render(), tmp_path, env={"NOTEBENCH_PROXY_API_URL": None})


# --- user pods ----------------------------------------------------------------------------------


def test_spawn_requests_are_local_modes(tmp_path):
    """{"profile": NAME} as the API body, JupyterHub 6's {"user_options": {...}} too; an unknown
    profile is a 400 naming the choices."""

    async def profile_env(user_options: dict) -> dict:
        app = JupyterHub()
        app.load_config_file(str(HUB_CONFIG))
        spawner = app.spawner_class(config=app.config, _mock=True)
        assert isinstance(spawner, NotebenchKubeSpawner)
        spawner.user_options = user_options
        await spawner.load_user_options()
        return spawner.get_env()

    with in_hub_pod(render(GPU_OIDC_VALUES), tmp_path):
        assert asyncio.run(profile_env({"profile": "a100"}))["NOTEBENCH_PROFILE"] == "a100"
        assert asyncio.run(profile_env({"user_options": {"profile": "a100x4"}}))["NOTEBENCH_PROFILE"] == "a100x4"
        with pytest.raises(web.HTTPError) as refused:
            asyncio.run(profile_env({"profile": "tpu"}))
    assert refused.value.status_code == 400
    assert "cpu, a100, a100x4" in refused.value.log_message


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
        assert labels["app.kubernetes.io/instance"] == RELEASE
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


def policies_selecting(objects: list, labels: dict) -> list[dict]:
    return [o["spec"] for o in objects if o["kind"] == "NetworkPolicy" and selector_matches(o["spec"]["podSelector"], labels)]


def service_backend(objects: list, url: str) -> tuple[dict, int]:
    """The labels of the pods behind the Service a URL names, and the port they receive it on."""
    parts = urlsplit(url)
    (service,) = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == parts.hostname]
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == (parts.port or 80)]
    (backend,) = [o for o in objects if pod_spec(o) and selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels(o))]
    target = port.get("targetPort", port["port"])
    if isinstance(target, str):  # a named container port
        (target,) = [cp["containerPort"] for c in pod_spec(backend)["containers"] for cp in c.get("ports", []) if cp.get("name") == target]
    return pod_labels(backend), target


def egress_allowed(policies: list[dict], labels: dict, port: int) -> bool:
    for policy in policies:
        for rule in policy.get("egress") or []:
            ports = [p.get("port") for p in rule.get("ports") or []]
            peers = [peer["podSelector"] for peer in rule.get("to") or [] if "podSelector" in peer]
            if (not ports or port in ports) and any(selector_matches(peer, labels) for peer in peers):
                return True
    return False


def test_the_charts_network_policies_fence_user_pods_and_let_them_reach_their_services(hub):
    for profile, pod in hub.pods.items():
        policies = policies_selecting(hub.chart.objects, pod["metadata"]["labels"])
        # Deny by default: one policy for both directions that allows nothing.
        assert {"policyTypes": ["Ingress", "Egress"], "podSelector": {"matchLabels": {"notebench.io/workload": "user"}}} in policies
        # JupyterLab's port is open to someone (the proxy and the hub).
        port = container(pod)["ports"][0]["containerPort"]
        assert any(port in [p.get("port") for rule in pol.get("ingress") or [] for p in rule.get("ports") or []] for pol in policies)
        # What the server is told to talk to, it may reach.
        env = hub.env(profile)
        for url in (env["JUPYTERHUB_API_URL"], env["NOTEBENCH_URL"], env["MLFLOW_TRACKING_URI"]):
            labels, target_port = service_backend(hub.chart.objects, url)
            assert egress_allowed(policies, labels, target_port), f"{profile}: no egress to {url}"


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
    assert hub.app.config.KubeSpawner.delete_pvc is False  # deleting a user in the hub keeps their files


def test_the_executor_makes_the_same_home_pvc_for_a_user_who_never_spawned(hub, tmp_path):
    """A job of a user who never started a server needs their home: the executor, configured from
    the same values, makes the very PVC KubeSpawner would (but for KubeSpawner's own annotations)."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(hub.values))
    config = config_from_values({"NOTEBENCH_VALUES": str(values), "NOTEBENCH_RELEASE": hub.chart.env["NOTEBENCH_RELEASE"],
                                 "POD_NAMESPACE": NAMESPACE, "NOTEBENCH_EXECUTOR_URL": "http://executor:8090"})
    backend = KubernetesBackend(config=config, profiles=Profiles(config=config), token_key="key")
    for profile, user in hub.users.items():
        spec = JobSpec(job_id=1, owner=user, job_dir=str(tmp_path), kernel="python3", profile=profile or "cpu",
                       cwd="/home/jovyan", parameters={}, timeout_seconds=60)
        made = backend.objects(spec)["home"]
        validate(made)
        kubespawners = hub.pvcs[profile]
        versions = ("hub.jupyter.org/kubespawner-version", "hub.jupyter.org/jupyterhub-version")
        annotations = {k: v for k, v in kubespawners["metadata"]["annotations"].items() if k not in versions}
        assert made["metadata"].pop("namespace") == NAMESPACE  # KubeSpawner gives it with the call
        assert made == {**kubespawners, "metadata": {**kubespawners["metadata"], "annotations": annotations}}


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
        assert env["JUPYTERHUB_API_URL"] == f"http://{FULLNAME}-hub:8081/hub/api"
        assert env["JUPYTERHUB_ACTIVITY_INTERVAL"] == "300"
        assert env["NOTEBENCH_URL"] == f"http://{FULLNAME}-proxy-public"
        assert env["MLFLOW_TRACKING_URI"] == f"http://{FULLNAME}-mlflow:5000/services/mlflow"
        assert env["MLFLOW_TRACKING_TOKEN"] == env["JUPYTERHUB_API_TOKEN"] == SERVER_TOKEN
        assert container(hub.pods[profile])["ports"] == [{"name": "notebook-port", "containerPort": 8888}]


def test_profile_requests_cannot_exceed_limits():
    with pytest.raises(ValueError, match="cannot exceed"):
        Profiles(profiles=[{"name": "x", "cpu_request": 4, "cpu_limit": 2}]).all()
    with pytest.raises(ValueError, match="mem_request"):
        Profiles(profiles=[{"name": "x", "mem_request": "lots"}]).all()
    (profile,) = Profiles(profiles=[{"name": "x", "mem_request": "1G", "mem_limit": "2G"}]).all()
    assert (profile.mem_request, profile.mem_limit) == (parse_bytes("1G"), parse_bytes("2G"))


def test_the_service_monitors_token_reads_metrics_and_nothing_else(tmp_path):
    chart = render({"metrics": {"serviceMonitor": {"enabled": True}}})
    app = make_hub(chart, tmp_path).app
    scraper = next(s for s in app.services if s["name"] == "metrics-scraper")
    assert scraper["api_token"] == chart.env["NOTEBENCH_METRICS_API_TOKEN"] and "url" not in scraper
    (role,) = [r for r in app.load_roles if "metrics-scraper" in r.get("services", [])]
    assert sorted(role["scopes"]) == ["access:services!service=executor", "read:metrics"]
    assert "metrics-scraper" in app._service_map
