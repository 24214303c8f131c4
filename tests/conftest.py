"""Shared fixtures: a fresh state home per test, and small pipelines built from real scripts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipelines.definition import build_pipeline
from pipelines.runner import LocalRunner
from pipelines.state import StateHome


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

