"""Gated retraining: a schedule's promotion policy (schemas.PromotionPolicy) decides, after each of
its jobs that succeeded, whether the model version the job registered replaces the champion.

- The challenger is the newest version of the policy's model made from the job's own MLflow run:
  the run id the executor made for the job and recorded itself (after the notebook may have moved
  it, services.MlflowRuns.current_run), never a tag the job's code could have written.
- The champion is the version the policy's alias points at. Each is judged by the policy's metric
  as logged in its version's run (its latest value), read from MLflow as the owner. (The issue's
  alternative, ``mlflow.evaluate`` on held-out data, is the training notebook's to run: it logs
  what it measured, and that is the metric compared.)
- ``compare`` decides: promoted if there is no champion yet, or if the challenger beats it by the
  margin; otherwise the champion stays. A promotion moves the alias (as the owner) and, if the
  policy names an endpoint, rolls it (Endpoints.update: the rolling update of a PATCH, recorded in
  the endpoint's history with actor "schedule <id>" and the decision as its reason).
- Nothing is lost or done twice. The job's end marks it ``promotion_pending`` in the same update
  that makes it succeeded (jobs/dispatcher.py); this module's loop takes pending jobs from the
  store, so MLflow being down, or the executor killed, delays the decision and never drops it.
  The decision is one row per job (unique ``job_id``), written with its audit entry in one
  transaction; a promotion is then applied and marked applied, with the job no longer pending, in
  another. Applying again after a crash is harmless: setting an alias is idempotent, and an
  endpoint already rolled for the decision has a history entry that says so.
"""

from __future__ import annotations

import asyncio
import logging
import math

import sqlalchemy as sa

from notebench.executor.db import AuditEntry, EndpointHistoryEntry, Job, PromotionDecision, Schedule, utcnow
from notebench.executor.errors import NotebenchError
from notebench.executor.jobs.dispatcher import Backoff
from notebench.executor.schemas import MAX_REASON_CHARS, EndpointPatch, EndpointVersion, PromotionPolicy
from notebench.executor.services import RUN_ID, is_outage
from notebench.executor.serving import history

log = logging.getLogger("notebench.executor")

MAX_VERSIONS_OF_A_RUN = 100  # a job registers a few versions at most; more are not looked at


class Later(Exception):
    """The decision cannot go on now (MLflow or the hub down, the endpoint changing): try again later."""


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def compare(metric: str, greater_is_better: bool, margin: float, challenger_version: str | None,
            challenger_value: float | None, champion_version: str | None, champion_value: float | None) -> tuple[bool, str]:
    """(promoted, reason): whether the challenger replaces the champion, and why, with the figures.

    Better by the margin means an improvement greater than 0 and at least ``margin`` (the
    difference rounded to 12 decimals, so that 0.91 - 0.90 counts as 0.01). Equal values never
    promote. A value that is not a finite number cannot be compared: refused."""
    if challenger_version is None:
        return False, "refused: no challenger (the job registered no version of the model from its run)"
    if challenger_value is None:
        return False, f"refused: no metric {metric!r} in the run of challenger version {challenger_version}"
    if not math.isfinite(challenger_value):
        return False, f"refused: {metric} of challenger version {challenger_version} is {challenger_value}, not a number to compare"
    if champion_version is None:
        return True, f"promoted: no champion yet; version {challenger_version} has {metric} {_fmt(challenger_value)}"
    if champion_version == challenger_version:
        return False, f"refused: version {challenger_version} is the champion already"
    if champion_value is None or not math.isfinite(champion_value):
        return False, (f"refused: champion version {champion_version} has no {metric} to compare with "
                       f"(version {challenger_version} has {_fmt(challenger_value)})")
    gain = round(challenger_value - champion_value if greater_is_better else champion_value - challenger_value, 12)
    figures = (f"{metric} {_fmt(challenger_value)} of version {challenger_version} against {_fmt(champion_value)} of "
               f"champion version {champion_version}, {'higher' if greater_is_better else 'lower'} is better, margin {_fmt(margin)}")
    if gain > 0 and gain >= margin:
        return True, f"promoted: {figures}"
    return False, f"refused: {figures}"


def latest_metric(run: dict | None, metric: str) -> float | None:
    """The metric's value in an MLflow run (runs/get's "run"): its latest, as MLflow keeps it."""
    if run is None:
        return None
    for m in run.get("data", {}).get("metrics", []) or []:
        if isinstance(m, dict) and m.get("key") == metric and isinstance(m.get("value"), (int, float)):
            return float(m["value"])
    return None


async def check_policy(app, owner: str, policy: PromotionPolicy) -> None:
    """A 400 naming ``promotion.<field>`` unless ``owner`` may read the model and owns the endpoint."""
    registry = app.endpoints.registry
    if registry is None:
        raise NotebenchError(400, "promotion", "promotion: MLflow is not enabled on this Notebench")
    if await registry.get(owner, "registered-models/get", name=policy.model) is None:
        raise NotebenchError(400, "promotion.model",
                             f"promotion.model: no registered model {policy.model!r} that {owner} may read (register or "
                             "create it first)")
    if policy.endpoint is not None:
        endpoint = app.endpoints.find(policy.endpoint)
        if endpoint is None or endpoint.owner != owner:
            raise NotebenchError(400, "promotion.endpoint", f"promotion.endpoint: {owner} has no endpoint {policy.endpoint!r}")


