"""Shadow versions compared with the live ones: ``GET .../endpoints/{name}/shadow?window=…``.

A shadow version gets a copy of the requests (router.py, ``Router.mirror``) after the live answer
was sent; each of its answers is stored (db.ShadowPrediction) with the live request's id and the
live answer's version, status and latency. From those rows of a window:

- per live version: the requests copied to at least one shadow that it answered, its errors and
  latencies (so both sides are measured on the same requests);
- per shadow: its requests, errors (an error answer, or none within the timeout) and latencies;
  ``compared``: the requests both it and the live version answered with a readable prediction
  (the live one is the stored ``Prediction`` of the request: not cut at ``max_prediction_bytes``);
  ``agreement_rate``: the fraction of those where its per-row predictions equal the live ones;
  and its quality from the labels posted for the live request ids (serving/quality.py, as
  ``GET .../quality`` computes the live versions').
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from notebench.executor.db import Prediction, ShadowPrediction
from notebench.executor.serving import quality
from notebench.executor.serving.router import percentile


def agrees(live_outputs: str | None, shadow_outputs: str | None) -> bool | None:
    """Whether two answers predict the same for every row; None when either has no readable prediction."""
    if live_outputs is None or shadow_outputs is None:
        return None
    live, shadow = quality.predictions_of(live_outputs), quality.predictions_of(shadow_outputs)
    if live is None or shadow is None:
        return None
    return live == shadow


def _side(key: tuple[str, str], latencies: list[float], errors: int) -> dict:
    return {"model": key[0], "version": key[1], "requests": len(latencies), "errors": errors,
            "latency_ms": {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99)}}


def compare(sessions, endpoint_id: int, since: datetime, live_keys: list[tuple[str, str]],
            shadow_percents: dict[tuple[str, str], int | None]) -> dict:
    """``{"live": [...], "shadows": [...]}`` since ``since``: the versions live now and the shadows
    now first (with their ``traffic_percent``), then those met in the window's rows."""
    with sessions() as s:
        rows = s.execute(
            sa.select(ShadowPrediction.request_id, ShadowPrediction.model, ShadowPrediction.version,
                      ShadowPrediction.status, ShadowPrediction.latency_ms, ShadowPrediction.outputs,
                      ShadowPrediction.live_model, ShadowPrediction.live_version, ShadowPrediction.live_status,
                      ShadowPrediction.live_latency_ms, Prediction.outputs)
            .outerjoin(Prediction, sa.and_(Prediction.endpoint_id == ShadowPrediction.endpoint_id,
                                           Prediction.request_id == ShadowPrediction.request_id))
            .where(ShadowPrediction.endpoint_id == endpoint_id, ShadowPrediction.time >= since)
        ).all()
    live: dict[tuple[str, str], dict[str, tuple[int, float]]] = {}  # version -> request id -> (status, latency)
    shadows: dict[tuple[str, str], dict] = {}
    for request_id, model, version, status, latency, outputs, live_model, live_version, live_status, live_latency, \
            live_outputs in rows:
        live.setdefault((live_model, live_version), {})[request_id] = (live_status, live_latency)
        found = shadows.setdefault((model, version), {"latencies": [], "errors": 0, "compared": 0, "agreed": 0})
        found["latencies"].append(latency)
        found["errors"] += status >= 400
        agreed = agrees(live_outputs, outputs) if status < 400 and live_status < 400 else None
        if agreed is not None:
            found["compared"] += 1
            found["agreed"] += agreed
    labelled = quality.quality(sessions, endpoint_id, since, ShadowPrediction)

    live_order = live_keys + sorted(k for k in live if k not in live_keys)
    shadow_order = list(shadow_percents) + sorted(k for k in shadows if k not in shadow_percents)
    live_rows = []
    for key in live_order:
        answered = live.get(key, {}).values()
        live_rows.append(_side(key, [latency for _, latency in answered], sum(status >= 400 for status, _ in answered)))
    shadow_rows = []
    for key in shadow_order:
        found = shadows.get(key, {"latencies": [], "errors": 0, "compared": 0, "agreed": 0})
        labels = labelled.get(key, {"task": None, "labelled": 0, "quality": {}})
        shadow_rows.append({
            **_side(key, found["latencies"], found["errors"]),
            "traffic_percent": shadow_percents.get(key),
            "compared": found["compared"],
            "agreement_rate": found["agreed"] / found["compared"] if found["compared"] else None,
            "task": labels["task"], "labelled": labels["labelled"], "quality": labels["quality"],
        })
    return {"live": live_rows, "shadows": shadow_rows}
