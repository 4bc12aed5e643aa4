"""The quality of an endpoint's versions from the labels posted for their predictions.

For every prediction made since a moment (the window) that has a label, the prediction and the
label are paired, row by row: a scalar label goes with a one-row prediction, a list label with a
prediction of as many rows; pairs that do not fit (another length, a prediction that is not a list
of scalars, or one cut at ``c.Endpoints.max_prediction_bytes``) are counted as ``mismatched``.

The task is the endpoint's declared one (``"task"`` at deploy or PATCH), else inferred from the
labels: any string or bool, or integers only with at most ``MAX_CLASSES`` distinct values, make it
a classification; otherwise (numbers with decimals, or many distinct integers) a regression.
Classification: accuracy and F1, the F1 of the positive class when the classes are 0/1 or
false/true, else macro-averaged over the classes. Regression: MAE and RMSE. Computed with
scikit-learn on the paired values.
"""

from __future__ import annotations

import json
import math
from datetime import datetime

import sqlalchemy as sa

from notebench.executor.db import Endpoint, Feedback, Prediction

MAX_CLASSES = 20
TASKS = ("classification", "regression")


def predictions_of(outputs: str) -> list | None:
    """The list of per-row predictions in a scoring server's answer (MLflow's ``{"predictions": [...]}``,
    or a bare list), or None when it has none (cut, or another shape)."""
    try:
        data = json.loads(outputs)
    except ValueError:
        return None
    if isinstance(data, dict):
        data = data.get("predictions")
    return data if isinstance(data, list) else None


def _is_scalar(value) -> bool:
    return isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value))


def pair(outputs: str, label) -> list[tuple] | None:
    """(prediction, label) per row, or None if the label does not fit the prediction."""
    predicted = predictions_of(outputs)
    labels = label if isinstance(label, list) else [label]
    if predicted is None or len(predicted) != len(labels) or not all(_is_scalar(p) for p in predicted):
        return None
    return list(zip(predicted, labels))


def infer_task(labels: list) -> str:
    if any(isinstance(v, (str, bool)) for v in labels):
        return "classification"
    if all(isinstance(v, int) or float(v).is_integer() for v in labels) and len(set(labels)) <= MAX_CLASSES:
        return "classification"
    return "regression"


def _class(value) -> str:
    """A class as text, so that 1, 1.0 and "1" (CSV) are one class, and true, True and "true" another."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower()
    return str(value)


def metrics(task: str, pairs: list[tuple]) -> dict:
    """``{accuracy, f1}`` or ``{mae, rmse}`` of (prediction, label) pairs (empty: ``{}``)."""
    if not pairs:
        return {}
    from sklearn import metrics as skm  # imported when first needed (it takes a while)

    if task == "classification":
        predicted = [_class(p) for p, _ in pairs]
        true = [_class(t) for _, t in pairs]
        classes = set(predicted) | set(true)
        positive = "1" if classes <= {"0", "1"} else "true" if classes <= {"false", "true"} else None
        f1 = (skm.f1_score(true, predicted, pos_label=positive, average="binary", zero_division=0) if positive
              else skm.f1_score(true, predicted, average="macro", zero_division=0))
        return {"accuracy": float(skm.accuracy_score(true, predicted)), "f1": float(f1)}
    try:
        values = [float(p) for p, _ in pairs]
        truth = [float(t) for _, t in pairs]
    except (TypeError, ValueError):  # a string label or prediction: no regression metric
        return {}
    return {"mae": float(skm.mean_absolute_error(truth, values)),
            "rmse": float(math.sqrt(skm.mean_squared_error(truth, values)))}


def quality(sessions, endpoint_id: int, since: datetime, table=Prediction) -> dict[tuple[str, str], dict]:
    """Per (model, version) that has labelled predictions since ``since``: ``{"task", "labelled"
    (rows paired), "mismatched" (labels that did not fit), "quality": {metric: value}}``.
    ``table``: the live versions' predictions, or the shadows' (db.ShadowPrediction: the labels of
    the live requests they had a copy of; their errors, with no outputs, left out)."""
    with sessions() as s:
        declared = s.scalar(sa.select(Endpoint.task).where(Endpoint.id == endpoint_id))
        rows = s.execute(
            sa.select(table.model, table.version, table.outputs, Feedback.label)
            .join(Feedback, sa.and_(Feedback.endpoint_id == table.endpoint_id, Feedback.request_id == table.request_id))
            .where(table.endpoint_id == endpoint_id, table.time >= since, table.outputs.is_not(None))
        ).all()
    paired: dict[tuple[str, str], list] = {}
    mismatched: dict[tuple[str, str], int] = {}
    for model, version, outputs, label in rows:
        key = (model, version)
        pairs = pair(outputs, label)
        paired.setdefault(key, [])
        if pairs is None:
            mismatched[key] = mismatched.get(key, 0) + 1
        else:
            paired[key].extend(pairs)
    all_labels = [t for pairs in paired.values() for _, t in pairs]
    task = declared or (infer_task(all_labels) if all_labels else None)
    return {key: {"task": task, "labelled": len(pairs), "mismatched": mismatched.get(key, 0),
                  "quality": metrics(task, pairs) if task else {}}
            for key, pairs in paired.items()}