def _outage(error: BaseException) -> bool:
    """MLflow or the hub down for now (as the registry reports it, or as a raw client error)."""
    return is_outage(error) or (isinstance(error, NotebenchError) and error.status in (502, 503))


class Promotions:
    def __init__(self, app):
        self.app = app
        self.sessions = app.sessions
        self._wake = asyncio.Event()
        self._backoff = Backoff()

    @property
    def registry(self):
        return self.app.endpoints.registry

    def wake(self) -> None:
        self._wake.set()

    async def loop(self) -> None:
        """Decide (and apply) the pending jobs' promotions: now, whenever a job ends, and every
        ``c.Executor.schedule_check_seconds`` (longer, doubling, while MLflow or the hub is down)."""
        while True:
            self._wake.clear()
            wait = float(self.app.schedule_check_seconds)
            try:
                await self.settle_pending()
                self._backoff.answered()
            except Later as e:
                wait = self._backoff.failed()
                log.warning("promotion decisions wait %.0f s: %s", wait, e)
            except Exception:
                log.exception("promotion decisions failed")
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except asyncio.TimeoutError:
                pass

    async def settle_pending(self) -> None:
        # A job whose MLflow run is not closed yet (MLflow was down at its end) waits: its run id may still change.
        with self.sessions() as s:
            jobs = s.scalars(sa.select(Job).where(Job.promotion_pending, Job.mlflow_pending.is_(False)).order_by(Job.id)).all()
        for job in jobs:
            try:
                await self.settle(job)
            except Later:
                raise  # the next round, after a wait: the others would wait on the same outage
            except Exception:
                log.exception("the promotion decision of job %s failed; retried later", job.id)

    async def settle(self, job: Job) -> None:
        with self.sessions() as s:
            decision = s.scalar(sa.select(PromotionDecision).where(PromotionDecision.job_id == job.id))
            schedule = s.get(Schedule, job.schedule_id) if job.schedule_id is not None else None
        if decision is None:
            if schedule is None or schedule.promotion is None:  # deleted, or its policy dropped, since the job ended
                self._done(job.id)
                return
            decision = await self.decide(job, schedule)
            if decision is None:  # another executor decided meanwhile
                return
        if decision.promoted and decision.applied_at is None:
            await self.apply(decision)
        else:
            self._done(job.id)

    def _done(self, job_id: int, s=None) -> None:
        stmt = sa.update(Job).where(Job.id == job_id).values(promotion_pending=False)
        if s is not None:
            s.execute(stmt)
            return
        with self.sessions() as s:
            s.execute(stmt)
            s.commit()

    async def _read(self, owner: str, path: str, **params) -> dict | None:
        try:
            return await self.registry.get(owner, path, **params)
        except Exception as e:
            if _outage(e):
                raise Later(str(e)) from None
            raise

    async def figures(self, job: Job, policy: PromotionPolicy) -> dict | None:
        """The challenger and champion versions and their metric values, read from MLflow as the
        owner; None if the owner may not read the model (any more)."""
        owner = job.owner
        found: dict[str, str | float | None] = {}
        if self.registry is None or await self._read(owner, "registered-models/get", name=policy.model) is None:
            return None
        run_id = job.mlflow_run_id
        if run_id and RUN_ID.fullmatch(run_id):
            # The versions made from the job's run (a run id is hex: safe in the filter), of the policy's model.
            listed = await self._read(owner, "model-versions/search", filter=f"run_id='{run_id}'",
                                      max_results=MAX_VERSIONS_OF_A_RUN)
            numbers = [int(v["version"]) for v in (listed or {}).get("model_versions", [])
                       if v.get("name") == policy.model and v.get("run_id") == run_id and str(v.get("version", "")).isdecimal()]
            if numbers:
                found["challenger_version"] = str(max(numbers))
                run = await self._read(owner, "runs/get", run_id=run_id)
                found["challenger_value"] = latest_metric((run or {}).get("run"), policy.metric)
        champion = await self._read(owner, "registered-models/alias", name=policy.model, alias=policy.alias)
        if champion is not None:
            version = champion["model_version"]
            found["champion_version"] = str(version["version"])
            if version.get("run_id"):
                run = await self._read(owner, "runs/get", run_id=version["run_id"])
                found["champion_value"] = latest_metric((run or {}).get("run"), policy.metric)
        return found

    async def decide(self, job: Job, schedule: Schedule) -> PromotionDecision | None:
        policy = PromotionPolicy.model_validate(schedule.promotion)
        found = await self.figures(job, policy)
        if found is None:
            found, promoted, reason = {}, False, f"refused: {job.owner} may not read registered model {policy.model!r} (any more)"
        else:
            promoted, reason = compare(policy.metric, policy.greater_is_better, policy.margin, found.get("challenger_version"),
                                       found.get("challenger_value"), found.get("champion_version"), found.get("champion_value"))
        decision = PromotionDecision(
            schedule_id=schedule.id, job_id=job.id, owner=schedule.owner, at=utcnow(), model=policy.model, metric=policy.metric,
            greater_is_better=policy.greater_is_better, margin=policy.margin, alias=policy.alias, endpoint=policy.endpoint,
            challenger_version=found.get("challenger_version"), champion_version=found.get("champion_version"),
            challenger_value=_finite(found.get("challenger_value")), champion_value=_finite(found.get("champion_value")),
            promoted=promoted, reason=reason,
        )
        figures = {k: getattr(decision, k) for k in ("model", "metric", "margin", "alias", "endpoint", "challenger_version",
                                                      "champion_version", "challenger_value", "champion_value", "promoted")}
        with self.sessions() as s:
            s.add(decision)
            # In the decision's transaction: a decision is in the audit log if and only if it was made.
            s.add(AuditEntry(actor=f"schedule {schedule.id}", action="schedule.promotion", target=f"schedule {schedule.id}",
                             owner=schedule.owner, detail={"job": job.id, "reason": reason, **figures}))
            if not promoted:
                self._done(job.id, s)
            try:
                s.commit()
            except sa.exc.IntegrityError:  # this job's decision exists: made by another executor meanwhile
                return None
        log.info("schedule %s, job %s: %s", schedule.id, job.id, reason)
        return decision

    async def apply(self, decision: PromotionDecision) -> None:
        """Move the alias to the challenger, then roll the endpoint; then mark the decision applied."""
        note, entry_id = None, None
        try:
            await self.registry.set_alias(decision.owner, decision.model, decision.alias, decision.challenger_version)
        except NotebenchError as e:
            if _outage(e):
                raise Later(e.message) from None
            note = f"alias {decision.alias} not moved: {e.message}"
        if note is None and decision.endpoint is not None:
            entry_id, note = await self.roll(decision)
        with self.sessions() as s:
            row = s.get(PromotionDecision, decision.id)
            row.applied_at, row.endpoint_history_id, row.note = utcnow(), entry_id, note
            self._done(decision.job_id, s)
            s.commit()
        if note:
            log.warning("schedule %s, job %s: promoted, but %s", decision.schedule_id, decision.job_id, note)

    def _rolled(self, endpoint, decision: PromotionDecision) -> int | None:
        """The id of the endpoint's history entry of this decision's roll, if it was made."""
        q = history.listing(endpoint).where(EndpointHistoryEntry.actor == f"schedule {decision.schedule_id}").limit(50)
        with self.sessions() as s:
            entries = s.scalars(q).all()
        return next((e.id for e in entries if (e.detail or {}).get("decision") == decision.id), None)

    async def roll(self, decision: PromotionDecision) -> tuple[int | None, str | None]:
        """Roll the policy's endpoint to the challenger: its live versions of the model are replaced
        by the challenger with their weight (other models' and shadows stay). (history entry id, note)."""
        endpoints = self.app.endpoints
        endpoint = endpoints.find(decision.endpoint)
        if endpoint is None or endpoint.owner != decision.owner:
            return None, f"endpoint {decision.endpoint} not rolled: {decision.owner} has no endpoint of that name"
        done = self._rolled(endpoint, decision)
        if done is not None:  # rolled before a restart
            return done, None
        servers = endpoints.describe(endpoint).versions  # those it serves (not those being retired)
        ours = [x for x in servers if x.model == decision.model and not x.shadow]
        if not ours:
            return None, f"endpoint {endpoint.name} not rolled: it serves no version of {decision.model}"
        challenger = (decision.model, str(decision.challenger_version))
        versions = [EndpointVersion(model=decision.model, version=challenger[1], weight=sum(x.weight for x in ours))]
        # Other models' versions, and the shadows, stay as they are; a shadow of the challenger goes live.
        versions += [EndpointVersion(model=x.model, version=x.version, weight=x.weight, shadow=x.shadow,
                                     traffic_percent=x.traffic_percent)
                     for x in servers if x not in ours and (x.model, str(x.version)) != challenger]
        groups = await self.app.quotas.groups_of(decision.owner)
        if groups is None:
            raise Later("the hub cannot tell the owner's groups (for their quota)")
        reason = f"schedule {decision.schedule_id}, job {decision.job_id}: {decision.reason}"[:MAX_REASON_CHARS]
        change = history.Change(f"schedule {decision.schedule_id}", None, reason, {"decision": decision.id, "job": decision.job_id})
        try:
            await endpoints.update(endpoint, EndpointPatch(versions=versions, reason=reason), groups, change)
        except NotebenchError as e:
            if e.status == 409 or _outage(e):  # changing now, or MLflow down: roll it later
                raise Later(f"endpoint {endpoint.name}: {e.message}") from None
            return None, f"endpoint {endpoint.name} not rolled: {e.message}"
        return self._rolled(endpoint, decision), None


def _finite(value: float | None) -> float | None:
    """What the store and the API keep of a value (JSON has no NaN or infinity)."""
    return value if value is not None and math.isfinite(value) else None
