"""The evaluation of endpoint alert rules (executor/serving/alerts.py): the value each kind of rule
reads, when it is breached, the rules' checks and the webhook's host policy."""

from __future__ import annotations

import asyncio

import pytest

from notebench.executor.errors import NotebenchError
from notebench.executor.schemas import AlertRule
from notebench.executor.serving.alerts import (
    backoff,
    breached,
    check_rules,
    check_webhook,
    drift_value,
    host_refusal,
    quality_value,
    traffic_value,
    webhook_host,
)

WINDOWS = {"1h": 3600, "1d": 86400}


def version(model="m", v="1", requests=10, features=None, quality=None, baseline=True):
    features = features or {}
    return {"model": model, "version": v, "requests": requests, "baseline": {"source": "training_profile"} if baseline else None,
            "features": features, "drifted": [n for n, f in features.items() if f["drifted"]], "quality": quality or {}}


def feature(score, drifted):
    return {"drift_score": score, "drifted": drifted}


def rule(**fields):
    return check_rules([AlertRule.model_validate(fields)], WINDOWS)[0]


def test_drift_reads_the_largest_score_of_a_drifted_feature():
    report = {"versions": [
        version(v="1", features={"a": feature(0.9, False), "b": feature(0.3, True)}),
        version(v="2", features={"a": feature(0.5, True), "c": feature(0.1, False)}),
    ]}
    value, detail = drift_value(report, 1)
    # a's 0.9 on version 1 is not drifted (its thresholds say so): not counted.
    assert value == 0.5 and detail["version"] == "m/2" and detail["feature"] == "a"
    assert breached(rule(kind="drift", threshold=0.4), value)
    assert not breached(rule(kind="drift", threshold=0.5), value)


def test_drift_without_a_drifted_feature_is_zero_and_without_data_is_nothing():
    assert drift_value({"versions": [version(features={"a": feature(0.9, False)})]}, 1)[0] == 0.0
    assert not breached(rule(kind="drift", threshold=0), 0.0)
    assert drift_value({"versions": [version(baseline=False)]}, 1) == (None, {})
    assert drift_value({"versions": [version(requests=3, features={"a": feature(1, True)})]}, 5) == (None, {})


def test_quality_reads_the_worst_version_and_its_direction():
    report = {"versions": [version(v="1", quality={"accuracy": 0.9, "mae": 1.0}),
                           version(v="2", quality={"accuracy": 0.7, "mae": 3.0}),
                           version(v="3")]}
    value, detail = quality_value(report, "accuracy", 1)
    assert (value, detail["version"]) == (0.7, "m/2")
    assert breached(rule(kind="quality", metric="accuracy", threshold=0.8), value)
    assert not breached(rule(kind="quality", metric="accuracy", threshold=0.7), value)
    value, detail = quality_value(report, "mae", 1)
    assert (value, detail["version"]) == (3.0, "m/2")
    assert breached(rule(kind="quality", metric="mae", threshold=2), value)
    assert quality_value(report, "f1", 1) == (None, {})


def test_error_rate_and_p99_latency_of_a_window():
    assert traffic_value("error_rate", 10, 3, [], 1) == (0.3, {"requests": 10, "errors": 3})
    assert traffic_value("error_rate", 0, 0, [], 1) == (None, {})
    assert traffic_value("error_rate", 4, 4, [], 5) == (None, {})  # fewer than min_requests: no verdict
    latencies = [float(i) for i in range(1, 101)]
    assert traffic_value("p99_latency_ms", 100, 0, latencies, 1)[0] == 100.0
    assert breached(rule(kind="p99_latency_ms", threshold=99.5), 100.0)
    assert not breached(rule(kind="error_rate", threshold=0.3), 0.3)  # above, not at, the threshold
    assert not breached(rule(kind="error_rate", threshold=0.3), None)


def test_rules_are_stored_with_their_window_and_checked_field_by_field():
    assert rule(kind="error_rate", threshold=0.1) == {"kind": "error_rate", "threshold": 0.1, "window": "1h",
                                                      "metric": None, "min_requests": 1}

    def field_of(**fields):
        with pytest.raises(NotebenchError) as e:
            check_rules([AlertRule.model_validate({"kind": "drift", "threshold": 1, **fields})], WINDOWS)
        return e.value.field

    assert field_of(window="2h") == "rules.0.window"
    assert field_of(kind="p99_latency_ms", window="1d") == "rules.0.window"  # the router keeps one hour
    assert field_of(kind="quality") == "rules.0.metric"
    assert field_of(metric="accuracy") == "rules.0.metric"
    assert field_of(kind="error_rate", threshold=1.5) == "rules.0.threshold"


def test_webhook_urls_and_hosts():
    assert webhook_host("https://Hooks.Example.com:8443/x?y=1") == "hooks.example.com"
    for bad in ("ftp://example.com/", "file:///etc/passwd", "https://", "example.com/hook", "http://h:99999/"):
        with pytest.raises(ValueError):
            webhook_host(bad)
    anyone = ["*"]
    assert host_refusal("hooks.example.com", ["93.184.216.34"], anyone) is None
    # Not public: refused unless listed literally (a pattern is not enough).
    assert "not a public address" in host_refusal("metadata.internal", ["169.254.169.254"], anyone)
    assert "not a public address" in host_refusal("localhost", ["127.0.0.1", "::1"], anyone)
    assert "not a public address" in host_refusal("box", ["10.1.2.3"], ["*.lan", "*"])
    assert host_refusal("127.0.0.1", ["127.0.0.1"], ["127.0.0.1"]) is None
    # Only the listed hosts, when the list is not "*".
    listed = ["hooks.example.com", "*.corp.example"]
    assert host_refusal("a.corp.example", ["93.184.216.34"], listed) is None
    assert "is not allowed" in host_refusal("evil.example", ["93.184.216.34"], listed)


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/",  # the metadata address as one decimal number
    "http://[::ffff:169.254.169.254]/",  # and as an IPv4-mapped IPv6 address
    "http://0.0.0.0:8090/",
    "http://127.0.0.2/",
])
def test_addresses_that_are_not_public_are_refused_whatever_they_are_written_as(url):
    with pytest.raises(ValueError, match="not a public address"):
        asyncio.run(check_webhook(url, ["*"]))
    asyncio.run(check_webhook("http://127.0.0.1:9/", ["127.0.0.1"]))  # listed literally: allowed


def test_retries_back_off_exponentially_up_to_a_limit():
    assert [backoff(n, 5, 60) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
