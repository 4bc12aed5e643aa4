"""Gated retraining's comparison (executor/schedules/promotion.py): which challenger is promoted,
with which reason, and the policy's validation."""

import math

import pydantic
import pytest

from notebench.executor.schedules.promotion import compare, latest_metric
from notebench.executor.schemas import PromotionPolicy


def decide(challenger, champion, greater=True, margin=0.01, versions=("3", "2")):
    return compare("accuracy", greater, margin, versions[0], challenger, versions[1], champion)


def test_a_challenger_better_by_the_margin_is_promoted():
    promoted, reason = decide(0.95, 0.90)
    assert promoted
    assert reason == ("promoted: accuracy 0.95 of version 3 against 0.9 of champion version 2, higher is better, "
                      "margin 0.01")


def test_exactly_the_margin_counts_despite_float_noise():
    assert 0.91 - 0.90 != 0.01  # why the difference is rounded
    assert decide(0.91, 0.90)[0]
    assert not decide(0.9099999, 0.90)[0]


@pytest.mark.parametrize("challenger,champion", [(0.905, 0.90), (0.90, 0.90), (0.80, 0.90)])
def test_a_challenger_not_better_by_the_margin_is_refused(challenger, champion):
    promoted, reason = decide(challenger, champion)
    assert not promoted and reason.startswith("refused: accuracy ")


def test_equal_values_never_promote_even_with_no_margin():
    assert not decide(0.9, 0.9, margin=0)[0]
    assert decide(0.9000001, 0.9, margin=0)[0]


def test_lower_is_better():
    assert decide(0.10, 0.20, greater=False, margin=0.05)[0]
    assert not decide(0.30, 0.20, greater=False, margin=0.05)[0]
    assert not decide(0.17, 0.20, greater=False, margin=0.05)[0]
    assert "lower is better" in decide(0.10, 0.20, greater=False)[1]


def test_no_champion_yet_promotes():
    promoted, reason = compare("accuracy", True, 0.5, "1", 0.1, None, None)
    assert promoted and reason == "promoted: no champion yet; version 1 has accuracy 0.1"


def test_no_metric_or_no_challenger_is_refused():
    promoted, reason = compare("accuracy", True, 0.0, "4", None, "2", 0.9)
    assert not promoted and reason.startswith("refused: no metric 'accuracy'")
    promoted, reason = compare("accuracy", True, 0.0, None, None, "2", 0.9)
    assert not promoted and reason.startswith("refused: no challenger")
    # Without a champion either: still nothing to promote.
    assert not compare("accuracy", True, 0.0, "4", None, None, None)[0]


def test_a_champion_without_the_metric_is_kept():
    promoted, reason = compare("accuracy", True, 0.0, "4", 0.99, "2", None)
    assert not promoted and reason.startswith("refused: champion version 2 has no accuracy")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_values_that_are_not_numbers_are_refused(value):
    assert not decide(value, 0.9)[0]
    assert not decide(0.99, value)[0]


def test_the_champion_itself_is_not_promoted_again():
    promoted, reason = decide(0.99, 0.5, versions=("2", "2"))
    assert not promoted and reason == "refused: version 2 is the champion already"


def test_latest_metric_reads_a_runs_metrics():
    run = {"data": {"metrics": [{"key": "loss", "value": 0.3}, {"key": "accuracy", "value": 1}]}}
    assert latest_metric(run, "accuracy") == 1.0 and isinstance(latest_metric(run, "accuracy"), float)
    assert latest_metric(run, "f1") is None
    assert latest_metric({"data": {}}, "accuracy") is None and latest_metric(None, "accuracy") is None
    assert latest_metric({"data": {"metrics": [{"key": "accuracy", "value": "0.9"}]}}, "accuracy") is None


GOOD = {"model": "churn", "metric": "accuracy"}
BAD = [
    ({"model": ""}, "model"),
    ({"model": "a\nb"}, "model"),
    ({"metric": "x" * 251}, "metric"),
    ({"greater_is_better": "yes"}, "greater_is_better"),
    ({"margin": -0.1}, "margin"),
    ({"margin": "0.1"}, "margin"),
    ({"alias": "latest"}, "alias"),
    ({"alias": "v3"}, "alias"),
    ({"alias": "has space"}, "alias"),
    ({"endpoint": "Not_An_Endpoint"}, "endpoint"),
    ({"extra": 1}, "extra"),
]


def test_the_policy_defaults():
    policy = PromotionPolicy.model_validate(GOOD)
    assert (policy.greater_is_better, policy.margin, policy.alias, policy.endpoint) == (True, 0.0, "champion", None)
    assert PromotionPolicy.model_validate({**GOOD, "margin": 1}).margin == 1.0  # a JSON integer is a number too


@pytest.mark.parametrize("change,field", BAD, ids=[f for _, f in BAD])
def test_a_bad_policy_names_its_field(change, field):
    with pytest.raises(pydantic.ValidationError) as e:
        PromotionPolicy.model_validate({**GOOD, **change})
    assert e.value.errors()[0]["loc"][0] == field
