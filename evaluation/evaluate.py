"""Evaluate step: model.tar.gz + test split -> evaluation.json.

Runs unchanged as a SageMaker Processing script (paths default to ``/opt/ml/processing``;
``--base-dir`` moves the layout). Imports nothing of the project outside this folder.

Layout below the base dir::

    model/model.tar.gz       holding ``xgboost-model`` (the built-in algorithm's artifact)
    test/test.csv            label first, no header
    schema/schema.json       class names and feature names, from the preprocess step
    evaluation/evaluation.json

``evaluation.json`` follows SageMaker's model-quality report for multiclass models, so a
``PropertyFile`` + ``JsonGet`` can read e.g. ``multiclass_classification_metrics.accuracy.value``::

    {"multiclass_classification_metrics": {
        "accuracy": {"value": 0.96, "standard_deviation": "NaN"},
        "macro_f1": {...}, "weighted_f1": {...}, "weighted_precision": {...}, "weighted_recall": {...},
        "confusion_matrix": {"<actual class>": {"<predicted class>": count, ...}, ...}},
     "per_class": {"<class>": {"precision": p, "recall": r, "f1": f, "support": n}, ...},
     "classes": [...], "test_rows": n, "feature_importance": {"<feature>": gain, ...}}
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import xgboost as xgb

DEFAULT_BASE_DIR = "/opt/ml/processing"
MODEL_FILE = "xgboost-model"


class InputError(Exception):
    """A problem with the step's inputs: reported as one line, exit status 2."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", default=DEFAULT_BASE_DIR, help="root of the processing layout")
    return parser.parse_args(argv)


def load_booster(model_dir: Path) -> xgb.Booster:
    archive = model_dir / "model.tar.gz"
    if not archive.is_file():
        raise InputError(f"{archive}: no model archive")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile(MODEL_FILE)
            if member is None:
                raise KeyError(MODEL_FILE)
            raw = member.read()
    except KeyError:
        raise InputError(f"{archive}: no {MODEL_FILE} inside") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"{archive}: not a readable tar.gz archive ({first_line(exc)})") from None
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(raw))
    except xgb.core.XGBoostError as exc:
        raise InputError(f"{archive}: {MODEL_FILE} is not a model XGBoost can load ({first_line(exc)})") from None
    return booster


def first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def load_test(test_dir: Path, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    files = sorted(p for p in test_dir.glob("*.csv"))
    if not files:
        raise InputError(f"{test_dir}: no test CSV")
    options = pcsv.ReadOptions(autogenerate_column_names=True)
    try:
        table = pcsv.read_csv(files[0], read_options=options)
    except pa.ArrowInvalid as exc:
        raise InputError(f"{files[0]}: not a readable CSV file ({first_line(exc)})") from None
    if table.num_columns != n_features + 1:
        raise InputError(
            f"{files[0]}: {table.num_columns} columns, expected the label and {n_features} features"
        )
    for i, column in enumerate(table.columns):
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            continue
        row = next((r for r, value in enumerate(column.to_pylist()) if not is_number(value)), None)
        if row is not None:
            raise InputError(f"{files[0]}, line {row + 1}, column {i + 1}: {column[row].as_py()!r} is not a number")
    labels = table.column(0)
    if labels.null_count:
        row = int(np.flatnonzero(labels.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f"{files[0]}, line {row + 1}, column 1: missing label")
    data = np.column_stack([table.column(i).to_numpy() for i in range(table.num_columns)]).astype(np.float64)
    return data[:, 1:], data[:, 0].astype(np.int64)


def is_number(value: object) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return value is None
    return True


def predict_classes(booster: xgb.Booster, features: np.ndarray) -> np.ndarray:
    """Class indices whatever the objective: softmax gives them, softprob/logistic give probabilities."""
    output = booster.predict(xgb.DMatrix(features))
    if output.ndim == 2:
        return output.argmax(axis=1)
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective.startswith("binary:"):
        # logitraw gives the untransformed margin, the others a probability (or hinge's 0/1)
        return (output > (0.0 if objective == "binary:logitraw" else 0.5)).astype(np.int64)
    return output.astype(np.int64)


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (actual, predicted), 1)
    return matrix


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator with 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def metrics_report(actual: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict:
    matrix = confusion_matrix(actual, predicted, len(classes))
    true_positive = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    precision = safe_ratio(true_positive, matrix.sum(axis=0))
    recall = safe_ratio(true_positive, support)
    f1 = safe_ratio(2 * precision * recall, precision + recall)
    weights = support / support.sum()

    def metric(value: float) -> dict:
        return {"value": float(value), "standard_deviation": "NaN"}

    return {
        "multiclass_classification_metrics": {
            "accuracy": metric(true_positive.sum() / support.sum()),
            "macro_f1": metric(f1.mean()),
            "weighted_f1": metric((f1 * weights).sum()),
            "weighted_precision": metric((precision * weights).sum()),
            "weighted_recall": metric((recall * weights).sum()),
            "confusion_matrix": {
                actual_name: {name: int(matrix[i, j]) for j, name in enumerate(classes)}
                for i, actual_name in enumerate(classes)
            },
        },
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "classes": classes,
        "test_rows": int(actual.size),
    }


def feature_importance(booster: xgb.Booster, features: list[str]) -> dict[str, float]:
    """Total gain per feature (XGBoost names them f0, f1, ... when trained from CSV)."""
    gain = booster.get_score(importance_type="total_gain")
    return {name: float(gain.get(f"f{i}", gain.get(name, 0.0))) for i, name in enumerate(features)}


def evaluate(base: Path) -> dict:
    schema_path = base / "schema" / "schema.json"
    if not schema_path.is_file():
        raise InputError(f"{schema_path}: no schema")
    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
        classes, features = schema["classes"], schema["feature_columns"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{schema_path}: not a schema written by the preprocess step ({first_line(exc)})") from None
    booster = load_booster(base / "model")
    if booster.num_features() != len(features):
        raise InputError(
            f"{base / 'model' / 'model.tar.gz'}: the model takes {booster.num_features()} features, "
            f"the schema names {len(features)}"
        )
    test_x, test_y = load_test(base / "test", len(features))
    if test_y.min() < 0 or test_y.max() >= len(classes):
        raise InputError(f"{base / 'test'}: labels outside the {len(classes)} classes of the schema")
    report = metrics_report(test_y, predict_classes(booster, test_x), classes)
    report["feature_importance"] = feature_importance(booster, features)
    output = base / "evaluation" / "evaluation.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = evaluate(Path(args.base_dir))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    metrics = report["multiclass_classification_metrics"]
    print(
        f"evaluated {report['test_rows']} test rows: accuracy {metrics['accuracy']['value']:.4f}, "
        f"macro F1 {metrics['macro_f1']['value']:.4f}, weighted F1 {metrics['weighted_f1']['value']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
