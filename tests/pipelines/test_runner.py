"""The local runner on the real CloudViz pipeline and on small pipelines of real scripts."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from project_root import ROOT as REPO

from pipelines.dag import Param, Parameter, Pipeline, ProcessingInput, ProcessingOutput, ProcessingStep, RetryPolicy
from pipelines.data.versions import local_dataset_store
from pipelines.datasets import iris_csv
from pipelines.definition import build_pipeline
from pipelines.errors import UserError
from pipelines.registry import ModelRegistry
from pipelines.runner import LocalRunner
from pipelines.state import StateHome

CACHEABLE = ("Preprocess", "Train", "Evaluate", "Register")


def run(home: StateHome, **overrides: str):
    return LocalRunner(home, build_pipeline()).start({k: str(v) for k, v in overrides.items()})


def test_pipeline_order_follows_dependencies():
    assert build_pipeline().order() == [
        "Preprocess", "Train", "Evaluate", "CheckAccuracy", "Register", "AccuracyBelowThreshold",
    ]
    assert build_pipeline().dependencies("Evaluate") == ["Train", "Preprocess"]
    assert build_pipeline().dependencies("Register") == ["Train", "Evaluate", "Preprocess", "CheckAccuracy"]


def test_iris_run_trains_evaluates_and_registers(home: StateHome):
    record = run(home)
    assert record.status == "Succeeded", record.failure_reason
    statuses = {name: step.status for name, step in record.steps.items()}
    assert statuses == {
        "Preprocess": "Succeeded", "Train": "Succeeded", "Evaluate": "Succeeded",
        "CheckAccuracy": "Succeeded", "Register": "Succeeded", "AccuracyBelowThreshold": "Skipped",
    }
    # Each step started only after the steps it reads from had ended.
    steps = record.steps
    assert steps["Preprocess"].ended_at <= steps["Train"].started_at <= steps["Train"].ended_at
    assert steps["Train"].ended_at <= steps["Evaluate"].started_at
    assert steps["Evaluate"].ended_at <= steps["CheckAccuracy"].started_at <= steps["Register"].started_at

    evaluation = json.loads((Path(steps["Evaluate"].outputs["evaluation"]) / "evaluation.json").read_text())
    accuracy = evaluation["multiclass_classification_metrics"]["accuracy"]["value"]
    assert accuracy >= 0.9
    assert evaluation["gate"] == {
        "metric": "accuracy", "value": accuracy, "threshold": 0.9, "direction": "higher_is_better",
        "comparison": ">=", "passed": True, "message": f"Accuracy {accuracy:.4g} is at or above the threshold 0.9",
    }
    assert steps["CheckAccuracy"].properties == {"outcome": True, "left": True, "comparison": "==", "right": True}

    package = ModelRegistry(home.registry_db).get("CloudVizIris", 1)
    assert package.approval_status == "PendingManualApproval"
    assert package.metrics == evaluation
    assert Path(package.model_data_url.removeprefix("file://")).is_file()
    iris = local_dataset_store(home).resolve("iris@1")  # no data given: the data set iris, made from the bundled file
    part = home.datasets / "iris" / "parts" / f"{iris.parts[0].sha256}.csv"
    assert package.lineage["data"]["sha256"] == hashlib.sha256(part.read_bytes()).hexdigest()
    assert package.lineage["data"]["dataset"] == {"name": "iris", "version": 1, "id": iris.id}
    assert package.lineage["run_id"] == record.run_id
    assert package.lineage["parameters"]["Eta"] == 0.2
    assert steps["Register"].properties["version"] == 1

    assert steps["Evaluate"].inputs == {
        "Train.model": steps["Train"].outputs["model"],
        "Preprocess.test": steps["Preprocess"].outputs["test"],
        "Preprocess.schema": steps["Preprocess"].outputs["schema"],
        "GateMetric": "", "GateThreshold": 0.9,
        "ChampionModelData": str(home.root / "no-champion"), "ChampionDataSchema": str(home.root / "no-champion"),
        "MaxRegression": 0.01,
    }
    iris = local_dataset_store(home).resolve("iris@1")
    assert steps["Preprocess"].inputs["InputData"] == str(home.datasets / "iris" / "versions" / f"1-{iris.id}.manifest")
    assert (record.parameters["DataSetVersion"], record.parameters["InputDataType"]) == ("iris@1", "ManifestFile")
    # The bundled data's parameters are the original contract's, recorded with the run as before.
    assert {name: record.parameters[name] for name in ("LabelColumn", "FeatureColumns", "ClassNames")} == {
        "LabelColumn": "species", "FeatureColumns": "x1,x2,x3,x4", "ClassNames": "setosa,virginica,versicolor"}
    schema = json.loads((Path(steps["Preprocess"].outputs["schema"]) / "schema.json").read_text())
    assert schema["label_map"] == {"setosa": 0, "virginica": 1, "versicolor": 2}

    on_disk = json.loads((record.folder / "run.json").read_text())
    assert on_disk["status"] == "Succeeded"
    assert on_disk["steps"]["Train"]["log"].endswith("attempt-1.log")
    assert "train-mlogloss" in Path(on_disk["steps"]["Train"]["log"]).read_text()


def test_rerun_with_nothing_changed_reuses_every_step(home: StateHome):
    first = run(home)
    second = run(home)
    assert second.status == "Succeeded"
    for name in CACHEABLE:
        assert second.steps[name].cached_from == first.run_id, name
        assert second.steps[name].outputs == first.steps[name].outputs
    assert not (second.folder / "steps").exists()
    assert [p.version for p in ModelRegistry(home.registry_db).list_packages()] == [1]


def test_changed_hyperparameter_reruns_only_what_depends_on_it(home: StateHome):
    first = run(home)
    second = run(home, Eta=0.3)
    assert second.steps["Preprocess"].cached_from == first.run_id
    for name in ("Train", "Evaluate", "Register"):
        assert second.steps[name].cached_from is None, name
    assert second.steps["Register"].properties["version"] == 2


def test_changed_data_reruns_preprocess(home: StateHome, tmp_path: Path):
    run(home)
    data = tmp_path / "iris.csv"
    lines = iris_csv(home.data).read_text().splitlines()
    lines[1] = lines[1].replace("5.1", "5.2", 1)
    data.write_text("\n".join(lines) + "\n")
    second = run(home, InputData=data, LabelColumn="species", ModelPackageGroupName="IrisCopy")
    assert second.steps["Preprocess"].cached_from is None
    assert second.parameters["InputData"] == str(data)


def test_no_cache_executes_every_step(home: StateHome):
    run(home)
    record = LocalRunner(home, build_pipeline()).start({}, use_cache=False)
    assert all(record.steps[name].cached_from is None for name in CACHEABLE)
    assert record.steps["Register"].properties["version"] == 2


def test_a_cached_registration_is_reused_only_while_the_registry_holds_it(home: StateHome):
    run(home)
    home.registry_db.unlink()
    record = run(home)
    assert record.steps["Train"].cached_from is not None
    assert record.steps["Register"].cached_from is None
    assert ModelRegistry(home.registry_db).get("CloudVizIris", 1).lineage["run_id"] == record.run_id


def test_accuracy_gate_fails_the_run_and_registers_nothing(home: StateHome):
    record = run(home, AccuracyThreshold=0.999)
    assert record.status == "Failed"
    fail = record.steps["AccuracyBelowThreshold"]
    assert fail.status == "Failed"
    evaluation = json.loads((Path(record.steps["Evaluate"].outputs["evaluation"]) / "evaluation.json").read_text())
    accuracy = evaluation["multiclass_classification_metrics"]["accuracy"]["value"]
    assert record.steps["CheckAccuracy"].properties["left"] is False
    assert fail.failure_reason == f"Accuracy {accuracy:.4g} is below the threshold 0.999"
    assert record.failure_reason == f"AccuracyBelowThreshold: {fail.failure_reason}"
    assert record.steps["Register"].status == "Skipped"
    assert ModelRegistry(home.registry_db).list_packages() == []


def test_resuming_a_gate_failure_reuses_the_steps_that_succeeded(home: StateHome):
    failed = run(home, AccuracyThreshold=0.999)
    started = {name: failed.steps[name].started_at for name in ("Preprocess", "Train", "Evaluate")}
    resumed = LocalRunner(home, build_pipeline()).resume(failed.run_id)
    assert resumed.run_id == failed.run_id and resumed.resumed == 1
    assert {name: resumed.steps[name].started_at for name in started} == started
    assert resumed.status == "Failed"
    assert resumed.steps["Register"].status == "Skipped"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"Foo": "1"}, "unknown parameter 'Foo' (known: InputData, LabelColumn"),
        ({"Eta": "fast"}, "parameter Eta: expected float, got 'fast'"),
        ({"NumRound": "1.5"}, "parameter NumRound: expected integer, got '1.5'"),
        ({"AccuracyThreshold": "nan"}, "parameter AccuracyThreshold: expected float, got 'nan'"),
        ({"ModelApprovalStatus": "Yes"}, "parameter ModelApprovalStatus: 'Yes' is not one of PendingManualApproval"),
        ({"Eta": "2"}, "Train: Hyperparameter eta: 2.0 is not in [0, 1]"),
        ({"NumRound": "0"}, "Train: Hyperparameter num_round: 0 is not in [1, +inf)"),
        ({"Objective": "multi:magic"}, "parameter Objective: 'multi:magic' is not one of multi:softprob"),
        ({"InputData": "missing.csv"}, "parameter InputData: no such file 'missing.csv'"),
        ({"InputData": "s3://bucket/iris.csv"}, "parameter InputData: 's3://bucket/iris.csv' is a URI"),
    ],
)
def test_bad_parameters_are_refused_before_a_run_starts(home: StateHome, overrides: dict, message: str):
    with pytest.raises(UserError) as error:
        LocalRunner(home, build_pipeline()).start(overrides)
    assert message in str(error.value)
    assert not home.runs.exists() or not any(home.runs.iterdir())


def test_bad_data_fails_preprocess_with_the_scripts_message(home: StateHome, tmp_path: Path):
    data = tmp_path / "bad.csv"
    data.write_text("x1,x2,x3,x4,species\n5.1,3.5,1.4,0.2,setosa\n4.9,oops,1.4,0.2,setosa\n")
    record = run(home, InputData=data, LabelColumn="species", ModelPackageGroupName="Bad")
    assert record.status == "Failed"
    step = record.steps["Preprocess"]
    assert step.failure_reason == f"{data}, line 3, column 'x2': 'oops' is not a number"
    assert step.attempts == 1  # an input error is not retried
    assert record.steps["Train"].status == "Pending"


def test_own_data_without_a_group_is_refused_before_a_run_starts(home: StateHome, tmp_path: Path):
    data = tmp_path / "penguins.csv"
    data.write_text("bill,species\n1,a\n")
    with pytest.raises(UserError) as error:
        run(home, InputData=data, LabelColumn="species")
    assert str(error.value) == (
        f"parameter ModelPackageGroupName: name the model registry group for {data} (the default, CloudVizIris, "
        "is the bundled iris data's), e.g. --param ModelPackageGroupName=Penguins"
    )
    assert not home.runs.exists() or not any(home.runs.iterdir())
    given = LocalRunner(home, build_pipeline()).resolve_parameters(
        {"InputData": str(data), "LabelColumn": "species", "ModelPackageGroupName": "CloudVizIris"})
    assert given["ModelPackageGroupName"] == "CloudVizIris"  # named, the iris group is anyone's to use


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, ("species", "x1,x2,x3,x4", "setosa,virginica,versicolor")),  # the bundled data: the contract's
        ({"ClassNames": "", "FeatureColumns": "x4,x3"}, ("species", "x4,x3", "")),  # iris, what the user gave
        ({"InputData": "own.csv", "LabelColumn": "kind", "ModelPackageGroupName": "Own"}, ("kind", "", "")),
    ],
)
def test_the_data_parameters_come_from_the_data_unless_the_bundled_iris_data_is_used(
    home: StateHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: dict, expected: tuple
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "own.csv").write_text("a,kind\n1,x\n")
    values = LocalRunner(home, build_pipeline()).resolve_parameters(overrides)
    assert (values["LabelColumn"], values["FeatureColumns"], values["ClassNames"]) == expected


# -- the runner on small pipelines of real scripts -------------------------------------------


NO_RETRY = RetryPolicy()


def one_step_pipeline(script: Path, retry: RetryPolicy = NO_RETRY) -> Pipeline:
    return Pipeline(
        name="Tiny",
        parameters=(Parameter("InputData", "String", ""), Parameter("Marker", "String", "")),
        steps=(
            ProcessingStep(
                name="Work",
                code=str(script),
                inputs=(ProcessingInput("raw", Param("InputData"), "/opt/ml/processing/input"),),
                outputs=(ProcessingOutput("out", "/opt/ml/processing/out"),),
                arguments=("--marker", Param("Marker")),
                retry=retry,
            ),
        ),
    )


def test_the_parameters_that_name_files_are_those_a_processing_step_takes_as_inputs(tmp_path: Path):
    assert build_pipeline().file_parameters() == ["InputData", "ChampionModelData", "ChampionDataSchema"]
    pipeline = one_step_pipeline(tmp_path / "work.py")
    assert pipeline.file_parameters() == ["InputData"], "Marker is an argument: its text, not a file"


FLAKY = """
    import argparse, pathlib, sys
    parser = argparse.ArgumentParser()
    parser.add_argument("--marker")
    parser.add_argument("--base-dir")
    args = parser.parse_args()
    counter = pathlib.Path(args.marker + ".attempts")
    attempts = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(attempts))
    if not pathlib.Path(args.marker).exists():
        print("error: marker missing", file=sys.stderr)
        sys.exit(MISSING_EXIT)
    out = pathlib.Path(args.base_dir) / "out"
    out.mkdir()
    (out / "done.txt").write_text((pathlib.Path(args.base_dir) / "input" / "data.txt").read_text())
