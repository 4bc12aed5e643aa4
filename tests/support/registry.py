"""A real registered model for endpoint tests and benchmarks: scikit-learn, logged to the hub's
MLflow as a user (in a subprocess, so MLflow's globals stay out of the caller)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

REGISTER = r"""
import json, sys
import mlflow, numpy as np, pandas as pd
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

name = sys.argv[1]
rng = np.random.RandomState(0)
X = pd.DataFrame(rng.rand(60, 3), columns=["a", "b", "c"])
mlflow.set_experiment(f"endpoints-{name}")
for version, label in enumerate([X["a"] > 0.5, X["b"] > 0.5], start=1):
    with mlflow.start_run():
        model = LogisticRegression().fit(X, label.astype(int))
        mlflow.sklearn.log_model(model, name="model", registered_model_name=name, input_example=X.head(2))
client = MlflowClient()
client.set_registered_model_alias(name, "champion", "1")
# Version 3: registered, but no model (its scoring server cannot load it).
with mlflow.start_run() as run:
    mlflow.log_text("artifact_path: junk\nflavors: {}\n", "junk/MLmodel")
client.create_model_version(name, source=f"runs:/{run.info.run_id}/junk", run_id=run.info.run_id)
print(json.dumps({"dataframe_split": {"columns": ["a", "b", "c"], "data": X.head(3).values.tolist()}}))
"""


def register_model(hub_url: str, token: str, name: str) -> dict:
    """Register ``name`` with versions 1 (alias champion), 2 (another fit) and 3 (broken: no
    flavour); returns a scoring input for it (dataframe_split, 3 rows)."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"{hub_url}/services/mlflow", MLFLOW_TRACKING_TOKEN=token)
    out = subprocess.run([sys.executable, "-c", REGISTER, name], env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"registering {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
