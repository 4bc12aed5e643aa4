"""helm/notebench installed, upgraded and uninstalled for real (helm-python-sdk) on the live cluster,
in a namespace enforcing Pod Security ``restricted``.

The platform's pods are pinned to no node (chart.py: their images are not here), so they are
admitted and then stay Pending: what is proven is what the API server, admission and the
controllers do with the chart, not the pods' programs.
"""

from __future__ import annotations

import base64

import pytest
from helm_python.errors import HelmError
from kubernetes import client, dynamic
from kubernetes.client.rest import ApiException

from tests.kubernetes_live.chart import FULLNAME, PLATFORM, Release, live_values
from tests.kubernetes_live.cluster import wait_until
from tests.support.kube import yaml_objects

pytestmark = pytest.mark.kubernetes_live

SECRET = f"{FULLNAME}-secrets"
# The claims the chart makes (StatefulSet's included) and their sizes at the default values.
CLAIMS = {f"{FULLNAME}-executor": "20Gi", f"{FULLNAME}-mlflow": "10Gi", f"data-{FULLNAME}-postgresql-0": "10Gi"}


@pytest.fixture
def release(kube_cluster, kube_namespace, live_chart):
    r = Release(kube_cluster.kubeconfig, live_chart, kube_namespace)
    yield r
    r.close()


def secret_data(cluster, namespace: str) -> dict[str, str]:
    return cluster.core.read_namespaced_secret(SECRET, namespace).data


def claims_bound(cluster, namespace: str) -> dict[str, str]:
    found = cluster.core.list_namespaced_persistent_volume_claim(namespace).items
    return {c.metadata.name: c.metadata.uid for c in found if c.status.phase == "Bound"}


def on(storage) -> dict:
    """Values putting every claim of the chart on the test's StaticStorage."""
    return {part: {"persistence": {"storageClass": storage.class_name}} for part in ("executor", "mlflow", "postgresql")}


def pods_of(cluster, namespace: str) -> dict[str, client.V1Pod]:
    return {p.metadata.labels["app.kubernetes.io/component"]: p
            for p in cluster.core.list_namespaced_pod(namespace).items if not p.metadata.deletion_timestamp}


def strict_dry_run(cluster, namespace: str, objects: list[dict]) -> None:
    """Server-side apply, dry run, with strict field validation: unknown or duplicate fields are errors."""
    api = dynamic.DynamicClient(cluster.api)
    for obj in objects:
        resource = api.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        api.server_side_apply(resource, body=obj, namespace=namespace if resource.namespaced else None,
                              field_manager="notebench-strict-check", dry_run="All", force_conflicts=True,
                              query_params=[("fieldValidation", "Strict")])


def test_install_upgrade_uninstall_in_a_restricted_namespace(kube_cluster, kube_namespace, release, static_storage):
    cluster, ns = kube_cluster, kube_namespace
    static_storage.add(CLAIMS)
    installed = release.install(live_values(on(static_storage)))
    objects = yaml_objects(installed["manifest"])
    assert len(objects) > 20

    # Every object was accepted, and is accepted again under strict field validation...
    strict_dry_run(cluster, ns, objects)
    # ...which is on: an unknown field is refused (this 1.24 alpha answers 500, newer servers 422).
    config_map = next(o for o in objects if o["kind"] == "ConfigMap")
    with pytest.raises(ApiException) as refused:
        strict_dry_run(cluster, ns, [{**config_map, "notAField": 1}])
    assert refused.value.status in (422, 500) and "notAField" in refused.value.body

    # Pod Security `restricted` admitted every platform pod (a refusal would leave none), and
    # every claim was bound to its volume.
    def every_platform_pod():
        pods = pods_of(cluster, ns)
        return pods if set(pods) == set(PLATFORM) else None

    def every_claim_bound():
        bound = claims_bound(cluster, ns)
        return bound if set(bound) == set(CLAIMS) else None
    pods = wait_until(every_platform_pod, what="a pod of each platform component")
    assert all(p.status.phase == "Pending" for p in pods.values())  # pinned to no node (chart.py)
    bound = wait_until(every_claim_bound, what="the chart's claims to be bound")
    secrets_before = secret_data(cluster, ns)
    values_before = cluster.core.read_namespaced_config_map(f"{FULLNAME}-values", ns).data

    # An upgrade with other values: the generated Secrets stay byte-identical, the rest follows.
    release.upgrade(live_values(on(static_storage), cull={"timeout": 7200}, executor={"maxRunningJobs": 8}))
    assert secret_data(cluster, ns) == secrets_before
    assert cluster.core.read_namespaced_config_map(f"{FULLNAME}-values", ns).data != values_before
    assert claims_bound(cluster, ns) == bound

    # Uninstall removes everything but what the chart keeps on purpose: the Secret and the executor's
    # and MLflow's claims (helm.sh/resource-policy: keep), and the StatefulSet's claim (Kubernetes
    # never deletes those with their StatefulSet).
    release.uninstall()
    wait_until(lambda: not cluster.apps.list_namespaced_deployment(ns).items
               and not cluster.apps.list_namespaced_stateful_set(ns).items, what="the workloads to go")
    left = {
        "configmaps": [c.metadata.name for c in cluster.core.list_namespaced_config_map(ns).items
                       if c.metadata.name != "kube-root-ca.crt"],
        "services": [s.metadata.name for s in cluster.core.list_namespaced_service(ns).items],
        "serviceaccounts": [s.metadata.name for s in cluster.core.list_namespaced_service_account(ns).items
                            if s.metadata.name != "default"],
        "roles": [r.metadata.name for r in cluster.rbac.list_namespaced_role(ns).items],
        "networkpolicies": [n.metadata.name for n in cluster.networking.list_namespaced_network_policy(ns).items],
        "secrets": [s.metadata.name for s in cluster.core.list_namespaced_secret(ns).items
                    if s.type != "kubernetes.io/service-account-token"],
        "claims": sorted(c.metadata.name for c in cluster.core.list_namespaced_persistent_volume_claim(ns).items),
    }
    assert left == {"configmaps": [], "services": [], "serviceaccounts": [], "roles": [], "networkpolicies": [],
                    "secrets": [SECRET], "claims": sorted(CLAIMS)}
    wait_until(lambda: not pods_of(cluster, ns), what="the pods to go")


