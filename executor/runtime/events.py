"""A job's reports about itself (``events.jsonl``, or marked lines of a job pod's log): written by the
runner, parsed strictly by the executor.

The runner (as the job's owner) or, on Kubernetes, the job pod's log writes them: whatever the
owner's code chooses to write. So they are untrusted input to the executor: bounded in size,
a fixed schema, and the only statuses a job may report are its own ends (succeeded, failed).
Cancelling and timing out are the executor's decisions; "queued" or "running" from a job is a
forgery. Anything else fails that job alone, with the reason (``MalformedReport``), and never the
executor. Pids in a report are never acted on (they are kept for people reading the file).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from notebench.executor.user_files import read_job_file
from notebench.hub.platform.statuses import REPORTED_STATUSES

EVENT_PREFIX = "\x1enotebench-event "  # marks an event line in a job pod's log (Kubernetes)
MAX_EVENTS_BYTES = 1024 * 1024
MAX_LINE_BYTES = 64 * 1024
MAX_ENAME = 256
MAX_EVALUE = 8192

# Keys each event may carry (the pids are informational: see the module docstring).
_KEYS = {
    "started": {"event", "time", "kernel_pid", "runner_pid"},
    "finished": {"event", "time", "status", "error"},
}


def emit(events_path: Path, **event) -> None:
    """The runner's report: a line of ``events.jsonl`` in the job directory."""
    event["time"] = time.time()
    with open(events_path, "a") as f:
        f.write(json.dumps(event) + "\n")
        f.flush()


def print_event(**event) -> None:
    """A job pod's report: a marked line of its log (which the Kubernetes backend reads)."""
    event["time"] = time.time()
    sys.stdout.write(EVENT_PREFIX + json.dumps(event) + "\n")
    sys.stdout.flush()


class MalformedReport(Exception):
    """The job wrote something that is not a report the runner makes: the job fails with this."""


ERROR_KEYS = {"ename", "evalue", "cell_index", "output_cell_index"}


def _error(value) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - ERROR_KEYS:
        raise MalformedReport("'error' must be an object with ename, evalue, cell_index and output_cell_index")
    ename, evalue = value.get("ename", ""), value.get("evalue", "")
    if not isinstance(ename, str) or not isinstance(evalue, str):
        raise MalformedReport("'error.ename' and 'error.evalue' must be strings")
    error: dict = {"ename": ename[:MAX_ENAME], "evalue": evalue[:MAX_EVALUE]}
    for key in ("cell_index", "output_cell_index"):
        cell = value.get(key)
        if cell is not None and (type(cell) is not int or cell < 0):
            raise MalformedReport(f"'error.{key}' must be a non-negative integer or null")
        if key == "cell_index" or cell is not None:
            error[key] = cell
    return error


def parse_event(line: bytes | str) -> dict:
    """One report, checked against the schema; raises MalformedReport."""
    if len(line) > MAX_LINE_BYTES:
        raise MalformedReport(f"a report line is longer than {MAX_LINE_BYTES} bytes")
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        raise MalformedReport(f"a report line is not JSON: {bytes(line[:80]) if isinstance(line, bytes) else line[:80]!r}")
    if not isinstance(event, dict) or event.get("event") not in _KEYS:
        raise MalformedReport("a report must be an object whose 'event' is 'started' or 'finished'")
    unknown = set(event) - _KEYS[event["event"]]
    if unknown:
        raise MalformedReport(f"unknown field(s) in a '{event['event']}' report: {', '.join(sorted(unknown))}")
    when = event.get("time")
    if when is not None and (type(when) not in (int, float) or not math.isfinite(when)):
        raise MalformedReport("'time' must be a number")
    for pid in ("kernel_pid", "runner_pid"):
        if event.get(pid) is not None and type(event[pid]) is not int:
            raise MalformedReport(f"'{pid}' must be an integer")
    if event["event"] == "finished":
        if event.get("status") not in REPORTED_STATUSES:
            raise MalformedReport(f"a job can only report 'succeeded' or 'failed', not {str(event.get('status'))[:40]!r}")
        event["error"] = _error(event.get("error"))
    return event


def read_events(path: Path, offset: int) -> tuple[list[dict], int]:
    """The complete reports in ``path`` after ``offset`` up to the job's end, and the offset after them.
    Raises MalformedReport if the file is not the runner's (a link, a FIFO, too large) or a line is bad."""
    try:
        raw = read_job_file(path, offset, MAX_EVENTS_BYTES)
    except PermissionError as e:
        raise MalformedReport(f"events.jsonl: {e}")
    except OverflowError:
        raise MalformedReport(f"events.jsonl is larger than {MAX_EVENTS_BYTES} bytes")
    if raw is None:
        return [], offset
    complete = raw[: raw.rfind(b"\n") + 1]  # a line still being written waits for the next read
    if len(raw) - len(complete) > MAX_LINE_BYTES:
        raise MalformedReport(f"a report line is longer than {MAX_LINE_BYTES} bytes")
    events = []
    for line in complete.splitlines():
        if line.strip():
            events.append(parse_event(line))
            if events[-1]["event"] == "finished":
                break  # the job's end: nothing it writes afterwards is read
    return events, offset + len(complete)


def malformed(reason: str) -> dict:
    """The error recorded for a job whose reports could not be read."""
    return {"ename": "MalformedReport", "evalue": f"the job's report could not be read: {reason}", "cell_index": None}


def notebook_progress(path: Path, limit: int) -> tuple[int, int] | None:
    """(cells completed, cells) of the output notebook the job is writing; None if unreadable.
    Any shape of file is survived: it is the owner's."""
    try:
        nb = json.loads(read_job_file(path, limit=limit) or b"")
        cells = [c for c in nb["cells"] if isinstance(c, dict)]
        meta = [data if isinstance(data := c.get("metadata"), dict) else {} for c in cells]
        # papermill adds marker cells on errors: they are not the user's cells.
        mine = [m for m in meta if "papermill-error-cell-tag" not in (tags if isinstance(tags := m.get("tags"), list) else [])]
        done = sum(1 for m in mine if isinstance(m.get("papermill"), dict) and m["papermill"].get("status") == "completed")
        return done, len(mine)
    except (OSError, OverflowError, ValueError, RecursionError, TypeError, KeyError):
        return None
