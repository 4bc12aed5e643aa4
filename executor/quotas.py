"""Quotas per user and per group (issue 17): how much each may hold at once.

A quota record (a user's or a group's) sets some quantities: a number, or null for unlimited; a
quantity it leaves out is not set by it. What applies to a user, per quantity: their own record's
value if it sets it; else the most generous of their groups' records that set it (null, unlimited,
beats any number: a group grants); else ``c.Quotas.defaults``; else unlimited.

Two kinds of quantity:
- What a user holds at once (``running_jobs``, ``gpus``, ``cpu``, ``memory``): a job that would go
  past one waits in the queue (the dispatcher starts it once the user's other things end); a job, an
  endpoint or a server that could never fit, even alone, is refused.
- What a user asks for (``queued_jobs``, ``dask_workers`` per job, ``endpoints``): refused at once
  (429 for a queue that is full now, 403 for a job that can never fit, 409 for one endpoint too
  many), with a JSON body naming the quota, its limit and the current use.

CPU, memory and GPUs count what each job (its kernel and Dask workers) and scoring server holds
(``Profile.reserved``). Each check and the insert it guards run without an await between them, so
concurrent requests to this executor never pass a limit together; jobs are claimed under the
dispatcher's lock, so starts never do either.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import sqlalchemy as sa
from traitlets import Dict, Float
from traitlets.config import LoggingConfigurable

from notebench.executor.db import Endpoint, Job, Quota, ScoringServer, UsageInterval, claimed, utcnow
from notebench.executor.errors import NotebenchError
from notebench.executor.hub_servers import HubUnavailable, RunningServer, user_now
from notebench.hub.platform.profiles import ProfileError

QUANTITIES = ("gpus", "gpu_hours_per_day", "cpu", "memory", "running_jobs", "queued_jobs", "dask_workers", "endpoints")
# What a user holds at once: a job waits for these (in this order of report, when several are full).
HELD = ("running_jobs", "gpus", "cpu", "memory")
UNITS = {"gpus": "GPUs", "cpu": "CPU cores", "memory": "GiB of memory"}
# How long groups learnt from the hub (not from the user's own requests) are trusted.
GROUPS_SECONDS = 60.0


class QuotaExceeded(NotebenchError):
    """Answered with the quota's name, its limit and the current use beside the message."""

    def __init__(self, status: int, quota: str, limit: float, current: float, message: str):
        super().__init__(status, quota, message)
        self.details = {"quota": quota, "limit": limit, "current": current}


def holds(profiles, profile: str, worker_profile: str | None, workers: int, running_jobs: int = 1) -> Counter:
    """What a job (its kernel and its Dask workers) or, with running_jobs=0, a scoring server holds."""
    try:
        cpu, memory, gpus = profiles.get(profile).reserved()
        w_cpu, w_memory, w_gpus = profiles.get(worker_profile or profile).reserved() if workers else (0, 0, 0)
    except ProfileError:  # a profile removed from the config since: what it held is unknown
        cpu = memory = gpus = w_cpu = w_memory = w_gpus = 0
    return Counter({"running_jobs": running_jobs, "cpu": cpu + workers * w_cpu,
                    "memory": (memory + workers * w_memory) / 2**30, "gpus": gpus + workers * w_gpus})


# Built once: building a statement costs about what running it does (checked at every submission).
RECORDS = sa.select(Quota).where(sa.or_(
    sa.and_(Quota.kind == "user", Quota.name == sa.bindparam("user")),
    sa.and_(Quota.kind == "group", Quota.name.in_(sa.bindparam("groups", expanding=True)))))
QUEUED = sa.select(sa.func.count()).select_from(Job).where(
    Job.owner == sa.bindparam("user"), Job.status == "queued", sa.not_(claimed()))


def _amount(value: float) -> str:
    return f"{value:g}" if isinstance(value, int) or float(value).is_integer() else f"{value:.2f}"


