"""The executor's store: jobs, schedules and model endpoints (SQLAlchemy; SQLite locally, PostgreSQL at scale).

The schema is owned by Alembic migrations (executor/migrations); ``connect()`` upgrades the
database to the newest revision before use, so every process sees the same schema. The engine is
the platform's (notebench.hub.platform.sqlite.make_engine), set up as the GPU lease store's is.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from notebench.hub.platform.sqlite import file_lock_beside, make_engine

MIGRATIONS = Path(__file__).parent / "migrations"



def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@overload
def iso(moment: datetime) -> str: ...
@overload
def iso(moment: datetime | None) -> str | None: ...
def iso(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a Z, as the API shows times."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if moment else None


class UTCDateTime(sa.TypeDecorator):
    """Timezone-aware datetimes in and out, on SQLite (which drops tzinfo) as on PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        # SQLite drops the zone; PostgreSQL answers in the session's zone: both become UTC.
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), index=True)
    owner: Mapped[str] = mapped_column(sa.String(255), index=True)
    status: Mapped[str] = mapped_column(sa.String(16), index=True, default="queued")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    parameters: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    profile: Mapped[str] = mapped_column(sa.String(64))
    kernel: Mapped[str] = mapped_column(sa.String(128))
    cwd: Mapped[str] = mapped_column(sa.String(1024), default="")
    # The notebook's path in the owner's files, when the submitter said (metadata.notebench.path).
    notebook_path: Mapped[str | None] = mapped_column(sa.String(1024))
    workers: Mapped[int] = mapped_column(default=0)
    worker_profile: Mapped[str | None] = mapped_column(sa.String(64))
    timeout_seconds: Mapped[int] = mapped_column()
    cells_completed: Mapped[int] = mapped_column(default=0)
    cells_total: Mapped[int] = mapped_column(default=0)
    error: Mapped[dict | None] = mapped_column(sa.JSON)
    mlflow_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    schedule_id: Mapped[int | None] = mapped_column(sa.ForeignKey("schedules.id", ondelete="SET NULL"), index=True)
    # Where the running job lives, so a restarted executor can find it again.
    runner_pid: Mapped[int | None] = mapped_column()
    runner_started: Mapped[float | None] = mapped_column(sa.Float)  # the runner's start time, as root saw it
    executor_id: Mapped[str | None] = mapped_column(sa.String(64))
    # Ended while MLflow was down: its run is closed once MLflow is back.
    mlflow_pending: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Succeeded, of a schedule with a promotion policy: its decision is still to be made (or
    # applied); kept here so that an outage or a restart delays it, never loses it (schedules/promotion.py).
    promotion_pending: Mapped[bool] = mapped_column(default=False, server_default=sa.false(), index=True)

    @property
    def is_claimed(self) -> bool:
        """What ``claimed()`` selects, for a job in hand."""
        return self.executor_id is not None and self.status in ("queued", "running")



def claimed():
    """Jobs an executor has taken: running, or queued while its backend holds them for resources
    that are busy (Kubernetes: a pod waiting for a GPU). Those keep their executor (it watches
    them and finds them again after a restart) and count against the running limits."""
    return sa.and_(Job.executor_id.is_not(None), Job.status.in_(("queued", "running")))


class Schedule(Base):
    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(255), index=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    cron: Mapped[str] = mapped_column(sa.String(255))
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    active: Mapped[bool] = mapped_column(default=True)
    job_template: Mapped[dict] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Gated retraining (schedules/promotion.py): a schemas.PromotionPolicy as a dict, or None.
    promotion: Mapped[dict | None] = mapped_column(sa.JSON(none_as_null=True))


class PromotionDecision(Base):
    """What a schedule's promotion policy decided after one of its jobs (schedules/promotion.py):
    the challenger and champion versions, their metric values, promoted or not, and why. One per
    job (unique): a decision retried after an outage or a restart is never made twice."""

    __tablename__ = "promotion_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(sa.ForeignKey("schedules.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int] = mapped_column(unique=True)  # no FK: a deleted job's decision stays
    owner: Mapped[str] = mapped_column(sa.String(255))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    model: Mapped[str] = mapped_column(sa.String(255))
    metric: Mapped[str] = mapped_column(sa.String(255))
    greater_is_better: Mapped[bool] = mapped_column()
    margin: Mapped[float] = mapped_column(sa.Float)
    alias: Mapped[str] = mapped_column(sa.String(255))
    endpoint: Mapped[str | None] = mapped_column(sa.String(63))
    challenger_version: Mapped[str | None] = mapped_column(sa.String(32))
    champion_version: Mapped[str | None] = mapped_column(sa.String(32))
    challenger_value: Mapped[float | None] = mapped_column(sa.Float)
    champion_value: Mapped[float | None] = mapped_column(sa.Float)
    promoted: Mapped[bool] = mapped_column()
    reason: Mapped[str] = mapped_column(sa.Text)
    # A promotion is applied after it is decided (the alias moved, the endpoint rolled): None until then.
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    endpoint_history_id: Mapped[int | None] = mapped_column()  # the endpoint's history entry of the roll
    note: Mapped[str | None] = mapped_column(sa.Text)  # what of a promotion could not be applied (alias, endpoint), and why


