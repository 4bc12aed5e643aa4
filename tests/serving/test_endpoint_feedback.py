"""Feedback on an endpoint's predictions against the session's real hub, MLflow and executor:
every invocation answers with X-Notebench-Request-Id; labels posted for those ids (JSON or CSV)
give each version's quality, which equals scikit-learn's on the same predictions and labels."""

import random
import re

import pytest
import requests
from sklearn.metrics import accuracy_score, f1_score

from tests.support.endpoints import RUN, deploy_ready, invoke, owner_and_other, wait_status

pytestmark = pytest.mark.slow

REQUEST_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def people(hub):
    return owner_and_other(hub, "fb")


@pytest.fixture(scope="module")
def endpoint(hub, people, model):
    name = f"fb-{RUN}"
    deploy_ready(hub, people["owner_token"], name, [{"model": model["name"], "version": "champion", "weight": 100}])
    yield name
    hub.executor("DELETE", f"endpoints/{name}")


def post_feedback(hub, name, token, body, content_type="application/json"):
    headers = {"Content-Type": content_type, **({"Authorization": f"token {token}"} if token else {})}
    data = body if isinstance(body, (str, bytes)) else None
    return requests.post(f"{hub.url}/services/executor/api/endpoints/{name}/feedback", data=data,
                         json=None if data is not None else body, headers=headers, timeout=60)


def one_row(values):
    return {"dataframe_split": {"columns": ["a", "b", "c"], "data": [values]}}


def test_every_answer_has_a_request_id(hub, people, model, endpoint):
    token = people["owner_token"]
    ids = set()
    with requests.Session() as session:
        for _ in range(3):
            r = invoke(hub, endpoint, token, model["input"], session)
            assert r.status_code == 200, r.text
            ids.add(r.headers["X-Notebench-Request-Id"])
    assert len(ids) == 3 and all(REQUEST_ID.fullmatch(i) for i in ids)
    url = f"{hub.url}/services/executor/endpoints/{endpoint}/invocations"
    answers = [
        invoke(hub, endpoint, token, {"dataframe_split": {"columns": ["x"], "data": [["not a number"]]}}),  # the scoring server's 400
        requests.post(url, data=b"{}", headers={"Authorization": f"token {token}"}, timeout=60),  # no Content-Type: 415
        invoke(hub, endpoint, None, model["input"]),  # 401
        invoke(hub, endpoint, people["other_token"], model["input"]),  # 404
        requests.get(f"{hub.url}/services/executor/endpoints/{endpoint}/ping", headers={"Authorization": f"token {token}"}, timeout=60),
    ]
    assert [r.status_code for r in answers] == [400, 415, 401, 404, 200], [r.text for r in answers]
    for r in answers:
        assert REQUEST_ID.fullmatch(r.headers.get("X-Notebench-Request-Id", "")), r.headers
    # A client's own id is not taken: the router's is new.
    r = requests.post(url, json=model["input"], headers={"Authorization": f"token {token}", "X-Notebench-Request-Id": "0" * 32},
                      timeout=60)
    assert r.status_code == 200 and r.headers["X-Notebench-Request-Id"] != "0" * 32


def test_quality_from_json_and_csv_labels_equals_scikit_learns(hub, people, model, endpoint):
    token = people["owner_token"]
    rng = random.Random(7)
    predicted, ids = [], []
    with requests.Session() as session:
        for _ in range(24):
            r = invoke(hub, endpoint, token, one_row([rng.random(), rng.random(), rng.random()]), session)
            assert r.status_code == 200, r.text
            predicted.append(r.json()["predictions"][0])
            ids.append(r.headers["X-Notebench-Request-Id"])
        r = invoke(hub, endpoint, token, model["input"], session)  # three rows: labelled with a list
    multi_predicted, multi_id = r.json()["predictions"], r.headers["X-Notebench-Request-Id"]
    labels = [p if rng.random() < 0.7 else 1 - p for p in predicted]  # about 70 % right
    multi_labels = [1, 0, 1]
    unknown = "f" * 32
    # Half as JSON (with the multi-row one and an unknown id), half as CSV; labelled right away.
    half = len(ids) // 2
    body = [{"request_id": i, "label": t} for i, t in zip(ids[:half], labels[:half])]
    r = post_feedback(hub, endpoint, token, body + [{"request_id": multi_id, "label": multi_labels},
                                                    {"request_id": unknown, "label": 1}])
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": half + 1, "unknown": [unknown]}
    csv = "request_id,label\r\n" + "".join(f"{i},{t}\r\n" for i, t in zip(ids[half:], labels[half:]))
    r = post_feedback(hub, endpoint, token, csv, "text/csv")
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": len(ids) - half, "unknown": []}

    def quality(window=None):
        r = hub.executor("GET", f"endpoints/{endpoint}/quality" + (f"?window={window}" if window else ""), token)
        assert r.status_code == 200, r.text
        [version] = r.json()["versions"]
        assert (version["model"], version["version"], version["task"]) == (model["name"], "1", "classification")
        return version

    y_true, y_pred = labels + multi_labels, predicted + multi_predicted
    found = quality()
    assert found["labelled"] == len(y_true) and found["mismatched"] == 0
    assert found["quality"] == pytest.approx({"accuracy": accuracy_score(y_true, y_pred), "f1": f1_score(y_true, y_pred)})
    assert quality("1h")["quality"] == found["quality"] == quality("7d")["quality"]
    # The monitoring view of the version carries the same figures.
    monitored = hub.executor("GET", f"endpoints/{endpoint}/monitoring?window=1h", token).json()["versions"]
    assert next(v["quality"] for v in monitored if v["version"] == "1") == found["quality"]
    # A second label for a request replaces the first.
    labels[0] = 1 - labels[0]
    r = post_feedback(hub, endpoint, token, [{"request_id": ids[0], "label": labels[0]}])
    assert r.json() == {"accepted": 1, "unknown": []}
    y_true = labels + multi_labels
    assert quality()["quality"] == pytest.approx({"accuracy": accuracy_score(y_true, y_pred), "f1": f1_score(y_true, y_pred)})


