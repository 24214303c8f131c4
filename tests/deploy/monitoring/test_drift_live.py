"""Data drift on a live `cloudviz serve`: the gauges on /metrics, the baseline following the live version, the
drift alarms, and a served regression model's feature and prediction drift on the metrics and the dashboard."""

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
from pathlib import Path

import browser
import numpy as np
import pytest
from drift_data import (
    AREA,
    CLASSES,
    FEATURES,
    HOUSE_FEATURES,
    PETAL_LENGTH,
    draw,
    feature_gauges,
    read_split,
    samples,
    shifted,
)
from generated_data import regression
from polling import wait_for
from state_homes import point_into_copy

from deploy.local_service import LocalService
from deploy.monitoring.alarm_history import ALARM, INSUFFICIENT_DATA, OK
from deploy.monitoring.drift import load_baseline
from pipelines.datasets import IRIS_PARAMETERS, iris_csv
from pipelines.definition import build_pipeline
from pipelines.errors import NotFoundError, UserError
from pipelines.registry import ModelRegistry
from pipelines.runner import LocalRunner
from pipelines.runs import RunStore
from pipelines.state import StateHome
from serving_lambdas.drift import MODERATE_DRIFT, SIGNIFICANT_DRIFT

# -- a trained state home and a live service ---------------------------------------------------------

GROUP = "CloudVizIris"
KEY = "k" * 32
FEATURE_ALARM, CLASS_ALARM = "cloudviz-feature-drift", "cloudviz-prediction-class-drift"
HOUSES = "Houses"


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
