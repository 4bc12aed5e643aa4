"""Fair share: when jobs contend for the running slots, the user with the least recent usage starts first.

Recent usage is a decaying sum of what each user's jobs held while they ran: CPU-seconds, plus
GPU-seconds weighted by ``c.FairShare.gpu_weight`` (a job counts one core at least), each second counting half as much per
``c.FairShare.half_life_hours`` of age. It is computed from the jobs' own start and end times in
the store, so it is the same after a restart and between executors. A job started in this round
is charged ``c.FairShare.start_charge_seconds`` of its usage at once, so that one user's queue
does not take every free slot of a round before anyone else is considered.

With ``c.FairShare.by = "group"`` the users of a JupyterHub group share one figure, the sum of its
members' usage: a user of a heavy group waits behind a user of a light one.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta

import sqlalchemy as sa
from traitlets import Enum, Float
from traitlets.config import LoggingConfigurable

from notebench.executor.db import Job, utcnow
from notebench.executor.quotas import holds


class FairShare(LoggingConfigurable):
    half_life_hours = Float(24.0, help="Usage this old counts half as much as usage now.").tag(config=True)
    gpu_weight = Float(16.0, help="How many CPU-seconds one GPU-second of usage counts as.").tag(config=True)
    by = Enum(("user", "group"), "user", help="Whose recent usage orders the queue: each user's own, or their "
              "JupyterHub group's (the sum of its members'; a user in several groups counts under the least used, one "
              "in none under their own).").tag(config=True)
    start_charge_seconds = Float(
        600.0, help="Seconds of a job's usage charged to its owner as it starts (see the module's docstring)."
    ).tag(config=True)

    def __init__(self, sessions, profiles, **kwargs):
        super().__init__(**kwargs)
        self.sessions, self.profiles = sessions, profiles

    def rate(self, held: Counter) -> float:
        """Usage per second of something that holds ``held`` (a job counts one core at least: it holds a slot)."""
        return max(held["cpu"], 1.0) + self.gpu_weight * held["gpus"]

    def recent_usage(self, now: datetime | None = None) -> Counter:
        """Each user's decayed usage (CPU-second equivalents) from their jobs that ran lately."""
        now = now or utcnow()
        half_life = self.half_life_hours * 3600
        horizon = now - timedelta(seconds=10 * half_life)  # older usage counts less than a thousandth
        with self.sessions() as s:
            ran = s.execute(sa.select(Job.owner, Job.profile, Job.worker_profile, Job.workers, Job.started_at,
                                      Job.finished_at)
                            .where(Job.started_at.is_not(None), sa.or_(Job.finished_at.is_(None), Job.finished_at > horizon))).all()
        usage: Counter = Counter()
        rates: dict[tuple, float] = {}
        for owner, profile, worker_profile, workers, started, finished in ran:
            kind = (profile, worker_profile, workers)
            if kind not in rates:
                rates[kind] = self.rate(holds(self.profiles, *kind))
            age_start = max((now - started).total_seconds(), 0.0)
            age_end = max((now - finished).total_seconds(), 0.0) if finished else 0.0
            # The integral of 2^(-age / half_life) over the time the job ran.
            decayed = half_life / math.log(2) * (2 ** (-age_end / half_life) - 2 ** (-age_start / half_life))
            usage[owner] += rates[kind] * decayed
        return usage

    @staticmethod
    def by_group(usage: Counter, groups: dict[str, list[str]]) -> Counter:
        """Each user's score when groups share: their least used group's usage (the sum of its members'
        that ``groups`` knows), or their own when they are in no group."""
        group_usage: Counter = Counter()
        for owner, used in usage.items():
            for group in groups.get(owner, []):
                group_usage[group] += used
        return Counter({owner: min((group_usage[g] for g in member_of), default=usage[owner])
                        for owner, member_of in groups.items()})

    def charge(self, held: Counter) -> float:
        return self.rate(held) * self.start_charge_seconds
