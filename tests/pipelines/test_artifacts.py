"""A registered version's artifacts: recorded in its registry row, read from there by drift, the smoke test, the
served schema and the dashboard; a version registered before rows recorded them still finds them in its run."""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from state_homes import point_into_copy

from deploy.api_smoke_test import example_row
from deploy.dashboard.data import DashboardSources, _training_shares
from deploy.model_signature import registered_schema
from deploy.monitoring.drift import load_baseline
from deploy.release import load_checked
from pipelines.artifacts import artifact_json, artifact_path
from pipelines.errors import NotFoundError, UserError
from pipelines.registry import ModelPackage, ModelRegistry
from pipelines.runs import RunStore
from pipelines.state import StateHome

GROUP = "CloudVizIris"
FEATURES = ("x4", "x3")  # not iris's four: the smoke test's row comes from the baseline statistics


@pytest.fixture
def home(two_versions: Path, tmp_path: Path) -> StateHome:
    root = tmp_path / "home"
    shutil.copytree(two_versions, root, symlinks=True)
    return point_into_copy(two_versions, root)  # the tests delete artifacts


def registry(home: StateHome) -> ModelRegistry:
    return ModelRegistry(home.registry_db)


def run_output(home: StateHome, package: ModelPackage, step: str, output: str) -> Path:
    return Path(RunStore(home.runs).load(package.lineage["run_id"]).steps[step].outputs[output])


def test_register_records_the_files_the_run_wrote(home: StateHome):
    package = registry(home).get(GROUP, 1)
    assert package.artifacts == {
        "model": package.model_data_url,
        "evaluation": (run_output(home, package, "Evaluate", "evaluation") / "evaluation.json").as_uri(),
        "baseline_statistics": (run_output(home, package, "Preprocess", "baseline") / "statistics.json").as_uri(),
        "schema": (run_output(home, package, "Preprocess", "schema") / "schema.json").as_uri(),
    }
    assert artifact_json(package, "evaluation") == package.metrics
    assert package.to_dict()["artifacts"] == package.artifacts


def test_readers_use_the_registry_row_not_the_run_record(home: StateHome):
    package = registry(home).get(GROUP, 1)
    statistics = json.loads(artifact_path(package, "baseline_statistics").read_text())
    (home.runs / package.lineage["run_id"] / "run.json").unlink()  # the run's record is gone, its files are not
    runs = RunStore(home.runs)

    assert set(load_baseline(runs, package).features) == {"x1", "x2", "x3", "x4"}
    assert example_row(package, FEATURES, runs) == {
        name: statistics["features"][name]["quantiles"]["p50"] for name in FEATURES}
    assert registered_schema(replace(package, lineage={}), runs)["task"] == "multiclass"  # a lineage without one
    sources = DashboardSources(home, GROUP, "endpoint", live=lambda: None, store=None, example_body=str)
    assert _training_shares(sources, package) == statistics["class_distribution"]
    assert load_checked(package).version == 1


def test_a_version_registered_before_artifacts_finds_them_in_its_run(home: StateHome, tmp_path: Path):
    current = registry(home).get(GROUP, 1)
    legacy = registry(home).register(GROUP, current.model_data_url, lineage=current.lineage)
    assert legacy.artifacts == {}
    runs = RunStore(home.runs)
    for name in ("evaluation", "baseline_statistics", "schema"):
        assert artifact_path(legacy, name, runs) == artifact_path(current, name)
    assert artifact_path(legacy, "model") == artifact_path(current, "model")
    assert load_baseline(runs, legacy).classes == load_baseline(runs, current).classes

    with pytest.raises(NotFoundError, match=f"^no run '{current.lineage['run_id']}' under "):
        artifact_path(legacy, "baseline_statistics", RunStore(tmp_path / "no-runs"))
    with pytest.raises(UserError, match=f"^{GROUP} version {legacy.version} records no baseline statistics; it is in"):
        artifact_path(legacy, "baseline_statistics")
    orphan = registry(home).register(GROUP, current.model_data_url)
    with pytest.raises(UserError, match=f"^{GROUP} version {orphan.version} names no training run in its lineage"):
        artifact_path(orphan, "evaluation", runs)


def test_an_artifact_that_is_gone_or_not_local_is_refused(home: StateHome):
    package = registry(home).get(GROUP, 1)
    artifact_path(package, "baseline_statistics").unlink()
    with pytest.raises(UserError, match=f"^{GROUP} version 1: its baseline statistics .* no longer exists$"):
        load_baseline(RunStore(home.runs), package)
    remote = registry(home).register(GROUP, "s3://bucket/model.tar.gz", artifacts={"model": "s3://bucket/model.tar.gz"})
    with pytest.raises(UserError, match=f"^{GROUP} version {remote.version}: s3://bucket/model.tar.gz is not a local"):
        load_checked(remote)


OLD_SCHEMA = """
CREATE TABLE model_package_groups (name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL);
CREATE TABLE model_packages (
    group_name TEXT NOT NULL REFERENCES model_package_groups(name), version INTEGER NOT NULL,
    approval_status TEXT NOT NULL, model_data_url TEXT NOT NULL, metrics TEXT NOT NULL, lineage TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', status_reason TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, PRIMARY KEY (group_name, version));
INSERT INTO model_package_groups VALUES ('Iris', '', '2025-01-01');
INSERT INTO model_packages VALUES ('Iris', 1, 'Approved', 'file:///m.tar.gz', '{"accuracy": 0.9}',
    '{"run_id": "r1"}', 'old', '', '2025-01-01', '2025-01-02');
"""


def test_a_registry_made_before_artifacts_is_migrated_in_place(tmp_path: Path):
    path = tmp_path / "registry.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    opened = ModelRegistry(path)
    old = opened.get("Iris", 1)
    assert (old.artifacts, old.metrics, old.lineage, old.approval_status) == ({}, {"accuracy": 0.9}, {"run_id": "r1"},
                                                                               "Approved")
    new = opened.register("Iris", "file:///n.tar.gz", artifacts={"model": "file:///n.tar.gz"})
    assert ModelRegistry(path).get("Iris", new.version).artifacts == {"model": "file:///n.tar.gz"}
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(model_packages)")]
    assert columns.count("artifacts") == 1, "reopening does not add the column twice"
