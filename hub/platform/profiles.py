"""Server profiles: one definition used by the local spawner, KubeSpawner and the executor.

A profile names the resources a server or a job gets. Local mode uses cpu/mem limits
(cgroup v2 where the machine allows), GPU count (leases from the GPU inventory) and env;
Kubernetes mode turns the same dicts into KubeSpawner's ``profile_list`` (requests, limits,
``nvidia.com/gpu``, node selector, tolerations, image).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from traitlets import Dict, List, Unicode
from traitlets.config import Configurable

from notebench.hub.platform.environment import workload_env

_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_bytes(value) -> int | None:
    """'4G' -> 4294967296; ints pass through; None/'' mean no limit."""
    if value in (None, "", 0):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in _UNITS:
        return int(float(text[:-1]) * _UNITS[text[-1]])
    return int(text)


class ProfileError(ValueError):
    """A profile definition or choice is invalid; the message says which and why."""


@dataclass(frozen=True)
class Profile:
    name: str
    display_name: str
    description: str = ""
    cpu_limit: float | None = None
    mem_limit: int | None = None
    gpus: int = 0
    # What Kubernetes reserves for the pod (default: the limits); local mode has no reservations.
    cpu_request: float | None = None
    mem_request: int | None = None
    image: str = ""
    env: dict = field(default_factory=dict)
    default: bool = False
    # Kubernetes-only placement hints; ignored locally.
    node_selector: dict = field(default_factory=dict)
    tolerations: list = field(default_factory=list)

    @classmethod
    def from_dict(cls, spec: dict) -> "Profile":
        known = set(cls.__dataclass_fields__)
        unknown = set(spec) - known
        if unknown:
            raise ProfileError(f"profile {spec.get('name')!r}: unknown field(s) {sorted(unknown)}")
        name = spec.get("name")
        if not name or not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise ProfileError(f"profile name must be a non-empty slug, got {name!r}")
        gpus = spec.get("gpus", 0)
        if not isinstance(gpus, int) or gpus < 0:
            raise ProfileError(f"profile {name!r}: gpus must be an integer >= 0, got {gpus!r}")
        cpu = {key: _cpus(name, key, spec.get(key)) for key in ("cpu_request", "cpu_limit")}
        mem = {key: _bytes(name, key, spec.get(key)) for key in ("mem_request", "mem_limit")}
        for request, limit in ((cpu["cpu_request"], cpu["cpu_limit"]), (mem["mem_request"], mem["mem_limit"])):
            if request and limit and request > limit:
                raise ProfileError(f"profile {name!r}: a request ({request}) cannot exceed its limit ({limit})")
        return cls(**{**spec, "display_name": spec.get("display_name") or name, **cpu, **mem})

    def reserved(self) -> tuple[float, int, int]:
        """What one server, job kernel, Dask worker or scoring server of this profile holds, as
        quotas and usage count it: (CPU cores, memory bytes, GPUs). Its request where it sets one
        (what Kubernetes reserves), else its limit; a profile that sets neither counts 0 of that."""
        cpu = self.cpu_request or self.cpu_limit or 0.0
        memory = self.mem_request or self.mem_limit or 0
        return float(cpu), int(memory), self.gpus

    def kubernetes_gpu_env(self) -> dict:
        """What a pod of this profile needs in its environment about GPUs: CUDA images say
        NVIDIA_VISIBLE_DEVICES=all, so on a GPU node the NVIDIA runtime would hand a pod without
        GPUs every GPU; "void" makes it an ordinary container."""
        return {} if self.gpus else {"NVIDIA_VISIBLE_DEVICES": "void"}

    def to_kubespawner(self) -> dict:
        """This profile as a KubeSpawner ``profile_list`` entry."""
        overrides: dict[str, Any] = {"environment": {**workload_env(self), **self.kubernetes_gpu_env()}}
        resources = {
            "image": self.image,
            "cpu_guarantee": self.cpu_request,
            "cpu_limit": self.cpu_limit,
            "mem_guarantee": self.mem_request,
            "mem_limit": self.mem_limit,
            "extra_resource_limits": {"nvidia.com/gpu": str(self.gpus)} if self.gpus else None,
            "node_selector": dict(self.node_selector),
            "tolerations": list(self.tolerations),
        }
        overrides.update({key: value for key, value in resources.items() if value})
        return {
            "slug": self.name,
            "display_name": self.display_name,
            "description": self.description,
            "default": self.default,
            "kubespawner_override": overrides,
        }


def _cpus(profile: str, key: str, value) -> float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
        raise ProfileError(f"profile {profile!r}: {key} must be a positive number, got {value!r}")
    return value


def _bytes(profile: str, key: str, value) -> int | None:
    try:
        return parse_bytes(value)
    except ValueError:
        raise ProfileError(f"profile {profile!r}: {key} {value!r} is not a size like '4G'") from None


DEFAULT_PROFILES = [
    {
        "name": "cpu",
        "display_name": "CPU",
        "description": "2 CPUs, 4 GiB memory",
        "cpu_limit": 2,
        "mem_limit": "4G",
        "default": True,
    },
    {
        "name": "gpu",
        "display_name": "GPU",
        "description": "1 NVIDIA GPU, 4 CPUs, 16 GiB memory",
        "cpu_limit": 4,
        "mem_limit": "16G",
        "gpus": 1,
    },
]


class Profiles(Configurable):
    """The profiles servers and jobs can be started with (``c.Profiles.profiles``)."""

    profiles = List(
        Dict(),
        default_value=DEFAULT_PROFILES,
        help="""Profile definitions: dicts with name, display_name, description, cpu_limit,
        mem_limit (e.g. '4G'), gpus, env, default, and for Kubernetes only: cpu_request,
        mem_request, image, node_selector, tolerations.""",
    ).tag(config=True)

    default_profile = Unicode(
        "", help="Name of the profile used when none is chosen (default: the one marked default, else the first)."
    ).tag(config=True)

    _parsed: tuple[list, list[Profile]] | None = None  # (the definitions, what they parsed to)

    def all(self) -> list[Profile]:
        if self._parsed is not None and self._parsed[0] == self.profiles:  # asked per job by quotas and fair share
            return list(self._parsed[1])
        parsed = [Profile.from_dict(p) for p in self.profiles]
        if not parsed:
            raise ProfileError("no profiles are configured")
        names = [p.name for p in parsed]
        if len(set(names)) != len(names):
            raise ProfileError(f"profile names must be unique, got {names}")
        self._parsed = (copy.deepcopy(self.profiles), parsed)
        return list(parsed)

    def get(self, name: str | None) -> Profile:
        """The profile called ``name`` (the default one when name is empty)."""
        profiles = self.all()
        if not name:
            name = self.default_profile or next((p.name for p in profiles if p.default), profiles[0].name)
        for profile in profiles:
            if profile.name == name:
                return profile
        raise ProfileError(f"unknown profile {name!r}; choose one of: {', '.join(p.name for p in profiles)}")

    def kubespawner_profile_list(self) -> list[dict]:
        return [p.to_kubespawner() for p in self.all()]
