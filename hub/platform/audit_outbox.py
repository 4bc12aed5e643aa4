"""An outbox for the audit log: what the hub and the MLflow service report reaches the executor's
log (``POST /services/executor/api/audit``) even when the executor is down, or the reporter is
killed, at the moment it happens.

``AuditOutbox.add()`` writes the event to a local SQLite file (committed before it returns:
kill -9 after that loses nothing), with a unique ``event_id`` and the time it happened. A
flusher thread sends what is waiting, oldest first and in batches, and deletes a batch once the
executor accepted it; while the executor cannot be reached it retries with a growing pause (up to
``max_backoff`` seconds). The executor skips an ``event_id`` it already has, so a batch sent again
(its answer lost, the reporter killed before deleting it) is appended once.

A thread, not a task of the reporter's event loop: it starts with the reporter (whatever is left
from before a restart goes out without waiting for a new event) and never blocks its loop.
Import-light (the standard library only): the MLflow front loads it before MLflow.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import urllib.error
import urllib.request
import uuid
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("notebench.audit")

BATCH = 200  # entries per POST (the executor takes at most 500)
# How often an idle flusher looks again: events kept by another process (``notebench token``) wake nobody.
IDLE_SECONDS = 5
MAX_TEXT = 255  # actor, target, owner: as the executor's log stores them
_ENTRY_FIELD = "entries."


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class AuditOutbox:
    """Events waiting for the executor, in ``path`` (SQLite, mode 0600), and the thread that sends them
    to ``url`` (the executor's /api/audit) with ``token`` (holding custom:notebench-audit:append)."""

    def __init__(self, path: str | Path, url: str, token: str, *, max_backoff: float = 10.0, timeout: float = 30.0):
        self.path = str(path)
        self.url = url
        self.token = token
        self.max_backoff = max_backoff
        self.timeout = timeout
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not os.path.exists(self.path):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        with closing(self._connect()) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")  # committed means on disk
        return db

    # --- the reporter's side ----------------------------------------------------------------------

    def add(self, actor: str, action: str, target: str, owner: str | None = None, **detail) -> None:
        """Keep one event (it happened now) for the executor's log; never raises (an error is logged):
        the action it records has been done already."""
        event = {
            "event_id": uuid.uuid4().hex,
            "at": now_iso(),
            "actor": str(actor)[:MAX_TEXT],
            "action": action,
            "target": str(target)[:MAX_TEXT],
            "owner": None if owner is None else str(owner)[:MAX_TEXT],
            "detail": detail,
        }
        try:
            with closing(self._connect()) as db, db:
                db.execute("INSERT INTO outbox (event) VALUES (?)", (json.dumps(event, default=str),))
        except Exception:
            log.exception("could not keep the audit event %s of %s by %s", action, target, actor)
            return
        self._wake.set()

    def pending(self) -> int:
        with closing(self._connect()) as db:
            return db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    # --- the flusher ------------------------------------------------------------------------------

    def start(self) -> AuditOutbox:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="notebench-audit-outbox", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)
            self._thread = None

    def _run(self) -> None:
        pause = 0.0
        while not self._stop.is_set():
            try:
                sent = self.flush_once()
            except Exception as e:
                pause = min(self.max_backoff, max(0.5, pause * 2))
                log.warning("audit events wait for the executor (%s); next try in %.1f s", e, pause)
                self._stop.wait(pause)  # new events do not cut the pause short
                continue
            pause = 0.0
            if not sent:  # nothing waiting: sleep until an event comes, or another process kept one
                self._wake.wait(IDLE_SECONDS)
                self._wake.clear()

    def flush_once(self) -> int:
        """Send the oldest waiting events (one batch); how many the executor took (0: none waiting).
        Raises when the executor cannot take them now."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT id, event FROM outbox ORDER BY id LIMIT ?", (BATCH,)).fetchall()
        if not rows:
            return 0
        body = json.dumps({"entries": [json.loads(event) for _, event in rows]}).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST",
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                answer.read()
        except urllib.error.HTTPError as e:
            if e.code == 400:  # one entry the executor will never take: drop it, keep the others
                bad = self._refused_entry(e, len(rows))
                if bad is not None:
                    log.error("the executor refuses audit event %s; dropped", rows[bad][1])
                    self._delete([rows[bad][0]])
                    return 1
            raise RuntimeError(f"HTTP {e.code} from {self.url}: {e.read()[:500]!r}") from None
        self._delete([row_id for row_id, _ in rows])
        return len(rows)

    @staticmethod
    def _refused_entry(error: urllib.error.HTTPError, count: int) -> int | None:
        """The index of the entry a 400 names in its ``field`` (entries.N...), if any."""
        try:
            field = json.loads(error.read()).get("field") or ""
        except (ValueError, AttributeError):
            return None
        if not field.startswith(_ENTRY_FIELD):
            return None
        index = field[len(_ENTRY_FIELD):].split(".")[0]
        return int(index) if index.isdecimal() and int(index) < count else None

    def _delete(self, ids: list[int]) -> None:
        with closing(self._connect()) as db, db:
            db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])


def audit_url(executor_url: str) -> str:
    """Where entries are appended, from the executor service's URL (its routes keep the prefix)."""
    return executor_url.rstrip("/") + "/services/executor/api/audit"


def outbox_from_env(path: str | Path, env=os.environ) -> AuditOutbox | None:
    """The outbox of a service the hub runs: the executor's URL from NOTEBENCH_AUDIT_URL (local
    mode) or NOTEBENCH_EXECUTOR_URL (the chart's), the service's own hub token
    (JUPYTERHUB_API_TOKEN); None when there is no executor to report to."""
    url = env.get("NOTEBENCH_AUDIT_URL")
    if url is None and env.get("NOTEBENCH_EXECUTOR_URL"):
        url = audit_url(env["NOTEBENCH_EXECUTOR_URL"])
    token = env.get("NOTEBENCH_AUDIT_TOKEN") or env.get("JUPYTERHUB_API_TOKEN")
    if not url or not token:
        return None
    return AuditOutbox(path, url, token).start()
