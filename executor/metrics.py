"""Prometheus metrics of the executor, at /services/executor/metrics (as the hub's /hub/metrics).

What the store knows (jobs by status, queue waits, durations, GPU leases) is read from it at each
scrape, so the figures survive restarts and agree between executors; what only the router sees
(requests, errors and latency per endpoint version) is counted as it happens, since this process
started. Names follow Prometheus' conventions: ``notebench_`` prefix, base units (seconds),
``_total`` for counters.
"""

from __future__ import annotations

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from notebench.executor.db import Job, utcnow
from notebench.hub.platform.statuses import FINAL, JOB_STATUSES

# Job waits and run times: seconds to days.
JOB_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
# Scoring latency: a millisecond to ten seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


def _histogram(name: str, documentation: str, values_by_label: dict[str, list[float]], label: str | None):
    family = HistogramMetricFamily(name, documentation, labels=[label] if label else None)
    for key, values in values_by_label.items():
        buckets = [(str(float(b)), sum(1 for v in values if v <= b)) for b in JOB_BUCKETS]
        buckets.append(("+Inf", len(values)))
        family.add_metric([key] if label else [], buckets, sum(values))
    return family


class StoreCollector:
    """Jobs and GPU leases as the store has them, at scrape time."""

    def __init__(self, sessions, gpus):
        self.sessions, self.gpus = sessions, gpus

    def collect(self):
        now = utcnow()
        with self.sessions() as s:
            counts = dict(s.execute(sa.select(Job.status, sa.func.count()).group_by(Job.status)).all())
            oldest = s.scalar(sa.select(sa.func.min(Job.created_at)).where(Job.status == "queued"))
            times = s.execute(sa.select(Job.status, Job.created_at, Job.started_at, Job.finished_at)
                              .where(Job.started_at.is_not(None))).all()
        jobs = GaugeMetricFamily("notebench_jobs", "Jobs in the store, by status", labels=["status"])
        for status in JOB_STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        yield GaugeMetricFamily("notebench_job_queue_length", "Jobs waiting to start", value=counts.get("queued", 0))
        wait = (now - oldest.replace(tzinfo=now.tzinfo)).total_seconds() if oldest else 0
        yield GaugeMetricFamily("notebench_job_queue_oldest_wait_seconds",
                                "How long the oldest queued job has waited", value=max(wait, 0))
        waits = [(started - created).total_seconds() for _, created, started, _ in times]
        yield _histogram("notebench_job_queue_wait_seconds", "From submission to start, of jobs that started",
                         {"": waits}, None)
        durations: dict[str, list[float]] = {status: [] for status in FINAL}
        for status, _, started, finished in times:
            if status in FINAL and finished is not None:
                durations[status].append((finished - started).total_seconds())
        yield _histogram("notebench_job_duration_seconds", "From start to end, of ended jobs, by how they ended",
                         durations, "status")
        leases = GaugeMetricFamily("notebench_gpu_leases", "GPUs leased now, by holder kind (server, job)",
                                   labels=["holder"])
        held: dict[str, int] = {"server": 0, "job": 0}
        for lease in self.gpus.leases():
            kind = lease["holder"].split(":", 1)[0]
            held[kind] = held.get(kind, 0) + 1
        for kind, count in sorted(held.items()):
            leases.add_metric([kind], count)
        yield leases


class Metrics:
    """The executor's registry; ``endpoint_*`` are fed by the router."""

    def __init__(self, sessions, gpus):
        self.registry = CollectorRegistry()
        self.registry.register(StoreCollector(sessions, gpus))
        labels = ["endpoint", "model", "version"]
        self.endpoint_requests = Counter("notebench_endpoint_requests", "Invocations answered, per endpoint version",
                                         labels, registry=self.registry)
        self.endpoint_errors = Counter("notebench_endpoint_errors", "Invocations answered with a 4xx or 5xx status",
                                       labels, registry=self.registry)
        self.endpoint_latency = Histogram("notebench_endpoint_request_duration_seconds",
                                          "Time to answer an invocation, per endpoint version", labels,
                                          buckets=LATENCY_BUCKETS, registry=self.registry)
        self.alerts_fired = Counter("notebench_endpoint_alerts_fired", "Alerts fired (a rule's breach began), per "
                                    "endpoint and rule kind", ["endpoint", "kind"], registry=self.registry)
        self.alert_deliveries = Counter("notebench_endpoint_alert_deliveries", "Attempts to post an alert to its "
                                        "webhook, by outcome (delivered, retry, failed: the last attempt failed)",
                                        ["result"], registry=self.registry)
        self.quota_refusals = Counter("notebench_quota_refusals", "Requests refused by a quota, per quota",
                                      ["quota"], registry=self.registry)
        self.jobs_waiting_for_quota = Gauge("notebench_jobs_waiting_for_quota", "Queued jobs held back by their "
                                            "owner's quota at the last dispatch, per quota", ["quota"],
                                            registry=self.registry)
        self.mlflow_up = Gauge("notebench_mlflow_up", "1 if the MLflow service answered its health check at the "
                               "last scrape, else 0 (absent without MLflow)", registry=self.registry)

    def invocation(self, endpoint: str, model: str, version: str, status: int, seconds: float) -> None:
        self.endpoint_requests.labels(endpoint, model, version).inc()
        if status >= 400:
            self.endpoint_errors.labels(endpoint, model, version).inc()
        self.endpoint_latency.labels(endpoint, model, version).observe(seconds)
