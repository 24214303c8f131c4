"""evaluation/evaluate.py on a real XGBoost model trained on iris, checked against scikit-learn's metrics."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_iris
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    fbeta_score,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from evaluation import evaluate

SCRIPT = Path(evaluate.__file__)
CLASSES = ["setosa", "virginica", "versicolor"]
FEATURES = ["x1", "x2", "x3", "x4"]
HYPERPARAMETERS = {"max_depth": 5, "eta": 0.2, "gamma": 4, "min_child_weight": 6, "num_class": 3}
NUM_ROUND = 10
LABELS = [0, 1, 2]
ACCURACY_PATH = "multiclass_classification_metrics.accuracy.value"  # what the pipeline's JsonGet reads


def iris_contract_order() -> tuple[np.ndarray, np.ndarray]:
    """Iris with the contract's class indices: setosa=0, virginica=1, versicolor=2."""
    iris = load_iris()
    remap = np.array([0, 2, 1])  # sklearn: 0 setosa, 1 versicolor, 2 virginica
    return iris.data, remap[iris.target]


@pytest.fixture(scope="module")
def iris_split() -> dict[str, np.ndarray]:
    x, y = iris_contract_order()
    test = np.arange(len(y)) % 3 == 0
    test_y = y[test].copy()
    # Mislabel a few test rows so that every metric is below 1 and classes differ from one another.
    test_y[[0, 5, 20]] = (test_y[[0, 5, 20]] + 1) % 3
    return {"train_x": x[~test], "train_y": y[~test], "test_x": x[test], "test_y": test_y}


def train(split: dict[str, np.ndarray], objective: str, **extra: object) -> xgb.Booster:
    params = {**HYPERPARAMETERS, "objective": objective, **extra}
    return xgb.train(params, xgb.DMatrix(split["train_x"], label=split["train_y"]), num_boost_round=NUM_ROUND)


@pytest.fixture(scope="module")
def softmax(iris_split: dict[str, np.ndarray]) -> xgb.Booster:
    return train(iris_split, "multi:softmax")


def write_layout(
    base: Path,
    booster: xgb.Booster | None,
    test_x: np.ndarray,
    test_y: np.ndarray,
    classes: list[str] = CLASSES,
    features: list[str] = FEATURES,
) -> Path:
    """The processing layout: model/model.tar.gz, test/test.csv (label first, no header), schema/schema.json."""
    if booster is not None:
        write_archive(base / "model" / "model.tar.gz", {"xgboost-model": bytes(booster.save_raw("ubj"))})
    (base / "test").mkdir(parents=True, exist_ok=True)
    pairs = zip(test_y, test_x, strict=True)
    lines = [",".join([str(int(label)), *(repr(float(v)) for v in row)]) for label, row in pairs]
    (base / "test" / "test.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (base / "schema").mkdir(parents=True, exist_ok=True)
    schema = {"classes": classes, "feature_columns": features, "label_column": "species"}
    (base / "schema" / "schema.json").write_text(json.dumps(schema), encoding="utf-8")
    return base


def write_archive(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def run(base: Path) -> dict:
    assert evaluate.main(["--base-dir", str(base)]) == 0
    return json.loads((base / "evaluation" / "evaluation.json").read_text(encoding="utf-8"))


def error_of(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0].removeprefix("error: ")


def fails(base: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = evaluate.main(["--base-dir", str(base)])
    message = error_of(capsys)
    assert code == 2
    assert not (base / "evaluation" / "evaluation.json").exists()
    return message


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


# -- bad input: one line, exit status 2 ----------------------------------------------------------


def test_missing_model_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str], iris_split: dict):
    base = write_layout(tmp_path, None, iris_split["test_x"], iris_split["test_y"])
    assert fails(base, capsys) == f"{base / 'model' / 'model.tar.gz'}: no model archive"


def test_missing_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str], iris_split: dict, softmax: xgb.Booster):
    base = write_layout(tmp_path, softmax, iris_split["test_x"], iris_split["test_y"])
    (base / "schema" / "schema.json").unlink()
    assert fails(base, capsys) == f"{base / 'schema' / 'schema.json'}: no schema"


