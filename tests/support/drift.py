"""A model for drift tests: trained on synthetic data (features a, b, c numeric, d categorical),
registered twice by the owner: version 1 with ``notebench.log_training_profile`` called in its run,
version 2 with neither a profile nor an input example (its baseline is its first requests)."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
from scipy.stats import norm

REGISTER = r"""
import json, sys
import mlflow, numpy as np, pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
import notebench

name = sys.argv[1]
rng = np.random.default_rng(0)
X = pd.DataFrame({"a": rng.normal(size=2000), "b": rng.normal(size=2000), "c": rng.normal(size=2000),
                  "d": rng.choice(["x", "y", "z"], size=2000, p=[0.5, 0.3, 0.2])})
y = ((X["a"] + X["b"] + (X["d"] == "x")) > 0.5).astype(int)
model = make_pipeline(make_column_transformer((OneHotEncoder(), ["d"]), remainder="passthrough"), LogisticRegression())
model.fit(X, y)
mlflow.set_experiment(f"monitoring-{name}")
with mlflow.start_run():  # version 1: the training profile, as a training notebook logs it
    mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
    notebench.log_training_profile(X, predictions=model.predict(X))
with mlflow.start_run():  # version 2: neither a profile nor an input example
    mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
print(json.dumps("ok"))
"""

ROWS = 60  # per request


def register_drift_model(hub, name: str, token: str) -> str:
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"{hub.url}/services/mlflow", MLFLOW_TRACKING_TOKEN=token)
    out = subprocess.run([sys.executable, "-c", REGISTER, name], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return name


# Requests are drawn by quantiles, shuffled by the seed, not at random: a test's verdict must not
# depend on which seeds a run happened to use (at p < 0.01, one random draw in a hundred "drifts").
NORMAL = norm.ppf((np.arange(ROWS) + 0.5) / ROWS)
CATEGORIES = np.repeat(["x", "y", "z"], [ROWS // 2, ROWS * 3 // 10, ROWS - ROWS // 2 - ROWS * 3 // 10])


def frame(seed: int, shift_b: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.permutation(NORMAL), "b": rng.permutation(NORMAL) + shift_b,
                         "c": rng.permutation(NORMAL), "d": rng.permutation(CATEGORIES)})


def split(df: pd.DataFrame) -> dict:
    return {"dataframe_split": json.loads(df.to_json(orient="split", index=False))}
