"""Training profiles and drift statistics (executor/runtime/profile.py) and the reading of sampled
requests (executor/serving/monitoring.py), on known data."""

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chisquare, ks_2samp

from notebench.executor.runtime.profile import (
    OTHER,
    bin_index,
    chi_square_p,
    compare_column,
    ks_p,
    profile,
    profile_column,
    psi,
)
from notebench.executor.serving.monitoring import parse_inputs, parse_outputs, read_samples


def test_numeric_profile_has_decile_bins_range_and_missing_rate():
    series = pd.Series([float(i) for i in range(100)] + [None] * 25)
    p = profile_column(series)
    assert p["kind"] == "numeric"
    assert p["missing_rate"] == pytest.approx(0.2)
    assert p["min"] == 0 and p["max"] == 99
    assert len(p["edges"]) == 11 and p["edges"][0] == 0 and p["edges"][-1] == 99
    assert p["fractions"] == pytest.approx([0.1] * 10)


def test_constant_and_empty_numeric_columns():
    assert profile_column(pd.Series([3.0] * 10))["fractions"] == [1.0]
    empty = profile_column(pd.Series([np.nan, np.nan]))
    assert empty["edges"] == [] and empty["missing_rate"] == 1.0
    # Compared with anything, they never fail.
    assert compare_column(empty, pd.Series([1.0, 2.0]), 0.2, 0.01)["drift_score"] == 0.0


def test_categorical_profile_keeps_the_top_50_and_other():
    values = [f"v{i}" for i in range(60)] * 2 + ["v0"] * 80 + [None] * 50
    p = profile_column(pd.Series(values))
    assert p["kind"] == "categorical"
    assert p["missing_rate"] == pytest.approx(50 / 250)
    assert len(p["frequencies"]) == 51 and p["frequencies"]["v0"] == pytest.approx(82 / 200)
    assert p["frequencies"][OTHER] == pytest.approx(10 * 2 / 200)
    assert sum(p["frequencies"].values()) == pytest.approx(1.0)


def test_profile_of_a_frame_and_its_predictions_is_json():
    df = pd.DataFrame({"x": np.arange(20.0), "colour": ["red", "blue"] * 10, "flag": [True, False] * 10})
    p = profile(df, predictions=np.array([0, 1] * 10))
    assert p["rows"] == 20 and list(p["columns"]) == ["x", "colour", "flag"]
    assert [c["kind"] for c in p["columns"].values()] == ["numeric", "categorical", "categorical"]
    # Whole-number predictions are class labels: categorical; others numeric.
    assert p["predictions"] == {"kind": "categorical", "frequencies": {"0": 0.5, "1": 0.5}, "missing_rate": 0.0}
    assert profile(df, predictions=pd.Series(np.linspace(0, 1, 20)))["predictions"]["kind"] == "numeric"
    assert json.loads(json.dumps(p)) == p


def test_psi_on_known_fractions():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = (0.7 - 0.5) * math.log(0.7 / 0.5) + (0.3 - 0.5) * math.log(0.3 / 0.5)
    assert psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(expected)
    assert math.isfinite(psi([0.5, 0.5], [1.0, 0.0]))  # an empty bin is floored, not infinite


def test_bins_put_values_outside_the_range_in_the_end_bins():
    assert bin_index(np.array([-5.0, 0.0, 0.5, 1.0, 1.5, 2.0, 9.0]), [0.0, 1.0, 2.0]).tolist() == [0, 0, 0, 1, 1, 1, 1]


def test_chi_square_and_ks_agree_with_scipy():
    observed = [30, 50, 20]
    assert chi_square_p([0.3, 0.5, 0.2], observed) == pytest.approx(1.0)
    assert chi_square_p([0.5, 0.3, 0.2], observed) == pytest.approx(chisquare(observed, [50, 30, 20]).pvalue)
    a, b = np.linspace(0, 1, 50), np.linspace(0.5, 1.5, 60)
    assert ks_p(a, b) == pytest.approx(ks_2samp(a, b).pvalue)


