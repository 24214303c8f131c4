"""`cloudviz report RUN_ID`: a self-contained HTML report of a pipeline run, with PNG figures."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import generated_data
import pytest

from cloudviz.cli import main
from deploy.deployments import DeploymentStore
from deploy.release import deploy_local
from pipelines.registry import ModelRegistry
from pipelines.state import StateHome

PNG = b"\x89PNG\r\n\x1a\n"


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def pipeline_run(capsys: pytest.CaptureFixture, *params: str) -> dict:
    _, out, _ = run(capsys, "pipeline", "run", "--quiet", "--json", *(f"--param={p}" for p in params))
    return json.loads(out)


def report(capsys: pytest.CaptureFixture, run_id: str, folder: Path) -> tuple[str, dict]:
    code, out, err = run(capsys, "report", run_id, "--output", str(folder), "--json")
    assert code == 0, err
    written = json.loads(out)
    return Path(written["html"]).read_text(encoding="utf-8"), written


def embedded_images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r"src='data:image/png;base64,([^']+)'", page)]


def test_report_of_a_run_is_self_contained_with_every_section(home: StateHome, capsys, tmp_path: Path):
    record = pipeline_run(capsys)
    page, written = report(capsys, record["run_id"], tmp_path / "report")
    assert f"Pipeline run {record['run_id']}: <span class='Succeeded'>Succeeded</span>" in page
    for section in ("<h2>Run</h2>", "<h2>Data</h2>", "<h2>Metrics</h2>", "<h2>Against the live model</h2>"):
        assert section in page
    assert "iris@1 (3,678 bytes" in page and "setosa = 0, virginica = 1, versicolor = 2" in page
    assert "<td class='n'>0.9167</td>" in page  # the test accuracy
    assert "no version of this run&#x27;s model package group is deployed" in page
    names = [Path(p).name for p in written["figures"]]
    assert names == ["step_timings.png", "split_sizes.png", "confusion_matrix.png", "feature_importance.png"]
    images = embedded_images(page)
    assert len(images) == 4 and all(image.startswith(PNG) for image in images)
    assert [Path(p).read_bytes() for p in written["figures"]] == images
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page), "nothing is fetched from elsewhere"


def test_report_compares_with_the_live_model(home: StateHome, capsys, tmp_path: Path):
    first = pipeline_run(capsys)
    registry = ModelRegistry(home.registry_db)
    registry.update_approval("CloudVizIris", 1, "Approved")
    deploy_local(registry, DeploymentStore(home.deployments), "CloudVizIris", None, False, "test")
    second = pipeline_run(capsys, "NumRound=3")
    page, written = report(capsys, second["run_id"], tmp_path / "report")
    assert f"CloudVizIris version 1 is live (trained by run {first['run_id']})" in page
    assert "<th>live v1</th>" in page
    assert Path(written["figures"][-1]).name == "comparison.png"

    assert "measured on the same number of test rows" in page


@pytest.mark.parametrize("make", [generated_data.two_classes, generated_data.regression])
def test_a_binary_or_regression_run_is_reported_with_its_own_metrics(home: StateHome, capsys, tmp_path: Path, make):
    data = make(tmp_path / "data")
    record = pipeline_run(capsys, *(f"{k}={v}" for k, v in data.parameters(ModelPackageGroupName="Own").items()))
    page, written = report(capsys, record["run_id"], tmp_path / "report")
    figures = [Path(path).name for path in written["figures"]]
    if data.classes:
        assert "<td>auc</td>" in page and "classes no = 0, yes = 1" in page and "confusion_matrix.png" in figures
    else:
        assert "<td>rmse</td>" in page and "label column price, a number from" in page
        assert "confusion_matrix.png" not in figures and "Rows per split" in page
    assert "Gate: " in page and all(image.startswith(PNG) for image in embedded_images(page))


def test_a_run_that_failed_its_gate_is_reported_as_far_as_it_got(home: StateHome, capsys, tmp_path: Path):
    record = pipeline_run(capsys, "AccuracyThreshold=0.99")
    page, _ = report(capsys, record["run_id"], tmp_path / "report")
    assert "<span class='Failed'>Failed</span>" in page
    assert "Accuracy 0.9167 is below the threshold 0.99" in page
    assert "<h2>Metrics</h2><p>On 24 test rows.</p>" in page


def test_a_run_that_failed_in_preprocess_says_what_is_missing(home: StateHome, capsys, tmp_path: Path):
    data = tmp_path / "bad.csv"
    data.write_text("x1,x2,x3,x4,species\n1,2,3,oops,setosa\n")
    _, out, _ = run(capsys, "pipeline", "run", "--quiet", "--json", "--data", str(data),
                    "--param", "LabelColumn=species", "--param", "ModelPackageGroupName=Bad")
    page, written = report(capsys, json.loads(out)["run_id"], tmp_path / "report")
    assert "Not available: the Preprocess step produced no schema." in page
    assert "Not available: the run did not get as far as the Evaluate step." in page
    assert [Path(p).name for p in written["figures"]] == ["step_timings.png"]


def test_default_folder_is_the_runs_own(home: StateHome, capsys):
    record = pipeline_run(capsys)
    code, out, _ = run(capsys, "report", record["run_id"])
    assert code == 0
    assert out.startswith(f"Report: {home.runs / record['run_id'] / 'report' / 'report.html'}\n")


def test_unknown_run_is_a_one_line_error(home: StateHome, capsys):
    code, _, err = run(capsys, "report", "nope")
    assert code == 2
    assert err.startswith("cloudviz: error: no run 'nope' under ")
