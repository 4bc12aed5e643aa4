"""Submitting the jobs of due schedules (the executor checks every ``c.Executor.schedule_check_seconds``)."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from notebench.executor import audit
from notebench.executor.db import Schedule, utcnow
from notebench.executor.quotas import QuotaExceeded
from notebench.executor.schedules.cron import next_run
from notebench.executor.schemas import JobRequest

log = logging.getLogger("notebench.executor")


async def submit_due(sessions, dispatcher) -> None:
    """Submit the jobs of due schedules: once per due schedule, however many ticks were missed,
    and by one executor only (compare-and-set on next_run_at)."""
    now = utcnow()
    with sessions() as s:
        due = s.scalars(sa.select(Schedule).where(Schedule.active, Schedule.next_run_at <= now)).all()
    for schedule in due:
        with sessions() as s:
            won = s.execute(
                sa.update(Schedule)
                .where(Schedule.id == schedule.id, Schedule.next_run_at == schedule.next_run_at)
                .values(next_run_at=next_run(schedule.cron, schedule.timezone, now))
            ).rowcount
            s.commit()
        if not won:
            continue
        try:
            request = JobRequest.model_validate(schedule.job_template)
            await dispatcher.submit(schedule.owner, request, schedule_id=schedule.id)  # within the owner's quotas
        except QuotaExceeded as e:  # this tick is skipped; the next one tries again
            log.warning("schedule %s skipped a run: %s", schedule.id, e.message)
            audit.record(sessions, f"schedule {schedule.id}", "schedule.skip", f"schedule {schedule.id}",
                         schedule.owner, reason=e.message, **e.details)
        except Exception:
            log.exception("schedule %s could not submit its job", schedule.id)
