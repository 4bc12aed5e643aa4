"""Quotas of users and groups (executor/quotas.py): admins read and set them; a user reads their
own (and their groups'), with their current use."""

from __future__ import annotations

from notebench.executor.api.base import APIHandler
from notebench.executor.errors import NotebenchError
from notebench.executor.hub_servers import HubUnavailable
from notebench.executor.quotas import QUANTITIES
from notebench.executor.schemas import QuotaLimits, QuotaResponse


class QuotaHandler(APIHandler):
    # server: the spawner asking before it starts that server of the user (it is not counted yet).
    query_params = frozenset({"server"})

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
            groups = await self.now(name)
            limits, source = quotas.applying(name, groups)
            usage = quotas.usage(name, leave_out=self.get_argument("server", None))
        else:  # what the group grants its members (the defaults where it sets nothing)
            limits, source = quotas.applying(None, [name])
            usage = None
        return QuotaResponse(kind=kind[:-1], name=name, set=own, source=source, usage=usage,
                             **{q: limits[q] for q in QUANTITIES})

    async def now(self, name: str) -> list[str]:
        """The user's groups, their servers asked of the hub on the way (they count in the usage).
        A hub that is down: the caller's own groups and the servers last seen; for another user, 503."""
        try:
            return (await self.app.quotas.refresh(name))[0]
        except HubUnavailable:
            if name == self.user_name:
                return self.current_user.get("groups", [])
            raise NotebenchError(503, None, f"the hub could not be asked for {name}'s groups: try again") from None
