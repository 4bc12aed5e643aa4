"""When a schedule's next job is due: its cron expression read in its own time zone."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from croniter import croniter

from notebench.executor.db import utcnow


def next_run(cron: str, tz: str, after: datetime | None = None) -> datetime:
    base = (after or utcnow()).astimezone(ZoneInfo(tz))
    return croniter(cron, base).get_next(datetime).astimezone(timezone.utc)