"""


@pytest.fixture
def tiny_inputs(tmp_path: Path) -> dict[str, str]:
    data = tmp_path / "data.txt"
    data.write_text("payload")
    return {"InputData": str(data), "Marker": str(tmp_path / "marker")}


def test_transient_failures_are_retried_by_policy(home: StateHome, write_script, tiny_inputs, tmp_path: Path):
    script = write_script("flaky.py", FLAKY.replace("MISSING_EXIT", "1") + """
    """)
    # The script creates its marker on the first attempt, after failing: the retry then succeeds.
    script.write_text(script.read_text().replace(
        "    sys.exit(1)", "    pathlib.Path(args.marker).write_text('x')\n    sys.exit(1)"
    ))
    pipeline = one_step_pipeline(script, RetryPolicy(max_attempts=3, interval_seconds=0.01))
    record = LocalRunner(home, pipeline, repo_root=tmp_path).start(tiny_inputs)
    assert record.status == "Succeeded", record.failure_reason
    assert record.steps["Work"].attempts == 2
    assert (Path(record.steps["Work"].outputs["out"]) / "done.txt").read_text() == "payload"


def test_input_errors_are_not_retried_and_the_run_resumes(home: StateHome, write_script, tiny_inputs, tmp_path):
    script = write_script("needs_marker.py", FLAKY.replace("MISSING_EXIT", "2"))
    pipeline = one_step_pipeline(script, RetryPolicy(max_attempts=3, interval_seconds=0.01))
    runner = LocalRunner(home, pipeline, repo_root=tmp_path)
    failed = runner.start(tiny_inputs)
    assert failed.status == "Failed"
    assert failed.steps["Work"].attempts == 1
    assert failed.failure_reason == "Work: marker missing"
    Path(tiny_inputs["Marker"]).write_text("now present")
    resumed = runner.resume(failed.run_id)
    assert resumed.status == "Succeeded"
    assert resumed.steps["Work"].attempts == 2
    with pytest.raises(UserError, match="succeeded; there is nothing to resume"):
        runner.resume(failed.run_id)


def test_a_crashing_step_reports_how_it_ended(home: StateHome, write_script, tiny_inputs, tmp_path: Path):
    script = write_script("crash.py", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    record = LocalRunner(home, one_step_pipeline(script), repo_root=tmp_path).start(tiny_inputs)
    assert record.status == "Failed"
    assert record.steps["Work"].failure_reason.startswith("killed by signal 9 (no output); log: ")


def test_a_step_that_writes_no_output_fails(home: StateHome, write_script, tiny_inputs, tmp_path: Path):
    script = write_script("lazy.py", "print('did nothing')\n")
    record = LocalRunner(home, one_step_pipeline(script), repo_root=tmp_path).start(tiny_inputs)
    assert record.steps["Work"].failure_reason == "the script wrote no output for out"


def test_a_traceback_is_kept_in_the_log(home: StateHome, write_script, tiny_inputs, tmp_path: Path):
    script = write_script("boom.py", "raise RuntimeError('boom')\n")
    record = LocalRunner(home, one_step_pipeline(script), repo_root=tmp_path).start(tiny_inputs)
    reason = record.steps["Work"].failure_reason
    assert reason.startswith("exited with status 1 (RuntimeError: boom); log: ")
    assert "Traceback" in Path(record.steps["Work"].log).read_text()


def test_a_runner_embedded_after_multithreaded_training_does_not_hang(home: StateHome):
    """A notebook that trained a model on several OpenMP threads, then runs the pipeline in the same kernel."""
    script = (
        "import numpy as np, xgboost as xgb\n"
        "from pipelines.definition import build_pipeline\n"
        "from pipelines.runner import LocalRunner\n"
        "from pipelines.state import StateHome\nfrom pathlib import Path\n"
        "x = np.random.default_rng(0).normal(size=(20000, 8)); y = (x[:, 0] > 0).astype(int)\n"
        "xgb.train({'nthread': 2}, xgb.DMatrix(x, label=y), num_boost_round=5)\n"
        f"record = LocalRunner(StateHome(Path({str(home.root)!r})), build_pipeline()).start({{}})\n"
        "print(record.status)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Succeeded"
