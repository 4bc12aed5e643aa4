"""The Helm chart (helm/notebench), rendered offline with Helm's own Go SDK (helm-python-sdk).

No cluster: every rendered object is validated against the Kubernetes 1.37 schema (strict), and
the trust boundary, the contract with the hub and executor (docs/kubernetes.md), the values
schema, `helm lint` and NOTES.txt are checked on what Helm renders. In this render `lookup`
finds nothing, so the Secret shows its first-install ("generate once") path.
"""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path
from types import SimpleNamespace

import helm_python as helm
import pytest
import yaml

from notebench.executor.backends.kubernetes.objects import EXECUTOR_RULES
from notebench.hub.platform.profiles import Profile
from tests.support.kube import chart_objects, pod_labels, pod_spec, selector_matches, validate_all

CHART = Path(__file__).resolve().parents[2] / "helm" / "notebench"
GPU_OIDC_VALUES = yaml.safe_load((CHART / "ci" / "gpu-oidc-values.yaml").read_text())
RELEASE, NAMESPACE, FULLNAME = "nb", "notebench", "nb-notebench"
METADATA_IP = ipaddress.ip_address("169.254.169.254")
PLATFORM = ("hub", "proxy", "executor", "mlflow", "postgresql")
USER_COMPONENTS = ("singleuser", "job", "dask-scheduler", "dask-worker", "model-server")


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart, values=None) -> dict[str, str]:
    return chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)


@pytest.fixture(scope="module", params=["default", "gpu-oidc"])
def rendered(request, chart) -> list[dict]:
    """The objects of the chart with default values, and with ci/gpu-oidc-values.yaml."""
    return chart_objects(render(chart, GPU_OIDC_VALUES if request.param == "gpu-oidc" else None))


@pytest.fixture(scope="module")
def default_objects(chart):
    return chart_objects(render(chart))


@pytest.fixture(scope="module")
def gpu_oidc_objects(chart):
    return chart_objects(render(chart, GPU_OIDC_VALUES))


def one(objects, kind, name):
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads(objects):
    return [o for o in objects if pod_spec(o) is not None]


def component_of(obj) -> str:
    return pod_labels(obj)["app.kubernetes.io/component"]


def container(obj, name=None) -> dict:
    containers = pod_spec(obj)["containers"]
    return containers[0] if name is None else next(c for c in containers if c["name"] == name)


def env_of(obj) -> dict[str, dict]:
    return {e["name"]: e for e in container(obj).get("env", [])}


def user_pod_labels(component: str) -> dict:
    """The labels the hub and executor put on a user workload pod (docs/kubernetes.md)."""
    return {"app.kubernetes.io/name": "notebench", "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": component, "notebench.io/workload": "user", "notebench.io/owner": "ada"}


def policies_selecting(objects, labels) -> list[dict]:
    return [o for o in objects if o["kind"] == "NetworkPolicy" and selector_matches(o["spec"]["podSelector"], labels)]


def peer_component(peer: dict) -> str | None:
    """The component a NetworkPolicy peer selects, if it is one pod selector of this release."""
    labels = (peer.get("podSelector") or {}).get("matchLabels") or {}
    if set(peer) == {"podSelector"} and labels.get("app.kubernetes.io/instance") == RELEASE:
        return labels.get("app.kubernetes.io/component")
    return None


def ip_blocks(objects):
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        rules = [*policy["spec"].get("ingress", []), *policy["spec"].get("egress", [])]
        for rule in rules:
            for peer in [*rule.get("from", []), *rule.get("to", [])]:
                if "ipBlock" in peer:
                    yield policy["metadata"]["name"], peer["ipBlock"]


# --- Kubernetes validity and lint ---------------------------------------------------------------


def test_every_rendered_object_is_a_valid_kubernetes_1_37_object(rendered):
    validate_all(rendered)
    kinds = {o["kind"] for o in rendered}
    assert {"Deployment", "Service", "NetworkPolicy", "Role", "RoleBinding", "ServiceAccount", "Secret", "ConfigMap"} <= kinds


@pytest.mark.parametrize("values", [None, GPU_OIDC_VALUES], ids=["default", "gpu-oidc"])
def test_helm_lint_is_clean(values):
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


# --- the trust boundary --------------------------------------------------------------------------


