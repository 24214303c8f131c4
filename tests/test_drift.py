"""Data drift: PSI by hand, iris traffic in and out of distribution, the gauges of a live `cloudviz serve`."""

from __future__ import annotations

import csv
import http.client
import json
import logging
import math
import shutil
import sqlite3
import urllib.request
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import browser
import numpy as np
import pytest
from generated_data import regression
from polling import wait_for
from prometheus_client.parser import text_string_to_metric_families
from state_homes import point_into_copy

from deploy.local_service import LocalService
from deploy.monitoring.alarm_history import ALARM, INSUFFICIENT_DATA, OK
from deploy.monitoring.drift import DriftMonitor, load_baseline
from deploy.monitoring.metrics import ApiMetrics
from pipelines.datasets import IRIS_PARAMETERS, iris_csv
from pipelines.definition import build_pipeline
from pipelines.errors import NotFoundError, UserError
from pipelines.registry import ModelRegistry
from pipelines.runner import LocalRunner
from pipelines.runs import RunStore
from pipelines.state import StateHome
from preprocessing import preprocess
from serving_lambdas.drift import (
    EPSILON,
    MODERATE_DRIFT,
    SIGNIFICANT_DRIFT,
    Baseline,
    BaselineError,
    FeatureBaseline,
    psi,
)
from serving_lambdas.records import PredictionRecord, new_ids, utc_now
from serving_lambdas.store import SqliteStore

GROUP = "CloudVizIris"
KEY = "k" * 32
FEATURES = ("x1", "x2", "x3", "x4")
CLASSES = ("setosa", "virginica", "versicolor")
PETAL_LENGTH = "x3"
FEATURE_ALARM, CLASS_ALARM = "cloudviz-feature-drift", "cloudviz-prediction-class-drift"
HOUSES, HOUSE_FEATURES, AREA = "Houses", ("area", "rooms", "age"), "area"  # price = 3 area + 2 rooms (+ noise)


def read_split(path: Path) -> np.ndarray:
    """A channel CSV (label first, no header) as rows of floats."""
    return np.loadtxt(path, delimiter=",", ndmin=2)


def records(rows: np.ndarray, minutes_ago: float = 0.0, features: tuple[str, ...] = FEATURES,
            classes: tuple[str, ...] = CLASSES) -> list[PredictionRecord]:
    """Stored predictions of channel rows, made in row order: the label column taken as the predicted class, or
    without ``classes`` as a regression's predicted value."""
    ids = new_ids(utc_now() - timedelta(minutes=minutes_ago), len(rows))
    return [
        PredictionRecord(
            id=ids[i], timestamp="", features=dict(zip(features, map(float, row[1:]), strict=True)),
            prediction=int(row[0]) if classes else float(row[0]), label=classes[int(row[0])] if classes else None,
            probabilities=None, model_version=1, latency_ms=1.0,
        )
        for i, row in enumerate(rows)
    ]


def shifted(rows: np.ndarray, feature: str, by: float, features: tuple[str, ...] = FEATURES) -> np.ndarray:
    moved = rows.copy()
    moved[:, 1 + features.index(feature)] += by
    return moved


def samples(registry_or_text: object) -> dict[tuple[str, tuple], float]:
    """Every sample of a registry or a /metrics page: (name, sorted labels) -> value."""
    if isinstance(registry_or_text, str):
        families = text_string_to_metric_families(registry_or_text)
    else:
        families = registry_or_text.collect()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in families for sample in family.samples}


def feature_gauges(values: dict[tuple[str, tuple], float]) -> dict[str, float]:
    return {dict(labels)["feature"]: value for (name, labels), value in values.items()
            if name == "cloudviz_feature_drift"}


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, np.ndarray]:
    """The baseline statistics and the training split that preprocessing makes of the bundled iris data."""
    base = tmp_path_factory.mktemp("preprocessed")
    source = iris_csv(base / "data")
    code = preprocess.main(["--base-dir", str(base), "--input", str(source), "--label-column", "species",
                            "--feature-columns", ",".join(FEATURES), "--class-names", ",".join(CLASSES)])
    assert code == 0
    statistics = json.loads((base / "baseline" / "statistics.json").read_text(encoding="utf-8"))
    return statistics, read_split(base / "train" / "train.csv")


