"""The Helm chart's values as the hub and the executor read them on Kubernetes
(``/etc/notebench/values.yaml``: the chart's values without secrets, image tags resolved to the
release's version by the chart's ``notebench.publicValues``)."""

from __future__ import annotations

from collections.abc import Mapping

import yaml


class ConfigError(ValueError):
    """The chart's values or env lack something Notebench needs; the message names it."""


def load_values(path: str) -> dict:
    with open(path) as f:
        return yaml.safe_load(f) or {}


def required(section: dict, key: str, where: str):
    value = section.get(key)
    if value in (None, "", [], {}):
        raise ConfigError(f"{where}.{key} is required")
    return value


def required_env(env: Mapping[str, str], name: str) -> str:
    if not env.get(name):
        raise ConfigError(f"{name} is not set (the chart sets it; see docs/kubernetes.md)")
    return env[name]


def image_name(image: dict | None, where: str) -> str:
    """``repository:tag`` of one of the chart's images (``{repository, tag, pullPolicy}``); the
    chart fills in empty tags with its appVersion, so both are required here."""
    image = image or {}
    return f"{required(image, 'repository', where)}:{required(image, 'tag', where)}"