class Quotas(LoggingConfigurable):
    defaults = Dict(
        help="Limits for everyone without a quota of their own or of a group, e.g. {'queued_jobs': 100, "
        "'endpoints': 5}; a quantity left out is unlimited. Quantities: " + ", ".join(QUANTITIES) + ".",
    ).tag(config=True)

    servers_seconds = Float(
        10.0, help="While a user's jobs wait for CPU, memory or GPUs, how often their servers are asked of the hub "
        "again (a server that stops lets a waiting job start)."
    ).tag(config=True)

    def __init__(self, sessions, profiles, tokens=None, metrics=None, **kwargs):
        super().__init__(**kwargs)
        self.sessions, self.profiles, self.tokens, self.metrics = sessions, profiles, tokens, metrics
        self._groups: dict[str, tuple[float, list[str]]] = {}  # user -> (when learnt, groups)
        # The users' servers as the hub last listed them (the usage meter's listing, or one user's
        # as their quotas were asked): they hold CPU, memory and GPUs too.
        self.servers: dict[str, list[RunningServer]] = {}
        self._servers_at: dict[str, float] = {}  # user -> when their servers were last asked for
        unknown = sorted(set(self.defaults) - set(QUANTITIES))
        if unknown:
            raise ValueError(f"c.Quotas.defaults: unknown quantit{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}")

    # --- records -------------------------------------------------------------------------------

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

    def applying(self, user: str | None, groups: list[str], session=None) -> tuple[dict, dict]:
        """The limits that apply to ``user`` (a member of ``groups``), and where each comes from;
        ``user`` None: what the groups grant (with the defaults where they set nothing)."""
        if session is None:
            with self.sessions() as s:
                return self.applying(user, groups, s)
        rows = session.scalars(RECORDS, {"user": user, "groups": list(groups)}).all()  # the user's and groups' at once
        own = next((dict(row.limits) for row in rows if row.kind == "user"), {})
        group_rows = [row for row in rows if row.kind == "group"]
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

    # --- groups ---------------------------------------------------------------------------------

    def remember_groups(self, user: str, groups: list[str]) -> None:
        """The groups the hub gave with one of ``user``'s own requests: the freshest there is."""
        self._groups[user] = (time.monotonic(), list(groups))

    async def groups_of(self, user: str) -> list[str] | None:
        """``user``'s groups (for a schedule's job, or the dispatcher); None while the hub cannot be
        asked and nothing is known of them (their jobs wait: the defaults may not be theirs)."""
        known = self._groups.get(user)
        if known and time.monotonic() - known[0] < GROUPS_SECONDS:
            return known[1]
        if self.tokens is None:  # no hub to ask (the dispatcher on its own, in tests)
            return []
        try:
            return (await self.refresh(user))[0]
        except HubUnavailable:
            return known[1] if known else None

    async def refresh(self, user: str) -> tuple[list[str], list[RunningServer]]:
        """Ask the hub for ``user``'s groups and servers now (raises HubUnavailable)."""
        groups, servers = await user_now(self, user)  # what it reads of an app: .tokens
        self.remember_groups(user, groups)
        self.servers[user], self._servers_at[user] = servers, time.monotonic()
        return groups, servers

    async def fresh_servers(self, user: str) -> None:
        """Ask the hub for ``user``'s servers again if the last answer is older than ``servers_seconds``."""
        if self.tokens is not None and time.monotonic() - self._servers_at.get(user, 0.0) >= self.servers_seconds:
            try:
                await self.refresh(user)
            except HubUnavailable:
                pass  # what was last seen holds

    def listed(self, servers: list[RunningServer]) -> None:
        """Every user's servers, as the hub listed them all (the usage meter's tick)."""
        by_owner: dict[str, list[RunningServer]] = {}
        for server in servers:
            by_owner.setdefault(server.user, []).append(server)
        self.servers = by_owner

    # --- what users hold -------------------------------------------------------------------------

    def held_by_owner(self, leave_out: tuple[str, str] | None = None) -> dict[str, Counter]:
        """Per user: their claimed jobs (running, or held by a backend for busy resources) with their
        Dask workers, their scoring servers and their servers (but ``leave_out``: (user, server name))."""
        held: dict[str, Counter] = {}
        for owner, servers in self.servers.items():
            for server in servers:
                if (owner, server.name) != leave_out:
                    held.setdefault(owner, Counter()).update(holds(self.profiles, server.profile, None, 0, running_jobs=0))
        with self.sessions() as s:
            jobs = s.execute(sa.select(Job.owner, Job.profile, Job.worker_profile, Job.workers).where(claimed())).all()
            servers = s.execute(sa.select(Endpoint.owner, Endpoint.profile).join(ScoringServer)
                                .where(ScoringServer.status != "failed")).all()
        for owner, profile, worker_profile, workers in jobs:
            held.setdefault(owner, Counter()).update(holds(self.profiles, profile, worker_profile, workers))
        for owner, profile in servers:
            held.setdefault(owner, Counter()).update(holds(self.profiles, profile, None, 0, running_jobs=0))
        return held

    def queued(self, user: str, session=None) -> int:
        if session is None:
            with self.sessions() as s:
                return self.queued(user, s)
        return session.scalar(QUEUED, {"user": user})

    def endpoints(self, user: str) -> int:
        with self.sessions() as s:
            return s.scalar(sa.select(sa.func.count()).select_from(Endpoint).where(Endpoint.owner == user))

    def gpu_hours_last_day(self, user: str) -> float:
        """GPU-hours ``user``'s things held in the last 24 hours (the usage meter's intervals; an open
        one counts up to now)."""
        now = utcnow()
        since = now - timedelta(days=1)
        with self.sessions() as s:
            rows = s.execute(sa.select(UsageInterval.gpus, UsageInterval.started_at, UsageInterval.last_seen_at,
                                       UsageInterval.ended)
                             .where(UsageInterval.owner == user, UsageInterval.gpus > 0,
                                    sa.or_(UsageInterval.last_seen_at > since, UsageInterval.ended.is_(False)))).all()
        return sum(gpus * max(((last if ended else now) - max(started, since)).total_seconds(), 0.0)
                   for gpus, started, last, ended in rows) / 3600

    def usage(self, user: str, leave_out: str | None = None) -> dict:
        """What ``user`` holds and has asked for now (``leave_out``: one of their servers not counted)."""
        held = self.held_by_owner(None if leave_out is None else (user, leave_out)).get(user, Counter())
        return {"queued_jobs": self.queued(user), "endpoints": self.endpoints(user),
                "gpu_hours_per_day": round(self.gpu_hours_last_day(user), 6), **{q: held[q] for q in HELD}}

    def blocking(self, limits: dict, held: Counter, wanted: Counter) -> str | None:
        """The first quantity that ``wanted`` on top of ``held`` would take past its limit, or None.
        GPU-hours: a GPU thing waits while the last day's (``held["gpu_hours_per_day"]``) reach the limit."""
        over = next((q for q in HELD if wanted[q] and limits[q] is not None and held[q] + wanted[q] > limits[q]), None)
        if over is None and wanted["gpus"] and limits["gpu_hours_per_day"] is not None:
            if held["gpu_hours_per_day"] >= limits["gpu_hours_per_day"]:
                return "gpu_hours_per_day"
        return over

    # --- checks (synchronous: called right before the insert they guard) -----------------------

    def refuse(self, status: int, quota: str, limit: float, current: float, message: str):
        if self.metrics is not None:
            self.metrics.quota_refusals.labels(quota).inc()
        raise QuotaExceeded(status, quota, limit, current, message)

    def check_job(self, user: str, groups: list[str], profile: str, worker_profile: str | None, workers: int) -> None:
        with self.sessions() as s:  # one session for both reads: this runs at every submission
            limits, _ = self.applying(user, groups, s)
            queued = self.queued(user, s) if limits["queued_jobs"] is not None else 0
        if limits["dask_workers"] is not None and workers > limits["dask_workers"]:
            self.refuse(403, "dask_workers", limits["dask_workers"], workers,
                        f"{workers} Dask workers asked for; your quota is {limits['dask_workers']} per job")
        wanted = holds(self.profiles, profile, worker_profile, workers)
        never = self.blocking(limits, Counter(), wanted)
        if never == "gpu_hours_per_day":
            self.refuse(403, never, 0, 0, "your quota of GPU-hours per day is 0: a GPU job could never start")
        if never == "running_jobs":  # it would wait for ever
            self.refuse(403, never, limits[never], 1, "your quota of running jobs is 0: this job could never start")
        if never:
            self.refuse(403, never, limits[never], wanted[never],
                        f"this job alone needs {_amount(wanted[never])} {UNITS[never]}; your quota is "
                        f"{_amount(limits[never])}: it could never start")
        if limits["queued_jobs"] is not None:
            if queued >= limits["queued_jobs"]:
                self.refuse(429, "queued_jobs", limits["queued_jobs"], queued,
                            f"you have {queued} jobs queued and your quota is {limits['queued_jobs']}: "
                            "try again once some have started")

    def check_endpoint(self, user: str, groups: list[str], profile: str, new_servers: int, new_endpoint: bool) -> None:
        """Before a deploy (``new_endpoint``) or a patch that starts ``new_servers`` scoring servers.
        Refused (409) rather than waiting: a deploy is answered at once."""
        limits, _ = self.applying(user, groups)
        if new_endpoint and limits["endpoints"] is not None:
            have = self.endpoints(user)
            if have >= limits["endpoints"]:
                self.refuse(409, "endpoints", limits["endpoints"], have,
                            f"you have {have} endpoints and your quota is {limits['endpoints']}: delete one first")
        wanted: Counter = Counter()
        for _ in range(new_servers):
            wanted.update(holds(self.profiles, profile, None, 0, running_jobs=0))
        held = self.held_by_owner().get(user, Counter())
        over = self.blocking(limits, held, wanted)
        if over:
            self.refuse(409, over, limits[over], held[over],
                        f"{new_servers} scoring server(s) need {_amount(wanted[over])} {UNITS[over]}; you hold "
                        f"{_amount(held[over])} of your quota of {_amount(limits[over])}: stop something first")
