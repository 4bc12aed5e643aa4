"""Quotas of users and groups (executor/quotas.py): admins read and set them; a user reads their
own (and their groups'), with their current use."""

from __future__ import annotations

from tornado.httpclient import HTTPClientError

from notebench.executor.api.base import APIHandler
from notebench.executor.errors import NotebenchError
from notebench.executor.quotas import QUANTITIES
from notebench.executor.schemas import QuotaLimits, QuotaResponse
from notebench.executor.services import hub_groups


class QuotaHandler(APIHandler):
    async def get(self, kind, name):
        self.check_may_read(kind, name)
        self.write_json(await self.describe(kind, name))

    async def put(self, kind, name):
        if not self.is_admin:
            raise NotebenchError(403, None, "only admins may set quotas")
        limits = self.parse(QuotaLimits).model_dump(exclude_unset=True)
        quotas = self.app.quotas
        before = quotas.record(kind[:-1], name)
        quotas.set_record(kind[:-1], name, limits)
        self.audit("quota.update", f"{kind[:-1]} {name}", name if kind == "users" else None, before=before, after=limits)
        self.write_json(await self.describe(kind, name))

    def check_may_read(self, kind: str, name: str) -> None:
        mine = name == self.user_name if kind == "users" else name in self.current_user.get("groups", ())
        if not (self.is_admin or mine):
            raise NotebenchError(403, None, f"only admins may read the quotas of other {kind}")

    async def describe(self, kind: str, name: str) -> QuotaResponse:
        quotas = self.app.quotas
        own = quotas.record(kind[:-1], name)
        if kind == "users":
            groups = self.current_user.get("groups", []) if name == self.user_name else await self.groups_of(name)
            limits, source = quotas.applying(name, groups)
            usage = quotas.usage(name)
        else:  # what the group grants its members (the defaults where it sets nothing)
            limits, source = quotas.applying(None, [name])
            usage = None
        return QuotaResponse(kind=kind[:-1], name=name, set=own, source=source, usage=usage,
                             **{q: limits[q] for q in QUANTITIES})

    async def groups_of(self, name: str) -> list[str]:
        """Another user's groups, as the hub has them (an admin asking)."""
        try:
            return await hub_groups(self.app.tokens, name)
        except HTTPClientError as e:
            raise NotebenchError(503, None, f"the hub could not be asked for {name}'s groups ({e.code}): try again")
