"""A version's first-requests drift baseline is made from its first sampled requests as soon as
they are sampled, nobody asking, and kept across kill -9 of the executor: after the restart, and
after the sample's rotation has dropped those requests, drift is still measured against them (a
baseline made again then would be made of the later, shifted, requests and see no drift)."""

from __future__ import annotations

import signal
import sqlite3

import pytest

from tests.support.drift import ROWS, frame, register_drift_model, split
from tests.support.endpoints import deploy_ready, invoke
from tests.support.jobs import unique
from tests.support.launcher import BASE_CONFIG, executor_process, running_hub, wait_for

pytestmark = pytest.mark.slow

MAX_SAMPLES = 10
CONFIG = BASE_CONFIG + f"""
c.Endpoints.max_samples = {MAX_SAMPLES}
c.Monitoring.baseline_check_seconds = 1
"""


@pytest.fixture(scope="module")
def bhub(tmp_path_factory):
    with running_hub(tmp_path_factory, "baseline-restart", CONFIG) as h:
        yield h


def stored_baselines(hub) -> list[tuple]:
    with sqlite3.connect(hub.data_dir / "executor.sqlite", timeout=60) as db:
        return db.execute("SELECT model, version, rows FROM endpoint_baselines").fetchall()


def sampled_ids(hub) -> set[int]:
    with sqlite3.connect(hub.data_dir / "executor.sqlite", timeout=60) as db:
        return {row[0] for row in db.execute("SELECT id FROM endpoint_requests")}


def test_first_requests_baseline_outlives_the_sample_and_a_kill_9(bhub):
    hub = bhub
    owner = unique("bl")
    token = hub.new_user(owner)
    model = register_drift_model(hub, f"drift-{owner}", token)
    name = f"bl-{owner}"
    deploy_ready(hub, token, name, [{"model": model, "version": "2", "weight": 100}])

    # The first 5 requests (c.Monitoring.first_requests), like the training data: the baseline,
    # made by the executor on its own.
    for seed in range(5):
        assert invoke(hub, name, token, split(frame(200 + seed))).status_code == 200
    wait_for(lambda: stored_baselines(hub) == [(model, "2", 5 * ROWS)], 60, message="the baseline stored, nobody asking")
    first = sampled_ids(hub)

    executor = executor_process(hub)
    executor.send_signal(signal.SIGKILL)
    wait_for(lambda: (p := executor_process(hub)) and p.pid != executor.pid, 120, message="the executor restarted")
    wait_for(lambda: hub.executor("GET", f"endpoints/{name}", token).json()["status"] == "ready", 120,
             message="the endpoint served again")

    # Then shifted traffic, until the sample's rotation has dropped every one of the first requests.
    seed = 300
    while first & sampled_ids(hub):
        r = invoke(hub, name, token, split(frame(seed, shift_b=2.0)))
        assert r.status_code == 200, r.text
        seed += 1
        assert seed < 300 + 50 * MAX_SAMPLES, "the first requests never left the sample"

    r = hub.executor("GET", f"endpoints/{name}/monitoring", token)
    assert r.status_code == 200, r.text
    [version] = r.json()["versions"]
    assert version["baseline"]["source"] == "first_requests" and version["baseline"]["rows"] == 5 * ROWS
    assert version["drifted"] == ["b"], version["features"]
