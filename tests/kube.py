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
