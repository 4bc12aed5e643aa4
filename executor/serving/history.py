"""An endpoint's history: every deploy, update, rollback and delete, with who or what made it
(a user, or automation such as "schedule 3"), when, why, and the versions and weights asked for
(an alias with the version it resolved to, so that a rollback restores exactly what served), shadow
versions with their ``traffic_percent`` included.

Entries are written in the transaction of the change itself (``record``, called by
``Endpoints.create/update/delete``): a change is in the history if and only if it was made.
They are kept by the endpoint's name and id, with no foreign key, so a deleted endpoint's history
can still be read (by admins and its former owner). An endpoint's own history is the entries of
its row since it was created: not those of an earlier endpoint of the same name.

A rollback (``rollback``) is a rolling update to an earlier entry's versions and weights, through
``Endpoints.update`` (same quota checks, same failure handling), recorded as action "rollback".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from notebench.executor.db import Endpoint, EndpointHistoryEntry, utcnow
from notebench.executor.errors import NotebenchError
from notebench.executor.schemas import EndpointPatch, EndpointVersion


@dataclass(frozen=True)
class Change:
    """Who or what makes a change, and why. ``action`` overrides the caller's (e.g. "rollback")."""

    actor: str
    action: str | None = None
    reason: str | None = None
    detail: dict = field(default_factory=dict)


def asked(resolved) -> list[dict]:
    """The versions of ``Endpoints._resolve``'s answer ([(wanted, version, alias)]) as history keeps them."""
    return [{"model": w.model, "version": version, "alias": alias, "weight": w.weight, "shadow": w.shadow,
             "traffic_percent": w.traffic_percent} for w, version, alias in resolved]


def served(servers) -> list[dict]:
    """The versions scoring servers serve (not those being retired) as history keeps them."""
    return [{"model": x.model, "version": x.version, "alias": x.alias, "weight": x.weight, "shadow": x.shadow,
             "traffic_percent": x.traffic_percent} for x in servers if not x.retired]


def record(s, endpoint: Endpoint, action: str, versions: list[dict], change: Change | None = None,
           reason: str | None = None) -> None:
    """Add an entry to session ``s`` (committed with the change). Without ``change``, the owner made it."""
    change = change or Change(endpoint.owner)
    s.add(EndpointHistoryEntry(
        endpoint_id=endpoint.id, endpoint=endpoint.name, owner=endpoint.owner,
        at=(endpoint.created_at or utcnow()) if action == "deploy" else utcnow(),
        actor=change.actor, action=change.action or action, reason=change.reason or reason, versions=versions,
        detail=dict(change.detail),
    ))


def listing(endpoint: Endpoint):
    """The query of a live endpoint's entries, newest first."""
    return sa.select(EndpointHistoryEntry).where(
        EndpointHistoryEntry.endpoint_id == endpoint.id,
        EndpointHistoryEntry.endpoint == endpoint.name,
        EndpointHistoryEntry.at >= endpoint.created_at,  # not an earlier endpoint's (SQLite may reuse a row id)
    ).order_by(EndpointHistoryEntry.id.desc())


def listing_deleted(name: str, owner: str | None):
    """The query of the entries of deleted endpoints called ``name`` (only ``owner``'s unless None), newest first."""
    q = sa.select(EndpointHistoryEntry).where(EndpointHistoryEntry.endpoint == name).order_by(EndpointHistoryEntry.id.desc())
    return q if owner is None else q.where(EndpointHistoryEntry.owner == owner)


def state_at(sessions, endpoint: Endpoint, entry_id: int) -> list[dict]:
    """The versions and weights ``endpoint`` had at its history entry ``entry_id``; a 400 naming
    ``to`` if that is not one of its entries, or a delete."""
    with sessions() as s:
        entry = s.scalar(listing(endpoint).where(EndpointHistoryEntry.id == entry_id))
    if entry is None:
        raise NotebenchError(400, "to", f"to: endpoint {endpoint.name} has no history entry {entry_id}")
    if entry.action == "delete" or not entry.versions:
        raise NotebenchError(400, "to", f"to: history entry {entry_id} is a {entry.action}, not a state to roll back to")
    return entry.versions


async def rollback(endpoints, endpoint: Endpoint, to: int, actor: str, groups: list[str],
                   reason: str | None = None) -> tuple[Endpoint, list[dict]]:
    """Roll ``endpoint`` back to its state at history entry ``to`` (a rolling update, by version
    number); the endpoint, updating, and the versions applied."""
    versions = state_at(endpoints.sessions, endpoint, to)
    # Entries written before shadow versions existed have no "shadow": live versions.
    patch = EndpointPatch(versions=[EndpointVersion(model=v["model"], version=v["version"], weight=v["weight"],
                                                    shadow=v.get("shadow", False), traffic_percent=v.get("traffic_percent"))
                                    for v in versions], reason=reason)
    change = Change(actor, "rollback", reason, {"to": to})
    try:
        return await endpoints.update(endpoint, patch, groups, change), versions
    except NotebenchError as e:
        if e.field and e.field.startswith("versions."):  # e.g. that version was deleted from MLflow since
            raise NotebenchError(e.status, "to", f"to: history entry {to} cannot be restored: {e.message}") from None
        raise