def test_every_pod_the_chart_makes_is_restricted(rendered):
    for obj in workloads(rendered):
        name, spec = f"{obj['kind']}/{obj['metadata']['name']}", pod_spec(obj)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        assert not any("hostPath" in v for v in spec.get("volumes", [])), name
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            context = c["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, f"{name} {c['name']}"
            assert context["capabilities"] == {"drop": ["ALL"]}, f"{name} {c['name']}"
            assert context.get("privileged") is not True and context.get("runAsUser", 1) != 0, f"{name} {c['name']}"


def test_only_the_hub_and_the_executor_get_a_kubernetes_api_token(rendered):
    with_token = {component_of(o) for o in workloads(rendered) if pod_spec(o).get("automountServiceAccountToken") is not False}
    assert with_token == {"hub", "executor"}
    for component in ("hub", "executor"):
        deployment = one(rendered, "Deployment", f"{FULLNAME}-{component}")
        assert pod_spec(deployment)["serviceAccountName"] == f"{FULLNAME}-{component}"


def test_user_workloads_are_denied_everything_by_default(rendered):
    deny = one(rendered, "NetworkPolicy", f"{FULLNAME}-user-deny-all")
    assert deny["spec"]["podSelector"] == {"matchLabels": {"notebench.io/workload": "user"}}
    assert sorted(deny["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert not deny["spec"].get("ingress") and not deny["spec"].get("egress")
    for component in USER_COMPONENTS:
        assert deny in policies_selecting(rendered, user_pod_labels(component)), component


def test_user_workloads_are_reached_only_by_the_proxy_hub_and_executor(rendered):
    reached_by = {}
    for component in USER_COMPONENTS:
        for policy in policies_selecting(rendered, user_pod_labels(component)):
            for rule in policy["spec"].get("ingress", []):
                assert rule.get("from"), f"{policy['metadata']['name']} lets anyone in"
                reached_by.setdefault(component, set()).update(peer_component(p) for p in rule["from"])
    assert reached_by == {"singleuser": {"hub", "proxy"}, "model-server": {"executor"}}


def test_user_workloads_reach_only_dns_the_platform_and_listed_cidrs(gpu_oidc_objects):
    listed = {entry["cidr"] for entry in GPU_OIDC_VALUES["networkPolicy"]["allowedEgress"]}
    for component in USER_COMPONENTS:
        components, cidrs = set(), set()
        for policy in policies_selecting(gpu_oidc_objects, user_pod_labels(component)):
            for rule in policy["spec"].get("egress", []):
                assert rule.get("to") and rule.get("ports"), f"{policy['metadata']['name']}: egress anywhere"
                dns = {p["port"] for p in rule["ports"]} == {53}
                for peer in rule["to"]:
                    if dns:
                        continue
                    if "ipBlock" in peer:
                        cidrs.add(peer["ipBlock"]["cidr"])
                    else:
                        components.add(peer_component(peer))
        assert components == {"hub", "proxy", "executor", "mlflow"}, component
        assert cidrs == listed, component


def test_the_cloud_metadata_address_is_excepted_from_every_ip_block(rendered):
    containing = 0
    for policy, block in ip_blocks(rendered):
        if METADATA_IP in ipaddress.ip_network(block["cidr"]):
            containing += 1
            excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
            assert any(METADATA_IP in e for e in excepted), f"{policy}: {block['cidr']} reaches {METADATA_IP}"
    assert containing, "no ipBlock contains the metadata address: nothing was checked"


def test_an_admin_listed_cidr_keeps_the_metadata_address_out(chart):
    values = {"networkPolicy": {"allowedEgress": [{"cidr": "169.254.0.0/16", "ports": [80]},
                                                  {"cidr": "10.1.0.0/16", "ports": [5432]}]}}
    egress = one(chart_objects(render(chart, values)), "NetworkPolicy", f"{FULLNAME}-user-egress")
    blocks = {p["ipBlock"]["cidr"]: p["ipBlock"] for r in egress["spec"]["egress"] for p in r["to"] if "ipBlock" in p}
    assert blocks["169.254.0.0/16"]["except"] == ["169.254.169.254/32"]
    assert "except" not in blocks["10.1.0.0/16"]  # an except outside the CIDR would be refused by the API server
    with pytest.raises(helm.HelmRenderError, match="cloud metadata address"):
        render(chart, {"networkPolicy": {"allowedEgress": [{"cidr": "169.254.169.254/32", "ports": [80]}]}})


def test_the_executor_reaches_the_listed_webhook_addresses_only(default_objects, gpu_oidc_objects):
    def blocks(objects):
        policy = one(objects, "NetworkPolicy", f"{FULLNAME}-executor")
        return [(p["ipBlock"]["cidr"], r["ports"]) for r in policy["spec"]["egress"] for p in r["to"]
                if "ipBlock" in p and p["ipBlock"]["cidr"] != "0.0.0.0/0" and {x["port"] for x in r["ports"]} != {53}]

    # HTTPS (443) anywhere but the metadata address is open already (the Kubernetes API, OIDC), and
    # so is an external database: webhookEgress opens other addresses and ports.
    assert blocks(default_objects) == []
    assert blocks(gpu_oidc_objects) == [("10.30.0.0/16", [{"protocol": "TCP", "port": 8080}])]


def test_every_platform_pod_has_a_policy_with_both_directions(rendered):
    for obj in workloads(rendered):
        selected = policies_selecting(rendered, pod_labels(obj))
        assert any(sorted(p["spec"]["policyTypes"]) == ["Egress", "Ingress"] for p in selected), obj["metadata"]["name"]


def test_postgresql_answers_only_the_platform_and_reaches_nothing(default_objects):
    policy = one(default_objects, "NetworkPolicy", f"{FULLNAME}-postgresql")
    (rule,) = policy["spec"]["ingress"]
    assert {peer_component(p) for p in rule["from"]} == {"hub", "executor", "mlflow"}
    assert "Egress" in policy["spec"]["policyTypes"] and not policy["spec"].get("egress")



def test_mlflow_reaches_the_executor_for_the_audit_log(default_objects):
    """MLflow reports registrations and alias moves to POST /services/executor/api/audit."""
    mlflow = one(default_objects, "NetworkPolicy", f"{FULLNAME}-mlflow")
    assert any({peer_component(p) for p in rule.get("to", [])} == {"executor"}
               and rule["ports"] == [{"protocol": "TCP", "port": 8090}] for rule in mlflow["spec"]["egress"])
    executor = one(default_objects, "NetworkPolicy", f"{FULLNAME}-executor")
    (rule,) = executor["spec"]["ingress"]
    assert "mlflow" in {peer_component(p) for p in rule["from"]}

# --- RBAC ----------------------------------------------------------------------------------------


def normalized(rules):
    return sorted((tuple(r["apiGroups"]), tuple(r["resources"]), tuple(sorted(r["verbs"]))) for r in rules)


def test_the_executor_role_is_exactly_what_its_backends_call(rendered):
    role = one(rendered, "Role", f"{FULLNAME}-executor")
    assert normalized(role["rules"]) == normalized(EXECUTOR_RULES)
    binding = one(rendered, "RoleBinding", f"{FULLNAME}-executor")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{FULLNAME}-executor", "namespace": NAMESPACE}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_the_executor_pod_configures_the_kubernetes_backends_the_chart_means(gpu_oidc_objects, tmp_path):
    """The executor reads the rendered values file and its pod's env (config_from_values): the
    images, profiles and Services it ends up with are the ones this release's values name."""
    from notebench.executor.app import Executor
    from notebench.executor.backends.kubernetes.jobs import config_from_values

    values_file = tmp_path / "values.yaml"
    values_file.write_text(one(gpu_oidc_objects, "ConfigMap", f"{FULLNAME}-values")["data"]["values.yaml"])
    deployment = one(gpu_oidc_objects, "Deployment", f"{FULLNAME}-executor")
    env = {name: e["value"] for name, e in env_of(deployment).items() if "value" in e}
    env.update(NOTEBENCH_VALUES=str(values_file), POD_NAME=f"{FULLNAME}-executor-7d9f-x2", POD_NAMESPACE=NAMESPACE)
    executor = Executor(config=config_from_values(env))
    user_image = GPU_OIDC_VALUES["singleuser"]["image"]
    assert executor.executor_id == f"{FULLNAME}-executor-7d9f-x2"
    assert executor.mlflow_url == f"http://{FULLNAME}-mlflow:5000/services/mlflow"
    config = executor.config
    assert config.KubernetesBackend.image == f"{user_image['repository']}:{user_image['tag']}"
    # Quotas and the usage meter, as the values set them.
    from notebench.executor.quotas import Quotas
    from notebench.executor.usage import Usage

    assert Quotas(None, None, config=config).defaults == GPU_OIDC_VALUES["executor"]["quotaDefaults"]
    usage = Usage(SimpleNamespace(sessions=None), config=config)
    assert (usage.interval_seconds, usage.prices, usage.currency) == (30, {"a100": 3.2, "a100x4": 12.8}, "EUR")
    # Monitoring, and the sample and predictions it reads.
    assert (config.Monitoring.windows, config.Monitoring.psi_threshold) == ({"15m": 900, "1d": 86400}, 0.25)
    assert (config.Endpoints.samples_per_second, config.Endpoints.max_samples,
            config.Endpoints.prediction_retention_days) == (50, 20000, 7)
    # Alerts: how often, which webhook hosts, how many attempts.
    assert (config.Alerts.check_seconds, config.Alerts.allowed_webhook_hosts, config.Alerts.max_attempts) == (
        15, ["hooks.example.org"], 5)
    assert config.KubernetesBackend.executor_url == f"http://{FULLNAME}-executor:8090"
    assert [p["name"] for p in config.Profiles.profiles] == [p["name"] for p in GPU_OIDC_VALUES["singleuser"]["profiles"]]
    assert config.KubernetesSettings.release == RELEASE and config.KubernetesSettings.namespace == NAMESPACE


def test_the_hub_role_is_kubespawners_and_nothing_more(rendered):
    role = one(rendered, "Role", f"{FULLNAME}-hub")
    by_resource = {r["resources"][0]: set(r["verbs"]) for r in role["rules"]}
    assert by_resource == {"pods": {"get", "list", "watch", "create", "delete"},
                           "persistentvolumeclaims": {"get", "create", "delete"},
                           "events": {"get", "list", "watch"}}
    for obj in rendered:
        assert obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"), "the chart asks for no cluster-wide rights"
        for rule in obj.get("rules", []):
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], obj["metadata"]["name"]


# --- the contract with the hub and the executor (docs/kubernetes.md) -----------------------------


def test_services_have_the_contracts_names_and_ports(default_objects):
    expected = {"proxy-public": (80, "proxy"), "proxy-api": (8001, "proxy"), "hub": (8081, "hub"),
                "executor": (8090, "executor"), "mlflow": (5000, "mlflow"), "postgresql": (5432, "postgresql")}
    for suffix, (port, component) in expected.items():
        service = one(default_objects, "Service", f"{FULLNAME}-{suffix}")
        (service_port,) = service["spec"]["ports"]
        assert service_port["port"] == port, suffix
        (pods,) = [o for o in workloads(default_objects) if selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels(o))]
        assert component_of(pods) == component
        named = {p["name"]: p["containerPort"] for p in container(pods).get("ports", [])}
        assert service_port["targetPort"] in named, f"{suffix}: no container port {service_port['targetPort']}"


@pytest.mark.parametrize("component", ["hub", "executor", "mlflow"])
def test_notebench_pods_read_the_values_file_and_the_contracts_env(rendered, component):
    deployment = one(rendered, "Deployment", f"{FULLNAME}-{component}")
    env = env_of(deployment)
    assert env["NOTEBENCH_MODE"]["value"] == "kubernetes"
    assert env["NOTEBENCH_VALUES"]["value"] == "/etc/notebench/values.yaml"
    assert env["NOTEBENCH_HUB_URL"]["value"] == f"http://{FULLNAME}-hub:8081"
    assert env["NOTEBENCH_EXECUTOR_URL"]["value"] == f"http://{FULLNAME}-executor:8090"
    assert env["NOTEBENCH_MLFLOW_URL"]["value"] == f"http://{FULLNAME}-mlflow:5000"
    assert env["NOTEBENCH_PROXY_PUBLIC_URL"]["value"] == f"http://{FULLNAME}-proxy-public"
    assert env["NOTEBENCH_RELEASE"]["value"] == RELEASE  # the app.kubernetes.io/instance of user pods
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    (mount,) = [m for m in container(deployment)["volumeMounts"] if m["name"] == "values"]
    assert mount["mountPath"] == "/etc/notebench" and mount["readOnly"] is True
    (volume,) = [v for v in pod_spec(deployment)["volumes"] if v["name"] == "values"]
    one(rendered, "ConfigMap", volume["configMap"]["name"])


def secret_key(env, name):
    ref = env[name]["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def test_secrets_reach_each_pod_under_the_contracts_names(rendered):
    secrets = f"{FULLNAME}-secrets"
    hub = env_of(one(rendered, "Deployment", f"{FULLNAME}-hub"))
    for name, key in {"CONFIGPROXY_AUTH_TOKEN": "proxy-token", "JUPYTERHUB_CRYPT_KEY": "hub-crypt-key",
                      "NOTEBENCH_EXECUTOR_API_TOKEN": "executor-api-token", "NOTEBENCH_MLFLOW_API_TOKEN": "mlflow-api-token",
                      "NOTEBENCH_CULLER_API_TOKEN": "culler-api-token",
                      "NOTEBENCH_AUDIT_REPORTER_API_TOKEN": "audit-reporter-api-token"}.items():
        assert secret_key(hub, name) == (secrets, key)
    assert secret_key(env_of(one(rendered, "Deployment", f"{FULLNAME}-proxy")), "CONFIGPROXY_AUTH_TOKEN") == (secrets, "proxy-token")
    for component in ("executor", "mlflow"):
        env = env_of(one(rendered, "Deployment", f"{FULLNAME}-{component}"))
        assert secret_key(env, "JUPYTERHUB_API_TOKEN") == (secrets, f"{component}-api-token")
        assert env["JUPYTERHUB_SERVICE_PREFIX"]["value"] == f"/services/{component}/"
    # every key a pod reads from the chart's Secret is in it
    data = one(rendered, "Secret", secrets)["data"]
    for obj in workloads(rendered):
        for e in container(obj).get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["name"] == secrets:
                assert ref["key"] in data, f"{obj['metadata']['name']} reads {ref['key']}, not in the Secret"


@pytest.mark.parametrize("component,database", [("hub", "hub"), ("executor", "executor"), ("mlflow", "mlflow")])
def test_database_urls_are_built_from_the_postgresql_password(default_objects, gpu_oidc_objects, component, database):
    name = f"NOTEBENCH_{component.upper()}_DB_URL"
    for objects, host, secret in [(default_objects, f"{FULLNAME}-postgresql:5432", f"{FULLNAME}-secrets"),
                                  (gpu_oidc_objects, "pg.example.org:5432", "notebench-db")]:
        env = env_of(one(objects, "Deployment", f"{FULLNAME}-{component}"))
        assert env[name]["value"] == f"postgresql+psycopg://notebench:$(NOTEBENCH_POSTGRESQL_PASSWORD)@{host}/{database}"
        # Kubernetes expands $(VAR) only from env defined before it
        assert list(env).index("NOTEBENCH_POSTGRESQL_PASSWORD") < list(env).index(name)
        assert secret_key(env, "NOTEBENCH_POSTGRESQL_PASSWORD") == (secret, "postgresql-password")


def test_postgresql_makes_the_three_databases(default_objects, gpu_oidc_objects):
    statefulset = one(default_objects, "StatefulSet", f"{FULLNAME}-postgresql")
    assert env_of(statefulset)["POSTGRES_DB"]["value"] == "hub"
    init = one(default_objects, "ConfigMap", f"{FULLNAME}-postgresql-init")["data"]["databases.sql"]
    assert "CREATE DATABASE executor;" in init and "CREATE DATABASE mlflow;" in init
    assert not [o for o in gpu_oidc_objects if o["kind"] == "StatefulSet"], "an external database needs no PostgreSQL"


def test_secrets_are_random_at_install_and_given_ones_are_used(chart):
    """The first-install path (offline, `lookup` finds no Secret); upgrades keep the values `lookup` finds."""
    first = one(chart_objects(render(chart)), "Secret", f"{FULLNAME}-secrets")
    second = one(chart_objects(render(chart)), "Secret", f"{FULLNAME}-secrets")
    assert first["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    keys = {"admin-password", "proxy-token", "hub-crypt-key", "hub-cookie-secret", "executor-api-token",
            "mlflow-api-token", "culler-api-token", "audit-reporter-api-token", "metrics-api-token", "postgresql-password"}
    assert set(first["data"]) == keys
    for key in keys:
        value = base64.b64decode(first["data"][key]).decode()
        assert len(value) == 64 and int(value, 16) >= 0, key  # 32 random bytes, hex (JupyterHub's crypt key needs it)
        assert first["data"][key] != second["data"][key], f"{key} is not random"
    given = one(chart_objects(render(chart, {"postgresql": {"auth": {"password": "s3cret-pw"}}})), "Secret", f"{FULLNAME}-secrets")
    assert base64.b64decode(given["data"]["postgresql-password"]) == b"s3cret-pw"


def test_an_external_database_password_is_kept_apart_from_the_in_chart_one(chart):
    """The in-chart PostgreSQL's password is not overwritten by an external one (a switch back must
    find it; kept by `lookup`, tests/kubernetes_live/test_chart_live.py), and the pods read the external one."""
    values = {"postgresql": {"enabled": False}, "externalDatabase": {"host": "db.example.org", "password": "ext-pw"}}
    objects = chart_objects(render(chart, values))
    data = one(objects, "Secret", f"{FULLNAME}-secrets")["data"]
    assert base64.b64decode(data["external-database-password"]) == b"ext-pw"
    assert "postgresql-password" not in data  # lookup finds no earlier one offline
    for component in ("hub", "executor", "mlflow"):
        env = env_of(one(objects, "Deployment", f"{FULLNAME}-{component}"))
        assert secret_key(env, "NOTEBENCH_POSTGRESQL_PASSWORD") == (f"{FULLNAME}-secrets", "external-database-password")
    with pytest.raises(Exception, match="externalDatabase.password or externalDatabase.existingSecret is required"):
        render(chart, {"postgresql": {"enabled": False}, "externalDatabase": {"host": "db.example.org"}})


def test_secrets_never_reach_the_values_file(chart):
    values = {**GPU_OIDC_VALUES, "auth": {**GPU_OIDC_VALUES["auth"],
                                           "oidc": {**GPU_OIDC_VALUES["auth"]["oidc"], "existingSecret": "",
                                                    "clientSecret": "oidc-secret-value"}},
              "postgresql": {"enabled": True, "auth": {"password": "db-secret-value"}}}
    objects = chart_objects(render(chart, values))
    text = one(objects, "ConfigMap", f"{FULLNAME}-values")["data"]["values.yaml"]
    assert "oidc-secret-value" not in text and "db-secret-value" not in text
    assert yaml.safe_load(text)["auth"]["oidc"]["clientId"] == "notebench"
    data = one(objects, "Secret", f"{FULLNAME}-secrets")["data"]
    assert base64.b64decode(data["oidc-client-secret"]) == b"oidc-secret-value"
    hub = env_of(one(objects, "Deployment", f"{FULLNAME}-hub"))
    assert secret_key(hub, "NOTEBENCH_OIDC_CLIENT_SECRET") == (f"{FULLNAME}-secrets", "oidc-client-secret")


def test_an_existing_oidc_secret_is_read_in_place(gpu_oidc_objects):
    hub = env_of(one(gpu_oidc_objects, "Deployment", f"{FULLNAME}-hub"))
    assert secret_key(hub, "NOTEBENCH_OIDC_CLIENT_SECRET") == ("notebench-oidc", "oidc-client-secret")
    assert "oidc-client-secret" not in one(gpu_oidc_objects, "Secret", f"{FULLNAME}-secrets")["data"]


# --- profiles and GPUs ---------------------------------------------------------------------------


def hub_values(objects) -> dict:
    return yaml.safe_load(one(objects, "ConfigMap", f"{FULLNAME}-values")["data"]["values.yaml"])


def test_gpu_settings_reach_the_hub_only_for_gpu_profiles(gpu_oidc_objects):
    profiles = {p["slug"]: p["kubespawner_override"]
                for p in (Profile.from_dict(spec).to_kubespawner() for spec in hub_values(gpu_oidc_objects)["singleuser"]["profiles"])}
    assert set(profiles) == {"cpu", "a100", "a100x4"}
    assert "extra_resource_limits" not in profiles["cpu"]
    assert "tolerations" not in profiles["cpu"] and "node_selector" not in profiles["cpu"]
    assert profiles["a100"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert profiles["a100x4"]["extra_resource_limits"] == {"nvidia.com/gpu": "4"}
    for gpu in ("a100", "a100x4"):
        assert profiles[gpu]["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
        assert profiles[gpu]["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert profiles[gpu]["image"] == "registry.example.org/notebench/user-cuda:2026.11"
    assert profiles["cpu"]["cpu_guarantee"] == 1 and profiles["cpu"]["mem_limit"] == 4 * 1024**3


def test_the_default_profiles_are_valid_for_the_hub(default_objects):
    values = hub_values(default_objects)
    profiles = [Profile.from_dict(spec) for spec in values["singleuser"]["profiles"]]
    assert [(p.name, p.gpus) for p in profiles] == [("cpu", 0), ("gpu", 1)]
    # image tags are resolved to the chart's appVersion, so user pods run the release's images
    assert values["singleuser"]["image"]["tag"] == values["executor"]["modelServer"]["image"]["tag"] == "0.1.0"


def test_user_storage_and_culling_reach_the_hub(gpu_oidc_objects):
    values = hub_values(gpu_oidc_objects)
    assert values["singleuser"]["storage"] == {"storageClass": "fast-rwx", "size": "50Gi"}
    assert values["cull"] == {"enabled": True, "timeout": 3600, "every": 300, "kernelTimeout": 3600}


# --- exposure -------------------------------------------------------------------------------------


def test_the_ingress_serves_the_proxy_over_tls(default_objects, gpu_oidc_objects):
    assert not [o for o in default_objects if o["kind"] == "Ingress"]
    ingress = one(gpu_oidc_objects, "Ingress", FULLNAME)
    assert ingress["spec"]["tls"] == [{"hosts": ["notebench.example.org"], "secretName": f"{FULLNAME}-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "notebench.example.org"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == f"{FULLNAME}-proxy-public"
    proxy = one(gpu_oidc_objects, "NetworkPolicy", f"{FULLNAME}-proxy")
    assert {"ports": [{"protocol": "TCP", "port": 8000}]} in proxy["spec"]["ingress"]  # the Ingress controller gets in


def test_mlflow_artifacts_go_to_s3_when_asked(default_objects, gpu_oidc_objects):
    assert "NOTEBENCH_MLFLOW_ARTIFACTS_URI" not in env_of(one(default_objects, "Deployment", f"{FULLNAME}-mlflow"))
    env = env_of(one(gpu_oidc_objects, "Deployment", f"{FULLNAME}-mlflow"))
    assert env["NOTEBENCH_MLFLOW_ARTIFACTS_URI"]["value"] == "s3://notebench-artifacts/mlflow"
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "https://minio.example.org:9000"
    assert secret_key(env, "AWS_SECRET_ACCESS_KEY") == ("notebench-s3", "AWS_SECRET_ACCESS_KEY")
    policy = one(gpu_oidc_objects, "NetworkPolicy", f"{FULLNAME}-mlflow")
    storage = [r for r in policy["spec"]["egress"] if r["ports"] == [{"protocol": "TCP", "port": 9000}]]
    assert storage and storage[0]["to"][0]["ipBlock"]["except"] == ["169.254.169.254/32"]


# --- values schema and NOTES ---------------------------------------------------------------------


@pytest.mark.parametrize("values,message", [
    ({"cull": {"timeout": "an hour"}}, "at '/cull/timeout': got string, want integer"),
    ({"singleuser": {"profiles": [{"name": "gpu", "gpus": -1}]}}, "at '/singleuser/profiles/0/gpus': minimum: got -1, want 0"),
    ({"networkPolicy": {"allowedEgress": [{"cidr": "10.0.0.0/33", "ports": [5432]}]}},
     "at '/networkPolicy/allowedEgress/0/cidr': '10.0.0.0/33' does not match pattern"),
    ({"networkPolicy": {"allowedEgress": [{"cidr": "10.0.0.0", "ports": [5432]}]}},
     "at '/networkPolicy/allowedEgress/0/cidr': '10.0.0.0' does not match pattern"),
    ({"hub": {"replicas": 2}}, "at '/hub': additional properties 'replicas' not allowed"),
    ({"auth": {"type": "ldap"}}, "at '/auth/type': value must be one of 'native', 'oidc'"),
    ({"auth": {"type": "oidc"}}, "at '/auth/oidc/clientId': minLength: got 0, want 1"),
    ({"singleuser": {"profiles": [{"name": "big", "mem_limit": "lots"}]}}, "at '/singleuser/profiles/0/mem_limit'"),
    ({"singleuser": {"profiles": [{"name": "x", "gpu": 1}]}}, "at '/singleuser/profiles/0': additional properties 'gpu' not allowed"),
    ({"postgresql": {"enabled": False}}, "at '/externalDatabase/host': minLength: got 0, want 1"),
], ids=["wrong-type", "negative-gpus", "bad-cidr", "cidr-without-prefix", "unknown-key", "bad-auth-type",
        "oidc-without-client", "bad-size", "unknown-profile-field", "no-database"])
def test_bad_values_are_refused_by_helm_with_a_clear_message(chart, values, message):
    with pytest.raises(helm.HelmValuesError) as refused:
        render(chart, values)  # as `helm install` does: Helm checks values.schema.json first
    assert message in str(refused.value)


def test_notes_tell_how_to_log_in(chart):
    notes = render(chart)["notebench/templates/NOTES.txt"]
    assert f"kubectl --namespace {NAMESPACE} port-forward service/{FULLNAME}-proxy-public 8000:80" in notes
    assert f"get secret {FULLNAME}-secrets -o jsonpath='{{.data.admin-password}}' | base64 -d" in notes
    assert 'As "admin"' in notes and "/hub/signup" in notes
    oidc_notes = render(chart, GPU_OIDC_VALUES)["notebench/templates/NOTES.txt"]
    assert "https://notebench.example.org/" in oidc_notes
    assert "Sign in with Example IdP" in oidc_notes and "Members of data-science may log in" in oidc_notes
    assert "a100 (1 GPU)" in oidc_notes


def test_a_service_monitor_scrapes_both_metrics_through_the_proxy_with_a_read_metrics_token(chart, default_objects):
    """Off by default; when asked, prometheus-operator's ServiceMonitor (not in the Kubernetes schema:
    its fields are checked here against what the operator documents) selects the proxy's public
    Service by its port name and reads the token the hub's metrics-scraper service has."""
    assert not [o for o in default_objects if o["kind"] == "ServiceMonitor"]
    assert "NOTEBENCH_METRICS_API_TOKEN" not in env_of(one(default_objects, "Deployment", f"{FULLNAME}-hub"))
    objects = chart_objects(render(chart, {"metrics": {"serviceMonitor": {"enabled": True, "interval": "15s",
                                                                          "labels": {"release": "prom"}}}}))
    validate_all([o for o in objects if o["kind"] != "ServiceMonitor"])
    monitor = one(objects, "ServiceMonitor", FULLNAME)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["metadata"]["labels"]["release"] == "prom"
    services = [o for o in objects if o["kind"] == "Service" and selector_matches(monitor["spec"]["selector"],
                                                                                  o["metadata"]["labels"])]
    endpoints = monitor["spec"]["endpoints"]
    assert [e["path"] for e in endpoints] == ["/hub/metrics", "/services/executor/metrics"]
    scraped = [s["metadata"]["name"] for s in services if any(p.get("name") == "http" for p in s["spec"]["ports"])]
    assert scraped == [f"{FULLNAME}-proxy-public"] and {e["port"] for e in endpoints} == {"http"}
    data = one(objects, "Secret", f"{FULLNAME}-secrets")["data"]
    for e in endpoints:
        assert e["interval"] == "15s" and e["authorization"]["type"] == "Bearer"
        assert e["authorization"]["credentials"]["name"] == f"{FULLNAME}-secrets"
        assert e["authorization"]["credentials"]["key"] in data
    hub = env_of(one(objects, "Deployment", f"{FULLNAME}-hub"))
    assert secret_key(hub, "NOTEBENCH_METRICS_API_TOKEN") == (f"{FULLNAME}-secrets", "metrics-api-token")
