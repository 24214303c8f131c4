"""evaluation/evaluate.py for binary and regression models (checked against scikit-learn's metrics), and the
quality gate in each metric's direction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from evaluation_runs import FEATURES, error_of, iris_contract_order, run, write_layout
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    fbeta_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from evaluation import evaluate

# -- binary and regression reports, and the gate ------------------------------------------------------------


def write_task_schema(base: Path, task: str, classes: list[str]) -> None:
    schema = {"task": task, "classes": classes, "feature_columns": FEATURES, "label_column": "y"}
    (base / "schema" / "schema.json").write_text(json.dumps(schema), encoding="utf-8")


@pytest.fixture(scope="module")
def binary_split() -> dict[str, np.ndarray]:
    """virginica (1) against versicolor (0): the hard pair, so that every metric is below 1."""
    x, y = iris_contract_order()
    keep = y > 0
    x, y = x[keep], (y[keep] == 1).astype(int)
    return {"train_x": x[::2], "train_y": y[::2], "test_x": x[1::2], "test_y": y[1::2]}


def test_binary_report_matches_scikit_learn(tmp_path: Path, binary_split: dict):
    params = {"max_depth": 2, "eta": 0.3, "objective": "binary:logistic"}
    booster = xgb.train(params, xgb.DMatrix(binary_split["train_x"], label=binary_split["train_y"]), 4)
    base = write_layout(tmp_path, booster, binary_split["test_x"], binary_split["test_y"])
    write_task_schema(base, "binary", ["versicolor", "virginica"])
    report = run(base)
    section = report["binary_classification_metrics"]
    actual, score = binary_split["test_y"], booster.predict(xgb.DMatrix(binary_split["test_x"]))
    predicted = (score > 0.5).astype(int)
    assert 0 < section["accuracy"]["value"] < 1
    expected = {
        "accuracy": accuracy_score(actual, predicted), "precision": precision_score(actual, predicted),
        "recall": recall_score(actual, predicted), "f1": f1_score(actual, predicted),
        "f0_5": fbeta_score(actual, predicted, beta=0.5), "f2": fbeta_score(actual, predicted, beta=2),
        "auc": roc_auc_score(actual, score),
        "true_negative_rate": recall_score(actual, predicted, pos_label=0),
        "false_positive_rate": 1 - recall_score(actual, predicted, pos_label=0),
        "false_negative_rate": 1 - recall_score(actual, predicted),
    }
    assert {name: section[name]["value"] for name in expected} == pytest.approx(expected, abs=1e-12)
    (tn, fp), (fn, tp) = confusion_matrix(actual, predicted).tolist()
    assert section["confusion_matrix"] == {"versicolor": {"versicolor": tn, "virginica": fp},
                                           "virginica": {"versicolor": fn, "virginica": tp}}
    base_rate = actual.mean()
    assert section["recall_best_constant_classifier"]["value"] == 1.0
    assert section["precision_best_constant_classifier"]["value"] == pytest.approx(base_rate)
    assert section["f1_best_constant_classifier"]["value"] == pytest.approx(f1_score(actual, np.ones_like(actual)))
    assert report["positive_class"] == "virginica"


def test_auc_counts_tied_scores_as_one_half():
    actual = np.array([0, 0, 1, 1, 0, 1])
    score = np.array([0.1, 0.5, 0.5, 0.9, 0.5, 0.2])
    assert evaluate.roc_auc(actual, score) == pytest.approx(roc_auc_score(actual, score), abs=1e-12)
    assert np.isnan(evaluate.roc_auc(np.ones(3, dtype=int), score[:3]))


def test_regression_report_matches_scikit_learn(tmp_path: Path):
    x, _ = iris_contract_order()
    target = x[:, 3] * 10 + x[:, 0]  # a float target from the other columns
    features = np.column_stack([x[:, :3], np.zeros(len(x))])
    train_rows, test_rows = np.arange(len(x)) % 4 != 0, np.arange(len(x)) % 4 == 0
    params = {"max_depth": 3, "eta": 0.3, "objective": "reg:squarederror"}
    booster = xgb.train(params, xgb.DMatrix(features[train_rows], label=target[train_rows]), 8)
    base = write_layout(tmp_path, booster, features[test_rows], np.zeros(test_rows.sum()))
    lines = [",".join([repr(float(t)), *(repr(float(v)) for v in row)])
             for t, row in zip(target[test_rows], features[test_rows], strict=True)]
    (base / "test" / "test.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_task_schema(base, "regression", [])
    report = run(base)
    section = report["regression_metrics"]
    predicted = booster.predict(xgb.DMatrix(features[test_rows]))
    actual = target[test_rows]
    expected = {"mse": mean_squared_error(actual, predicted), "rmse": np.sqrt(mean_squared_error(actual, predicted)),
                "mae": mean_absolute_error(actual, predicted), "r2": r2_score(actual, predicted)}
    assert {name: value["value"] for name, value in section.items()} == pytest.approx(expected, rel=1e-6)
    assert all(value["standard_deviation"] == "NaN" for value in section.values())
    assert report["gate"]["metric"] == "r2"


@pytest.mark.parametrize(
    ("metric", "threshold", "passed", "direction"),
    [("accuracy", 0.5, True, "higher_is_better"), ("accuracy", 0.99, False, "higher_is_better"),
     ("macro_f1", 0.5, True, "higher_is_better")],
)
def test_the_gate_compares_in_the_metrics_direction(
    tmp_path: Path, iris_split: dict, softmax: xgb.Booster, metric: str, threshold: float, passed: bool,
    direction: str,
):
    base = write_layout(tmp_path, softmax, iris_split["test_x"], iris_split["test_y"])
    assert evaluate.main(["--base-dir", str(base), "--gate-metric", metric, "--gate-threshold", str(threshold)]) == 0
    report = json.loads((base / "evaluation" / "evaluation.json").read_text())
    value = report["multiclass_classification_metrics"][metric]["value"]
    assert report["gate"] == {
        "metric": metric, "value": value, "threshold": threshold, "direction": direction, "comparison": ">=",
        "passed": passed, "message": report["gate"]["message"],
    }
    assert report["gate"]["message"].startswith(f"{'Accuracy' if metric == 'accuracy' else 'Macro f1'} {value:.4g} is ")


def test_lower_is_better_metrics_pass_at_or_below_the_threshold():
    report = {"regression_metrics": {"rmse": {"value": 2.0, "standard_deviation": "NaN"}}}
    assert evaluate.gate(report, "regression", "rmse", 2.0)["passed"] is True
    failed = evaluate.gate(report, "regression", "rmse", 1.5)
    assert (failed["passed"], failed["comparison"], failed["message"]) == (
        False, "<=", "RMSE 2 is above the threshold 1.5")


def test_a_gate_metric_the_task_does_not_report(tmp_path: Path, capsys, iris_split: dict, softmax: xgb.Booster):
    base = write_layout(tmp_path, softmax, iris_split["test_x"], iris_split["test_y"])
    assert evaluate.main(["--base-dir", str(base), "--gate-metric", "rmse"]) == 2
    assert error_of(capsys) == (
        "--gate-metric 'rmse' is not a multiclass metric; one of: accuracy, macro_f1, weighted_f1, "
        "weighted_precision, weighted_recall"
    )
