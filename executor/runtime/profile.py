"""Training profiles and drift statistics: what ``notebench.log_training_profile(df)`` logs in a user's
kernel, and what the executor's monitoring (serving/monitoring.py) compares requests with.

A profile says, per column of the training data (and of the predictions, when given):
- numeric columns: ``edges`` (the training data's deciles, at most 11 edges, so at most 10 bins),
  ``fractions`` (the share of the non-missing training values in each bin), ``min``, ``max``, ``missing_rate``;
- categorical ones: ``frequencies`` (the 50 most frequent values, as text, and ``__other__``), ``missing_rate``.

It is plain JSON (``mlflow.log_dict(profile, "notebench/training_profile.json")``), small whatever the
size of the training data, and holds no row of it. Pure pandas and numpy; SciPy only for the tests'
p-values (chi-square, Kolmogorov-Smirnov), imported when first needed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

PROFILE_ARTIFACT = "notebench/training_profile.json"
PREDICTION = "prediction"  # the predictions' column when they are one value per row
OTHER = "__other__"
BINS = 10
TOP_CATEGORIES = 50
EPSILON = 1e-4  # PSI's floor for an empty bin (so that the logarithm stays finite)


def _frame(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame(PREDICTION if data.name is None else str(data.name))
    array = np.asarray(data)
    if array.ndim == 1:
        return pd.DataFrame({PREDICTION: array})
    return pd.DataFrame(array, columns=[f"{PREDICTION}_{i}" for i in range(array.shape[1])])


def is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def profile_column(series: pd.Series, kind: str | None = None) -> dict[str, Any]:
    """The profile of one column (``kind`` "numeric" or "categorical"; found from the dtype if not given)."""
    kind = kind or ("numeric" if is_numeric(series) else "categorical")
    n = len(series)
    if kind == "numeric":
        values = pd.to_numeric(series, errors="coerce").astype(float)
        values = values[np.isfinite(values)]
        missing_rate = (1 - len(values) / n) if n else 0.0
        if not len(values):
            return {"kind": kind, "edges": [], "fractions": [], "min": None, "max": None, "missing_rate": missing_rate}
        edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)))
        counts = np.bincount(bin_index(values.to_numpy(), edges), minlength=max(len(edges) - 1, 1))
        return {"kind": kind, "edges": edges.tolist(), "fractions": (counts / counts.sum()).tolist(),
                "min": float(values.min()), "max": float(values.max()), "missing_rate": missing_rate}
    present = as_text(series[series.notna()])
    missing_rate = (1 - len(present) / n) if n else 0.0
    counts = present.value_counts()
    frequencies = {str(k): float(v) / len(present) for k, v in counts.head(TOP_CATEGORIES).items()}
    if len(counts) > TOP_CATEGORIES:
        frequencies[OTHER] = float(counts.iloc[TOP_CATEGORIES:].sum()) / len(present)
    return {"kind": kind, "frequencies": frequencies, "missing_rate": missing_rate}


def profile(df, predictions=None) -> dict[str, Any]:
    """The profile of a training frame (and of the model's predictions on it, if given)."""
    df = _frame(df)
    result: dict[str, Any] = {
        "format": 1,
        "rows": len(df),
        "columns": {str(name): profile_column(df[name]) for name in df.columns},
        "predictions": None,
    }
    if predictions is not None:
        series = _frame(predictions).iloc[:, 0]
        result["predictions"] = profile_column(series, prediction_kind(series))
    return result


def prediction_kind(series: pd.Series) -> str:
    """Predictions that are whole numbers of at most 50 values are class labels: categorical."""
    if not is_numeric(series):
        return "categorical"
    values = pd.to_numeric(series, errors="coerce").dropna()
    whole = bool(np.all(np.mod(values, 1) == 0))
    return "categorical" if whole and values.nunique() <= TOP_CATEGORIES else "numeric"


def as_text(series: pd.Series) -> pd.Series:
    """Categorical values as text, whole floats as integers (JSON's 1.0 is the label 1)."""
    return series.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))


