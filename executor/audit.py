"""The audit log: who did what, and when (issue 17).

Append-only: the API records an entry after each change it makes (jobs, schedules, endpoints,
quotas); the hub and the MLflow service report theirs (logins, servers, tokens, permissions, model
registrations, aliases) with ``POST /api/audit`` (``append``, a scope only their roles hold), from
an outbox of their own (notebench.hub.platform.audit_outbox); admins read them
(``GET /api/audit``); no API edits or deletes one. Entries older than
``c.Executor.audit_retention_days`` are dropped by the executor's background loop. An entry is
written in its own transaction after the change it records, so a failure to record never undoes
or fails the user's change (it is logged).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import sqlalchemy as sa

from notebench.executor.db import AuditEntry, utcnow

log = logging.getLogger("notebench.executor")

# What the hub and the MLflow service report (notebench.hub.platform.audit_outbox).
REPORTED_ACTIONS = (
    "user.login", "user.create", "user.update", "user.delete",
    "server.spawn", "server.stop", "server.cull",
    "token.create", "token.delete",
    "permission.group_create", "permission.group_update", "permission.group_delete",
    "permission.group_members", "permission.experiment", "permission.model",
    "model.register", "model.version_create", "model.delete", "model.version_delete",
    "alias.set", "alias.delete",
)

# Every action an entry may name: the API's filter takes one of these, or the part before the dot.
ACTIONS = (
    "job.submit", "job.cancel", "job.delete",
    "schedule.create", "schedule.update", "schedule.delete", "schedule.skip", "schedule.promotion",
    "endpoint.deploy", "endpoint.update", "endpoint.rollback", "endpoint.delete",
    "endpoint.alerts", "endpoint.alert",  # alert rules set (PUT .../alerts); an alert fired (serving/alerts.py)
    "quota.update",
    # Reported by the hub and the MLflow service (POST /api/audit), never recorded here:
    *REPORTED_ACTIONS,
)
FAMILIES = tuple(sorted({a.split(".")[0] for a in ACTIONS}))


def record(sessions, actor: str, action: str, target: str, owner: str | None, **detail) -> None:
    assert action in ACTIONS, action
    try:
        with sessions() as s:
            s.add(AuditEntry(actor=actor, action=action, target=target, owner=owner, detail=detail))
            s.commit()
    except Exception:
        log.exception("could not record %s of %s by %s in the audit log", action, target, actor)


def append(sessions, source: str, entries) -> tuple[int, int]:
    """Append reported entries (schemas.AuditEvent) from the service ``source``, in one transaction;
    an entry whose ``event_id`` is already in the log (a batch sent again after a crash or a lost
    answer) is skipped. How many were appended and how many skipped. Callers serialise calls
    (api/audit.py), so two copies of one batch are never checked at once."""
    with sessions() as s:
        # Only entries at the same moment can be copies: the lookup uses the index on ``at``.
        known = {
            (e.detail or {}).get("event_id")
            for e in s.scalars(sa.select(AuditEntry).where(AuditEntry.at.in_({e.moment for e in entries})))
        }
        added = 0
        for e in entries:
            if e.event_id in known:
                continue
            known.add(e.event_id)
            detail = {**e.detail, "source": source, "event_id": e.event_id}
            s.add(AuditEntry(at=e.moment, actor=e.actor, action=e.action, target=e.target, owner=e.owner, detail=detail))
            added += 1
        s.commit()
    return added, len(entries) - added


def purge(sessions, retention_days: int) -> int:
    """Drop the entries older than the retention; how many went."""
    with sessions() as s:
        gone = s.execute(sa.delete(AuditEntry).where(AuditEntry.at < utcnow() - timedelta(days=retention_days)))
        s.commit()
    return gone.rowcount


async def purge_loop(sessions, retention_days: int, every_seconds: float = 3600) -> None:
    while True:
        try:
            gone = await asyncio.to_thread(purge, sessions, retention_days)
            if gone:
                log.info("dropped %d audit entries older than %d days", gone, retention_days)
        except Exception:
            log.exception("audit retention failed")
        await asyncio.sleep(every_seconds)
