"""The serving Lambdas' fixtures: models the real pipeline trained, a local endpoint serving one, and the
Lambdas' configuration as `cloudviz serve` sets it."""

from __future__ import annotations

from pathlib import Path

import pytest
from lambda_events import CLASSES, ENDPOINT, closed_port, serve

from pipelines.definition import build_pipeline
from pipelines.runner import LocalRunner
from pipelines.state import StateHome
from serving_lambdas.served_version import forget_served_versions


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """model.tar.gz files trained by the real pipeline: the default multi:softprob, and multi:softmax."""
    home = StateHome(tmp_path_factory.mktemp("pipeline") / "home")
    runner = LocalRunner(home, build_pipeline())
    tarballs = {}
    for objective in ("multi:softprob", "multi:softmax"):
        record = runner.start({"Objective": objective})
        assert record.status == "Succeeded"
        tarballs[objective] = Path(record.steps["Train"].outputs["model"]) / "model.tar.gz"
    return tarballs


@pytest.fixture
def endpoint(models):
    with serve(models["multi:softprob"]) as server:
        yield server


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The Lambdas' configuration as `cloudviz serve` sets it, with an empty SQLite store; no AWS credentials
    (the local endpoint needs none) and no instance metadata lookups."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "MAX_BATCH_ROWS"):
        monkeypatch.delenv(name, raising=False)
    values = {
        "ENDPOINT_NAME": ENDPOINT,
        "SAGEMAKER_RUNTIME_URL": f"http://127.0.0.1:{closed_port()}",
        "PREDICTION_STORE": f"sqlite:{tmp_path / 'state' / 'predictions.db'}",
        "FEATURE_NAMES": "x1,x2,x3,x4",
        "FEATURE_ALIASES": "sepal_length=x1,sepal_width=x2,petal_length=x3,petal_width=x4",
        "CLASS_NAMES": ",".join(CLASSES),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    forget_served_versions()  # a server of an earlier test may have had this test's port
    return monkeypatch


@pytest.fixture
def live(environment, endpoint):
    """The configuration pointed at the running endpoint."""
    environment.setenv("SAGEMAKER_RUNTIME_URL", endpoint.url)
    return environment