def log_training_profile(df, predictions=None, artifact_file: str = PROFILE_ARTIFACT) -> dict[str, Any]:
    """Profile the training data ``df`` (and ``predictions``, the model's outputs on it) and log the
    profile with the active MLflow run (started if none is), where Notebench's endpoint monitoring
    finds it as the baseline of every model version registered from that run. Returns the profile."""
    import mlflow

    result = profile(df, predictions)
    mlflow.log_dict(result, artifact_file)
    return result


# --- comparing ------------------------------------------------------------------------------------


def bin_index(values: np.ndarray, edges) -> np.ndarray:
    """The bin of each value over ``edges`` (values below the first edge go to the first bin,
    above the last to the last)."""
    edges = np.asarray(edges, dtype=float)
    if len(edges) < 2:
        return np.zeros(len(values), dtype=int)
    return np.clip(np.searchsorted(edges[1:-1], values, side="right"), 0, len(edges) - 2)


def psi(expected, actual) -> float:
    """Population stability index of ``actual`` against ``expected`` (fractions over the same bins)."""
    e = np.clip(np.asarray(expected, dtype=float), EPSILON, None)
    a = np.clip(np.asarray(actual, dtype=float), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def chi_square_p(expected_fractions, observed_counts) -> float:
    """The chi-square goodness-of-fit p-value of ``observed_counts`` against ``expected_fractions``."""
    from scipy.stats import chisquare

    observed = np.asarray(observed_counts, dtype=float)
    expected = np.clip(np.asarray(expected_fractions, dtype=float), EPSILON, None)
    if observed.sum() == 0 or len(observed) < 2:
        return 1.0
    expected = expected / expected.sum() * observed.sum()
    p = float(chisquare(observed, expected).pvalue)
    return 1.0 if math.isnan(p) else p


def ks_p(baseline_values, values) -> float:
    from scipy.stats import ks_2samp

    if not len(baseline_values) or not len(values):
        return 1.0
    return float(ks_2samp(baseline_values, values).pvalue)


def compare_column(base: dict[str, Any], series: pd.Series, psi_threshold: float, p_threshold: float,
                   raw: list | None = None) -> dict[str, Any]:
    """Drift of one column of requests (``series``) from its baseline profile ``base``; ``raw`` are the
    baseline's own values where it has them (then a numeric column gets a KS test too)."""
    n = len(series)
    if base["kind"] == "numeric":
        values = pd.to_numeric(series, errors="coerce").astype(float)
        present = values[np.isfinite(values)].to_numpy()
        missing_rate = 1 - len(present) / n if n else 0.0
        if not len(base["edges"]) or not len(present):
            score, out_of_range = 0.0, 0.0
        else:
            counts = np.bincount(bin_index(present, base["edges"]), minlength=len(base["fractions"]))
            score = psi(base["fractions"], counts / counts.sum())
            out_of_range = float(np.mean((present < base["min"]) | (present > base["max"])))
        result = {"drift_score": score, "method": "psi", "p_value_or_psi": score, "missing_rate": missing_rate,
                  "out_of_range_rate": out_of_range, "drifted": score > psi_threshold}
        if raw is not None:
            p = ks_p(np.asarray(raw, dtype=float), present)
            result.update(method="ks", p_value_or_psi=p, drifted=score > psi_threshold or p < p_threshold)
        return result
    present = as_text(series[series.notna()])
    missing_rate = 1 - len(present) / n if n else 0.0
    categories = list(base["frequencies"])
    known = present.where(present.isin(categories), OTHER)
    counts = known.value_counts()
    if OTHER not in categories and counts.get(OTHER, 0):
        categories.append(OTHER)
    expected = [base["frequencies"].get(c, 0.0) for c in categories]
    observed = [int(counts.get(c, 0)) for c in categories]
    total = sum(observed)
    score = psi(expected, [o / total for o in observed]) if total else 0.0
    p = chi_square_p(expected, observed)
    unseen = float(np.mean(~present.isin(base["frequencies"]))) if len(present) and OTHER not in base["frequencies"] else 0.0
    return {"drift_score": score, "method": "chi_square", "p_value_or_psi": p, "missing_rate": missing_rate,
            "out_of_range_rate": unseen, "drifted": p < p_threshold}
