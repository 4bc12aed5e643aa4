"""The audit log, for admins: GET /api/audit, newest first (executor/audit.py records it).

Read-only by design: the route takes GET only, so no API edits or deletes an entry (405).
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from notebench.executor.api.base import APIHandler
from notebench.executor.audit import ACTIONS, FAMILIES
from notebench.executor.db import AuditEntry
from notebench.executor.errors import NotebenchError
from notebench.executor.schemas import AuditEntryResponse, AuditPage


class AuditHandler(APIHandler):
    query_params = frozenset({"since", "until", "user", "action", "limit", "cursor"})

    async def get(self):
        if not self.is_admin:
            raise NotebenchError(403, None, "only admins may read the audit log")
        q = sa.select(AuditEntry).order_by(AuditEntry.id.desc())
        since, until = self.moment("since"), self.moment("until")
        if since is not None:
            q = q.where(AuditEntry.at >= since)
        if until is not None:
            q = q.where(AuditEntry.at < until)
        user = self.get_argument("user", None)
        if user:  # what they did, and what was done to their things
            q = q.where(sa.or_(AuditEntry.actor == user, AuditEntry.owner == user))
        action = self.get_argument("action", None)
        if action is not None:
            if action in FAMILIES:
                q = q.where(AuditEntry.action.like(action + ".%"))
            elif action in ACTIONS:
                q = q.where(AuditEntry.action == action)
            else:
                raise NotebenchError(400, "action", f"action must be one of {', '.join(FAMILIES + ACTIONS)}")
        page, next_cursor = self.page(q, AuditEntry.id)
        self.write_json(AuditPage(entries=[AuditEntryResponse.of(e) for e in page], next_cursor=next_cursor))

    def moment(self, name: str) -> datetime | None:
        """A query parameter that is an RFC 3339 time (UTC when it names no zone), or None."""
        value = self.get_argument(name, None)
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise NotebenchError(400, name, f"{name} must be an RFC 3339 time, e.g. 2026-12-05T09:00:00Z") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
