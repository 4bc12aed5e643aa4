"""Alerts on endpoints: thresholds on drift, quality, error rate and p99 latency, a firing when one
is breached, and its delivery to the owner's webhook (``PUT/GET api/endpoints/{name}/alerts``).

Off the router's hot path: ``check_loop`` evaluates every endpoint's rules each
``c.Alerts.check_seconds``, from the monitoring report (drift, quality: serving/monitoring.py, one
report per window) and from the router's per-minute counts (error rate, p99 latency: the router
keeps the last hour, in this process). A breach fires once when it starts: it opens a firing row
that stays open (``cleared_at`` None) while the breach lasts and is closed when a check finds it
cleared; only then can that rule fire again. A firing is recorded in the audit log
(``endpoint.alert``), counted (``notebench_endpoint_alerts_fired_total``) and, when the endpoint has
a webhook, POSTed to it as JSON by ``deliver_loop``: retried with exponential backoff
(``retry_seconds``, doubled each attempt, at most ``max_retry_seconds``) until it is answered with a
2xx or ``max_attempts`` are used. The delivery state lives in the store, so a restarted executor
(even after kill -9) carries on with what is pending; a firing posted just before a crash may be
posted again, with the same ``X-Notebench-Alert-Id`` header for the receiver to drop copies.

The webhook is called by the executor, a privileged component, with a URL a user chose: its host
must match ``c.Alerts.allowed_webhook_hosts`` (patterns; ``*``, the default, any host), and a host
that resolves to an address that is not public (loopback, private, link-local such as the cloud
metadata address 169.254.169.254, ...) is refused unless it is listed literally. Both are checked
when the rules are set and again before each attempt; redirects are not followed.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import json
import socket
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from tornado.httpclient import AsyncHTTPClient
from traitlets import Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from notebench.executor import audit
from notebench.executor.db import AlertFiring, Endpoint, EndpointAlerts, iso, utcnow
from notebench.executor.errors import NotebenchError
from notebench.executor.schemas import AlertFiringResponse, AlertRule, EndpointAlertsRequest
from notebench.executor.serving.router import SERIES_MINUTES, percentile

ACTOR = "alerts"  # who the audit log says fired an alert
RECENT_FIRINGS = 50  # shown by GET .../alerts
HIGHER_IS_BETTER = ("accuracy", "f1")
ROUTER_WINDOW_SECONDS = SERIES_MINUTES * 60  # what the router keeps per minute
MAX_ERROR_CHARS = 500
DELIVERY_POLL_SECONDS = 1.0


# --- rules (pure: tests/unit/test_alert_rules.py) ----------------------------------------------


def check_rules(rules: list[AlertRule], windows: dict[str, int]) -> list[dict]:
    """The rules as stored (each with its window), or a 400 naming the field."""
    checked = []
    for i, rule in enumerate(rules):
        window = rule.window if rule.window is not None else next(iter(windows))
        if window not in windows:
            raise NotebenchError(400, f"rules.{i}.window", f"rules.{i}.window must be one of {', '.join(windows)}")
        if rule.kind in ("error_rate", "p99_latency_ms") and windows[window] > ROUTER_WINDOW_SECONDS:
            raise NotebenchError(400, f"rules.{i}.window", f"rules.{i}.window: {rule.kind} takes windows up to "
                                 f"{SERIES_MINUTES} minutes (what the router keeps)")
        if (rule.kind == "quality") != (rule.metric is not None):
            raise NotebenchError(400, f"rules.{i}.metric", f"rules.{i}.metric is required by quality rules, and "
                                 "only by them")
        if rule.kind == "error_rate" and rule.threshold > 1:
            raise NotebenchError(400, f"rules.{i}.threshold", f"rules.{i}.threshold: an error rate is from 0 to 1")
        checked.append(rule.model_copy(update={"window": window}).model_dump())
    return checked


def breached(rule: dict, value: float | None) -> bool:
    if value is None:
        return False
    if rule["kind"] == "quality" and rule["metric"] in HIGHER_IS_BETTER:
        return value < rule["threshold"]
    return value > rule["threshold"]


def drift_value(report: dict, min_requests: int) -> tuple[float | None, dict]:
    """The largest drift_score among the drifted features of any version (0 with none drifted);
    None when no version has a baseline and ``min_requests`` sampled requests."""
    value, detail = None, {}
    for version in report["versions"]:
        if version["baseline"] is None or version["requests"] < min_requests:
            continue
        for feature, drift in version["features"].items():
            score = drift["drift_score"] if drift["drifted"] else 0.0
            if value is None or score > value:
                value = score
                detail = {"version": f"{version['model']}/{version['version']}", "requests": version["requests"]}
                if drift["drifted"]:
                    detail.update(feature=feature, drifted=version["drifted"])
    return value, detail


def quality_value(report: dict, metric: str, min_requests: int) -> tuple[float | None, dict]:
    """The worst ``metric`` of any version with labels (lowest accuracy or F1, highest MAE or RMSE)."""
    value, detail = None, {}
    for version in report["versions"]:
        found = version["quality"].get(metric)
        if found is None or version["requests"] < min_requests:
            continue
        if value is None or (found < value if metric in HIGHER_IS_BETTER else found > value):
            value, detail = found, {"version": f"{version['model']}/{version['version']}",
                                    "requests": version["requests"]}
    return value, detail


def traffic_value(kind: str, requests: int, errors: int, latencies: list[float],
                  min_requests: int) -> tuple[float | None, dict]:
    """error_rate or p99_latency_ms of a window's invocations (all versions together)."""
    if requests < min_requests or requests == 0:
        return None, {}
    if kind == "error_rate":
        return errors / requests, {"requests": requests, "errors": errors}
    return percentile(latencies, 0.99), {"requests": requests}


