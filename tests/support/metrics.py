"""Reading the executor's Prometheus metrics (/services/executor/metrics) in tests."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families


def scrape(hub, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"token {token or hub.admin_token}"} if token != "" else {}
    return requests.get(f"{hub.url}/services/executor/metrics", headers=headers, timeout=60)


def samples(hub) -> dict[tuple, float]:
    r = scrape(hub)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=")  # the text exposition format
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)
