"""Quotas per user and per group (issue 17): how much each may hold at once.

A quota record (a user's or a group's) sets some quantities: a number, or null for unlimited; a
quantity it leaves out is not set by it. What applies to a user, per quantity: their own record's
value if it sets it; else the most generous of their groups' records that set it (null, unlimited,
beats any number: a group grants); else ``c.Quotas.defaults``; else unlimited.

Enforced here so far (the rest of issue 17 is to come): ``queued_jobs`` and ``dask_workers`` at job
submission, ``endpoints`` at deploy. Those refuse (429 for a queue that is full now, 403 for a job
that can never fit, 409 for one endpoint too many), with a JSON body naming the quota, its limit
and the current use. Each check and the insert it guards run without an await between them, so
concurrent requests to this executor never pass a limit together.
"""

from __future__ import annotations

import sqlalchemy as sa
from traitlets import Dict
from traitlets.config import LoggingConfigurable

from notebench.executor.db import Endpoint, Job, Quota, claimed
from notebench.executor.errors import NotebenchError

QUANTITIES = ("gpus", "gpu_hours_per_day", "cpu", "memory", "running_jobs", "queued_jobs", "dask_workers", "endpoints")


class QuotaExceeded(NotebenchError):
    """Answered with the quota's name, its limit and the current use beside the message."""

    def __init__(self, status: int, quota: str, limit: float, current: float, message: str):
        super().__init__(status, quota, message)
        self.details = {"quota": quota, "limit": limit, "current": current}


class Quotas(LoggingConfigurable):
    defaults = Dict(
        help="Limits for everyone without a quota of their own or of a group, e.g. {'queued_jobs': 100, "
        "'endpoints': 5}; a quantity left out is unlimited. Quantities: " + ", ".join(QUANTITIES) + ".",
    ).tag(config=True)

    def __init__(self, sessions, **kwargs):
        super().__init__(**kwargs)
        self.sessions = sessions
        unknown = sorted(set(self.defaults) - set(QUANTITIES))
        if unknown:
            raise ValueError(f"c.Quotas.defaults: unknown quantit{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}")

    def record(self, kind: str, name: str) -> dict:
        with self.sessions() as s:
            row = s.scalar(sa.select(Quota).where(Quota.kind == kind, Quota.name == name))
        return dict(row.limits) if row else {}

    def set_record(self, kind: str, name: str, limits: dict) -> None:
        with self.sessions() as s:
            row = s.scalar(sa.select(Quota).where(Quota.kind == kind, Quota.name == name))
            if row is None:
                s.add(Quota(kind=kind, name=name, limits=limits))
            else:
                row.limits = limits
            s.commit()

    def applying(self, user: str | None, groups: list[str]) -> tuple[dict, dict]:
        """The limits that apply to ``user`` (a member of ``groups``), and where each comes from;
        ``user`` None: what the groups grant (with the defaults where they set nothing)."""
        own = self.record("user", user) if user is not None else {}
        with self.sessions() as s:
            group_rows = s.scalars(sa.select(Quota).where(Quota.kind == "group", Quota.name.in_(groups))).all() if groups else []
        limits, sources = {}, {}
        for quantity in QUANTITIES:
            if quantity in own:
                limits[quantity], sources[quantity] = own[quantity], "user"
                continue
            granted = [(row.limits[quantity], row.name) for row in group_rows if quantity in row.limits]
            if granted:
                unlimited = [name for value, name in granted if value is None]
                value, name = (None, unlimited[0]) if unlimited else max(granted, key=lambda g: g[0])
                limits[quantity], sources[quantity] = value, f"group:{name}"
            elif quantity in self.defaults:
                limits[quantity], sources[quantity] = self.defaults[quantity], "default"
            else:
                limits[quantity], sources[quantity] = None, "default"
        return limits, sources

    def usage(self, user: str) -> dict:
        """What ``user`` holds now, of the quantities counted so far."""
        def count(where):
            return s.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.owner == user, where))

        with self.sessions() as s:
            # As the dispatcher counts: a job an executor holds for busy resources (Kubernetes) runs.
            running = count(claimed())
            queued = count(sa.and_(Job.status == "queued", sa.not_(claimed())))
            endpoints = s.scalar(sa.select(sa.func.count()).select_from(Endpoint).where(Endpoint.owner == user))
        return {"queued_jobs": queued, "running_jobs": running, "endpoints": endpoints}

    # --- checks (synchronous: called right before the insert they guard) -----------------------

    def check_job(self, user: str, groups: list[str], workers: int) -> None:
        limits, _ = self.applying(user, groups)
        if limits["dask_workers"] is not None and workers > limits["dask_workers"]:
            raise QuotaExceeded(403, "dask_workers", limits["dask_workers"], workers,
                                f"{workers} Dask workers asked for; your quota is {limits['dask_workers']} per job")
        if limits["queued_jobs"] is not None:
            queued = self.usage(user)["queued_jobs"]
            if queued >= limits["queued_jobs"]:
                raise QuotaExceeded(429, "queued_jobs", limits["queued_jobs"], queued,
                                    f"you have {queued} jobs queued and your quota is {limits['queued_jobs']}: "
                                    "try again once some have started")

    def check_endpoint(self, user: str, groups: list[str]) -> None:
        limits, _ = self.applying(user, groups)
        if limits["endpoints"] is not None:
            have = self.usage(user)["endpoints"]
            if have >= limits["endpoints"]:
                raise QuotaExceeded(409, "endpoints", limits["endpoints"], have,
                                    f"you have {have} endpoints and your quota is {limits['endpoints']}: delete one first")