def test_ownership_matrix(hub, people, model, endpoint):
    r = invoke(hub, endpoint, people["owner_token"], one_row([0.1, 0.2, 0.3]))
    body = [{"request_id": r.headers["X-Notebench-Request-Id"], "label": 0}]
    assert post_feedback(hub, endpoint, None, body).status_code == 401
    assert hub.executor("GET", f"endpoints/{endpoint}/quality", "").status_code == 401
    r = post_feedback(hub, endpoint, people["other_token"], body)
    assert r.status_code == 404 and r.json()["status"] == 404, r.text
    assert hub.executor("GET", f"endpoints/{endpoint}/quality", people["other_token"]).status_code == 404
    for token in (people["owner_token"], hub.admin_token):
        r = post_feedback(hub, endpoint, token, body)
        assert r.status_code == 200 and r.json() == {"accepted": 1, "unknown": []}, r.text
        assert hub.executor("GET", f"endpoints/{endpoint}/quality", token).status_code == 200


@pytest.mark.parametrize("body, content_type, status, field", [
    ({"request_id": "0" * 32, "label": 1}, "application/json", 400, "body"),
    ([{"request_id": "not-an-id", "label": 1}], "application/json", 400, "0.request_id"),
    ([{"request_id": "0" * 32, "label": {"a": 1}}], "application/json", 400, "0.label"),
    ([{"request_id": "0" * 32}], "application/json", 400, "0.label"),
    ("[{", "application/json", 400, "body"),
    ("request,label\n", "text/csv", 400, "body"),
    ("request_id,label\n" + "0" * 32 + ",\n", "text/csv", 400, "0.label"),
    ("request_id,label\n", "text/plain", 415, "Content-Type"),
])
def test_bad_bodies_name_the_field(hub, people, endpoint, body, content_type, status, field):
    r = post_feedback(hub, endpoint, people["owner_token"], body, content_type)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field, r.text


def test_bad_window_and_task(hub, people, model, endpoint):
    token = people["owner_token"]
    r = hub.executor("GET", f"endpoints/{endpoint}/quality?window=2d", token)
    assert r.status_code == 400 and r.json()["field"] == "window", r.text
    versions = [{"model": model["name"], "version": "champion", "weight": 100}]
    r = hub.executor("PATCH", f"endpoints/{endpoint}", token, json={"versions": versions, "task": "ranking"})
    assert r.status_code == 400 and r.json()["field"] == "task", r.text
    r = hub.executor("PATCH", f"endpoints/{endpoint}", token, json={"versions": versions, "task": "regression"})
    assert r.status_code == 200 and r.json()["task"] == "regression", r.text
    wait_status(hub, endpoint, token)
    assert hub.executor("GET", f"endpoints/{endpoint}/quality", token).json()["versions"][0]["task"] == "regression"
    r = hub.executor("PATCH", f"endpoints/{endpoint}", token, json={"versions": versions, "task": None})
    assert r.status_code == 200 and r.json()["task"] is None, r.text
    wait_status(hub, endpoint, token)


def test_an_endpoint_without_monitoring_stores_no_input_and_no_prediction(hub, people, model):
    """"monitoring": false, for inputs that must not be kept: answers as usual (with request ids),
    but no request is sampled and no prediction kept, so labels find nothing; turned on by PATCH."""
    token, name = people["owner_token"], f"fb-private-{RUN}"
    versions = [{"model": model["name"], "version": "champion", "weight": 100}]
    try:
        assert deploy_ready(hub, token, name, versions, monitoring=False)["monitoring"] is False
        ids = []
        for _ in range(3):
            r = invoke(hub, name, token, model["input"])
            assert r.status_code == 200 and r.json()["predictions"], r.text
            ids.append(r.headers["X-Notebench-Request-Id"])
        r = post_feedback(hub, name, token, [{"request_id": i, "label": [1, 0, 1]} for i in ids])  # flushes what was recorded
        assert r.status_code == 200 and r.json() == {"accepted": 0, "unknown": ids}, r.text
        assert hub.executor("GET", f"endpoints/{name}/requests", token).text == ""
        r = hub.executor("PATCH", f"endpoints/{name}", token, json={"versions": versions, "monitoring": None})
        assert r.status_code == 400 and r.json()["field"] == "monitoring", r.text

        r = hub.executor("PATCH", f"endpoints/{name}", token, json={"versions": versions, "monitoring": True})
        assert r.status_code == 200, r.text
        assert wait_status(hub, name, token)["monitoring"] is True
        r = invoke(hub, name, token, model["input"])
        request_id = r.headers["X-Notebench-Request-Id"]
        r = post_feedback(hub, name, token, [{"request_id": request_id, "label": [1, 0, 1]}])
        assert r.json() == {"accepted": 1, "unknown": []}, r.text
        assert len(hub.executor("GET", f"endpoints/{name}/requests", token).text.splitlines()) == 1
        # Left out of a PATCH, it stays as it is.
        r = hub.executor("PATCH", f"endpoints/{name}", token, json={"versions": versions, "reason": "same"})
        assert r.status_code == 200 and r.json()["monitoring"] is True, r.text
    finally:
        hub.executor("DELETE", f"endpoints/{name}")