def test_compare_flags_a_shifted_numeric_column_only():
    rng = np.random.default_rng(1)
    base = profile_column(pd.Series(rng.normal(size=5000)))
    same = compare_column(base, pd.Series(rng.normal(size=500)), 0.2, 0.01)
    shifted = compare_column(base, pd.Series(rng.normal(loc=2, size=500)), 0.2, 0.01)
    assert same["method"] == "psi" and same["drift_score"] < 0.1 and not same["drifted"]
    assert shifted["drift_score"] > 1 and shifted["drifted"]
    assert shifted["out_of_range_rate"] > 0.01 and same["out_of_range_rate"] < 0.01
    with_raw = compare_column(base, pd.Series(rng.normal(loc=2, size=500)), 0.2, 0.01, raw=rng.normal(size=500).tolist())
    assert with_raw["method"] == "ks" and with_raw["p_value_or_psi"] < 1e-6 and with_raw["drifted"]


def test_compare_categorical_by_chi_square_with_unseen_values():
    base = profile_column(pd.Series(["a"] * 50 + ["b"] * 50))
    same = compare_column(base, pd.Series(["a"] * 48 + ["b"] * 52 + [None] * 10), 0.2, 0.01)
    assert same["method"] == "chi_square" and same["p_value_or_psi"] > 0.5 and not same["drifted"]
    assert same["missing_rate"] == pytest.approx(10 / 110)
    changed = compare_column(base, pd.Series(["a"] * 20 + ["c"] * 80), 0.2, 0.01)
    assert changed["drifted"] and changed["out_of_range_rate"] == pytest.approx(0.8)


@pytest.mark.parametrize("body", [
    {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}},
    {"dataframe_records": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]},
    {"inputs": {"a": [1, 3], "b": [2, 4]}},
    {"instances": [[1, 2], [3, 4]]},
    {"inputs": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]},
])
def test_parse_the_scoring_protocol(body):
    frame = parse_inputs(json.dumps(body), ["a", "b"])
    assert frame[["a", "b"]].values.tolist() == [[1, 2], [3, 4]]


def test_parse_csv_outputs_and_unreadable_inputs():
    assert parse_inputs("a,b\n1,2\n", ["a", "b"]).values.tolist() == [[1, 2]]
    assert parse_inputs('{"dataframe_split": {"columns": ["a"], "da', ["a"]) is None  # cut at max_sample_bytes
    assert parse_inputs('{"instances": [[1, 2, 3]]}', ["a", "b"]) is None
    assert parse_inputs("[1, 2]", ["a"]) is None
    assert parse_outputs('{"predictions": [1, 0]}') == [1, 0]
    assert parse_outputs('{"predictions": [{"p": 0.5}, {"p": 0.7}]}') == [0.5, 0.7]
    assert parse_outputs('[[0.1, 0.9]]') == [0.1]
    assert parse_outputs("oops") is None


def test_read_samples_counts_schema_violations():
    def sample(body, outputs='{"predictions": [1]}', status=200):
        return SimpleNamespace(inputs=body if isinstance(body, str) else json.dumps(body), outputs=outputs, status=status)

    samples = [
        sample({"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}}, '{"predictions": [1, 0]}'),
        sample({"dataframe_split": {"columns": ["a", "c"], "data": [[1, "x"]]}}),  # wrong columns
        sample({"dataframe_records": [{"a": "many", "b": "x"}]}),  # text where a number belongs
        sample("x,y\n1,2\n"),  # CSV, other columns
        sample('{"cut', status=400),  # unreadable
    ]
    rows = read_samples(samples, ["a", "b"], {"a": "numeric", "b": "categorical"})
    assert rows.requests == 5 and rows.bad_requests == 1
    assert rows.features.values.tolist() == [[1, "x"], [2, "y"]]
    assert rows.bad_rows == 3 and rows.total_rows == 5
    assert rows.predictions.tolist() == [1, 0, 1]


def test_log_training_profile_logs_the_profile_with_the_active_run(tmp_path):
    """`notebench.log_training_profile` in a kernel (here a subprocess on a throwaway MLflow store)."""
    script = r"""
import json, mlflow, numpy as np, pandas as pd
import notebench
df = pd.DataFrame({"x": np.arange(50.0), "kind": ["a", "b"] * 25})
with mlflow.start_run() as run:
    logged = notebench.log_training_profile(df, predictions=np.arange(50) % 2)
stored = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/notebench/training_profile.json")
print(json.dumps({"same": stored == logged, "columns": list(stored["columns"]), "predictions": stored["predictions"]["kind"]}))
"""
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"same": True, "columns": ["x", "kind"], "predictions": "categorical"}
