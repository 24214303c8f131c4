"""Live accuracy over labelled predictions: the shared computation (window, minimum, regression), the local gauges
from a real SQLite store, and the shared alarm rule going to ALARM when accuracy is low, OK otherwise."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import pytest
from alarm_support import RULES
from drift_data import CLASSES, draw, house_records, records, samples

from deploy.monitoring.alarm_history import AlarmHistory
from deploy.monitoring.alarms import AlarmEvaluator
from deploy.monitoring.live_accuracy import LiveAccuracyMonitor
from deploy.monitoring.metrics import ApiMetrics, EndpointMetrics
from deploy.monitoring.sampler import MetricSampler
from serving_lambdas.live_accuracy import DEFAULT_MIN_LABELLED, live_accuracy
from serving_lambdas.records import Feedback, PredictionRecord
from serving_lambdas.store import SqliteStore

ALARM = RULES["cloudviz-live-accuracy"]


def labelled(rows: list[PredictionRecord], wrong_every: int) -> list[PredictionRecord]:
    """``rows`` with feedback: every ``wrong_every``-th row's true label is another class than the predicted one."""
    def truth(index: int, record: PredictionRecord) -> str:
        if index % wrong_every:
            return record.label
        return CLASSES[(CLASSES.index(record.label) + 1) % len(CLASSES)]
    return [dataclasses.replace(record, feedback=Feedback(truth(index, record), record.timestamp))
            for index, record in enumerate(rows)]


def test_accuracy_and_recall_are_the_hand_counts_over_the_newest_labelled(iris):
    _, train = iris
    old = labelled(records(draw(train, 100, seed=3), minutes_ago=60), wrong_every=1)  # all wrong, older
    new = labelled(records(draw(train, 200)), wrong_every=4)  # 50 of 200 wrong
    unlabelled = records(draw(train, 30, seed=5))
    result = live_accuracy(old + unlabelled + new)
    assert (result.labelled, result.accuracy) == (200, 150 / 200)  # the newest 200 labelled only
    for label in CLASSES:
        truths = [r for r in new if r.feedback.label == label]
        assert result.recall[label] == sum(r.label == label for r in truths) / len(truths)
    assert live_accuracy(old + new, window=300).accuracy == 150 / 300


def test_no_accuracy_below_the_minimum_or_for_a_regression_model(iris):
    _, train = iris
    few = labelled(records(draw(train, DEFAULT_MIN_LABELLED - 1)), wrong_every=2)
    assert live_accuracy(few).to_dict() == {"labelled": DEFAULT_MIN_LABELLED - 1, "accuracy": None, "recall": {}}
    houses = [dataclasses.replace(r, feedback=Feedback(float(r.prediction), r.timestamp))
              for r in house_records(draw(train, 300)[:, :4])]
    assert live_accuracy(houses).to_dict() == {"labelled": 0, "accuracy": None, "recall": {}}
    with pytest.raises(ValueError, match="min_labelled must be from 1 to window .200., not 0"):
        live_accuracy(few, min_labelled=0)


def test_the_gauges_follow_the_store(iris, tmp_path: Path):
    _, train = iris
    store, metrics = SqliteStore(tmp_path / "predictions.db"), ApiMetrics()
    monitor = LiveAccuracyMonitor(store, metrics)
    assert monitor.refresh().labelled == 0
    values = samples(metrics.registry)
    assert math.isnan(values[("cloudviz_live_accuracy", ())]) and values[("cloudviz_labelled_predictions", ())] == 0
    store.put(labelled(records(draw(train, 120)), wrong_every=3))  # 40 of 120 wrong
    result = monitor.refresh()
    values = samples(metrics.registry)
    assert values[("cloudviz_live_accuracy", ())] == pytest.approx(80 / 120) == result.accuracy
    assert values[("cloudviz_labelled_predictions", ())] == 120
    assert {dict(labels)["label"]: value for (name, labels), value in values.items()
            if name == "cloudviz_live_recall"} == result.recall


def test_the_alarm_goes_to_alarm_when_accuracy_is_low_and_is_ok_otherwise(iris, tmp_path: Path):
    _, train = iris
    store, api = SqliteStore(tmp_path / "predictions.db"), ApiMetrics()
    sampler = MetricSampler(api, EndpointMetrics("e"), period_seconds=1.0)
    evaluator = AlarmEvaluator([ALARM], sampler, AlarmHistory(tmp_path / "alarms.db"), period_seconds=1.0,
                               before_sample=[LiveAccuracyMonitor(store, api).refresh])
    start = time.time()

    def period() -> list[tuple[str, str]]:
        return [(t.old_state, t.new_state) for t in evaluator.tick(start + len(sampler.series()) + 1)]

    store.put(labelled(records(draw(train, 30), minutes_ago=30), wrong_every=1))  # all wrong, but too few
    assert period() == [("INSUFFICIENT_DATA", "OK")]  # no value: missing data is not breaching
    assert evaluator.states()[0].value is None
    store.put(labelled(records(draw(train, 200), minutes_ago=20), wrong_every=10))  # 90%
    assert period() == []
    assert evaluator.states()[0].value == pytest.approx(0.9)
    store.put(labelled(records(draw(train, 200, seed=2), minutes_ago=10), wrong_every=2))  # 50%
    assert period() == [("OK", "ALARM")]
    assert evaluator.states()[0].value == pytest.approx(0.5)
    store.put(labelled(records(draw(train, 200, seed=4)), wrong_every=20))  # 95%
    assert period() == [("ALARM", "OK")]


def test_the_rule_gives_the_cloudwatch_alarm():
    alarm = ALARM.cloudwatch_properties({"Endpoint": "cloudviz-dev"})
    assert {key: alarm[key] for key in ("Namespace", "MetricName", "Statistic", "ComparisonOperator", "Threshold",
                                        "TreatMissingData", "Dimensions")} == {
        "Namespace": "CloudViz", "MetricName": "LiveAccuracy", "Statistic": "Minimum",
        "ComparisonOperator": "LessThanThreshold", "Threshold": 0.8, "TreatMissingData": "notBreaching",
        "Dimensions": [{"Name": "Endpoint", "Value": "cloudviz-dev"}]}
