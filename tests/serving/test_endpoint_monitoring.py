"""Drift monitoring of endpoints (GET endpoints/{name}/monitoring) against the session's real hub,
MLflow and executor, with real scikit-learn models:

- version 1 of a model trained on synthetic data, with ``notebench.log_training_profile`` called in
  its run: traffic drawn like the training data drifts nowhere, traffic with one feature shifted
  drifts on that feature alone;
- version 2 of it, logged with neither profile nor input example: the first requests are its baseline;
- the shared test model (tests/support/registry.py), logged with an input example: that is its baseline.

The router samples at most c.Endpoints.samples_per_second (10) requests per endpoint and second:
each endpoint here gets at most 10 requests in all, so every one is sampled.
"""

import pytest

from tests.support.drift import ROWS, frame, register_drift_model, split
from tests.support.endpoints import RUN, delete_endpoints, deploy, invoke, owner_and_other, wait_status
from tests.support.launcher import wait_for

pytestmark = pytest.mark.slow

REQUESTS = 8  # per endpoint: under the sample's 10 per second


@pytest.fixture(scope="module")
def people(hub):
    return owner_and_other(hub, "mon")


@pytest.fixture(scope="module", autouse=True)
def cleanup(hub):
    yield
    delete_endpoints(hub, "mon-")


@pytest.fixture(scope="module")
def drift_model(hub, people):
    return register_drift_model(hub, f"drift-{people['owner']}", people["owner_token"])


def monitoring(hub, name, token=None, **params):
    return hub.executor("GET", f"endpoints/{name}/monitoring", token, params=params)


def send(hub, name, token, payloads, total=None) -> dict:
    """Invoke with each payload; the monitoring report once the sample holds ``total`` requests
    (by default, these)."""
    for payload in payloads:
        r = invoke(hub, name, token, payload)
        assert r.status_code == 200, r.text
    total = total or len(payloads)

    def sampled():
        r = monitoring(hub, name, token)
        assert r.status_code == 200, r.text
        report = r.json()
        return report if sum(v["requests"] for v in report["versions"]) >= total else None

    return wait_for(sampled, 30, message=f"{total} sampled requests of {name}")


def endpoint(hub, people, name, model, version):
    deploy(hub, people["owner_token"], name, [{"model": model, "version": version, "weight": 100}])
    wait_status(hub, name, people["owner_token"])
    return name


@pytest.fixture(scope="module")
def steady(hub, people, drift_model):
    return endpoint(hub, people, f"mon-steady-{RUN}", drift_model, "1")


@pytest.fixture(scope="module")
def shifted(hub, people, drift_model):
    return endpoint(hub, people, f"mon-shifted-{RUN}", drift_model, "1")


def test_traffic_like_the_training_data_drifts_nowhere(hub, people, steady):
    report = send(hub, steady, people["owner_token"], [split(frame(seed)) for seed in range(REQUESTS)])
    assert report["window"] == "1h" and report["sample"]["samples_per_second"] == 10
    [version] = report["versions"]
    assert version["version"] == "1" and version["requests"] == REQUESTS and version["rows"] == REQUESTS * ROWS
    assert version["baseline"]["source"] == "training_profile" and version["baseline"]["rows"] == 2000
    assert set(version["features"]) == {"a", "b", "c", "d"}
    assert version["drifted"] == [], version["features"]
    for name in "abc":
        assert version["features"][name]["method"] == "psi"
        assert version["features"][name]["drift_score"] == version["features"][name]["p_value_or_psi"] < 0.2
        assert version["features"][name]["missing_rate"] == 0
    assert version["features"]["d"]["method"] == "chi_square" and version["features"]["d"]["p_value_or_psi"] > 0.01
    assert version["prediction_drift"] is not None and not version["prediction_drift"]["drifted"]
    assert version["schema_violations"] == {"requests": 0, "rows": 0, "rate": 0.0}
    assert version["quality"] == {}


def test_traffic_shifted_on_one_feature_drifts_on_that_feature_alone(hub, people, shifted):
    violation = {"dataframe_split": {"columns": ["a", "b"], "data": [[0.1, 0.2]]}}  # the model cannot read it
    assert invoke(hub, shifted, people["owner_token"], violation).status_code == 400
    payloads = [split(frame(100 + seed, shift_b=2.0)) for seed in range(REQUESTS - 1)]
    report = send(hub, shifted, people["owner_token"], payloads, total=REQUESTS)
    [version] = report["versions"]
    assert version["baseline"]["source"] == "training_profile"
    assert version["drifted"] == ["b"], version["features"]
    b = version["features"]["b"]
    assert b["drifted"] and b["drift_score"] > 0.2 and b["out_of_range_rate"] > 0
    assert all(not version["features"][name]["drifted"] for name in "acd")
    assert version["rows"] == (REQUESTS - 1) * ROWS
    assert version["schema_violations"]["rows"] == 1 and version["schema_violations"]["requests"] == 0
    # The day's window holds the same requests.
    assert monitoring(hub, shifted, people["owner_token"], window="1d").json()["versions"][0]["drifted"] == ["b"]


def test_without_a_profile_the_input_example_is_the_baseline(hub, people, model):
    name = endpoint(hub, people, f"mon-example-{RUN}", model["name"], "1")
    report = send(hub, name, people["owner_token"], [model["input"]] * 3)
    [version] = report["versions"]
    assert version["baseline"]["source"] == "input_example" and version["baseline"]["rows"] == 2
    assert "rows only" in version["baseline"]["note"]
    assert set(version["features"]) == {"a", "b", "c"} and version["rows"] == 9


def test_without_profile_or_example_the_first_requests_are_the_baseline(hub, people, drift_model):
    name = endpoint(hub, people, f"mon-first-{RUN}", drift_model, "2")
    token = people["owner_token"]
    # c.Monitoring.first_requests is 5 in the tests' configuration (tests/support/launcher.py).
    report = send(hub, name, token, [split(frame(200 + seed)) for seed in range(4)])
    [version] = report["versions"]
    assert version["requests"] == 4 and version["baseline"] is None and version["features"] == {}
    send(hub, name, token, [split(frame(204))], total=5)
    report = send(hub, name, token, [split(frame(300 + seed, shift_b=2.0)) for seed in range(5)], total=10)
    [version] = report["versions"]
    assert version["baseline"]["source"] == "first_requests" and version["baseline"]["rows"] == 5 * ROWS
    assert "first 5 sampled requests" in version["baseline"]["note"]
    assert version["requests"] == 10 and version["rows"] == 5 * ROWS  # the baseline's own requests left out
    assert version["features"]["b"]["method"] == "ks" and version["features"]["d"]["method"] == "chi_square"
    assert version["drifted"] == ["b"], version["features"]


def test_access_matrix_and_window(hub, people, steady):
    path = f"endpoints/{steady}/monitoring"
    assert hub.executor("GET", path, people["owner_token"]).status_code == 200
    assert hub.executor("GET", path).status_code == 200  # the admin
    assert hub.executor("GET", path, people["other_token"]).status_code == 404
    assert hub.executor("GET", path, "").status_code == 401
    for bad in ("2h", "", "1H", "3600"):
        r = monitoring(hub, steady, people["owner_token"], window=bad)
        assert r.status_code == 400 and r.json()["field"] == "window", r.text
    r = hub.executor("GET", path, people["owner_token"], params={"windows": "1h"})
    assert r.status_code == 400
    assert monitoring(hub, f"mon-nothing-{RUN}", people["owner_token"]).status_code == 404
