"""Offline checks of Kubernetes objects, shared by the chart, KubeSpawner and executor-backend tests.

Every object is validated against the Kubernetes 1.37 OpenAPI schema with kubernetes-validate in
strict mode (unknown fields are errors), as `kubernetes-validate --strict -k 1.37` does.
"""

from __future__ import annotations

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.37"


def yaml_objects(text: str) -> list[dict]:
    """The objects in a multi-document YAML text (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def chart_objects(files: dict[str, str]) -> list[dict]:
    """The objects of a rendered chart ({template path: text}, as Helm renders it), NOTES.txt aside."""
    return [obj for name, text in files.items() if not name.endswith("NOTES.txt") for obj in yaml_objects(text)]


def validate(obj: dict, version: str = KUBERNETES_VERSION) -> None:
    """Raise AssertionError naming the object and the schema error, if ``obj`` is not valid."""
    name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = "/".join(str(p) for p in e.path)
        raise AssertionError(f"{name} is not a valid Kubernetes {version} object: {path}: {e.message}") from None
    except kubernetes_validate.SchemaNotFoundError as e:
        raise AssertionError(f"{name}: no Kubernetes {version} schema for it ({e})") from None


def validate_all(objects: list[dict], version: str = KUBERNETES_VERSION) -> None:
    assert objects, "no objects to validate"
    for obj in objects:
        validate(obj, version)


def pod_spec(obj: dict) -> dict | None:
    """The pod spec of a Pod, or of the pod template of a workload object (Deployment, StatefulSet,
    DaemonSet, ReplicaSet, Job, CronJob); None for other objects."""
    kind = obj.get("kind")
    if kind == "Pod":
        return obj["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return obj["spec"]["template"]["spec"]
    return None


def pod_labels(obj: dict) -> dict:
    """The labels of a Pod, or of the pods a workload object makes."""
    if obj.get("kind") == "Pod":
        return obj["metadata"].get("labels") or {}
    if obj.get("kind") == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels") or {}
    return obj["spec"]["template"]["metadata"].get("labels") or {}


def selector_matches(selector: dict, labels: dict) -> bool:
    """Does a Kubernetes label selector (matchLabels, matchExpressions) select these labels?"""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True
