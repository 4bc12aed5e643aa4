"""Drift monitoring of model endpoints: per endpoint, version and window, the sampled requests'
features and predictions against the version's baseline (``GET endpoints/{name}/monitoring``).

Off the router's hot path: the router only samples requests (``c.Endpoints.samples_per_second``
per endpoint, bodies cut at ``c.Endpoints.max_sample_bytes``, the latest ``c.Endpoints.max_samples``
kept; serving/endpoints.py writes them to ``endpoint_requests``). Everything here runs when the API is
asked, in a worker thread, from that stored sample.

The baseline of a model version, the first found of:
1. ``training_profile``: the profile ``notebench.log_training_profile(df)`` logged with the version's run
   (``notebench/training_profile.json``, runtime/profile.py);
2. ``input_example``: the model's logged input example, profiled the same way (a few rows: rough);
3. ``first_requests``: the first ``c.Monitoring.first_requests`` sampled requests of the version on
   the endpoint (until then there is no baseline). Made as soon as they are sampled (``keep_loop``
   looks every ``c.Monitoring.baseline_check_seconds``, before the sample's rotation drops them) and
   kept in the store (``endpoint_baselines``): a restart must not make a new one from later, maybe
   drifted, requests.
Baselines are cached per model version (artifacts) or per endpoint and version (first requests).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from traitlets import Dict, Float, Integer
from traitlets.config import LoggingConfigurable

from notebench.executor.db import Endpoint, FirstRequestsBaseline, RequestSample, ScoringServer, iso, utcnow
from notebench.executor.runtime.profile import PROFILE_ARTIFACT, compare_column, is_numeric, profile
from notebench.executor.serving import quality

MISSING_ARTIFACT_RETRY_SECONDS = 300  # a version without profile or example is asked again after this
MAX_ARTIFACT_BYTES = 16 * 1024 * 1024
MAX_RAW_VALUES = 20_000  # baseline values kept per column for the KS test (first-requests baselines)


@dataclass
class Baseline:
    source: str  # training_profile | input_example | first_requests
    rows: int
    profile: dict[str, Any]
    raw: dict[str, list] = field(default_factory=dict)  # numeric columns' values (first requests): KS
    request_ids: set[int] = field(default_factory=set)  # the sampled requests it was made from
    note: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "rows": self.rows, "note": self.note}


# --- reading the sample ---------------------------------------------------------------------------


def _table(value, columns: list[str]) -> pd.DataFrame | None:
    """MLflow's ``inputs``/``instances``: records, a {column: values} mapping, or rows in ``columns``' order."""
    if isinstance(value, dict):
        return pd.DataFrame({k: v if isinstance(v, list) else [v] for k, v in value.items()})
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(row, dict) for row in value):
        return pd.DataFrame.from_records(value)
    if all(isinstance(row, list) and len(row) == len(columns) for row in value):
        return pd.DataFrame(value, columns=columns)
    if len(columns) == 1 and not any(isinstance(row, (list, dict)) for row in value):
        return pd.DataFrame({columns[0]: value})
    return None


def parse_inputs(text: str, columns: list[str]) -> pd.DataFrame | None:
    """The rows of a scoring request (MLflow's scoring protocol: ``dataframe_split``,
    ``dataframe_records``, ``instances``, ``inputs``, or CSV with a header), or None when unreadable.
    ``columns``: the baseline's, naming the values of rows given as plain lists."""
    try:
        body = json.loads(text)
    except ValueError:
        if text.lstrip()[:1] in ("{", "["):  # JSON, cut at max_sample_bytes or broken
            return None
        try:
            return pd.read_csv(io.StringIO(text))
        except Exception:
            return None
    if not isinstance(body, dict):
        return None
    try:
        if isinstance(body.get("dataframe_split"), dict):
            split = body["dataframe_split"]
            return pd.DataFrame(split["data"], columns=split.get("columns") or columns)
        if isinstance(body.get("dataframe_records"), list):
            return pd.DataFrame.from_records(body["dataframe_records"])
        for key in ("inputs", "instances"):
            if key in body:
                return _table(body[key], columns)
    except (KeyError, TypeError, ValueError, AssertionError):
        return None
    return None


