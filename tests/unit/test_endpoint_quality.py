"""Labels for endpoint predictions (executor/serving/feedback.py: the JSON and CSV parsers, storing)
and the quality computed from them (executor/serving/quality.py), on a SQLite store."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error

from notebench.executor import db
from notebench.executor.db import Endpoint, Prediction, utcnow
from notebench.executor.errors import NotebenchError
from notebench.executor.serving import feedback, quality
from notebench.executor.serving.router import new_request_id

pytestmark = pytest.mark.timeout(60)


def rid(n: int) -> str:
    return f"{n:032x}"


# --- parsing ------------------------------------------------------------------------------------


def test_csv_rows_are_typed_labels():
    body = (f"request_id,label\r\n{rid(1)},1\r\n{rid(2)},0.5\r\n{rid(3)},true\r\n{rid(4)},\"setosa, maybe\"\r\n"
            f"\r\n{rid(5)},-3e2\n").encode()
    assert feedback.parse(body, "text/csv; charset=utf-8") == [
        (rid(1), 1), (rid(2), 0.5), (rid(3), True), (rid(4), "setosa, maybe"), (rid(5), -300.0)]
    assert feedback.parse(b"\xef\xbb\xbfrequest_id,label\n" + f"{rid(1)},cat".encode(), "text/csv") == [(rid(1), "cat")]


@pytest.mark.parametrize("body, field", [
    (b"id,label\n", "body"),
    (b"", "body"),
    (f"request_id,label\n{rid(1)},1,2\n".encode(), "0"),
    (f"request_id,label\n{rid(1)},1\nXYZ,1\n".encode(), "1.request_id"),
    (f"request_id,label\n{rid(1)},\n".encode(), "0.label"),
    (f"request_id,label\n{rid(1)},{'x' * 300}\n".encode(), "0.label"),
    (b"request_id,label\n\xff\xfe,1\n", "body"),
    ("request_id,label\n" + "".join(f"{rid(i)},1\n" for i in range(feedback.MAX_ROWS + 1)), "body"),
])
def test_bad_csv_names_the_field(body, field):
    with pytest.raises(NotebenchError) as e:
        feedback.parse(body.encode() if isinstance(body, str) else body, "text/csv")
    assert (e.value.status, e.value.field) == (400, field)


def test_json_rows():
    body = json.dumps([{"request_id": rid(1), "label": 1}, {"request_id": rid(2), "label": ["a", "b", True, 2.5]}]).encode()
    assert feedback.parse(body, "application/json") == [(rid(1), 1), (rid(2), ["a", "b", True, 2.5])]


@pytest.mark.parametrize("body, field", [
    ({"request_id": rid(1), "label": 1}, "body"),
    ([1], "0"),
    ([{"request_id": rid(1)}], "0.label"),
    ([{"label": 1}], "0.request_id"),
    ([{"request_id": rid(1), "label": 1, "weight": 2}], "0.weight"),
    ([{"request_id": rid(0xABC).upper(), "label": 1}], "0.request_id"),
    ([{"request_id": rid(1) + "0", "label": 1}], "0.request_id"),
    ([{"request_id": 12, "label": 1}], "0.request_id"),
    ([{"request_id": rid(1), "label": 1}, {"request_id": rid(2), "label": None}], "1.label"),
    ([{"request_id": rid(1), "label": {"a": 1}}], "0.label"),
    ([{"request_id": rid(1), "label": [[1]]}], "0.label"),
    ([{"request_id": rid(1), "label": []}], "0.label"),
    ([{"request_id": rid(1), "label": 2**70}], "0.label"),
    ([{"request_id": rid(i), "label": 1} for i in range(feedback.MAX_ROWS + 1)], "body"),
])
def test_bad_json_names_the_field(body, field):
    with pytest.raises(NotebenchError) as e:
        feedback.parse(json.dumps(body).encode(), "application/json")
    assert (e.value.status, e.value.field) == (400, field)


def test_nan_and_bad_json_and_other_types():
    for body in (f'[{{"request_id": "{rid(1)}", "label": NaN}}]'.encode(), b"[{", b"\xff"):
        with pytest.raises(NotebenchError) as e:
            feedback.parse(body, "application/json")
        assert e.value.status == 400
    for content_type in (None, "text/plain", "application/x-parquet"):
        with pytest.raises(NotebenchError) as e:
            feedback.parse(b"[]", content_type)
        assert (e.value.status, e.value.field) == (415, "Content-Type")


def test_request_ids_are_32_hex_digits_and_unique():
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(feedback.REQUEST_ID.fullmatch(i) for i in ids)


# --- storing and quality ------------------------------------------------------------------------


@pytest.fixture
def sessions(tmp_path):
    return db.connect(f"sqlite:///{tmp_path / 'executor.sqlite'}")


def endpoint(sessions, name="ep", task=None) -> int:
    with sessions() as s:
        e = Endpoint(name=name, owner="alice", profile="cpu", status="ready", task=task)
        s.add(e)
        s.commit()
        return e.id


def predict(sessions, endpoint_id, request_id, predictions, version="1", age=timedelta(0)):
    with sessions() as s:
        s.add(Prediction(request_id=request_id, endpoint_id=endpoint_id, model="m", version=version, time=utcnow() - age,
                         outputs=json.dumps({"predictions": predictions})))
        s.commit()


def test_labels_of_this_endpoint_only_and_replaced(sessions):
    mine, other = endpoint(sessions, "mine"), endpoint(sessions, "other")
    predict(sessions, mine, rid(1), [1])
    predict(sessions, other, rid(2), [1])
    assert feedback.store(sessions, mine, [(rid(1), 0), (rid(2), 1), (rid(3), 1)], "alice") == (1, [rid(2), rid(3)])
    assert feedback.store(sessions, mine, [(rid(1), 1)], "admin") == (1, [])  # the second label replaces the first
    with sessions() as s:
        rows = s.query(db.Feedback).all()
    assert [(r.endpoint_id, r.request_id, r.label, r.by) for r in rows] == [(mine, rid(1), 1, "admin")]


def test_classification_quality_equals_scikit_learns(sessions):
    e = endpoint(sessions)
    predicted = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1]
    true = [1, 0, 0, 1, 0, 1, 1, 0, 1, 0]
    for i, (p, t) in enumerate(zip(predicted, true)):
        predict(sessions, e, rid(i), [p], version="1" if i < 6 else "2")
    predict(sessions, e, rid(99), [1, 0, 1], version="2")  # a three-row request, labelled with a list
    predict(sessions, e, rid(98), [1, 1], version="2")  # a label that does not fit
    predict(sessions, e, rid(97), [1], version="2", age=timedelta(days=2))  # before the window
    rows = [(rid(i), t) for i, t in enumerate(true)] + [(rid(99), [1, 1, 1]), (rid(98), 1), (rid(97), 0)]
    feedback.store(sessions, e, rows, "alice")
    found = quality.quality(sessions, e, utcnow() - timedelta(days=1))
    p1, t1 = predicted[:6], true[:6]
    p2, t2 = predicted[6:] + [1, 0, 1], true[6:] + [1, 1, 1]
    assert found[("m", "1")] == {"task": "classification", "labelled": 6, "mismatched": 0,
                                 "quality": {"accuracy": accuracy_score(t1, p1), "f1": f1_score(t1, p1)}}
    assert found[("m", "2")] == {"task": "classification", "labelled": 7, "mismatched": 1,
                                 "quality": {"accuracy": accuracy_score(t2, p2), "f1": f1_score(t2, p2)}}


def test_multiclass_strings_and_csv_labels_match_numbers(sessions):
    e = endpoint(sessions)
    predicted, true = ["a", "b", "c", "a", "b"], ["a", "c", "c", "a", "a"]
    for i, p in enumerate(predicted):
        predict(sessions, e, rid(i), [p])
    feedback.store(sessions, e, [(rid(i), t) for i, t in enumerate(true)], "alice")
    q = quality.quality(sessions, e, utcnow() - timedelta(hours=1))[("m", "1")]["quality"]
    assert q == {"accuracy": accuracy_score(true, predicted), "f1": f1_score(true, predicted, average="macro")}
    # 1, 1.0 and "1" (a CSV cell) are one class; true and "True" another.
    assert quality.metrics("classification", [(1, "1"), (1.0, 1), (0, "0")]) == {"accuracy": 1.0, "f1": 1.0}
    assert quality.metrics("classification", [(True, "true"), (False, "True")]) == {"accuracy": 0.5, "f1": 2 / 3}


def test_regression_inferred_or_declared(sessions):
    e = endpoint(sessions)
    predicted, true = [1.5, 2.0, 3.25, 10.0], [1.0, 2.5, 3.0, 12.0]
    for i, p in enumerate(predicted):
        predict(sessions, e, rid(i), [p])
    feedback.store(sessions, e, [(rid(i), t) for i, t in enumerate(true)], "alice")
    found = quality.quality(sessions, e, utcnow() - timedelta(hours=1))[("m", "1")]
    assert found["task"] == "regression"
    assert found["quality"] == {"mae": mean_absolute_error(true, predicted),
                                "rmse": math.sqrt(mean_squared_error(true, predicted))}
    # Integer labels with few values look like classes; declared, the task is the endpoint's.
    ints = endpoint(sessions, "ints", task="regression")
    predict(sessions, ints, rid(50), [3])
    feedback.store(sessions, ints, [(rid(50), 5)], "alice")
    assert quality.quality(sessions, ints, utcnow() - timedelta(hours=1))[("m", "1")]["quality"] == {"mae": 2.0, "rmse": 2.0}
    assert quality.infer_task([1, 2, 3]) == "classification"
    assert quality.infer_task(list(range(100))) == "regression"
    assert quality.infer_task([0.5, 1]) == "regression"


def test_predictions_past_the_retention_go_with_their_labels(sessions):
    from types import SimpleNamespace

    from notebench.executor.serving.endpoints import Endpoints

    e = endpoint(sessions)
    predict(sessions, e, rid(1), [1], age=timedelta(days=31))
    predict(sessions, e, rid(2), [1])
    feedback.store(sessions, e, [(rid(1), 1), (rid(2), 1)], "alice")
    fake = SimpleNamespace(sessions=sessions, prediction_retention_days=30)
    assert Endpoints.purge_predictions(fake) == 1
    with sessions() as s:
        assert [f.request_id for f in s.query(db.Feedback).all()] == [rid(2)]