def test_switching_to_an_external_database_and_back_keeps_the_postgresql_password(
        kube_cluster, kube_namespace, release):
    cluster, ns = kube_cluster, kube_namespace
    release.install(live_values())
    made_with = secret_data(cluster, ns)["postgresql-password"]
    external = {"postgresql": {"enabled": False},
                "externalDatabase": {"host": "db.example.org", "password": "external-pw"}}
    release.upgrade(live_values(**external))
    data = secret_data(cluster, ns)
    assert base64.b64decode(data["external-database-password"]) == b"external-pw"
    assert data["postgresql-password"] == made_with  # kept: the in-chart database's volume is kept too
    release.upgrade(live_values(externalDatabase={"host": "db.example.org", "existingSecret": "their-db"},
                                postgresql={"enabled": False}))
    release.upgrade(live_values())
    assert secret_data(cluster, ns)["postgresql-password"] == made_with
    env = {e.name: e for e in cluster.apps.read_namespaced_deployment(f"{FULLNAME}-hub", ns)
           .spec.template.spec.containers[0].env}
    assert env["NOTEBENCH_POSTGRESQL_PASSWORD"].value_from.secret_key_ref.to_dict() == {
        "name": SECRET, "key": "postgresql-password", "optional": None}


def test_growing_the_postgresql_volume_as_the_chart_readme_says(kube_cluster, kube_namespace, release, static_storage):
    """D4: a StatefulSet's volumeClaimTemplates cannot change, so a new postgresql.persistence.size
    alone fails the upgrade. The README's procedure (grow the claim, delete the StatefulSet keeping
    its pod and claim, upgrade) works; the volume's own growth is the storage driver's, not run here."""
    cluster, ns = kube_cluster, kube_namespace
    claim = f"data-{FULLNAME}-postgresql-0"
    static_storage.add({claim: "1Gi"})  # its StorageClass allows expansion
    small = {"persistence": {"size": "1Gi", "storageClass": static_storage.class_name}}
    release.install(live_values(postgresql=small))
    bound = wait_until(lambda: claims_bound(cluster, ns).get(claim), what="the database's claim to be bound")
    pod = wait_until(lambda: pods_of(cluster, ns).get("postgresql"), what="the database's pod")
    bigger = {"persistence": {"size": "2Gi", "storageClass": static_storage.class_name}}

    with pytest.raises(HelmError) as refused:
        release.upgrade(live_values(postgresql=bigger))
    assert "updates to statefulset spec for fields other than" in str(refused.value)

    # 1. Grow the claim (its StorageClass must allow expansion).
    cluster.core.patch_namespaced_persistent_volume_claim(
        claim, ns, {"spec": {"resources": {"requests": {"storage": "2Gi"}}}})
    # 2. Delete the StatefulSet alone: its pod and claim stay.
    cluster.apps.delete_namespaced_stateful_set(f"{FULLNAME}-postgresql", ns, propagation_policy="Orphan")
    wait_until(lambda: not cluster.exists(lambda: cluster.apps.read_namespaced_stateful_set(f"{FULLNAME}-postgresql", ns)),
               what="the StatefulSet to go")
    # 3. Upgrade with the new size.
    release.upgrade(live_values(postgresql=bigger))
    statefulset = cluster.apps.read_namespaced_stateful_set(f"{FULLNAME}-postgresql", ns)
    assert statefulset.spec.volume_claim_templates[0].spec.resources.requests["storage"] == "2Gi"
    # The same claim, asking for the new size; the same pod, adopted by the new StatefulSet.
    assert claims_bound(cluster, ns)[claim] == bound
    assert cluster.core.read_namespaced_persistent_volume_claim(claim, ns).spec.resources.requests["storage"] == "2Gi"
    def adopted_pod():
        found = cluster.core.read_namespaced_pod(pod.metadata.name, ns)
        return found if found.metadata.owner_references else None
    adopted = wait_until(adopted_pod, what="the pod to be adopted")
    assert adopted.metadata.uid == pod.metadata.uid
    assert adopted.metadata.owner_references[0].uid == statefulset.metadata.uid