def parse_outputs(text: str) -> list | None:
    """The first value of each prediction (``{"predictions": [...]}`` or a bare list), or None."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    predictions = body.get("predictions") if isinstance(body, dict) else body
    if not isinstance(predictions, list):
        return None
    values = []
    for p in predictions:
        if isinstance(p, dict):
            p = next(iter(p.values()), None)
        elif isinstance(p, list):
            p = p[0] if p else None
        values.append(p)
    return values


@dataclass
class Rows:
    features: pd.DataFrame
    predictions: pd.Series
    requests: int = 0
    bad_requests: int = 0
    bad_rows: int = 0
    total_rows: int = 0


def read_samples(samples: list[RequestSample], columns: list[str], kinds: dict[str, str]) -> Rows:
    """The rows of ``samples`` that fit the baseline's ``columns`` (``kinds``: numeric or categorical),
    and the schema violations among them."""
    frames, outputs = [], []
    rows = Rows(pd.DataFrame(columns=columns), pd.Series(dtype=object), requests=len(samples))
    for sample in samples:
        frame = parse_inputs(sample.inputs, columns)
        if frame is None:
            rows.bad_requests += 1
            continue
        rows.total_rows += len(frame)
        if columns and sorted(map(str, frame.columns)) != sorted(columns):
            rows.bad_rows += len(frame)
            continue
        frame.columns = [str(c) for c in frame.columns]
        bad = pd.Series(False, index=frame.index)
        for name in columns:
            if kinds.get(name) == "numeric":
                bad |= frame[name].notna() & pd.to_numeric(frame[name], errors="coerce").isna()
        rows.bad_rows += int(bad.sum())
        frames.append(frame.loc[~bad, columns])
        if sample.status == 200:
            outputs.extend(parse_outputs(sample.outputs) or [])
    if frames:
        rows.features = pd.concat(frames, ignore_index=True)
    rows.predictions = pd.Series(outputs, dtype=object)
    return rows


def _kinds(prof: dict[str, Any]) -> dict[str, str]:
    return {name: column["kind"] for name, column in prof["columns"].items()}


def _numeric_or_text(series: pd.Series) -> pd.Series:
    """Values read from JSON as objects: numbers where all are, else text."""
    numbers = pd.to_numeric(series, errors="coerce")
    return numbers if numbers.notna().sum() == series.notna().sum() else series


# --- monitoring -----------------------------------------------------------------------------------


class Monitoring(LoggingConfigurable):
    windows = Dict(
        {"1h": 3600, "1d": 86400},
        help="The windows GET endpoints/{name}/monitoring?window= takes: name -> seconds (the first is the default).",
    ).tag(config=True)
    psi_threshold = Float(0.2, help="A feature whose PSI against the baseline is above this is drifted.").tag(config=True)
    p_value_threshold = Float(
        0.01, help="A categorical feature (chi-square) or a numeric one with a KS test is drifted below this p-value."
    ).tag(config=True)
    first_requests = Integer(
        200, help="Without a training profile or input example, the first this many sampled requests are the baseline."
    ).tag(config=True)
    baseline_check_seconds = Integer(
        10, help="How often serving versions without a baseline are looked at, to make their first-requests one."
    ).tag(config=True)

    def __init__(self, app, **kwargs):
        super().__init__(parent=app, **kwargs)
        self.app = app
        self._artifacts: dict[tuple[str, str], tuple[float, Baseline | None]] = {}
        self._first: dict[tuple[int, str, str, str], Baseline] = {}

    # --- baselines --------------------------------------------------------------------------

    async def _artifact_baseline(self, owner: str, model: str, version: str) -> Baseline | None:
        registry = self.app.endpoints.registry
        if registry is None:
            return None
        found = await registry.get(owner, "model-versions/get", name=model, version=version)
        run_id = ((found or {}).get("model_version") or {}).get("run_id")
        if run_id:
            body = await registry.artifact(owner, "get-artifact", path=PROFILE_ARTIFACT, run_uuid=run_id)
            prof = _json(body)
            if isinstance(prof, dict) and isinstance(prof.get("columns"), dict):
                return Baseline("training_profile", int(prof.get("rows") or 0), prof)
        example = _json(await registry.artifact(owner, "model-versions/get-artifact", path="input_example.json",
                                                name=model, version=version))
        frame = None
        if isinstance(example, dict) and "data" in example:  # pandas' split orient, as MLflow saves a DataFrame
            frame = parse_inputs(json.dumps({"dataframe_split": example}), [])
        elif example is not None:
            frame = parse_inputs(json.dumps(example), [])
        if frame is not None and len(frame):
            frame.columns = [str(c) for c in frame.columns]
            return Baseline("input_example", len(frame), profile(frame.apply(_numeric_or_text)),
                            note=f"the model's input example: {len(frame)} rows only, so the scores are rough")
        return None

    async def baseline(self, endpoint: Endpoint, model: str, version: str) -> Baseline | None:
        cached = self._artifacts.get((model, version))
        if cached is None or (cached[1] is None and time.monotonic() - cached[0] > MISSING_ARTIFACT_RETRY_SECONDS):
            cached = (time.monotonic(), await self._artifact_baseline(endpoint.owner, model, version))
            self._artifacts[(model, version)] = cached
        if cached[1] is not None:
            return cached[1]
        key = (endpoint.id, iso(endpoint.created_at), model, version)  # ids of deleted endpoints may come again
        if key not in self._first:
            first = await asyncio.to_thread(self._stored_or_new, endpoint.id, model, version)
            if first is None:
                return None
            self._first[key] = first
        return self._first[key]

    async def keep_loop(self) -> None:
        """Make the first-requests baselines of serving versions as soon as their requests are sampled."""
        while True:
            await asyncio.sleep(self.baseline_check_seconds)
            for route in list(self.app.endpoints.router.routes.values()):
                if not route.monitored:
                    continue
                for target in route.targets:
                    endpoint = self.app.endpoints.find(route.name)
                    if endpoint is None or endpoint.id != route.endpoint_id:
                        break
                    try:
                        await self.baseline(endpoint, target.model, target.version)
                    except Exception as e:  # MLflow down: asked again next time
                        self.log.debug("no baseline for %s/%s yet: %s", target.model, target.version, e)

    def _stored_or_new(self, endpoint_id: int, model: str, version: str) -> Baseline | None:
        """The stored first-requests baseline, or one made now (and stored) once there are enough requests."""
        where = (FirstRequestsBaseline.endpoint_id == endpoint_id, FirstRequestsBaseline.model == model,
                 FirstRequestsBaseline.version == version)
        with self.app.sessions() as s:
            row = s.scalar(sa.select(FirstRequestsBaseline).where(*where))
        if row is None:
            first = self._first_requests(endpoint_id, model, version)
            if first is None:
                return None
            with self.app.sessions() as s:
                s.add(FirstRequestsBaseline(endpoint_id=endpoint_id, model=model, version=version, rows=first.rows,
                                            profile=first.profile, raw=first.raw, request_ids=sorted(first.request_ids),
                                            note=first.note))
                try:
                    s.commit()
                    return first
                except sa.exc.IntegrityError:  # another made it meanwhile (or the endpoint is gone)
                    s.rollback()
                    row = s.scalar(sa.select(FirstRequestsBaseline).where(*where))
                    if row is None:
                        return None
        return Baseline("first_requests", row.rows, row.profile, row.raw, set(row.request_ids), note=row.note)

    def _first_requests(self, endpoint_id: int, model: str, version: str) -> Baseline | None:
        with self.app.sessions() as s:
            samples = s.scalars(
                sa.select(RequestSample).where(RequestSample.endpoint_id == endpoint_id, RequestSample.model == model,
                                               RequestSample.version == version, RequestSample.status == 200)
                .order_by(RequestSample.id).limit(self.first_requests)
            ).all()
        if len(samples) < self.first_requests:
            return None
        frames = [f for f in (parse_inputs(x.inputs, []) for x in samples) if f is not None and len(f)]
        if not frames:
            return None
        frame = pd.concat(frames, ignore_index=True)
        frame.columns = [str(c) for c in frame.columns]
        frame = frame.apply(_numeric_or_text)
        outputs = [v for x in samples for v in (parse_outputs(x.outputs) or [])]
        predictions = _numeric_or_text(pd.Series(outputs, dtype=object)) if outputs else None
        prof = profile(frame, predictions)
        raw = {name: frame[name].dropna().astype(float).tolist()[:MAX_RAW_VALUES]
               for name in frame.columns if is_numeric(frame[name])}
        if predictions is not None and is_numeric(predictions):
            raw[" predictions"] = predictions.dropna().astype(float).tolist()[:MAX_RAW_VALUES]
        return Baseline("first_requests", len(frame), prof, raw, {x.id for x in samples},
                        note=f"no training profile or input example: the first {len(samples)} sampled requests")

    # --- the report -------------------------------------------------------------------------

    async def report(self, endpoint: Endpoint, window: str) -> dict[str, Any]:
        """Drift per version of ``endpoint`` over the last ``window`` (one of ``windows``)."""
        since = utcnow() - timedelta(seconds=self.windows[window])
        await self.app.endpoints.flush_samples()
        with self.app.sessions() as s:
            # Live versions only: shadows answer no client and have no sample of requests (GET .../shadow compares them).
            servers = s.scalars(sa.select(ScoringServer).where(ScoringServer.endpoint_id == endpoint.id,
                                                               ScoringServer.retired.is_(False), ScoringServer.shadow.is_(False))
                                .order_by(ScoringServer.id)).all()
        # Label feedback's figures (serving/quality.py), read once for every version.
        labelled = await asyncio.to_thread(quality.quality, self.app.sessions, endpoint.id, since)
        versions = []
        for server in servers:
            baseline = await self.baseline(endpoint, server.model, server.version)
            found = labelled.get((server.model, server.version))
            versions.append(await asyncio.to_thread(self._version, endpoint.id, server.model, server.version, since,
                                                    baseline, dict(found["quality"]) if found else {}))
        limits = self.app.endpoints
        return {"window": window, "since": iso(since), "versions": versions,
                "sample": {"samples_per_second": limits.samples_per_second, "max_samples": limits.max_samples,
                           "max_sample_bytes": limits.max_sample_bytes}}

    def _version(self, endpoint_id: int, model: str, version: str, since, baseline: Baseline | None,
                 from_labels: dict[str, float]) -> dict[str, Any]:
        with self.app.sessions() as s:
            samples = s.scalars(
                sa.select(RequestSample).where(RequestSample.endpoint_id == endpoint_id, RequestSample.model == model,
                                               RequestSample.version == version, RequestSample.time >= since)
                .order_by(RequestSample.id)
            ).all()
        result: dict[str, Any] = {"model": model, "version": version, "requests": len(samples), "rows": 0,
                                  "baseline": None, "features": {}, "prediction_drift": None, "drifted": [],
                                  "schema_violations": {"requests": 0, "rows": 0, "rate": 0.0},
                                  "quality": from_labels}
        if baseline is None:
            return result
        result["baseline"] = baseline.describe()
        columns = list(baseline.profile["columns"])
        rows = read_samples([x for x in samples if x.id not in baseline.request_ids], columns, _kinds(baseline.profile))
        result["rows"] = len(rows.features)
        result["schema_violations"] = {"requests": rows.bad_requests, "rows": rows.bad_rows,
                                       "rate": rows.bad_rows / rows.total_rows if rows.total_rows else 0.0}
        if not len(rows.features):
            return result
        for name, column in baseline.profile["columns"].items():
            result["features"][name] = compare_column(column, rows.features[name], self.psi_threshold,
                                                      self.p_value_threshold, baseline.raw.get(name))
        result["drifted"] = [name for name, f in result["features"].items() if f["drifted"]]
        base_predictions = baseline.profile.get("predictions")
        if base_predictions and len(rows.predictions):
            predictions = rows.predictions
            if base_predictions["kind"] == "numeric":
                predictions = pd.to_numeric(predictions, errors="coerce")
            result["prediction_drift"] = compare_column(base_predictions, predictions, self.psi_threshold,
                                                        self.p_value_threshold, baseline.raw.get(" predictions"))
        return result


def _json(body: bytes | None):
    if body is None or len(body) > MAX_ARTIFACT_BYTES:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None

