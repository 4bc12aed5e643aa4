"""What the NetworkPolicies stored in a namespace allow a live pod, evaluated from the policies' and
the pods' own objects as the NetworkPolicy API defines it. Nothing here enforces them: that needs a
network plugin, which the tier's control plane does not have (a real cluster's may)."""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.kube import selector_matches


@dataclass(frozen=True)
class Allowed:
    """One peer a pod may talk to: a pod of the namespace (by name), or another kind of peer in
    words (``namespaces {...} pods {...}``, ``ipBlock 10.0.0.0/8``, ``anyone``); ``port`` None: any."""

    peer: str
    port: int | str | None


def allowed(policies: list[dict], pods: list[dict], pod: dict, direction: str) -> set[Allowed] | None:
    """What ``pod`` may receive from (``direction`` "ingress") or send to ("egress"); None when no
    policy isolates it that way (everything allowed). ``policies`` and ``pods``: the namespace's,
    as dicts (the API's camelCase)."""
    kind = direction.capitalize()
    labels = pod["metadata"].get("labels") or {}
    selecting = [p for p in policies
                 if selector_matches(p["spec"]["podSelector"], labels) and kind in policy_types(p)]
    if not selecting:
        return None
    found: set[Allowed] = set()
    for policy in selecting:
        for rule in policy["spec"].get(direction) or []:
            ports = [p.get("port") for p in rule.get("ports") or []] or [None]
            for peer in peers(rule.get("from" if direction == "ingress" else "to"), pods):
                found.update(Allowed(peer, port) for port in ports)
    return found


def policy_types(policy: dict) -> list[str]:
    """As the API defaults it: Ingress always, Egress when there are egress rules."""
    spec = policy["spec"]
    return spec.get("policyTypes") or ["Ingress", *(["Egress"] if spec.get("egress") else [])]


def peers(rule_peers: list[dict] | None, pods: list[dict]) -> list[str]:
    if not rule_peers:  # no from/to: every source or destination
        return ["anyone"]
    names = []
    for peer in rule_peers:
        if "ipBlock" in peer:
            names.append(f"ipBlock {peer['ipBlock']['cidr']} except {peer['ipBlock'].get('except', [])}")
        elif "namespaceSelector" in peer:
            names.append(f"namespaces {peer['namespaceSelector']} pods {peer.get('podSelector', {})}")
        else:  # pods of the policy's own namespace
            names.extend(p["metadata"]["name"] for p in pods
                         if selector_matches(peer["podSelector"], p["metadata"].get("labels") or {}))
    return names
