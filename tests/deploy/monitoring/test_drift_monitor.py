"""The drift monitor on stored predictions: iris traffic in and out of distribution, regression traffic (features
and predicted values), the window and min rows, and the baselines it accepts or refuses."""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from pathlib import Path

import pytest
from drift_data import (
    AREA,
    FEATURES,
    HOUSE_FEATURES,
    PETAL_LENGTH,
    draw,
    feature_gauges,
    house_records,
    records,
    samples,
    shifted,
)

from deploy.monitoring.drift import DriftMonitor
from deploy.monitoring.metrics import ApiMetrics
from serving_lambdas.drift import MODERATE_DRIFT, SIGNIFICANT_DRIFT, Baseline, BaselineError
from serving_lambdas.records import PredictionRecord
from serving_lambdas.store import SqliteStore

# -- iris traffic -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "to_records", "features"),
                         [("iris", records, FEATURES), ("houses", house_records, HOUSE_FEATURES)])
def test_in_distribution_rows_drift_less_than_moderate(request, data: str, to_records, features):
    """Classifier traffic (iris) and regression traffic (houses: features and predicted values) alike."""
    statistics, train = request.getfixturevalue(data)
    report = DriftMonitor(statistics).update(to_records(draw(train, 500)))
    assert report.rows == 500 and set(report.features) == set(features)
    assert all(value < MODERATE_DRIFT for value in report.features.values()), report
    assert report.prediction < MODERATE_DRIFT


@pytest.mark.parametrize("by", [0.5, 3.0])
def test_shifted_petal_length_drifts_significantly_on_that_feature_only(iris, by: float):
    statistics, train = iris
    report = DriftMonitor(statistics).update(records(shifted(draw(train, 500), PETAL_LENGTH, by)))
    assert report.features[PETAL_LENGTH] > SIGNIFICANT_DRIFT, report
    assert all(value < MODERATE_DRIFT for name, value in report.features.items() if name != PETAL_LENGTH), report


def test_only_the_newest_window_rows_count(iris):
    statistics, train = iris
    old = records(shifted(draw(train, 300, seed=1), PETAL_LENGTH, 3.0), minutes_ago=5)
    new = records(draw(train, 300, seed=2))
    monitor = DriftMonitor(statistics, window=300)
    report = monitor.update(old + new)
    assert report.rows == 300 and report.features[PETAL_LENGTH] < MODERATE_DRIFT
    assert DriftMonitor(statistics, window=600).update(new + old).features[PETAL_LENGTH] > SIGNIFICANT_DRIFT


def test_below_min_rows_there_is_no_value_and_the_gauges_say_so(iris):
    statistics, train = iris
    metrics = ApiMetrics()
    monitor = DriftMonitor(statistics, min_rows=200, metrics=metrics)
    report = monitor.update(records(draw(train, 199)))
    assert (report.rows, report.features, report.prediction) == (199, {}, None)
    values = samples(metrics.registry)
    assert feature_gauges(values) == {}
    assert math.isnan(values[("cloudviz_prediction_class_drift", ())])
    assert values[("cloudviz_drift_window_rows", ())] == 199

    report = monitor.update(records(draw(train, 200)))
    values = samples(metrics.registry)
    assert feature_gauges(values) == report.features and set(report.features) == set(FEATURES)
    assert values[("cloudviz_prediction_class_drift", ())] == report.prediction

    monitor.set_baseline(None)
    report = monitor.update(records(draw(train, 200)))
    assert report.to_dict() == {"rows": 200, "features": {}, "prediction": None}
    values = samples(metrics.registry)
    assert feature_gauges(values) == {} and math.isnan(values[("cloudviz_prediction_class_drift", ())])


def test_a_feature_missing_from_stored_rows_has_no_value(iris):
    statistics, train = iris
    rows = records(draw(train, 250))
    rows = [PredictionRecord(**{**r.document(), "features": {k: v for k, v in r.features.items() if k != "x4"}})
            for r in rows]
    assert set(DriftMonitor(statistics).update(rows).features) == {"x1", "x2", "x3"}


def test_min_rows_must_fit_in_the_window(iris):
    with pytest.raises(ValueError, match=r"min_rows must be from 1 to window \(100\), not 200"):
        DriftMonitor(iris[0], window=100, min_rows=200)


def test_refresh_reads_the_store_and_a_failed_read_leaves_no_value(iris, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture):
    statistics, train = iris
    store = SqliteStore(tmp_path / "predictions.db")
    store.put(records(draw(train, 300)))
    metrics = ApiMetrics()
    monitor = DriftMonitor(statistics, window=250, metrics=metrics, store=store)
    report = monitor.refresh()
    assert report.rows == 250 and set(feature_gauges(samples(metrics.registry))) == set(FEATURES)

    with sqlite3.connect(tmp_path / "predictions.db") as connection:
        connection.execute("DROP TABLE predictions")
    with caplog.at_level(logging.WARNING, logger="deploy.monitoring.drift"):
        assert monitor.refresh() is None
    assert "drift: cannot read the newest predictions: no such table: predictions" in caplog.text
    assert feature_gauges(samples(metrics.registry)) == {}


