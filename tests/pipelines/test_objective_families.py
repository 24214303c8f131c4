"""The model's contract comes from the data: every objective family, on generated data sets, through the local
pipeline to a registered version; NumClass and Objective checked against the data before Train."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from generated_data import DataSet, five_classes, regression, two_classes

from pipelines.definition import GATE_METRICS, TASKS, build_pipeline
from pipelines.errors import UserError
from pipelines.registry import ModelRegistry
from pipelines.runner import LocalRunner
from pipelines.state import StateHome

SECTIONS = {"multiclass": "multiclass_classification_metrics", "binary": "binary_classification_metrics",
            "regression": "regression_metrics"}
GENERATORS = {"two_classes": two_classes, "five_classes": five_classes, "regression": regression}


def run(home: StateHome, data: DataSet, **extra: str):
    group = f"Generated{data.path.stem.title()}"
    return LocalRunner(home, build_pipeline()).start(data.parameters(ModelPackageGroupName=group, **extra)), group


def train_split(record) -> np.ndarray:
    return np.loadtxt(Path(record.steps["Preprocess"].outputs["train"]) / "train.csv", delimiter=",", ndmin=2)


@pytest.mark.parametrize("generator", GENERATORS)
def test_each_family_trains_to_a_registered_version_with_its_metrics_and_gate(
    home: StateHome, tmp_path: Path, generator: str
):
    data = GENERATORS[generator](tmp_path / "data")
    record, group = run(home, data)
    assert record.status == "Succeeded", record.failure_reason
    task = TASKS[data.objective]
    package = ModelRegistry(home.registry_db).get(group, 1)

    # The registered schema: the contract H9's serving side reads.
    schema = package.lineage["schema"]
    assert (schema["task"], schema["objective"], schema["label_column"]) == (task, data.objective, data.label)
    assert schema["feature_columns"] == list(data.features)
    train = train_split(record)
    assert schema["features"] == [
        {"name": name, "type": "number", "min": float(train[:, j + 1].min()), "max": float(train[:, j + 1].max()),
         "median": pytest.approx(float(np.median(train[:, j + 1])))}
        for j, name in enumerate(data.features)
    ]
    assert schema["classes"] == sorted(data.classes)
    assert schema["label_map"] == {name: i for i, name in enumerate(sorted(data.classes))}
    if task == "regression":
        target = train[:, 0]
        assert schema["target"] == {"name": data.label, "min": float(target.min()), "max": float(target.max()),
                                    "mean": pytest.approx(float(target.mean()), rel=1e-12)}
        assert np.any(target != np.round(target)), "the label is kept as a float"
    else:
        assert "target" not in schema

    # Train got num_class from the data only for multi:* objectives.
    hyperparameters = json.loads(
        (Path(record.steps["Train"].outputs["model"]).parents[1] / "ml" / "input" / "config" / "hyperparameters.json")
        .read_text()
    )
    assert hyperparameters.get("num_class") == (str(len(data.classes)) if task == "multiclass" else None)

    # Model Monitor's report for the task, each metric {"value", "standard_deviation"}; the gate on its default.
    section = package.metrics[SECTIONS[task]]
    assert set(GATE_METRICS[task]) <= set(section)
    assert all(set(section[name]) == {"value", "standard_deviation"} for name in GATE_METRICS[task])
    gate = package.metrics["gate"]
    assert gate["metric"] == ("r2" if task == "regression" else "accuracy")
    assert (gate["value"], gate["threshold"], gate["passed"]) == (section[gate["metric"]]["value"], 0.9, True)
    assert record.steps["CheckAccuracy"].properties["outcome"] is True
    if task == "regression":
        assert section["rmse"]["value"] == pytest.approx(np.sqrt(section["mse"]["value"]))


def test_a_lower_is_better_gate_metric_fails_the_run_naming_metric_value_and_threshold(home: StateHome, tmp_path):
    data = regression(tmp_path / "data")
    record, group = run(home, data, GateMetric="rmse", GateThreshold="0.01")
    assert record.status == "Failed"
    gate = json.loads((Path(record.steps["Evaluate"].outputs["evaluation"]) / "evaluation.json").read_text())["gate"]
    assert (gate["metric"], gate["direction"], gate["comparison"], gate["passed"]) == (
        "rmse", "lower_is_better", "<=", False)
    assert record.steps["AccuracyBelowThreshold"].failure_reason == (
        f"RMSE {gate['value']:.4g} is above the threshold 0.01")
    assert ModelRegistry(home.registry_db).list_packages() == []
    passed, _ = run(home, data, GateMetric="rmse", GateThreshold="5")
    assert passed.status == "Succeeded"


def test_the_former_accuracy_threshold_still_sets_the_gate(home: StateHome):
    record = LocalRunner(home, build_pipeline()).start({"AccuracyThreshold": "0.999"})
    assert record.parameters["GateThreshold"] == 0.999 and "AccuracyThreshold" not in record.parameters
    assert record.status == "Failed"
    assert record.steps["AccuracyBelowThreshold"].failure_reason.endswith("is below the threshold 0.999")


@pytest.mark.parametrize(
    ("generator", "extra", "message"),
    [
        ("five_classes", {"NumClass": "3"},
         "NumClass is 3, but column 'tree' of trees.csv has 5 class(es): alder, birch, cedar, elm, fir; "
         "set NumClass=5 or 0 (from the data)"),
        ("five_classes", {"Objective": "binary:logistic"},
         "Objective binary:logistic needs exactly 2 classes, but column 'tree' of trees.csv has 5 class(es): "
         "alder, birch, cedar, elm, fir; use Objective=multi:softprob"),
        ("two_classes", {"Objective": "multi:softprob"},
         "Objective multi:softprob needs at least 3 classes, but column 'churn' of churn.csv has 2 class(es): "
         "no, yes; use Objective=binary:logistic"),
        ("regression", {"NumClass": "3"},
         "NumClass is 3, but Objective reg:squarederror predicts a number: set NumClass=0"),
        ("regression", {"ClassNames": "cheap,dear"},
         "ClassNames names classes (cheap, dear), but Objective reg:squarederror predicts a number: "
         "set ClassNames= (empty)"),
    ],
)
def test_a_contract_that_does_not_fit_the_data_is_refused_before_train(
    home: StateHome, tmp_path: Path, generator: str, extra: dict, message: str
):
    record, _ = run(home, GENERATORS[generator](tmp_path / "data"), **extra)
    assert record.status == "Failed"
    assert record.steps["Preprocess"].failure_reason == message
    assert record.steps["Train"].status == "Pending"


def test_bad_data_is_reported_in_one_run(home: StateHome, tmp_path: Path):
    data = two_classes(tmp_path / "data")
    lines = data.path.read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[2], "n/a")  # tenure
    lines[10] = ",".join(lines[10].split(",")[:1] + ["", *lines[10].split(",")[2:]])  # monthly empty
    lines[20] = ",".join(lines[20].split(",")[:3] + [""])  # churn empty
    data.path.write_text("\n".join(lines) + "\n")
    record, _ = run(home, data)
    assert record.steps["Preprocess"].failure_reason == (
        f"{data.path}: 3 bad cells: line 4, column 'tenure': 'n/a' is not a number; "
        "line 11, column 'monthly': missing value; line 21, column 'churn': missing label"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"GateMetric": "rmse"}, "parameter GateMetric: 'rmse' is not a multiclass metric (Objective multi:softprob)"),
        ({"Objective": "reg:squarederror", "GateMetric": "accuracy"},
         "parameter GateMetric: 'accuracy' is not a regression metric (Objective reg:squarederror); one of: r2"),
        ({"Objective": "binary:hinge"}, "parameter Objective: 'binary:hinge' is not one of multi:softprob"),
        ({"NumClass": "-1"}, "parameter NumClass: -1 is less than the minimum 0"),
    ],
)
def test_parameters_that_do_not_fit_are_refused_before_anything_runs(home: StateHome, overrides, message):
    with pytest.raises(UserError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        LocalRunner(home, build_pipeline()).start(overrides)


def test_a_run_recorded_before_the_gate_parameters_resumes(home: StateHome):
    failed = LocalRunner(home, build_pipeline()).start({"GateThreshold": "0.999"})
    document = json.loads((failed.folder / "run.json").read_text())
    parameters = document["parameters"]
    parameters["AccuracyThreshold"] = parameters.pop("GateThreshold")
    del parameters["GateMetric"]
    (failed.folder / "run.json").write_text(json.dumps(document))
    resumed = LocalRunner(home, build_pipeline()).resume(failed.run_id)
    assert (resumed.parameters["GateThreshold"], resumed.parameters["GateMetric"]) == (0.999, "")
    assert resumed.steps["AccuracyBelowThreshold"].failure_reason.endswith("is below the threshold 0.999")