class AuditEntry(Base):
    """One line of the audit log (executor/audit.py): append-only, dropped only by retention."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(sa.String(255), index=True)  # who did it (a user, or a service)
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    target: Mapped[str] = mapped_column(sa.String(255))  # what it was done to: "job 12", "endpoint iris"
    owner: Mapped[str | None] = mapped_column(sa.String(255), index=True)  # whose thing that is
    detail: Mapped[dict] = mapped_column(sa.JSON, default=dict)


class Quota(Base):
    """What one user or group may hold at once (executor/quotas.py): {quantity: number or None}."""

    __tablename__ = "quotas"
    __table_args__ = (sa.UniqueConstraint("kind", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(8))  # "user" or "group"
    name: Mapped[str] = mapped_column(sa.String(255))
    limits: Mapped[dict] = mapped_column(sa.JSON, default=dict)


class UsageInterval(Base):
    """A stretch of time one thing (a server, a job, its Dask workers, a scoring server) held
    resources: what executor/usage.py meters, and reports per user, day and profile.

    ``cpu``, ``memory_bytes`` and ``gpus`` are the totals it held (``count`` times its profile's:
    a job's Dask workers are one interval); it ran from ``started_at`` to ``last_seen_at``, which
    grows while it runs and is its end once ``ended``."""

    __tablename__ = "usage_intervals"
    # One interval per run of a thing: a meter that ticks twice (or two executors) opens it once.
    __table_args__ = (sa.UniqueConstraint("kind", "ref", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))  # server, job, dask_worker, scoring_server
    ref: Mapped[str] = mapped_column(sa.String(512))  # "server alice/", "job 12", "scoring 3"
    owner: Mapped[str] = mapped_column(sa.String(255), index=True)  # the user it is counted to
    groups: Mapped[list | None] = mapped_column(sa.JSON(none_as_null=True))  # the owner's groups when it was opened; None: not known yet
    profile: Mapped[str] = mapped_column(sa.String(64))
    count: Mapped[int] = mapped_column(default=1)  # how many of the profile it holds (a job's Dask workers: their number)
    cpu: Mapped[float] = mapped_column(sa.Float)  # cores requested
    memory_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    gpus: Mapped[int] = mapped_column()
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ended: Mapped[bool] = mapped_column(default=False, index=True)
    cpu_used_seconds: Mapped[float | None] = mapped_column(sa.Float)  # measured; None where it is not


class Endpoint(Base):
    """A named endpoint of a user: invocations are split between its versions by weight."""

    __tablename__ = "endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(63), unique=True)
    owner: Mapped[str] = mapped_column(sa.String(255), index=True)
    profile: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default="starting")
    reason: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # "classification" or "regression" as declared at deploy; None: inferred from the labels (serving/quality.py)
    task: Mapped[str | None] = mapped_column(sa.String(16))
    # False: no request is sampled and no prediction kept (inputs that must not be stored)
    monitoring: Mapped[bool] = mapped_column(default=True, server_default=sa.true())


class ScoringServer(Base):
    """One model version of an endpoint and the scoring server process that serves it.

    ``weight`` is the share of traffic the version is meant to get; a server being replaced by
    a rolling update is ``retired`` (it still serves what it has in flight, then it stops). A
    ``shadow`` version (weight 0) gets a copy of ``traffic_percent`` of the requests, after the
    live answer: its answers are recorded (``ShadowPrediction``), never returned.
    """

    __tablename__ = "scoring_servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("endpoints.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(sa.String(255))
    version: Mapped[str] = mapped_column(sa.String(32))
    alias: Mapped[str | None] = mapped_column(sa.String(255))  # what was asked for, when it was an alias
    weight: Mapped[int] = mapped_column()
    shadow: Mapped[bool] = mapped_column(default=False)
    traffic_percent: Mapped[int | None] = mapped_column()  # of a shadow: the share of requests copied to it
    retired: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(sa.String(16), default="starting")
    reason: Mapped[str | None] = mapped_column(sa.Text)
    # What the backend needs to find the process again after a restart (local: pid, socket).
    handle: Mapped[dict | None] = mapped_column(sa.JSON)
    executor_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EndpointHistoryEntry(Base):
    """One change of an endpoint (serving/history.py): who or what made it, when, why, and the
    versions and weights asked for (an alias with the version it resolved to). Kept by the
    endpoint's name and id with no foreign key: the history of a deleted endpoint stays readable."""

    __tablename__ = "endpoint_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(index=True)  # the endpoints row it was (no FK: outlives it)
    endpoint: Mapped[str] = mapped_column(sa.String(63), index=True)  # its name
    owner: Mapped[str] = mapped_column(sa.String(255))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(sa.String(255))  # a user, or automation ("schedule 3")
    action: Mapped[str] = mapped_column(sa.String(16))  # deploy, update, rollback, delete
    reason: Mapped[str | None] = mapped_column(sa.Text)
    versions: Mapped[list] = mapped_column(sa.JSON, default=list)  # [{model, version, alias, weight}]
    detail: Mapped[dict] = mapped_column(sa.JSON, default=dict)  # e.g. a rollback's {"to": id}


class RequestSample(Base):
    """A sampled invocation (bounded per endpoint), for monitoring."""

    __tablename__ = "endpoint_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("endpoints.id", ondelete="CASCADE"), index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    model: Mapped[str] = mapped_column(sa.String(255))
    version: Mapped[str] = mapped_column(sa.String(32))
    latency_ms: Mapped[float] = mapped_column()
    status: Mapped[int] = mapped_column()
    inputs: Mapped[str] = mapped_column(sa.Text)  # the request body as received (JSON text, maybe cut)
    outputs: Mapped[str] = mapped_column(sa.Text)

    def to_dict(self) -> dict:
        return {
            "time": iso(self.time),
            "model": self.model,
            "version": self.version,
            "latency_ms": self.latency_ms,
            "status": self.status,
            "inputs": _json_or_text(self.inputs),
            "outputs": _json_or_text(self.outputs),
        }


class Prediction(Base):
    """What a version answered to one successful invocation (every one, not a sample), kept
    ``c.Endpoints.prediction_retention_days`` so that labels posted later can be matched to it."""

    __tablename__ = "endpoint_predictions"
    __table_args__ = (sa.Index("ix_endpoint_predictions_endpoint_time", "endpoint_id", "time"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(sa.String(32), unique=True)  # the router's X-Notebench-Request-Id
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("endpoints.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(sa.String(255))
    version: Mapped[str] = mapped_column(sa.String(32))
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    outputs: Mapped[str] = mapped_column(sa.Text)  # the scoring server's answer (JSON text, maybe cut)


class ShadowPrediction(Base):
    """What a shadow version answered to its copy of one invocation (serving/shadow.py), with what
    the live version answered to the client (its prediction is the ``Prediction`` of the same
    ``request_id``). Kept as long as predictions."""

    __tablename__ = "endpoint_shadow_predictions"
    __table_args__ = (sa.Index("ix_endpoint_shadow_predictions_endpoint_time", "endpoint_id", "time"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(sa.String(32), index=True)  # the live invocation's X-Notebench-Request-Id
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("endpoints.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(sa.String(255))  # the shadow
    version: Mapped[str] = mapped_column(sa.String(32))
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    latency_ms: Mapped[float] = mapped_column()
    status: Mapped[int] = mapped_column()  # the shadow's HTTP status; 502: it did not answer
    outputs: Mapped[str | None] = mapped_column(sa.Text)  # its answer (JSON text, maybe cut); None for an error
    live_model: Mapped[str] = mapped_column(sa.String(255))  # the version that answered the client
    live_version: Mapped[str] = mapped_column(sa.String(32))
    live_latency_ms: Mapped[float] = mapped_column()
    live_status: Mapped[int] = mapped_column()


class Feedback(Base):
    """The true label of one invocation of an endpoint, posted later (the latest one counts)."""

    __tablename__ = "endpoint_feedback"
    __table_args__ = (sa.UniqueConstraint("endpoint_id", "request_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("endpoints.id", ondelete="CASCADE"))
    request_id: Mapped[str] = mapped_column(sa.String(32))
    label: Mapped[Any] = mapped_column(sa.JSON)  # a number, string or bool; or a list of them (one per row)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    by: Mapped[str] = mapped_column(sa.String(255))  # who posted it


class FirstRequestsBaseline(Base):
    """A version's drift baseline made from its first sampled requests on an endpoint (it has no
    training profile or input example), kept so that a restart does not make a new one from
    later, maybe drifted, requests."""

    __tablename__ = "endpoint_baselines"
    __table_args__ = (sa.UniqueConstraint("endpoint_id", "model", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("endpoints.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(sa.String(255))
    version: Mapped[str] = mapped_column(sa.String(32))
    rows: Mapped[int] = mapped_column()
    profile: Mapped[dict] = mapped_column(sa.JSON)  # runtime/profile.py's profile of those requests
    raw: Mapped[dict] = mapped_column(sa.JSON)  # numeric columns' values, for the KS test
    request_ids: Mapped[list] = mapped_column(sa.JSON)  # the sampled requests (left out of the windows)
    note: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EndpointAlerts(Base):
    """An endpoint's alert rules and the webhook their firings are posted to (serving/alerts.py)."""

    __tablename__ = "endpoint_alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("endpoints.id", ondelete="CASCADE"), unique=True)
    webhook: Mapped[str | None] = mapped_column(sa.String(2048))
    rules: Mapped[list] = mapped_column(sa.JSON, default=list)  # [schemas.AlertRule as a dict]
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(sa.String(255))


class AlertFiring(Base):
    """One breach of an endpoint's alert rule: opened when it starts (``cleared_at`` None while it
    lasts, so it fires once), and its delivery to the webhook, kept here so that a restarted
    executor still delivers it (``state`` pending until delivered, or failed after the last attempt)."""

    __tablename__ = "endpoint_alert_firings"
    __table_args__ = (sa.Index("ix_endpoint_alert_firings_state_next", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("endpoints.id", ondelete="CASCADE"), index=True)
    rule_index: Mapped[int] = mapped_column()  # the rule's place in EndpointAlerts.rules when it fired
    rule: Mapped[dict] = mapped_column(sa.JSON)  # the rule as it was then
    value: Mapped[float] = mapped_column(sa.Float)  # what breached the threshold
    detail: Mapped[dict] = mapped_column(sa.JSON, default=dict)  # e.g. the version and feature it was seen on
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    webhook: Mapped[str | None] = mapped_column(sa.String(2048))  # where it is posted; None: nowhere
    state: Mapped[str | None] = mapped_column(sa.String(16))  # pending, delivered, failed; None: no webhook
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def _json_or_text(text: str):
    """Stored bodies are JSON unless they were cut to the size limit (then kept as text)."""
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    with file_lock_beside(url):  # executors starting together on a new SQLite file take turns
        command.upgrade(cfg, "head")


def connect(url: str) -> sessionmaker:
    upgrade(url)
    return sessionmaker(make_engine(url), expire_on_commit=False)