# -- regression traffic -----------------------------------------------------------------------------


def test_a_regression_baseline_bins_the_target_as_preprocessing_counted_it(houses):
    statistics, train = houses
    baseline = Baseline.from_statistics(statistics, "houses")
    assert (baseline.classes, baseline.predicts, baseline.prediction_unavailable_because) == ({}, "value", "")
    assert baseline.target.counts(train[:, 0]) == statistics["target"]["histogram"]["counts"]
    assert baseline.target.psi(train[:, 0]) == 0.0


def test_a_shifted_regression_feature_drifts_on_that_feature_only(houses):
    statistics, train = houses
    report = DriftMonitor(statistics).update(house_records(shifted(draw(train, 500), AREA, 3.0, HOUSE_FEATURES)))
    assert report.features[AREA] > SIGNIFICANT_DRIFT, report
    assert all(value < MODERATE_DRIFT for name, value in report.features.items() if name != AREA), report
    assert report.prediction < MODERATE_DRIFT  # the predicted values are the training targets here


def test_shifted_predicted_values_drift_significantly_and_set_the_prediction_gauge(houses):
    statistics, train = houses
    metrics = ApiMetrics()
    report = DriftMonitor(statistics, metrics=metrics).update(house_records(draw(train, 500), predicted_by=8.0))
    assert report.prediction > SIGNIFICANT_DRIFT, report
    assert all(value < MODERATE_DRIFT for value in report.features.values()), report
    values = samples(metrics.registry)
    assert values[("cloudviz_prediction_class_drift", ())] == report.prediction
    assert feature_gauges(values) == report.features


# -- baselines ------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [None, {"count": 210, "min": 4.1, "max": 41.6, "mean": 22.4}])
def test_a_regression_baseline_without_a_target_histogram_measures_the_features_and_says_why(
    houses, target: dict | None
):
    """Statistics without ``target.histogram`` (no target entry at all, or a summary only): the features are
    measured, the prediction is not, and the baseline says why."""
    statistics, train = houses
    old = {key: value for key, value in statistics.items() if key != "target"}
    if target is not None:
        old["target"] = target
    baseline = Baseline.from_statistics(old, "old.json")
    assert baseline.target is None and baseline.predicts == "value"
    assert baseline.prediction_unavailable_because == (
        "old.json has no class shares (class_distribution) and no histogram of the regression target "
        "(target.histogram) to compare the predictions with")
    metrics = ApiMetrics()
    report = DriftMonitor(old, metrics=metrics).update(house_records(shifted(draw(train, 500), AREA, 3.0,
                                                                             HOUSE_FEATURES)))
    assert report.prediction is None and report.features[AREA] > SIGNIFICANT_DRIFT
    values = samples(metrics.registry)
    assert feature_gauges(values) == report.features
    assert math.isnan(values[("cloudviz_prediction_class_drift", ())])


def test_a_classification_baseline_ignores_a_target_entry(iris):
    statistics = {**iris[0], "target": {"histogram": {"bin_edges": [0, 1], "counts": [1]}}}
    baseline = Baseline.from_statistics(statistics, "iris")
    assert (baseline.target, baseline.predicts, baseline.prediction_unavailable_because) == (None, "class", "")




def test_malformed_statistics_are_refused_naming_the_field(iris):
    statistics = json.loads(json.dumps(iris[0]))
    statistics["features"]["x2"]["histogram"]["counts"].pop()
    with pytest.raises(BaselineError, match=r"^stats.json: features.x2.histogram: not baseline statistics "
                                            r"\(ValueError: a histogram needs n \+ 1 bin_edges for n counts, "
                                            r"got 10 and 8\)$"):
        Baseline.from_statistics(statistics, "stats.json")
    del statistics["class_distribution"]
    statistics["features"]["x2"] = iris[0]["features"]["x2"]
    with pytest.raises(BaselineError, match=r"^stats.json: class_distribution: not baseline statistics \(KeyError"):
        Baseline.from_statistics(statistics, "stats.json")


def test_a_malformed_target_histogram_is_refused_naming_the_field(houses):
    statistics = json.loads(json.dumps(houses[0]))
    statistics["target"]["histogram"]["counts"] = []
    with pytest.raises(BaselineError, match=r"^stats.json: target.histogram: not baseline statistics "
                                            r"\(ValueError: a histogram needs n \+ 1 bin_edges for n counts, "):
        Baseline.from_statistics(statistics, "stats.json")