@pytest.mark.parametrize("text", ["{not json", "{}", '{"classes": ["a"]}'])
def test_unusable_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str], iris_split: dict, softmax, text: str):
    base = write_layout(tmp_path, softmax, iris_split["test_x"], iris_split["test_y"])
    (base / "schema" / "schema.json").write_text(text, encoding="utf-8")
    assert fails(base, capsys).startswith(f"{base / 'schema' / 'schema.json'}: not a schema written by the preprocess")


def test_archive_without_the_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], iris_split: dict, softmax):
    base = write_layout(tmp_path, softmax, iris_split["test_x"], iris_split["test_y"])
    write_archive(base / "model" / "model.tar.gz", {"model.json": b"{}"})
    assert fails(base, capsys) == f"{base / 'model' / 'model.tar.gz'}: no xgboost-model inside"


def test_archive_that_is_not_a_tar_gz(tmp_path: Path, capsys: pytest.CaptureFixture[str], iris_split: dict):
    base = write_layout(tmp_path, None, iris_split["test_x"], iris_split["test_y"])
    (base / "model").mkdir()
    (base / "model" / "model.tar.gz").write_bytes(b"not an archive")
    message = fails(base, capsys)
    assert message.startswith(f"{base / 'model' / 'model.tar.gz'}: not a readable tar.gz archive (")


def test_model_file_that_xgboost_cannot_load(tmp_path: Path, capsys: pytest.CaptureFixture[str], iris_split: dict):
    base = write_layout(tmp_path, None, iris_split["test_x"], iris_split["test_y"])
    write_archive(base / "model" / "model.tar.gz", {"xgboost-model": b"hello"})
    message = fails(base, capsys)
    assert message.startswith(f"{base / 'model' / 'model.tar.gz'}: xgboost-model is not a model XGBoost can load (")


@pytest.mark.parametrize(("model_features", "schema_features"), [(3, 4), (4, 3)])
def test_model_with_a_different_feature_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], iris_split: dict, model_features: int, schema_features: int
):
    """Caught up front: XGBoost would read 3 columns into a 4-feature model as missing values, silently."""
    booster = xgb.train(
        {**HYPERPARAMETERS, "objective": "multi:softmax"},
        xgb.DMatrix(iris_split["train_x"][:, :model_features], label=iris_split["train_y"]),
        num_boost_round=2,
    )
    test_x = iris_split["test_x"][:, :schema_features]
    base = write_layout(tmp_path, booster, test_x, iris_split["test_y"], features=FEATURES[:schema_features])
    assert fails(base, capsys) == (
        f"{base / 'model' / 'model.tar.gz'}: the model takes {model_features} features, "
        f"the schema names {schema_features}"
    )


def test_missing_test_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str], iris_split: dict, softmax):
    base = write_layout(tmp_path, softmax, iris_split["test_x"], iris_split["test_y"])
    (base / "test" / "test.csv").unlink()
    assert fails(base, capsys) == f"{base / 'test'}: no test CSV"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a readable CSV file (Empty CSV file)"),
        ("0,5.1,3.5,1.4\n", "4 columns, expected the label and 4 features"),
        ("0,5.1,3.5,1.4,0.2,9\n", "6 columns, expected the label and 4 features"),
        ("0,5.1,3.5,1.4,0.2\n1,6.7,3.3,x,2.5\n", "line 2, column 4: 'x' is not a number"),
        ("0,5.1,3.5,1.4,0.2\n,6.7,3.3,5.7,2.5\n", "line 2, column 1: missing label"),
    ],
)
def test_bad_test_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str], iris_split: dict, softmax, text, message):
    base = write_layout(tmp_path, softmax, iris_split["test_x"], iris_split["test_y"])
    test_csv = base / "test" / "test.csv"
    test_csv.write_text(text, encoding="utf-8")
    separator = ", " if message.startswith("line") else ": "
    assert fails(base, capsys) == f"{test_csv}{separator}{message}"


def test_labels_outside_the_schema_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str], iris_split, softmax):
    labels = iris_split["test_y"].copy()
    labels[3] = 3
    base = write_layout(tmp_path, softmax, iris_split["test_x"], labels)
    assert fails(base, capsys) == f"{base / 'test'}: labels outside the 3 classes of the schema"


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
