"""evaluation/evaluate.py on a real XGBoost model trained on iris: every metric checked against scikit-learn's,
the accuracy path the pipeline's condition reads, and the script run standalone as a processing job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from evaluation_runs import (
    ACCURACY_PATH,
    CLASSES,
    FEATURES,
    LABELS,
    SCRIPT,
    iris_contract_order,
    run,
    train,
    write_layout,
)
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)

# -- metrics --------------------------------------------------------------------------------------


def test_every_metric_matches_scikit_learn(tmp_path: Path, iris_split: dict, softmax: xgb.Booster):
    base = write_layout(tmp_path, softmax, iris_split["test_x"], iris_split["test_y"])
    report = run(base)
    actual = iris_split["test_y"]
    predicted = softmax.predict(xgb.DMatrix(iris_split["test_x"])).astype(int)
    accuracy = accuracy_score(actual, predicted)
    assert 0.8 < accuracy < 1, "the mislabelled rows make this a meaningful comparison"

    metrics = report["multiclass_classification_metrics"]
    assert metrics["accuracy"]["value"] == pytest.approx(accuracy, abs=1e-12)
    assert metrics["macro_f1"]["value"] == pytest.approx(f1_score(actual, predicted, average="macro"), abs=1e-12)
    assert metrics["weighted_f1"]["value"] == pytest.approx(f1_score(actual, predicted, average="weighted"), abs=1e-12)
    assert metrics["weighted_precision"]["value"] == pytest.approx(
        precision_score(actual, predicted, average="weighted"), abs=1e-12
    )
    assert metrics["weighted_recall"]["value"] == pytest.approx(
        recall_score(actual, predicted, average="weighted"), abs=1e-12
    )
    for name in ("accuracy", "macro_f1", "weighted_f1", "weighted_precision", "weighted_recall"):
        assert metrics[name]["standard_deviation"] == "NaN"

    precision, recall, f1, support = precision_recall_fscore_support(actual, predicted, labels=LABELS)
    for i, name in enumerate(CLASSES):
        entry = report["per_class"][name]
        assert entry["precision"] == pytest.approx(precision[i], abs=1e-12), name
        assert entry["recall"] == pytest.approx(recall[i], abs=1e-12), name
        assert entry["f1"] == pytest.approx(f1[i], abs=1e-12), name
        assert entry["support"] == support[i]
    assert len({entry["recall"] for entry in report["per_class"].values()}) > 1

    expected = confusion_matrix(actual, predicted, labels=LABELS)
    assert metrics["confusion_matrix"] == {
        actual_name: {predicted_name: int(expected[i, j]) for j, predicted_name in enumerate(CLASSES)}
        for i, actual_name in enumerate(CLASSES)
    }
    assert report["classes"] == CLASSES
    assert report["test_rows"] == len(actual) == 50


def test_accuracy_json_path_for_the_pipeline_condition(tmp_path: Path, iris_split: dict, softmax: xgb.Booster):
    report = run(write_layout(tmp_path, softmax, iris_split["test_x"], iris_split["test_y"]))
    value = report
    for key in ACCURACY_PATH.split("."):
        value = value[key]
    assert isinstance(value, float) and 0 <= value <= 1


def test_softprob_model_gives_class_indices_too(tmp_path: Path, iris_split: dict, softmax: xgb.Booster):
    softprob = train(iris_split, "multi:softprob")
    assert softprob.predict(xgb.DMatrix(iris_split["test_x"])).shape == (50, 3)
    by_softmax = run(write_layout(tmp_path / "softmax", softmax, iris_split["test_x"], iris_split["test_y"]))
    by_softprob = run(write_layout(tmp_path / "softprob", softprob, iris_split["test_x"], iris_split["test_y"]))
    for report in (by_softmax, by_softprob):
        del report["feature_importance"]
    assert by_softprob == by_softmax
    predicted = softprob.predict(xgb.DMatrix(iris_split["test_x"])).argmax(axis=1)
    assert by_softprob["multiclass_classification_metrics"]["accuracy"]["value"] == pytest.approx(
        accuracy_score(iris_split["test_y"], predicted), abs=1e-12
    )


@pytest.mark.parametrize("objective", ["binary:logistic", "binary:logitraw"])
def test_binary_objectives_threshold_at_probability_one_half(tmp_path: Path, objective: str):
    """logistic gives probabilities, logitraw margins: both cut at p = 0.5 (margin 0)."""
    x, y = iris_contract_order()
    keep = y > 0  # virginica vs versicolor: the hard pair
    x, y = x[keep], (y[keep] == 1).astype(int)
    # Few, small steps keep margins near 0, where the two thresholds part.
    params = {"max_depth": 2, "eta": 0.05, "objective": objective}
    booster = xgb.train(params, xgb.DMatrix(x[::2], label=y[::2]), num_boost_round=3)
    margin = booster.predict(xgb.DMatrix(x[1::2]), output_margin=True)
    assert ((margin > 0) & (margin < 0.5)).any(), "some margins must lie between the two thresholds"
    base = write_layout(tmp_path, booster, x[1::2], y[1::2], classes=["versicolor", "virginica"])
    report = run(base)
    predicted = (margin > 0).astype(int)
    assert report["multiclass_classification_metrics"]["accuracy"]["value"] == pytest.approx(
        accuracy_score(y[1::2], predicted), abs=1e-12
    )
    (tn, fp), (fn, tp) = confusion_matrix(y[1::2], predicted).tolist()
    assert report["multiclass_classification_metrics"]["confusion_matrix"] == {
        "versicolor": {"versicolor": tn, "virginica": fp},
        "virginica": {"versicolor": fn, "virginica": tp},
    }


def test_a_class_absent_from_the_test_set_counts_as_zero(tmp_path: Path, iris_split: dict, softmax: xgb.Booster):
    """Metrics are over the schema's classes, as scikit-learn's with labels=all classes and zero_division=0."""
    setosa = iris_split["test_y"] == 0
    x, y = iris_split["test_x"][setosa], np.zeros(setosa.sum(), dtype=int)
    report = run(write_layout(tmp_path, softmax, x, y))
    predicted = softmax.predict(xgb.DMatrix(x)).astype(int)
    metrics = report["multiclass_classification_metrics"]
    for average, key in (("macro", "macro_f1"), ("weighted", "weighted_f1")):
        expected = f1_score(y, predicted, labels=LABELS, average=average, zero_division=0)
        assert metrics[key]["value"] == pytest.approx(expected, abs=1e-12)
    assert report["per_class"]["virginica"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_feature_importance_names_the_schema_features(tmp_path: Path, iris_split: dict, softmax: xgb.Booster):
    report = run(write_layout(tmp_path, softmax, iris_split["test_x"], iris_split["test_y"]))
    importance = report["feature_importance"]
    assert list(importance) == FEATURES
    gain = softmax.get_score(importance_type="total_gain")
    assert importance == pytest.approx({name: gain.get(f"f{i}", 0.0) for i, name in enumerate(FEATURES)})
    assert max(importance, key=importance.get) in ("x3", "x4"), "petal measurements separate iris"


def test_the_script_runs_standalone_as_a_processing_job(tmp_path: Path, iris_split: dict, softmax: xgb.Booster):
    base = write_layout(tmp_path / "good", softmax, iris_split["test_x"], iris_split["test_y"])
    good = subprocess.run(
        [sys.executable, str(SCRIPT), "--base-dir", str(base)], capture_output=True, text=True, timeout=60, check=False
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("evaluated 50 test rows: accuracy ")
    assert (base / "evaluation" / "evaluation.json").is_file()
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--base-dir", str(tmp_path / "empty")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"error: {tmp_path / 'empty' / 'schema' / 'schema.json'}: no schema"