@pytest.fixture(scope="module")
def houses(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, np.ndarray]:
    """The baseline statistics and the training split that preprocessing makes of a generated regression set."""
    base = tmp_path_factory.mktemp("preprocessed-houses")
    data = regression(base / "data")
    code = preprocess.main(["--base-dir", str(base), "--input", str(data.path), "--label-column", data.label,
                            "--feature-columns", ",".join(data.features), "--objective", data.objective])
    assert code == 0
    statistics = json.loads((base / "baseline" / "statistics.json").read_text(encoding="utf-8"))
    return statistics, read_split(base / "train" / "train.csv")


def house_records(rows: np.ndarray, predicted_by: float = 0.0) -> list[PredictionRecord]:
    """Stored regression predictions of channel rows: the target (plus ``predicted_by``) as the predicted value."""
    moved = rows.copy()
    moved[:, 0] += predicted_by
    return records(moved, features=HOUSE_FEATURES, classes=())


def draw(train: np.ndarray, count: int, seed: int = 7) -> np.ndarray:
    """``count`` rows drawn from the training split, with replacement."""
    return train[np.random.default_rng(seed).integers(0, len(train), count)]


# -- PSI by hand ------------------------------------------------------------------------------------


def test_psi_is_the_hand_computed_sum():
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx((0.25 - 0.5) * math.log(0.25 / 0.5)
                                                          + (0.75 - 0.5) * math.log(0.75 / 0.5))
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.274653, abs=1e-6)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_an_empty_bin_counts_as_epsilon():
    assert EPSILON == 1e-4
    assert psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx((1.0 - 0.5) * math.log(1.0 / 0.5)
                                                        + (EPSILON - 0.5) * math.log(EPSILON / 0.5))
    assert psi([0.0, 1.0], [0.0, 1.0]) == 0.0


def test_psi_needs_the_same_bins_on_both_sides():
    with pytest.raises(ValueError, match="psi needs the same bins on both sides, got 2 and 3"):
        psi([0.5, 0.5], [0.2, 0.3, 0.5])


def test_a_feature_is_binned_on_the_baseline_edges_with_open_outer_bins():
    feature = FeatureBaseline.from_histogram([0.0, 1.0, 2.0, 3.0], [2, 1, 1])
    assert feature.expected == (0.5, 0.25, 0.25)
    values = np.array([-5.0, 0.5, 1.0, 2.5, 99.0])  # below the first edge, bin 0, on a cut (bin 1), bin 2, above
    assert feature.counts(values) == [2, 1, 2]
    hand = ((0.4 - 0.5) * math.log(0.4 / 0.5) + (0.2 - 0.25) * math.log(0.2 / 0.25)
            + (0.4 - 0.25) * math.log(0.4 / 0.25))
    assert feature.psi(values) == pytest.approx(hand)


def test_a_feature_constant_in_training_has_bins_below_at_and_above_its_value():
    feature = FeatureBaseline.from_histogram([2.0], [])
    assert feature.psi(np.full(10, 2.0)) == 0.0
    assert feature.counts([1.0, 2.0, 2.0, 3.0]) == [1, 2, 1]
    assert feature.psi(np.array([2.0, 2.5])) == pytest.approx(psi([0.0, 1.0, 0.0], [0.0, 0.5, 0.5]))


def test_the_training_values_fall_into_the_bins_preprocessing_counted(iris):
    statistics, train = iris
    baseline = Baseline.from_statistics(statistics, "iris")
    for j, name in enumerate(FEATURES):
        counts = baseline.features[name].counts(train[:, 1 + j])
        assert counts == statistics["features"][name]["histogram"]["counts"], name
        assert baseline.features[name].psi(train[:, 1 + j]) == 0.0


