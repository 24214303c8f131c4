"""Local stages and `cloudviz promote local`: approvals deploy dev, dev's serve smoke-tests each live version through
its own API, and prod takes a version only by promotion once dev's smoke test of it passed."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from polling import wait_for
from sklearn.datasets import load_iris

from cloudviz.cli import main
from deploy.api_smoke_test import example_row
from deploy.deployments import DeploymentStore
from deploy.local_service import LocalService
from deploy.release import deploy_local, local_endpoint_name
from pipelines.definition import build_pipeline
from pipelines.errors import UserError
from pipelines.registry import ModelRegistry
from pipelines.runner import LocalRunner
from pipelines.runs import RunStore
from pipelines.state import StateHome

GROUP = "CloudVizIris"
KEY = "k" * 32
SEED = {"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5}
DEV, PROD = local_endpoint_name(GROUP), local_endpoint_name(GROUP, "prod")


@pytest.fixture
def home(two_versions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateHome:
    """A copy of the state home with two pending versions and their runs, for one test."""
    root = tmp_path / "home"
    shutil.copytree(two_versions, root, ignore=shutil.ignore_patterns("cache"))
    monkeypatch.setenv("CLOUDVIZ_HOME", str(root))
    monkeypatch.delenv("CLOUDVIZ_API_KEY", raising=False)
    return StateHome(root)


def registry(home: StateHome) -> ModelRegistry:
    return ModelRegistry(home.registry_db)


def deployments(home: StateHome) -> DeploymentStore:
    return DeploymentStore(home.deployments)


def request(api: str, method: str, path: str, body: object = None) -> tuple[int, object]:
    connection = http.client.HTTPConnection(api.removeprefix("http://"), timeout=10)
    connection.request(method, path, None if body is None else json.dumps(body),
                       {"x-api-key": KEY, "Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def promote(capsys: pytest.CaptureFixture, *options: str) -> tuple[int, str, str]:
    code = main(["promote", "local", "--from", "dev", "--to", "prod", *options])
    out, err = capsys.readouterr()
    return code, out, err


class ProdServe:
    """`cloudviz serve --stage prod` in its own process (one process serves one API configuration), its output
    read line by line from a thread."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cloudviz", "serve", "--stage", "prod", "--api-port", "0", "--endpoint-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "CLOUDVIZ_API_KEY": KEY},
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")))
        self.reader.start()
        self.api = wait_for(lambda: next((line.split()[1].removesuffix("/predictions") for line in self.lines
                                          if line.startswith("API ")), None), "prod's banner")

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=60)
        self.reader.join()
        assert self.process.returncode == 0, err
        return err


def smoke_test_of(home: StateHome, endpoint: str, version: int) -> dict | None:
    return deployments(home).latest_smoke_test(endpoint, version)


def test_approve_smoke_test_promote_and_prod_follows(home: StateHome, capsys: pytest.CaptureFixture):
    registry(home).update_approval(GROUP, 1, "Approved")
    events: list[str] = []
    with LocalService(home, GROUP, KEY, on_event=events.append, smoke_test=True).start(poll_seconds=0.05) as dev:
        assert dev.live.version == 1
        first = smoke_test_of(home, DEV, 1)
        assert first["passed"] is True, first
        sent = re.fullmatch(r"version 1 predicted virginica for the example; GET /predictions/(\S+) read it back",
                            first["detail"])
        assert sent is not None, first["detail"]
        status, stored = request(dev.api.url, "GET", f"/predictions/{sent.group(1)}")
        assert (status, stored["features"], stored["model_version"]) == (200, SEED, 1), "the seed example, stored"
        assert deployments(home).current(PROD) is None, "an approval deploys dev only"

        code, out, err = promote(capsys, "--json")
        assert code == 0, err
        promoted = json.loads(out)
        assert promoted["promoted"] is True and promoted["smoke_test"] == first
        assert {key: promoted["deployment"][key] for key in ("endpoint", "version", "stage", "reason")} == {
            "endpoint": DEV.replace("-endpoint", "-prod-endpoint"), "version": 1, "stage": "prod",
            "reason": "promoted from dev"}
        assert deployments(home).current(PROD).version == 1

        prod = ProdServe()
        try:
            assert any(line.startswith(f"Endpoint  {PROD} at ") and "version 1" in line for line in prod.lines)
            status, answer = request(prod.api, "POST", "/predictions", SEED)
            assert (status, answer["model_version"]) == (200, 1)
            wait_for(lambda: smoke_test_of(home, PROD, 1), "prod's smoke test of version 1")

            registry(home).update_approval(GROUP, 2, "Approved")  # dev swaps to 2, prod stays on 1
            passed = wait_for(lambda: smoke_test_of(home, DEV, 2), "dev's smoke test of version 2")
            assert dev.live.version == 2 and passed["passed"] is True, passed
            assert deployments(home).current(PROD).version == 1
            assert request(prod.api, "POST", "/predictions", SEED)[1]["model_version"] == 1

            code, out, err = promote(capsys)
            assert code == 0, err
            assert out.startswith("Promoted CloudVizIris version 2 from dev to prod (it passed its smoke test on dev")
            wait_for(lambda: request(prod.api, "POST", "/predictions", SEED)[1]["model_version"] == 2,
                     "prod's serve to answer from version 2")
            assert wait_for(lambda: smoke_test_of(home, PROD, 2), "prod's smoke test of version 2")["passed"]
            prod_predictions = request(prod.api, "GET", "/predictions?limit=100")[1]
        finally:
            prod_err = prod.stop()
        dev_predictions = request(dev.api.url, "GET", "/predictions?limit=100")[1]
    assert "Traceback" not in prod_err
    assert f"{PROD}: version 1 -> 2 (promoted from dev)\n" in prod.lines
    assert events == [f"{DEV}: version 1 -> 2 (approved at {registry(home).get(GROUP, 2).updated_at})"]
    assert not {p["id"] for p in prod_predictions} & {p["id"] for p in dev_predictions}, "each stage has its store"
    history = [(event["event"], event["version"]) for event in deployments(home).history(PROD)]
    assert history == [("deployed", 1), ("smoke-test", 1), ("deployed", 2), ("smoke-test", 2)]


