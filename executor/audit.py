"""The audit log: who did what, and when, to jobs, schedules, endpoints and quotas (issue 17).

Append-only: the API records an entry after each change it makes, and admins read them
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

# Every action an entry may name: the API's filter takes one of these, or the part before the dot.
ACTIONS = (
    "job.submit", "job.cancel", "job.delete",
    "schedule.create", "schedule.update", "schedule.delete", "schedule.skip",
    "endpoint.deploy", "endpoint.update", "endpoint.delete",
    "quota.update",
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