def test_class_psi_by_hand_and_an_unseen_label_is_a_bin_of_its_own():
    baseline = Baseline.from_statistics(
        {"features": {"x": {"histogram": {"bin_edges": [0, 1], "counts": [4]}}},
         "class_distribution": {"a": 0.5, "b": 0.5}}, "hand")
    assert baseline.class_psi(["a", "a", "a", "b"]) == pytest.approx(psi([0.5, 0.5], [0.75, 0.25]))
    assert baseline.class_psi(["a", "b", "c", "c"]) == pytest.approx(psi([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]))


# -- iris traffic -----------------------------------------------------------------------------------


def test_in_distribution_rows_drift_less_than_moderate(iris):
    statistics, train = iris
    report = DriftMonitor(statistics).update(records(draw(train, 500)))
    assert report.rows == 500 and set(report.features) == set(FEATURES)
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


def test_regression_rows_in_distribution_drift_less_than_moderate(houses):
    statistics, train = houses
    report = DriftMonitor(statistics).update(house_records(draw(train, 500)))
    assert report.rows == 500 and set(report.features) == set(HOUSE_FEATURES)
    assert all(value < MODERATE_DRIFT for value in report.features.values()), report
    assert report.prediction < MODERATE_DRIFT


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


# -- a trained state home and a live service ---------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state home with two pending versions: v1 trained on iris, v2 on iris with petal length + 3 cm."""
    home = StateHome(tmp_path_factory.mktemp("trained") / "home")
    runner = LocalRunner(home, build_pipeline())
    assert runner.start({}).status == "Succeeded"
    with iris_csv(home.data).open(newline="") as source:
        reader = csv.DictReader(source)
        rows = [{**row, PETAL_LENGTH: f"{float(row[PETAL_LENGTH]) + 3:.1f}"} for row in reader]
    moved = tmp_path_factory.mktemp("moved") / "iris-moved.csv"
    with moved.open("w", newline="") as target:
        writer = csv.DictWriter(target, reader.fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    own_data = {"InputData": str(moved), "ModelPackageGroupName": GROUP, **IRIS_PARAMETERS}  # iris's contract
    assert runner.start(own_data).status == "Succeeded"
    return home.root


@pytest.fixture
def home(trained: Path, tmp_path: Path) -> StateHome:
    """A copy of the trained home for one test (its runs' outputs stay where run.json points)."""
    root = tmp_path / "home"
    shutil.copytree(trained, root, ignore=shutil.ignore_patterns("cache"))
    return StateHome(root)


def training_rows(home: StateHome, version: int) -> np.ndarray:
    run = RunStore(home.runs).load(ModelRegistry(home.registry_db).get(GROUP, version).lineage["run_id"])
    return read_split(Path(run.steps["Preprocess"].outputs["train"]) / "train.csv")


def post(url: str, body: object) -> dict:
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    connection.request("POST", "/predictions", json.dumps(body), {"x-api-key": KEY, "Content-Type": "application/json"})
    response = connection.getresponse()
    answer = json.loads(response.read())
    assert response.status == 200, answer
    return answer


def send(url: str, rows: np.ndarray, singles: int = 0) -> None:
    """The first ``singles`` rows one request each (the original API's form), the rest in batches of 100."""
    for row in rows[:singles]:
        post(url, dict(zip(FEATURES, map(float, row[1:]), strict=True)))
    for start in range(singles, len(rows), 100):
        post(url, {"input_data": rows[start:start + 100, 1:].tolist()})


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        return samples(answer.read().decode())


def test_load_baseline_says_why_a_version_has_none(home: StateHome, tmp_path: Path):
    registry = ModelRegistry(home.registry_db)
    first = registry.get(GROUP, 1)
    baseline = load_baseline(RunStore(home.runs), first)
    assert baseline.source == f"baseline/statistics.json of run {first.lineage['run_id']}"
    assert set(baseline.features) == set(FEATURES) and set(baseline.classes) == set(CLASSES)

    orphan = registry.register(GROUP, first.model_data_url, "Rejected", lineage={"data": first.lineage["data"]})
    with pytest.raises(UserError, match=f"^CloudVizIris version {orphan.version} names no training run in its"):
        load_baseline(RunStore(home.runs), orphan)
    first = replace(first, artifacts={})  # as registered before the registry recorded artifacts: read from its run
    with pytest.raises(NotFoundError, match=f"^no run '{first.lineage['run_id']}' under "):
        load_baseline(RunStore(tmp_path / "no-runs"), first)


def test_drift_gauges_on_the_metrics_of_a_live_service(home: StateHome):
    ModelRegistry(home.registry_db).update_approval(GROUP, 1, "Approved")
    train = training_rows(home, 1)
    with LocalService(home, GROUP, KEY).start() as service:
        service.drift.refresh()
        before = scrape(service.api.url)
        send(service.api.url, draw(train, 500), singles=100)
        service.drift.refresh()
        in_distribution = scrape(service.api.url)
        send(service.api.url, shifted(draw(train, 500, seed=8), PETAL_LENGTH, 3.0))
        service.drift.refresh()
        moved = scrape(service.api.url)
    assert feature_gauges(before) == {} and math.isnan(before[("cloudviz_prediction_class_drift", ())])
    assert before[("cloudviz_drift_window_rows", ())] == 0

    assert in_distribution[("cloudviz_drift_window_rows", ())] == 500
    drift = feature_gauges(in_distribution)
    assert set(drift) == set(FEATURES) and all(value < MODERATE_DRIFT for value in drift.values()), drift
    assert in_distribution[("cloudviz_prediction_class_drift", ())] < MODERATE_DRIFT

    drift = feature_gauges(moved)
    assert drift[PETAL_LENGTH] > SIGNIFICANT_DRIFT, drift
    assert all(value < MODERATE_DRIFT for name, value in drift.items() if name != PETAL_LENGTH), drift


def test_the_baseline_follows_the_live_version(home: StateHome):
    registry = ModelRegistry(home.registry_db)
    registry.update_approval(GROUP, 1, "Approved")
    moved_traffic = draw(training_rows(home, 2), 300)  # v2's training data: iris with petal length + 3 cm
    with LocalService(home, GROUP, KEY).start(poll_seconds=0.05) as service:
        send(service.api.url, moved_traffic)
        assert service.drift.refresh().features[PETAL_LENGTH] > SIGNIFICANT_DRIFT

        registry.update_approval(GROUP, 2, "Approved")
        wait_for(lambda: service.live.version == 2, "version 2 live")
        assert service.drift.baseline.source.endswith(f"of run {registry.get(GROUP, 2).lineage['run_id']}")
        service.drift.refresh()
        drift = feature_gauges(samples(service.api_metrics.registry))
        assert set(drift) == set(FEATURES) and all(value < MODERATE_DRIFT for value in drift.values()), drift

        lineage = {key: value for key, value in registry.get(GROUP, 1).lineage.items() if key != "run_id"}
        registry.register(GROUP, registry.get(GROUP, 1).model_data_url, "Approved", lineage=lineage)
        wait_for(lambda: service.live.version == 3, "version 3 live")
        assert service.drift.baseline is None
        assert service.drift.refresh().features == {}
        metrics = scrape(service.api.url)
    assert feature_gauges(metrics) == {} and math.isnan(metrics[("cloudviz_prediction_class_drift", ())])


def test_a_version_whose_training_run_is_gone_serves_without_drift(trained: Path, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture):
    root = tmp_path / "home"
    shutil.copytree(trained, root, ignore=shutil.ignore_patterns("cache", "runs"))
    home = StateHome(root)
    ModelRegistry(home.registry_db).update_approval(GROUP, 1, "Approved")
    with sqlite3.connect(home.registry_db) as db:  # registered before the registry recorded artifacts
        db.execute("UPDATE model_packages SET artifacts = '{}' WHERE version = 1")
    run_id = ModelRegistry(home.registry_db).get(GROUP, 1).lineage["run_id"]
    with caplog.at_level(logging.WARNING, logger="deploy.local_service"), \
            LocalService(home, GROUP, KEY).start() as service:
        assert post(service.api.url, {"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5})["prediction"] == 1
        assert service.drift.baseline is None and service.drift.refresh().features == {}
    assert f"drift not measured for version 1: no run '{run_id}' under {home.runs}" in caplog.text


def test_the_drift_alarms_fire_on_shifted_inputs_and_not_on_in_distribution_inputs(home: StateHome):
    ModelRegistry(home.registry_db).update_approval(GROUP, 1, "Approved")
    train = training_rows(home, 1)
    events: list[str] = []
    with LocalService(home, GROUP, KEY, on_event=events.append, alarm_period_seconds=0.2).start() as service:

        def state(alarm: str) -> str:
            return next(s.state for s in service.evaluator.states() if s.name == alarm)

        assert {state(FEATURE_ALARM), state(CLASS_ALARM)} == {INSUFFICIENT_DATA}
        send(service.api.url, draw(train, 500))
        wait_for(lambda: state(FEATURE_ALARM) == state(CLASS_ALARM) == OK, "both drift alarms OK")
        send(service.api.url, shifted(draw(train, 500, seed=8), PETAL_LENGTH, 3.0))
        wait_for(lambda: state(FEATURE_ALARM) == state(CLASS_ALARM) == ALARM, "both drift alarms in ALARM")
    for alarm in (FEATURE_ALARM, CLASS_ALARM):
        changes = [(t.old_state, t.new_state) for t in reversed(service.alarm_history.transitions(alarm))]
        assert changes == [(INSUFFICIENT_DATA, OK), (OK, ALARM)], alarm
    feature_alarm = service.alarm_history.transitions(FEATURE_ALARM, limit=1)[0]
    assert feature_alarm.value > SIGNIFICANT_DRIFT and feature_alarm.threshold == SIGNIFICANT_DRIFT
    assert any(event.startswith(f"ALARM: {FEATURE_ALARM} (OK -> ALARM): Threshold Crossed") for event in events)


# -- a regression model served live -------------------------------------------------------------------


@pytest.fixture(scope="module")
def houses_trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state home whose version 1 of the Houses group the pipeline trained on a generated regression set and
    approved."""
    home = StateHome(tmp_path_factory.mktemp("houses-trained") / "home")
    data = regression(tmp_path_factory.mktemp("houses-data"))
    record = LocalRunner(home, build_pipeline()).start(
        data.parameters(ModelPackageGroupName=HOUSES, ModelApprovalStatus="Approved"))
    assert record.status == "Succeeded", record.failure_reason
    return home.root


@pytest.fixture
def houses_home(houses_trained: Path, tmp_path: Path) -> StateHome:
    """A copy of the Houses home that points into itself (its statistics may be rewritten)."""
    root = tmp_path / "home"
    shutil.copytree(houses_trained, root, ignore=shutil.ignore_patterns("cache"))
    return point_into_copy(houses_trained, root)


def houses_training_rows(home: StateHome) -> np.ndarray:
    run = RunStore(home.runs).load(ModelRegistry(home.registry_db).get(HOUSES, 1).lineage["run_id"])
    return read_split(Path(run.steps["Preprocess"].outputs["train"]) / "train.csv")


def dashboard_drift(url: str) -> dict:
    with urllib.request.urlopen(urllib.request.Request(f"{url}/dashboard/data", headers={"x-api-key": KEY}),
                                timeout=10) as answer:
        return json.loads(answer.read())["drift"]


def test_a_served_regression_model_measures_feature_and_prediction_drift_and_alarms_on_it(houses_home: StateHome):
    train = houses_training_rows(houses_home)
    with LocalService(houses_home, HOUSES, KEY, alarm_period_seconds=0.2).start() as service:

        def state(alarm: str) -> str:
            return next(s.state for s in service.evaluator.states() if s.name == alarm)

        send(service.api.url, draw(train, 500))
        wait_for(lambda: state(FEATURE_ALARM) == state(CLASS_ALARM) == OK, "both drift alarms OK")
        in_distribution = scrape(service.api.url)
        panel = wait_for(lambda: (lambda d: d if d["features"] else None)(dashboard_drift(service.api.url)),
                         "drift in the dashboard's data")
        send(service.api.url, shifted(draw(train, 500, seed=8), AREA, 2.0, HOUSE_FEATURES))
        wait_for(lambda: state(FEATURE_ALARM) == state(CLASS_ALARM) == ALARM, "both drift alarms in ALARM")
        moved = scrape(service.api.url)
    drift = feature_gauges(in_distribution)
    assert set(drift) == set(HOUSE_FEATURES) and all(value < MODERATE_DRIFT for value in drift.values()), drift
    # The model's predictions are not its training targets (10 rounds of eta 0.2 pull them towards the mean), so
    # in-distribution traffic reads a little prediction drift, well below the alarm's threshold.
    assert in_distribution[("cloudviz_prediction_class_drift", ())] < SIGNIFICANT_DRIFT
    assert feature_gauges(moved)[AREA] > SIGNIFICANT_DRIFT
    assert moved[("cloudviz_prediction_class_drift", ())] > SIGNIFICANT_DRIFT  # price = 3 area + ...: it moved
    assert panel["prediction_label"] == "predicted value" and isinstance(panel["prediction_drift"], float)
    assert "why" not in panel and "prediction_why" not in panel
    assert set(panel["features"]) == set(HOUSE_FEATURES) and any(panel["history"]["prediction_drift"])


def test_an_older_regression_baseline_without_a_target_histogram_measures_the_features(
    houses_home: StateHome, caplog: pytest.LogCaptureFixture
):
    run = RunStore(houses_home.runs).load(ModelRegistry(houses_home.registry_db).get(HOUSES, 1).lineage["run_id"])
    path = Path(run.steps["Preprocess"].outputs["baseline"]) / "statistics.json"
    statistics = json.loads(path.read_text(encoding="utf-8"))
    statistics["target"] = {key: statistics["target"][key] for key in ("min", "max", "mean")}
    path.write_text(json.dumps(statistics), encoding="utf-8")
    train = houses_training_rows(houses_home)
    with caplog.at_level(logging.WARNING, logger="deploy.local_service"), \
            LocalService(houses_home, HOUSES, KEY, alarm_period_seconds=0.2).start() as service:
        send(service.api.url, shifted(draw(train, 300), AREA, 2.0, HOUSE_FEATURES))
        report = service.drift.refresh()
        panel = wait_for(lambda: (lambda d: d if d["features"] else None)(dashboard_drift(service.api.url)),
                         "drift in the dashboard's data")
        metrics = scrape(service.api.url)
    why = (f"baseline/statistics.json of run {run.run_id} has no class shares (class_distribution) and no histogram "
           "of the regression target (target.histogram) to compare the predictions with")
    assert f"prediction drift not measured for version 1: {why}" in caplog.text
    assert report.prediction is None and report.features[AREA] > SIGNIFICANT_DRIFT
    assert feature_gauges(metrics)[AREA] > SIGNIFICANT_DRIFT
    assert math.isnan(metrics[("cloudviz_prediction_class_drift", ())])
    assert panel["prediction_why"] == f"prediction drift is not measured: {why}" and "why" not in panel
    assert panel["prediction_drift"] is None and not any(panel["history"]["prediction_drift"])


@pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))
def test_the_dashboard_draws_a_regression_models_prediction_drift(houses_home: StateHome):
    train = houses_training_rows(houses_home)
    with LocalService(houses_home, HOUSES, KEY, alarm_period_seconds=0.2).start() as service:
        send(service.api.url, draw(train, 300))
        wait_for(lambda: dashboard_drift(service.api.url)["history"]["time"], "drift in the dashboard's data")
        with browser.headless_chromium() as chromium:
            page = chromium.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{service.api.url}/dashboard")
            page.wait_for_selector("[data-panel='drift-history'][data-state=data]", timeout=30_000)
            bars = page.evaluate("document.querySelector(\"[data-panel='drift'] .chart\").data[0].x")
            lines = page.evaluate("document.querySelector(\"[data-panel='drift-history'] .chart\").data"
                                  ".map((trace) => trace.name)")
            text = page.inner_text("[data-panel='drift']") + page.inner_text("[data-panel='drift-history']")
    assert bars == [*sorted(HOUSE_FEATURES), "predicted value"]
    assert lines == [*sorted(HOUSE_FEATURES), "predicted value"]
    assert "null" not in text and "class" not in text, text
