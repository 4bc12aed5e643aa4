"""The audit log: GET /api/audit for admins, newest first (executor/audit.py records it), and
POST /api/audit for the services that report what happens elsewhere (the hub, the MLflow service):
only a token holding the custom:notebench-audit:append scope may append.

Append-only by design: the route takes GET and POST only, so no API edits or deletes an entry (405).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import sqlalchemy as sa
from jupyterhub.scopes import has_scope

from notebench.executor import audit
from notebench.executor.api.base import APIHandler
from notebench.executor.audit import ACTIONS, FAMILIES
from notebench.executor.db import AuditEntry
from notebench.executor.errors import NotebenchError
from notebench.executor.schemas import AuditAppended, AuditBatch, AuditEntryResponse, AuditPage
from notebench.hub.platform.scopes import AUDIT_APPEND_SCOPE

# One append at a time: a batch and its copy (sent again after a lost answer) are never checked
# for duplicates at once (the executor is one process).
_appending = asyncio.Lock()


class AuditHandler(APIHandler):
    services_may_call = True  # the reporters are services; GET stays admin-only (a service is no admin)

    @property
    def query_params(self):
        return frozenset({"since", "until", "user", "action", "limit", "cursor"} if self.request.method == "GET" else ())

    async def post(self):
        if not has_scope(AUDIT_APPEND_SCOPE, self.current_user.get("scopes", ())):
            raise NotebenchError(403, None, f"appending to the audit log needs the {AUDIT_APPEND_SCOPE} scope")
        batch = self.parse(AuditBatch)
        async with _appending:
            added, skipped = await asyncio.to_thread(audit.append, self.app.sessions, self.user_name, batch.entries)
        self.write_json(AuditAppended(appended=added, duplicates=skipped))

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