# --- webhooks -----------------------------------------------------------------------------------


def webhook_host(url: str) -> str:
    """The host of an http(s) webhook URL, or ValueError saying what is wrong with it."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises ValueError)
    except ValueError as e:
        raise ValueError(f"not a URL: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return parts.hostname.lower()


def listed(host: str, allowed: list[str]) -> str | None:
    """"literally" when ``host`` is one of ``allowed`` as written (the operator meant that host),
    "pattern" when a pattern of them matches it, else None."""
    patterns = [pattern.lower() for pattern in allowed]
    if host in patterns:
        return "literally"
    return "pattern" if any(fnmatch.fnmatchcase(host, pattern) for pattern in patterns) else None


def host_refusal(host: str, addresses: list[str], allowed: list[str]) -> str | None:
    """Why the executor may not post to ``host`` (resolved to ``addresses``), or None."""
    how = listed(host, allowed)
    if how is None:
        return f"host {host} is not allowed (c.Alerts.allowed_webhook_hosts)"
    if how == "literally":
        return None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global:
            return (f"host {host} resolves to {ip}, not a public address (loopback, private and link-local "
                    "addresses are refused unless the host is listed in c.Alerts.allowed_webhook_hosts)")
    return None


async def resolve(host: str, port: int) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise ValueError(f"host {host} cannot be resolved: {e}") from None
    return sorted({str(info[4][0]) for info in infos})


async def check_webhook(url: str, allowed: list[str]) -> None:
    """ValueError when the executor may not post to ``url``."""
    host = webhook_host(url)
    if listed(host, allowed) != "pattern":  # not allowed, or listed literally: no address to look at
        addresses = []
    else:
        parts = urlsplit(url)
        addresses = await resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    refusal = host_refusal(host, addresses, allowed)
    if refusal:
        raise ValueError(refusal)


def backoff(attempts: int, first: float, most: float) -> float:
    """Seconds before the next attempt, after ``attempts`` failed ones: first, 2 first, 4 first, ... at most ``most``."""
    return min(most, first * 2 ** max(attempts - 1, 0))


# --- the component --------------------------------------------------------------------------------


class Alerts(LoggingConfigurable):
    check_seconds = Float(30, help="How often every endpoint's alert rules are evaluated.").tag(config=True)
    allowed_webhook_hosts = List(
        Unicode(), ["*"],
        help="Hosts webhooks may name (fnmatch patterns, e.g. 'hooks.example.com', '*.corp.example'; '*': any). "
        "A host resolving to a loopback, private or link-local address (the cloud metadata address) is refused "
        "unless it is listed literally.",
    ).tag(config=True)
    max_attempts = Integer(8, help="Webhook deliveries tried per firing before it is marked failed.").tag(config=True)
    retry_seconds = Float(5, help="Wait before the first retry of a delivery; doubled after each failure.").tag(config=True)
    max_retry_seconds = Float(600, help="Longest wait between two delivery attempts.").tag(config=True)
    webhook_timeout_seconds = Float(10, help="How long a webhook may take to answer.").tag(config=True)

    def __init__(self, app, **kwargs):
        super().__init__(parent=app, **kwargs)
        self.app = app
        self._wake = asyncio.Event()

    # --- the API's side ---------------------------------------------------------------------------

    async def set(self, endpoint: Endpoint, request: EndpointAlertsRequest, actor: str) -> list[dict]:
        """Replace the endpoint's rules and webhook (400 naming the field where they are not right);
        the firings still open are closed (their rules are gone)."""
        rules = check_rules(request.rules, self.app.monitoring.windows)
        if request.webhook is not None:
            try:
                await check_webhook(request.webhook, self.allowed_webhook_hosts)
            except ValueError as e:
                raise NotebenchError(400, "webhook", f"webhook: {e}") from None
        await asyncio.to_thread(self._store, endpoint.id, request.webhook, rules, actor)
        return rules

    def _store(self, endpoint_id: int, webhook: str | None, rules: list[dict], actor: str) -> None:
        with self.app.sessions() as s:
            config = s.scalar(sa.select(EndpointAlerts).where(EndpointAlerts.endpoint_id == endpoint_id))
            if config is None:
                config = EndpointAlerts(endpoint_id=endpoint_id)
                s.add(config)
            config.webhook, config.rules, config.updated_at, config.updated_by = webhook, rules, utcnow(), actor
            s.execute(sa.update(AlertFiring).where(AlertFiring.endpoint_id == endpoint_id,
                                                   AlertFiring.cleared_at.is_(None)).values(cleared_at=utcnow()))
            s.commit()

    def describe(self, endpoint: Endpoint) -> dict:
        with self.app.sessions() as s:
            config = s.scalar(sa.select(EndpointAlerts).where(EndpointAlerts.endpoint_id == endpoint.id))
            firings = s.scalars(sa.select(AlertFiring).where(AlertFiring.endpoint_id == endpoint.id)
                                .order_by(AlertFiring.id.desc()).limit(RECENT_FIRINGS)).all()
        return {"webhook": config.webhook if config else None, "rules": config.rules if config else [],
                "updated_at": iso(config.updated_at) if config else None,
                "updated_by": config.updated_by if config else None,
                "firings": [AlertFiringResponse.of(f) for f in firings]}

    # --- evaluation -------------------------------------------------------------------------------

    async def check_loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_seconds)
            try:
                await self.check()
            except Exception:
                self.log.exception("alert check failed")

    async def check(self) -> None:
        with self.app.sessions() as s:
            configured = s.execute(sa.select(Endpoint, EndpointAlerts)
                                   .join(EndpointAlerts, EndpointAlerts.endpoint_id == Endpoint.id)).all()
        for endpoint, config in configured:
            if not config.rules:
                continue
            try:
                await self.check_endpoint(endpoint, config)
            except Exception as e:  # MLflow down (a baseline): checked again next time
                self.log.warning("alerts of endpoint %s not checked: %s", endpoint.name, e)

    async def measure(self, endpoint: Endpoint, rule: dict, reports: dict) -> tuple[float | None, dict]:
        seconds = self.app.monitoring.windows.get(rule["window"])
        if seconds is None:  # the operator removed the window since: the rule cannot be evaluated
            return None, {}
        if rule["kind"] in ("drift", "quality"):
            if rule["window"] not in reports:  # one report per window, for all the rules that read it
                reports[rule["window"]] = await self.app.monitoring.report(endpoint, rule["window"])
            report = reports[rule["window"]]
            if rule["kind"] == "drift":
                return drift_value(report, rule["min_requests"])
            return quality_value(report, rule["metric"], rule["min_requests"])
        requests, errors, latencies = self.app.endpoints.router.window(endpoint.id, seconds)
        return traffic_value(rule["kind"], requests, errors, latencies, rule["min_requests"])

    async def check_endpoint(self, endpoint: Endpoint, config: EndpointAlerts) -> None:
        reports: dict = {}
        results = []
        for i, rule in enumerate(config.rules):
            value, detail = await self.measure(endpoint, rule, reports)
            results.append((i, rule, value, detail))
        fired = await asyncio.to_thread(self._record, endpoint.id, config.updated_at, results)
        for firing in fired:
            self.log.warning("alert on endpoint %s: %s %s over %s (threshold %s)", endpoint.name, firing.rule["kind"],
                             firing.value, firing.rule["window"], firing.rule["threshold"])
            audit.record(self.app.sessions, ACTOR, "endpoint.alert", f"endpoint {endpoint.name}", endpoint.owner,
                         firing=firing.id, rule=firing.rule, value=firing.value, detail=firing.detail)
            self.app.metrics.alerts_fired.labels(endpoint.name, firing.rule["kind"]).inc()
        if fired:
            self._wake.set()

    def _record(self, endpoint_id: int, updated_at, results: list) -> list[AlertFiring]:
        """Open a firing for each rule newly breached, close those no longer breached; the new firings."""
        now = utcnow()
        fired = []
        with self.app.sessions() as s:
            config = s.scalar(sa.select(EndpointAlerts).where(EndpointAlerts.endpoint_id == endpoint_id))
            if config is None or config.updated_at != updated_at:  # rules replaced meanwhile: measured the old ones
                return []
            open_ = {f.rule_index: f for f in s.scalars(sa.select(AlertFiring).where(
                AlertFiring.endpoint_id == endpoint_id, AlertFiring.cleared_at.is_(None)))}
            for i, rule, value, detail in results:
                if breached(rule, value):
                    if i not in open_:
                        firing = AlertFiring(endpoint_id=endpoint_id, rule_index=i, rule=rule, value=float(value),
                                             detail=detail, fired_at=now, webhook=config.webhook,
                                             state="pending" if config.webhook else None, attempts=0,
                                             next_attempt_at=now if config.webhook else None)
                        s.add(firing)
                        fired.append(firing)
                elif i in open_:
                    open_[i].cleared_at = now
            s.commit()
        return fired

    # --- delivery ---------------------------------------------------------------------------------

    async def deliver_loop(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except Exception:  # the store down: pending firings are still there next time
                self.log.exception("alert delivery failed")
            try:
                await asyncio.wait_for(self._wake.wait(), DELIVERY_POLL_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def deliver_due(self) -> None:
        with self.app.sessions() as s:
            due = s.execute(sa.select(AlertFiring, Endpoint.name, Endpoint.owner)
                            .join(Endpoint, Endpoint.id == AlertFiring.endpoint_id)
                            .where(AlertFiring.state == "pending", AlertFiring.next_attempt_at <= utcnow())
                            .order_by(AlertFiring.id).limit(100)).all()
        if due:
            await asyncio.gather(*(self.deliver(firing, name, owner) for firing, name, owner in due))

    async def deliver(self, firing: AlertFiring, endpoint: str, owner: str) -> None:
        assert firing.webhook is not None  # only firings with a webhook are pending
        payload = {"id": firing.id, "endpoint": endpoint, "owner": owner, "kind": firing.rule["kind"],
                   "rule": firing.rule, "value": firing.value, "detail": firing.detail,
                   "fired_at": iso(firing.fired_at), "attempt": firing.attempts + 1}
        error = None
        try:
            await check_webhook(firing.webhook, self.allowed_webhook_hosts)  # DNS, or the allow-list, may have changed
            r = await AsyncHTTPClient().fetch(
                firing.webhook, method="POST", body=json.dumps(payload), raise_error=False, follow_redirects=False,
                headers={"Content-Type": "application/json", "X-Notebench-Alert-Id": str(firing.id),
                         "User-Agent": "notebench-alerts"},
                request_timeout=self.webhook_timeout_seconds, connect_timeout=self.webhook_timeout_seconds,
            )
            if not 200 <= r.code < 300:
                error = f"HTTP {r.code}" + (f": {r.error}" if r.code == 599 else "")
        except ValueError as e:
            error = str(e)
        except Exception as e:  # any other failure of the attempt is retried, like a refused connection
            error = f"{type(e).__name__}: {e}"
        attempts = firing.attempts + 1
        values: dict[str, Any]
        if error is None:
            values = {"state": "delivered", "next_attempt_at": None, "last_error": None}
        elif attempts >= self.max_attempts:
            values = {"state": "failed", "next_attempt_at": None, "last_error": error[:MAX_ERROR_CHARS]}
        else:
            wait = backoff(attempts, self.retry_seconds, self.max_retry_seconds)
            values = {"last_error": error[:MAX_ERROR_CHARS], "next_attempt_at": utcnow() + timedelta(seconds=wait)}
        self.app.metrics.alert_deliveries.labels(values.get("state", "retry")).inc()
        if error is not None:
            self.log.warning("alert %d of endpoint %s not delivered (attempt %d): %s", firing.id, endpoint, attempts, error)
        with self.app.sessions() as s:
            s.execute(sa.update(AlertFiring).where(AlertFiring.id == firing.id).values(attempts=attempts, **values))
            s.commit()
