"""Usage and cost (executor/usage.py): GET /api/usage, as JSON or CSV.

Admins read everyone's (``user=``, ``group=`` filter; ``by=group`` sums per group); any other user
reads their own only (``user`` omitted or their own name): another user's, or a group's, is 403.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, time, timedelta, timezone

from notebench.executor.api.audit import AuditHandler
from notebench.executor.api.base import APIHandler
from notebench.executor.db import iso
from notebench.executor.errors import NotebenchError
from notebench.executor.schemas import UsageReport

DEFAULT_DAYS = 30
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(9998, 12, 31, tzinfo=timezone.utc)
CSV_FIELDS = ("profile_hours", "cpu_seconds_requested", "cpu_seconds_used", "memory_gb_hours", "gpu_hours", "cost")


class UsageHandler(APIHandler):
    query_params = frozenset({"since", "until", "user", "group", "by", "format"})
    def moment(self, name: str) -> datetime | None:
        """A time or a date (UTC if it names no zone), within the years 1970 to 9998; 400 naming the field."""
        moment = AuditHandler.moment(self, name)
        try:
            moment = moment.astimezone(timezone.utc) if moment else None
        except OverflowError:  # an offset past year 1 or 9999
            moment = EARLIEST - timedelta(days=1)
        if moment is not None and not EARLIEST <= moment <= LATEST:
            raise NotebenchError(400, name, f"{name} must be between {EARLIEST.year} and {LATEST.year}")
        return moment

    async def get(self):
        user, group = self.get_argument("user", None) or None, self.get_argument("group", None) or None
        if not self.is_admin:
            if user not in (None, self.user_name):
                raise NotebenchError(403, "user", "only admins may read the usage of other users")
            if group is not None:
                raise NotebenchError(403, "group", "only admins may read the usage of a group")
            user = self.user_name
        by = self.get_argument("by", "user")
        if by not in ("user", "group"):
            raise NotebenchError(400, "by", "by must be user or group")
        if by == "group" and not self.is_admin:
            raise NotebenchError(403, "by", "only admins may read the usage of groups")
        form = self.get_argument("format", None)
        if form not in (None, "json", "csv"):
            raise NotebenchError(400, "format", "format must be json or csv")
        until = self.moment("until") or datetime.now(timezone.utc)
        today = datetime.combine(until.astimezone(timezone.utc).date(), time(), timezone.utc)
        since = self.moment("since") or today - timedelta(days=DEFAULT_DAYS - 1)
        if since >= until:
            raise NotebenchError(400, "since", "since must be before until")
        report = self.app.usage.report(since, until, owners={user} if user else None, group=group, by=by)
        report.update(since=iso(since), until=iso(until))
        if form == "csv" or (form is None and "text/csv" in self.request.headers.get("Accept", "")):
            self.write_csv(report)
        else:
            self.write_json(UsageReport.model_validate(report))

    def write_csv(self, report: dict) -> None:
        who = ("group", "users") if report["by"] == "group" else ("user", "groups")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(("day", *who, "profile", *CSV_FIELDS, "currency"))
        for row in report["rows"]:
            people = ";".join(row[who[1]])
            writer.writerow((row["day"], row[who[0]] or "", people, row["profile"],
                             *("" if row[f] is None else row[f] for f in CSV_FIELDS), report["currency"]))
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="usage.csv"')
        self.finish(out.getvalue())
