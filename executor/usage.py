"""Usage and cost (issue 17): what every server, job, Dask worker and scoring server held, and when.

The meter (``Usage.tick``, every ``c.Usage.interval_seconds``) keeps one interval per run of a
thing in the store (``db.UsageInterval``): opened when the thing is first seen, its
``last_seen_at`` moved on while it runs, ended when it stops, at its real end where that is known
(a job's ``finished_at``), else when it was last seen (so a server's usage is short by at most one
interval). What it sees:

- jobs and their Dask workers: the jobs table (``started_at``, ``finished_at``, ``profile``;
  ``workers`` × the worker profile, ``worker_profile`` else the job's);
- scoring servers: the ``scoring_servers`` table (the endpoint's owner and profile);
- user servers: the hub's listing (executor/hub_servers.py; the profile from ``user_options``,
  the start from the hub's ``started``). While the hub cannot be asked, server intervals stay open
  and unchanged; the next listing carries on (a server still there accrues the gap, one gone is
  ended when it was last seen). A culled or stopped server is gone from the listing: ended.

Intervals are in the store, so an executor restart loses nothing: the open ones carry on (a job or
server that ran through the restart accrues the gap). A run is opened once, whatever ticks or
executors race (unique kind, ref, start).

Resources are what a profile requests: ``cpu_request`` / ``mem_request`` where set (what
Kubernetes reserves), else ``cpu_limit`` / ``mem_limit`` (local mode's limits); a profile with
neither counts 0; ``gpus`` as given. Memory GB-hours are GiB (2**30 bytes, as profiles' sizes).
Used CPU-seconds are not measured yet (the column is there; reported as null).

Reports (``report``) split each interval at UTC midnights and sum per day, user and profile (or
per day, group and profile); a price per profile-hour (``c.Usage.prices``) makes a cost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa
from traitlets import Dict, Float, Unicode, validate
from traitlets.config import LoggingConfigurable

from notebench.executor.db import Endpoint, Job, ScoringServer, UsageInterval, utcnow
from notebench.executor.hub_servers import HubUnavailable, groups_of, running_servers
from notebench.hub.platform.profiles import ProfileError

log = logging.getLogger("notebench.executor")

KINDS = ("server", "job", "dask_worker", "scoring_server")
GiB = 2**30
FIELDS = ("profile_hours", "cpu_seconds_requested", "cpu_seconds_used", "memory_gb_hours", "gpu_hours", "cost")


@dataclass(frozen=True)
class Live:
    """A thing running now (or that ran: ``ended_at``), as its source sees it."""

    kind: str
    ref: str
    owner: str
    profile: str
    started: datetime | None  # when this run of it began (None: unknown, now is used)
    count: int = 1
    ended_at: datetime | None = None
    groups: tuple[str, ...] | None = None
    cpu_used: float | None = None  # CPU-seconds used so far, where the backend measures them


def split_days(start: datetime, end: datetime) -> list[tuple[date, float]]:
    """The seconds of [start, end) in each UTC day it touches, in order."""
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    parts = []
    while start < end:
        midnight = datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), timezone.utc)
        stop = min(end, midnight)
        parts.append((start.date(), (stop - start).total_seconds()))
        start = stop
    return parts


class Usage(LoggingConfigurable):
    interval_seconds = Float(60, help="How often the usage meter looks at what runs (seconds).").tag(config=True)
    prices = Dict(
        help="Price per profile-hour, e.g. {'gpu': 2.5}: a server, job or scoring server of that profile for an hour "
        "(a job's Dask workers: each). Profiles left out have no cost (null).",
    ).tag(config=True)
    currency = Unicode("USD", help="The currency of c.Usage.prices, as reports show it.").tag(config=True)

    @validate("prices")
    def _valid_prices(self, proposal):
        for profile, price in proposal["value"].items():
            if isinstance(price, bool) or not isinstance(price, (int, float)) or not price >= 0:
                raise ValueError(f"c.Usage.prices[{profile!r}] must be a number >= 0, got {price!r}")
        return proposal["value"]

    def __init__(self, app, **kwargs):
        """``app``: the executor (its sessions, profiles, hub tokens); configured as its child (parent=app)."""
        super().__init__(**kwargs)
        self.app = app
        self.sessions = app.sessions
        self._hub_down = False

    # --- the meter --------------------------------------------------------------------------------

    def resources(self, name: str, count: int) -> tuple[str, float, int, int]:
        """(profile name, cores, memory bytes, GPUs) that ``count`` of profile ``name`` request."""
        try:
            p = self.app.profiles.get(name)
        except ProfileError:  # a profile since removed from the config: its name, nothing counted
            return name, 0.0, 0, 0
        cpu, memory, gpus = p.reserved()
        return p.name, cpu * count, memory * count, gpus * count

    async def loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("usage meter tick failed")
            await asyncio.sleep(self.interval_seconds)

    async def tick(self) -> None:
        try:
            servers = await running_servers(self.app)
            self.app.quotas.listed(servers)  # servers hold CPU, memory and GPUs against quotas too
            if self._hub_down:
                log.info("usage: the hub answers again; servers' usage carries on")
            self._hub_down = False
        except HubUnavailable as e:
            if not self._hub_down:
                log.warning("usage: cannot list the servers now (%s); their intervals wait for the hub", e)
            servers, self._hub_down = None, True
        live = []
        if servers is not None:
            live += [Live("server", x.ref, x.user, x.profile, x.started, groups=x.groups) for x in servers]
        await asyncio.to_thread(self._record, live, servers is not None)
        await self._fill_groups()

    def _record(self, servers: list[Live], servers_known: bool) -> None:
        now = utcnow()
        with self.sessions() as s:
            open_rows = s.scalars(sa.select(UsageInterval).where(UsageInterval.ended.is_(False))).all()
            live = self._jobs(s, open_rows) + self._scoring_servers(s) + servers
            kinds = [k for k in KINDS if k != "server" or servers_known]
            self._reconcile(s, now, [r for r in open_rows if r.kind in kinds], [x for x in live if x.kind in kinds])
            s.commit()

    def _jobs(self, s, open_rows) -> list[Live]:
        """Jobs with an open interval, and started ones with none yet (finished or not)."""
        ref = sa.literal("job ") + sa.cast(Job.id, sa.String)
        counted = sa.exists().where(UsageInterval.kind == "job", UsageInterval.ref == ref,
                                    UsageInterval.started_at == Job.started_at)
        ids = {int(r.ref.split()[1]) for r in open_rows if r.kind in ("job", "dask_worker")}
        jobs = s.scalars(sa.select(Job).where(Job.started_at.is_not(None),
                                              sa.or_(Job.id.in_(ids), sa.not_(counted)))).all()
        live = []
        for job in jobs:
            # Running, or ended (finished_at). A job back in the queue (an executor restart) is not running.
            if job.finished_at is None and not (job.status == "running" or job.is_claimed):
                continue
            used = None
            if job.finished_at is None and job.runner_pid and job.runner_started:  # measured while it runs
                used = self.app.backend.cpu_seconds(job.runner_pid, job.runner_started)
            live.append(Live("job", f"job {job.id}", job.owner, job.profile, job.started_at, ended_at=job.finished_at,
                             cpu_used=used))
            if job.workers:
                live.append(Live("dask_worker", f"job {job.id}", job.owner, job.worker_profile or job.profile,
                                 job.started_at, count=job.workers, ended_at=job.finished_at))
        return live

    def _scoring_servers(self, s) -> list[Live]:
        rows = s.execute(sa.select(ScoringServer.id, ScoringServer.created_at, Endpoint.owner, Endpoint.profile)
                         .join(Endpoint, Endpoint.id == ScoringServer.endpoint_id)
                         .where(ScoringServer.status != "failed")).all()
        return [Live("scoring_server", f"scoring {i}", owner, profile, created) for i, created, owner, profile in rows]

    def _reconcile(self, s, now: datetime, open_rows: list[UsageInterval], live: list[Live]) -> None:
        by_ref = {(x.kind, x.ref): x for x in live}
        continued = set()
        for row in open_rows:
            thing = by_ref.get((row.kind, row.ref))
            # The same run: it began at or before the interval did (a later start is a new run).
            if thing is None or (thing.started is not None and thing.started > row.started_at):
                row.ended = True  # gone (stopped, culled, deleted): ended when last seen
                continue
            continued.add((row.kind, row.ref))
            if thing.cpu_used is not None:  # the last measure (it only grows; kept after the end)
                row.cpu_used_seconds = max(row.cpu_used_seconds or 0.0, thing.cpu_used)
            row.last_seen_at, row.ended = (thing.ended_at, True) if thing.ended_at else (max(now, row.last_seen_at), False)
        for thing in live:
            if (thing.kind, thing.ref) in continued:
                continue
            started = thing.started or now
            taken = s.scalar(sa.select(sa.func.count()).select_from(UsageInterval).where(
                UsageInterval.kind == thing.kind, UsageInterval.ref == thing.ref, UsageInterval.started_at == started))
            if taken:
                if thing.ended_at:  # counted already, and over
                    continue
                started = now  # a run counted and ended, going again (a scoring server restarted): from now
            profile, cpu, memory, gpus = self.resources(thing.profile, thing.count)
            end = thing.ended_at or max(now, started)
            s.add(UsageInterval(kind=thing.kind, ref=thing.ref, owner=thing.owner, profile=profile, count=thing.count,
                                groups=list(thing.groups) if thing.groups is not None else None, cpu=cpu,
                                memory_bytes=memory, gpus=gpus, started_at=started, last_seen_at=end,
                                ended=thing.ended_at is not None, cpu_used_seconds=thing.cpu_used))

    async def _fill_groups(self, at_most: int = 50) -> None:
        """The groups of owners whose intervals were opened without them (jobs, scoring servers)."""
        with self.sessions() as s:
            owners = s.scalars(sa.select(UsageInterval.owner).where(UsageInterval.groups.is_(None))
                               .distinct().limit(at_most)).all()
        for owner in owners:
            try:
                groups = await groups_of(self.app, owner)
            except HubUnavailable:
                return  # asked again at the next tick
            with self.sessions() as s:
                s.execute(sa.update(UsageInterval).where(UsageInterval.owner == owner, UsageInterval.groups.is_(None))
                          .values(groups=groups))
                s.commit()

    # --- reports ----------------------------------------------------------------------------------

    def report(self, since: datetime, until: datetime, owners: set[str] | None = None, group: str | None = None,
               by: str = "user") -> dict:
        """Usage in [since, until) per UTC day, user (or group) and profile, with totals."""
        q = sa.select(UsageInterval).where(UsageInterval.started_at < until, UsageInterval.last_seen_at > since)
        if owners is not None:
            q = q.where(UsageInterval.owner.in_(owners))
        with self.sessions() as s:
            intervals = s.scalars(q).all()
        sums: dict[tuple, dict] = defaultdict(lambda: {"groups": set(), "users": set(), **dict.fromkeys(FIELDS, 0.0),
                                                       "cpu_seconds_used": None, "cost": None})
        for row in intervals:
            groups = row.groups or []
            if group is not None and group not in groups:
                continue
            whole = (row.last_seen_at - row.started_at).total_seconds()
            for day, seconds in split_days(max(row.started_at, since), min(row.last_seen_at, until)):
                for who in ([group] if group else groups or [None]) if by == "group" else [row.owner]:
                    acc = sums[(day, who, row.profile)]
                    acc["groups"].update(groups)
                    acc["users"].add(row.owner)
                    self._add(acc, row, seconds, whole)
        rows = [self._row(day, who, profile, acc, by) for (day, who, profile), acc in
                sorted(sums.items(), key=lambda item: (item[0][0], item[0][1] or "", item[0][2]))]
        totals = {}
        for field in FIELDS:
            values = [r[field] for r in rows if r[field] is not None]
            totals[field] = round(sum(values), 6) if values or field not in ("cpu_seconds_used", "cost") else None
        return {"since": since, "until": until, "by": by, "currency": self.currency, "rows": rows, "totals": totals}

    def _add(self, acc: dict, row: UsageInterval, seconds: float, whole: float) -> None:
        hours = seconds / 3600
        acc["profile_hours"] += row.count * hours
        acc["cpu_seconds_requested"] += row.cpu * seconds
        acc["memory_gb_hours"] += row.memory_bytes / GiB * hours
        acc["gpu_hours"] += row.gpus * hours
        if row.cpu_used_seconds is not None:  # measured: its share of this day
            share = row.cpu_used_seconds * (seconds / whole if whole else 1)
            acc["cpu_seconds_used"] = (acc["cpu_seconds_used"] or 0.0) + share
        price = self.prices.get(row.profile)
        if price is not None:
            acc["cost"] = (acc["cost"] or 0.0) + price * row.count * hours

    @staticmethod
    def _row(day: date, who: str | None, profile: str, acc: dict, by: str) -> dict:
        head: dict = {"day": day.isoformat()}
        if by == "group":
            head.update(group=who, users=sorted(acc["users"]))
        else:
            head.update(user=who, groups=sorted(acc["groups"]))
        values = {f: (round(acc[f], 6) if acc[f] is not None else None) for f in FIELDS}
        return {**head, "profile": profile, **values}