def regression_version(home: StateHome, tmp_path: Path) -> int:
    """An Approved version whose model loads and predicts (the model-level check passes) but answers a score that
    is not a class: the API cannot serve it. It claims version 1's lineage (iris features and classes)."""
    iris = load_iris()
    booster = xgb.train({"objective": "reg:squarederror"}, xgb.DMatrix(iris.data, label=iris.target), 5)
    raw = bytes(booster.save_raw("ubj"))
    tarball = tmp_path / "regression" / "model.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as archive:
        member = tarfile.TarInfo("xgboost-model")
        member.size = len(raw)
        archive.addfile(member, io.BytesIO(raw))
    assert booster.predict(xgb.DMatrix(np.array([list(SEED.values())])))[0] % 1 != 0
    lineage = registry(home).get(GROUP, 1).lineage
    return registry(home).register(GROUP, tarball.as_uri(), "Approved", lineage=lineage).version


def test_a_failed_smoke_test_keeps_the_version_live_and_blocks_promotion(
    home: StateHome, tmp_path: Path, capsys: pytest.CaptureFixture
):
    version = regression_version(home, tmp_path)
    events: list[str] = []
    with LocalService(home, GROUP, KEY, on_event=events.append, smoke_test=True).start() as dev:
        assert dev.live.version == version and dev.endpoint_server.version == version, "it stays live"
        failed = dev.last_smoke_test
    assert failed.passed is False
    assert failed.detail == "POST /predictions answered 502: Internal server error"
    assert events == [f"{DEV}: version {version} failed its smoke test (it stays live, it cannot be promoted):"
                      f" {failed.detail}"]
    recorded = smoke_test_of(home, DEV, version)
    assert (recorded["passed"], recorded["detail"]) == (False, failed.detail)

    code, out, err = promote(capsys)
    assert (code, out) == (2, "")
    assert err == (f"cloudviz: error: CloudVizIris version {version} failed its smoke test on dev at "
                   f"{recorded['at']}: POST /predictions answered 502: Internal server error\n")
    assert deployments(home).current(PROD) is None


def test_promotion_is_refused_before_any_deployment_or_smoke_test(home: StateHome, capsys: pytest.CaptureFixture):
    code, _, err = promote(capsys)
    assert (code, err) == (2, "cloudviz: error: dev serves no version of CloudVizIris: deploy one with `cloudviz "
                              "deploy local --stage dev`, then smoke-test it with `cloudviz serve --stage dev`\n")
    registry(home).update_approval(GROUP, 1, "Approved")
    assert main(["deploy", "local"]) == 0  # deployed, never served: never smoke-tested
    capsys.readouterr()
    code, _, err = promote(capsys)
    assert (code, err) == (2, "cloudviz: error: CloudVizIris version 1, live on dev, was never smoke-tested: start "
                              "`cloudviz serve --stage dev`, which smoke-tests it through its API, then promote "
                              "again\n")
    code = main(["promote", "local", "--from", "prod", "--to", "dev"])
    err = capsys.readouterr().err
    assert (code, err) == (2, "cloudviz: error: dev takes approved versions, not promotions: promotion goes "
                              "dev -> prod\n")
    assert deployments(home).current(PROD) is None and deployments(home).history(PROD) == []


