"""Shared fixtures: a fresh state home per test, small pipelines built from real scripts, trained state homes,
and the drift baselines preprocessing makes of iris and of a regression set."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from drift_data import CLASSES, FEATURES, read_split
from generated_data import regression

from pipelines.datasets import iris_csv
from pipelines.definition import build_pipeline
from pipelines.runner import LocalRunner
from pipelines.state import StateHome
from preprocessing import preprocess


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateHome:
    """A state home in the test's folder, also exported as CLOUDVIZ_HOME for the CLI."""
    root = tmp_path / "home"
    monkeypatch.setenv("CLOUDVIZ_HOME", str(root))
    return StateHome(root)


@pytest.fixture
def write_script(tmp_path: Path):
    """Write a Python script into the test's folder and return its path."""

    def write(name: str, body: str) -> Path:
        path = tmp_path / "scripts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def model_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model.tar.gz the real pipeline trains with its defaults (multi:softprob), once for the session."""
    home = StateHome(tmp_path_factory.mktemp("pipeline") / "home")
    record = LocalRunner(home, build_pipeline()).start({})
    assert record.status == "Succeeded"
    return Path(record.steps["Train"].outputs["model"]) / "model.tar.gz"


@pytest.fixture(scope="session")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The root of a state home holding two runs and their registered versions, both pending: v1 (defaults) and
    v2 (5 rounds), trained once for the session. Tests copy it (the artifacts stay where the registry points)."""
    home = StateHome(tmp_path_factory.mktemp("two-versions") / "home")
    runner = LocalRunner(home, build_pipeline())
    for overrides in ({}, {"NumRound": "5"}):
        assert runner.start(overrides).status == "Succeeded"
    return home.root


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
