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
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from polling import wait_for
from prometheus_client.parser import text_string_to_metric_families

from deploy.local_service import LocalService
from deploy.monitoring.alarm_history import ALARM, INSUFFICIENT_DATA, OK
from deploy.monitoring.drift import DriftMonitor, load_baseline
from deploy.monitoring.metrics import ApiMetrics
from pipelines.datasets import iris_csv
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


def read_split(path: Path) -> np.ndarray:
    """A channel CSV (label first, no header) as rows of floats."""
    return np.loadtxt(path, delimiter=",", ndmin=2)


def records(rows: np.ndarray, minutes_ago: float = 0.0) -> list[PredictionRecord]:
    """Stored predictions of channel rows, the label column taken as the predicted class, made in row order."""
    ids = new_ids(utc_now() - timedelta(minutes=minutes_ago), len(rows))
    return [
        PredictionRecord(
            id=ids[i], timestamp="", features=dict(zip(FEATURES, map(float, row[1:]), strict=True)),
            prediction=int(row[0]), label=CLASSES[int(row[0])], probabilities=None, model_version=1, latency_ms=1.0,
        )
        for i, row in enumerate(rows)
    ]


def shifted(rows: np.ndarray, feature: str, by: float) -> np.ndarray:
    moved = rows.copy()
    moved[:, 1 + FEATURES.index(feature)] += by
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
    assert report.prediction_class < MODERATE_DRIFT


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
    assert (report.rows, report.features, report.prediction_class) == (199, {}, None)
    values = samples(metrics.registry)
    assert feature_gauges(values) == {}
    assert math.isnan(values[("cloudviz_prediction_class_drift", ())])
    assert values[("cloudviz_drift_window_rows", ())] == 199

    report = monitor.update(records(draw(train, 200)))
    values = samples(metrics.registry)
    assert feature_gauges(values) == report.features and set(report.features) == set(FEATURES)
    assert values[("cloudviz_prediction_class_drift", ())] == report.prediction_class

    monitor.set_baseline(None)
    report = monitor.update(records(draw(train, 200)))
    assert report.to_dict() == {"rows": 200, "features": {}, "prediction_class": None}
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


# -- baselines ------------------------------------------------------------------------------------


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
    assert runner.start({"InputData": str(moved)}).status == "Succeeded"
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