def test_a_version_rejected_after_its_smoke_test_is_not_promoted_and_a_repeat_changes_nothing(
    home: StateHome, capsys: pytest.CaptureFixture
):
    registry(home).update_approval(GROUP, 1, "Approved")
    with LocalService(home, GROUP, KEY, smoke_test=True).start():
        pass
    assert promote(capsys)[0] == 0
    code, out, _ = promote(capsys)
    assert code == 0 and out.startswith("prod serves CloudVizIris version 1 already (it passed its smoke test on dev")
    assert [event["event"] for event in deployments(home).history(PROD)] == ["deployed"]
    registry(home).update_approval(GROUP, 1, "Rejected", "a bad feature")
    code, _, err = promote(capsys)
    assert code == 2 and err.startswith("cloudviz: error: CloudVizIris version 1 is Rejected since ")


def test_prod_takes_a_version_by_promotion_a_rollback_or_force(home: StateHome, capsys: pytest.CaptureFixture):
    for version in (1, 2):
        registry(home).update_approval(GROUP, version, "Approved")
    store = deployments(home)
    code = main(["deploy", "local", "--stage", "prod", "--version", "1"])
    _, err = capsys.readouterr()
    assert (code, err) == (2, "cloudviz: error: CloudVizIris version 1 was never promoted to prod: promote dev's "
                              "live version with `cloudviz promote local --from dev --to prod` (it must pass its "
                              "smoke test on dev first), or deploy it anyway with --force\n")
    assert store.current(PROD) is None
    for version in (1, 2):  # deployed to dev, smoke-tested there, then promoted
        deploy_local(registry(home), store, GROUP, version, False, "test")
        with LocalService(home, GROUP, KEY, smoke_test=True).start():
            pass
        with pytest.raises(UserError, match=f"version {version} was never promoted to prod"):
            deploy_local(registry(home), store, GROUP, version, False, "test", stage="prod")
        assert promote(capsys)[0] == 0
    assert store.current(PROD).version == 2
    rollback, _ = deploy_local(registry(home), store, GROUP, 1, False, "roll back", stage="prod")
    assert (rollback.version, rollback.stage, rollback.promoted_from) == (1, "prod", None)
    registry(home).register(GROUP, registry(home).get(GROUP, 1).model_data_url, "Approved")
    assert main(["deploy", "local", "--stage", "prod", "--version", "3", "--force", "--json"]) == 0
    forced = json.loads(capsys.readouterr().out)
    assert (forced["version"], forced["reason"]) == (3, "cloudviz deploy local --force")


def test_prod_serve_without_a_promotion_is_refused(home: StateHome, capsys: pytest.CaptureFixture):
    registry(home).update_approval(GROUP, 1, "Approved")
    assert main(["serve", "--stage", "prod", "--api-port", "0", "--endpoint-port", "0"]) == 2
    assert capsys.readouterr().err == ("cloudviz: error: prod serves no version of CloudVizIris yet: promote dev's "
                                       "with `cloudviz promote local --from dev --to prod`\n")
    assert deployments(home).current(PROD) is None, "prod never deploys an approval by itself"


def test_the_smoke_test_sends_each_features_training_median_when_they_are_not_iris(tmp_path: Path):
    home = StateHome(tmp_path / "home")
    record = LocalRunner(home, build_pipeline()).start({"FeatureColumns": "x4,x3"})
    assert record.status == "Succeeded"
    version = record.steps["Register"].properties["version"]
    registry(home).update_approval(GROUP, version, "Approved")
    package = registry(home).get(GROUP, version)
    statistics = json.loads((Path(record.steps["Preprocess"].outputs["baseline"]) / "statistics.json").read_text())
    medians = {name: statistics["features"][name]["quantiles"]["p50"] for name in ("x4", "x3")}
    assert example_row(package, ("x4", "x3"), RunStore(home.runs)) == medians
    with LocalService(home, GROUP, KEY, smoke_test=True).start() as service:
        assert service.last_smoke_test.passed, service.last_smoke_test
        stored = request(service.api.url, "GET", "/predictions")[1]
    assert [item["features"] for item in stored] == [medians]
    shutil.rmtree(home.runs)
    package = replace(package, artifacts={})  # as registered before the registry recorded artifacts: read from its run
    with pytest.raises(UserError, match=f"^no example row for {GROUP} version {version}: no run "):
        example_row(package, ("x4", "x3"), RunStore(home.runs))
