"""Shadow versions' pure logic: which requests a shadow's percentage takes (router.takes), the
version objects' checks (schemas.EndpointVersion), agreement and the side-by-side report
(serving/shadow.py) on a SQLite store."""

from __future__ import annotations

import json

import pydantic
import pytest
from sklearn.metrics import accuracy_score

from notebench.executor import db
from notebench.executor.db import Endpoint, Feedback, Prediction, ShadowPrediction, utcnow
from notebench.executor.schemas import EndpointCreate
from notebench.executor.serving import shadow
from notebench.executor.serving.router import takes

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("percent", [1, 3, 33, 50, 67, 99, 100])
def test_a_percentage_takes_exactly_that_many_of_every_hundred(percent):
    taken = [n for n in range(1, 301) if takes(n, percent)]
    for start in range(0, 300, 100):
        assert sum(start < n <= start + 100 for n in taken) == percent
    # Any 100 consecutive requests, not only from the first: at most one off.
    assert all(abs(sum(takes(n, percent) for n in range(k, k + 100)) - percent) <= 1 for k in range(1, 200))


def test_half_is_every_other_request():
    assert [takes(n, 50) for n in range(1, 7)] == [False, True, False, True, False, True]


def create(*versions):
    return EndpointCreate.model_validate({"name": "ep", "versions": list(versions)})


def field_of(*versions) -> str:
    with pytest.raises(pydantic.ValidationError) as e:
        create(*versions)
    return ".".join(str(p) for p in e.value.errors()[0]["loc"])


LIVE = {"model": "m", "version": "1", "weight": 100}


def test_version_objects():
    request = create(LIVE, {"model": "m", "version": "2", "shadow": True})
    assert [(v.weight, v.shadow, v.traffic_percent) for v in request.versions] == [(100, False, None), (0, True, 100)]
    request = create(LIVE, {"model": "m", "version": "2", "shadow": True, "weight": 0, "traffic_percent": 25})
    assert (request.versions[1].weight, request.versions[1].traffic_percent) == (0, 25)
    assert field_of(LIVE, {"model": "m", "version": "2", "shadow": True, "weight": 10}) == "versions.1.weight"
    assert field_of(LIVE, {"model": "m", "version": "2", "shadow": True, "traffic_percent": 0}) == "versions.1.traffic_percent"
    assert field_of(LIVE, {"model": "m", "version": "2", "shadow": True, "traffic_percent": 101}) == "versions.1.traffic_percent"
    assert field_of({**LIVE, "traffic_percent": 50}) == "versions.0.traffic_percent"
    assert field_of({"model": "m", "version": "1"}) == "versions.0.weight"
    assert field_of({"model": "m", "version": "1", "shadow": True}) == "versions"  # no live version
    assert field_of(LIVE, {"model": "m", "version": "1", "shadow": True}) == "versions"  # live and shadow
    assert field_of({**LIVE, "weight": 60}, {"model": "m", "version": "2", "shadow": True}) == "versions"  # live sum 60
    assert field_of(LIVE, {"model": "m", "version": "2", "shadow": "yes"}) == "versions.1.shadow"


def test_agreement_of_two_answers():
    assert shadow.agrees('{"predictions": [1, 0]}', '{"predictions": [1, 0]}') is True
    assert shadow.agrees('{"predictions": [1, 0]}', "[1, 1]") is False
    assert shadow.agrees('{"predictions": [1.0]}', '{"predictions": [1]}') is True
    assert shadow.agrees('{"predictions": [1, 0', '{"predictions": [1, 0]}') is None  # cut
    assert shadow.agrees(None, '{"predictions": [1]}') is None  # no stored live prediction


@pytest.fixture
def sessions(tmp_path):
    return db.connect(f"sqlite:///{tmp_path / 'executor.sqlite'}")


def test_report_compares_on_the_same_requests(sessions):
    now = utcnow()
    live_answers = [1, 0, 1, 1, 0, 1]
    shadow_answers = [1, 1, 1, 0, 0, None]  # the last one failed
    labels = [1, 1, 0, 1, 0, 1]
    with sessions() as s:
        e = Endpoint(name="ep", owner="alice", profile="cpu", status="ready")
        s.add(e)
        s.flush()
        for n, (live, other, label) in enumerate(zip(live_answers, shadow_answers, labels)):
            rid = f"{n:032x}"
            s.add(Prediction(request_id=rid, endpoint_id=e.id, model="m", version="1", time=now,
                             outputs=json.dumps({"predictions": [live]})))
            s.add(ShadowPrediction(request_id=rid, endpoint_id=e.id, model="m", version="2", time=now, latency_ms=10.0 + n,
                                   status=200 if other is not None else 502,
                                   outputs=json.dumps({"predictions": [other]}) if other is not None else None,
                                   live_model="m", live_version="1", live_latency_ms=5.0, live_status=200))
            s.add(Feedback(endpoint_id=e.id, request_id=rid, label=label, at=now, by="alice"))
        s.commit()
        endpoint_id = e.id
    report = shadow.compare(sessions, endpoint_id, now.replace(year=now.year - 1), [("m", "1")], {("m", "2"): 100})
    [live] = report["live"]
    assert (live["model"], live["version"], live["requests"], live["errors"]) == ("m", "1", 6, 0)
    assert live["latency_ms"] == {"p50": 5.0, "p99": 5.0}
    [other] = report["shadows"]
    assert (other["version"], other["requests"], other["errors"], other["compared"]) == ("2", 6, 1, 5)
    assert other["agreement_rate"] == pytest.approx(3 / 5)  # 1=1, 0≠1, 1=1, 1≠0, 0=0
    assert other["labelled"] == 5 and other["task"] == "classification"
    assert other["quality"]["accuracy"] == pytest.approx(accuracy_score(labels[:5], shadow_answers[:5]))
    # A window with nothing in it: the versions of now, empty.
    empty = shadow.compare(sessions, endpoint_id, now.replace(year=now.year + 1), [("m", "1")], {("m", "2"): 50})
    assert empty["shadows"][0]["requests"] == 0 and empty["shadows"][0]["agreement_rate"] is None
    assert empty["shadows"][0]["traffic_percent"] == 50 and empty["live"][0]["requests"] == 0
