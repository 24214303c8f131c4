"""Evaluate step: model.tar.gz + test split -> evaluation.json.

A SageMaker Processing script (imports nothing outside this folder): Model Monitor's model-quality report plus
``gate``, and ``champion``: the group's live model scored on the same test rows.

The champion input (``champion/``) holds the live model's archive (``model.tar.gz`` as Train writes it, or any
artifact the built-in container serves: an ``xgboost-model`` member, or the archive's only file), optionally a
``champion.json`` naming its group and version and a ``schema.json``, the data schema it was trained on, or nothing
but the no-champion marker (no file, or only ``README.json``). The champion's schema may come in an input of its own
(``champion_schema/``, one JSON file besides the marker): on AWS the model artifact and the schema are two objects.
The gate passes when the gate metric meets the threshold and the challenger is not worse than the champion by more
than ``--max-regression`` in the metric's direction. Without a champion (a group's first model) the threshold alone
decides. A champion whose task, number of features or number of classes differs from the challenger's schema was
trained for another contract: its scores on these rows mean nothing, so it is reported as ``not_comparable`` (with
why) and the threshold alone decides, as an MLOps engineer retraining on a changed schema expects. With the
champion's ``schema.json`` its features and classes are matched by name: the same ones in another order are compared
(each test column and class index taken as the champion's order has it), other names are not comparable. (A model
archive records no names: without the schema, a champion with the same counts is compared.) A champion archive that
cannot be read fails the step: a live model nobody can load is an incident to look at, not a reason to skip
the comparison.
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
SECTIONS = {
    "multiclass": "multiclass_classification_metrics",
    "binary": "binary_classification_metrics",
    "regression": "regression_metrics",
}
DEFAULT_GATE_METRIC = {"multiclass": "accuracy", "binary": "accuracy", "regression": "r2"}
LOWER_IS_BETTER = ("mse", "rmse", "mae", "false_positive_rate", "false_negative_rate")
CHAMPION_FILE = "champion.json"  # the champion's group and version, when the caller knows them
CHAMPION_SCHEMA = "schema.json"  # the data schema the champion was trained on, when the caller knows it
NO_CHAMPION_MARKER = "README.json"  # the object the AWS pipeline's no-champion input holds
TOLERANCE = 1e-9  # float noise: 0.9333 - 0.9233 must count as a regression of 0.01, not 0.0100000001


class InputError(Exception):
    """A problem with the step's inputs: reported as one line, exit status 2."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", default=DEFAULT_BASE_DIR, help="root of the processing layout")
    parser.add_argument(
        "--gate-metric", default="", help="metric of the quality gate; empty: accuracy (classification) or r2"
    )
    parser.add_argument("--gate-threshold", type=float, default=0.9, help="the gate's threshold")
    parser.add_argument("--max-regression", type=float, default=0.01,
                        help="how much worse than the champion on the gate metric the challenger may be")
    return parser.parse_args(argv)


def load_booster(model_dir: Path) -> xgb.Booster:
    return read_booster(model_dir / "model.tar.gz")


def read_booster(archive: Path, container_rule: bool = False) -> xgb.Booster:
    """The booster of ``archive``: its ``xgboost-model`` member; with ``container_rule``, as the built-in
    container (and the local endpoint) finds it: an ``xgboost-model`` in any folder, else the only file."""
    if not archive.is_file():
        raise InputError(f"{archive}: no model archive")
    try:
        with tarfile.open(archive, "r:*" if container_rule else "r:gz") as tar:
            member = model_member(tar) if container_rule else tar.extractfile(MODEL_FILE)
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


def model_member(tar: tarfile.TarFile) -> object:
    files = [member for member in tar.getmembers() if member.isfile()]
    named = [member for member in files if Path(member.name).name == MODEL_FILE]
    chosen = named[0] if named else files[0] if len(files) == 1 else None
    return None if chosen is None else tar.extractfile(chosen)


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
    return data[:, 1:], data[:, 0]


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


def named_matrix(matrix: np.ndarray, classes: list[str]) -> dict[str, dict[str, int]]:
    """A confusion matrix as Model Monitor writes it: ``{actual class: {predicted class: count}}``."""
    return {actual: {name: int(matrix[i, j]) for j, name in enumerate(classes)} for i, actual in enumerate(classes)}


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator with 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def metric(value: float) -> dict:
    """One metric as Model Monitor writes it (no bootstrap: a single test split has no standard deviation)."""
    return {"value": float(value), "standard_deviation": "NaN"}


def metrics_report(actual: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict:
    matrix = confusion_matrix(actual, predicted, len(classes))
    true_positive = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    precision = safe_ratio(true_positive, matrix.sum(axis=0))
    recall = safe_ratio(true_positive, support)
    f1 = safe_ratio(2 * precision * recall, precision + recall)
    weights = support / support.sum()
    return {
        "multiclass_classification_metrics": {
            "accuracy": metric(true_positive.sum() / support.sum()),
            "macro_f1": metric(f1.mean()),
            "weighted_f1": metric((f1 * weights).sum()),
            "weighted_precision": metric((precision * weights).sum()),
            "weighted_recall": metric((recall * weights).sum()),
            "confusion_matrix": named_matrix(matrix, classes),
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


def f_beta(precision: float, recall: float, beta: float) -> float:
    weight = beta * beta
    return (1 + weight) * precision * recall / (weight * precision + recall) if precision + recall > 0 else 0.0


def roc_auc(actual: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a positive row scores above a negative one (ties count
    one half), from the ranks (Mann-Whitney U); NaN when the test set holds one class only."""
    positives = int(actual.sum())
    negatives = actual.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(score.size)
    ranks[order] = np.arange(1, score.size + 1)
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    average = sums[inverse] / counts[inverse]  # tied scores share their average rank
    return float((average[actual == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def binary_report(actual: np.ndarray, score: np.ndarray, classes: list[str]) -> dict:
    """Model Monitor's binary classification metrics; the positive class is label 1 (the second class), a row is
    predicted positive when its probability exceeds 0.5. A best constant classifier always answers the
    positive class (recall, precision, F-scores) or the majority class (accuracy)."""
    predicted = (score > 0.5).astype(np.int64)
    matrix = confusion_matrix(actual, predicted, 2)
    (tn, fp), (fn, tp) = matrix.tolist()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    base_rate = (tp + fn) / actual.size
    constant = {"precision": base_rate, "recall": 1.0, "accuracy": max(base_rate, 1 - base_rate)}
    section = {
        "confusion_matrix": named_matrix(matrix, classes),
        "recall": metric(recall),
        "precision": metric(precision),
        "accuracy": metric((tp + tn) / actual.size),
        **{f"{name}_best_constant_classifier": metric(value) for name, value in constant.items()},
        "true_positive_rate": metric(recall),
        "true_negative_rate": metric(tn / (tn + fp) if tn + fp else 0.0),
        "false_positive_rate": metric(fp / (tn + fp) if tn + fp else 0.0),
        "false_negative_rate": metric(fn / (tp + fn) if tp + fn else 0.0),
        "auc": metric(roc_auc(actual, score)),
    }
    for beta, name in ((0.5, "f0_5"), (1.0, "f1"), (2.0, "f2")):
        section[name] = metric(f_beta(precision, recall, beta))
        section[f"{name}_best_constant_classifier"] = metric(f_beta(base_rate, 1.0, beta))
    return {"binary_classification_metrics": section, "classes": classes, "positive_class": classes[1],
            "test_rows": int(actual.size)}


def regression_report(actual: np.ndarray, predicted: np.ndarray) -> dict:
    """Model Monitor's regression metrics; r2 is 1 - SSE/SST (0 when the test targets are all equal: SST = 0)."""
    error = predicted - actual
    mse = float(np.mean(error**2))
    total = float(np.sum((actual - actual.mean()) ** 2))
    r2 = 1 - float(np.sum(error**2)) / total if total > 0 else 0.0
    return {
        "regression_metrics": {
            "mse": metric(mse), "rmse": metric(np.sqrt(mse)), "mae": metric(np.mean(np.abs(error))), "r2": metric(r2),
        },
        "test_rows": int(actual.size),
    }


def gate(report: dict, task: str, metric_name: str, threshold: float) -> dict:
    """The quality gate: the metric against the threshold, in the metric's direction (>= for accuracy, f1, auc,
    r2...; <= for mse, rmse, mae and the false rates)."""
    section = report[SECTIONS[task]]
    name = metric_name.strip() or DEFAULT_GATE_METRIC[task]
    choices = [key for key, value in section.items() if isinstance(value, dict) and "value" in value]
    if name not in choices:
        raise InputError(f"--gate-metric {name!r} is not a {task} metric; one of: {', '.join(choices)}")
    value = section[name]["value"]
    lower = name in LOWER_IS_BETTER
    passed = bool(value <= threshold if lower else value >= threshold)
    label = name.upper() if len(name) <= 4 else name.replace("_", " ").capitalize()
    relation = {(True, False): "at or above", (True, True): "at or below", (False, False): "below",
                (False, True): "above"}[(passed, lower)]
    return {
        "metric": name, "value": value, "threshold": threshold,
        "direction": "lower_is_better" if lower else "higher_is_better", "comparison": "<=" if lower else ">=",
        "passed": passed, "message": f"{label} {value:.4g} is {relation} the threshold {threshold:g}",
    }


def feature_importance(booster: xgb.Booster, features: list[str]) -> dict[str, float]:
    """Total gain per feature (XGBoost names them f0, f1, ... when trained from CSV)."""
    gain = booster.get_score(importance_type="total_gain")
    return {name: float(gain.get(f"f{i}", gain.get(name, 0.0))) for i, name in enumerate(features)}


def champion_input(folder: Path, schema_folder: Path) -> tuple[xgb.Booster | None, dict, dict | None]:
    """The champion's booster (None: no champion), what ``champion.json`` says about it (group, version) and its
    data schema, from ``folder`` or else ``schema_folder`` (None: not given)."""
    if not folder.is_dir():
        return None, {}, None
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    known, schema = (json.loads((folder / name).read_text(encoding="utf-8")) if (folder / name).is_file() else None
                     for name in (CHAMPION_FILE, CHAMPION_SCHEMA))
    archives = [path for path in files if path.name not in (CHAMPION_FILE, CHAMPION_SCHEMA, NO_CHAMPION_MARKER)]
    if len(archives) > 1:
        names = ", ".join(str(path.relative_to(folder)) for path in archives)
        raise InputError(f"{folder}: the champion input holds one model archive, not {len(archives)} files ({names})")
    return (read_booster(archives[0], container_rule=True) if archives else None), known or {}, (
        schema or separate_schema(schema_folder))


def separate_schema(folder: Path) -> dict | None:
    """The one JSON file of the champion-schema input, the no-champion marker aside (None: none given)."""
    if not folder.is_dir():
        return None
    files = sorted(path for path in folder.rglob("*") if path.is_file() and path.name != NO_CHAMPION_MARKER)
    if len(files) > 1:
        names = ", ".join(str(path.relative_to(folder)) for path in files)
        raise InputError(f"{folder}: the champion schema input holds one schema, not {len(files)} files ({names})")
    if not files:
        return None
    try:
        schema = json.loads(files[0].read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{files[0]}: the champion's schema is not JSON: {error}") from None
    if not isinstance(schema, dict) or not isinstance(schema.get("feature_columns"), list):
        raise InputError(f"{files[0]}: the champion's schema has no feature_columns list (not a Preprocess "
                         "schema.json)")
    return schema


def task_of(objective: str) -> str:
    for prefix, task in (("multi:", "multiclass"), ("binary:", "binary"), ("reg:", "regression")):
        if objective.startswith(prefix):
            return task
    return objective


def contract_mismatch(booster: xgb.Booster, task: str, classes: list[str], features: list[str]) -> str | None:
    """Why the champion's scores on the challenger's test rows would mean nothing; None when they compare."""
    learner = json.loads(booster.save_config())["learner"]
    objective = learner["objective"]["name"]
    if task_of(objective) != task:
        return f"the champion is a {task_of(objective)} model ({objective}), the challenger a {task} one"
    if booster.num_features() != len(features):
        return f"the champion takes {booster.num_features()} features, the challenger's schema names {len(features)}"
    num_class = int(learner["learner_model_param"].get("num_class", 0))
    if task == "multiclass" and num_class != len(classes):
        return f"the champion predicts {num_class} classes, the challenger's schema names {len(classes)}"
    return None


def named_order(champion_schema: dict | None, schema: dict) -> tuple[np.ndarray, np.ndarray] | str:
    """How the champion reads the challenger's test rows, by the names its own schema gives (none: as they are):
    the test columns in its feature order and the challenger's index of each of its class indices; a text saying
    why they do not match."""
    features, classes = schema["feature_columns"], schema["classes"]
    theirs = champion_schema or {}
    their_features, their_classes = theirs.get("feature_columns", features), theirs.get("classes", classes)
    if sorted(their_features) != sorted(features):
        return f"the champion's features are {', '.join(their_features)}, the challenger's {', '.join(features)}"
    if sorted(their_classes) != sorted(classes):
        return f"the champion's classes are {', '.join(their_classes)}, the challenger's {', '.join(classes)}"
    their_label, label = theirs.get("label_column"), schema.get("label_column")
    if not classes and their_label and label and their_label != label:
        return f"the champion predicts {their_label}, the challenger {label}"
    return (np.array([features.index(name) for name in their_features], dtype=np.int64),
            np.array([classes.index(name) for name in their_classes], dtype=np.int64))


def champion_comparison(outcome: dict, champion_value: float, max_regression: float, known: dict) -> dict:
    """The champion section's gate fields: whether the challenger (the gate's value) is worse than the champion by
    more than ``max_regression`` in the metric's direction."""
    challenger_value, name = outcome["value"], outcome["metric"]
    lower = outcome["direction"] == "lower_is_better"
    regression = challenger_value - champion_value if lower else champion_value - challenger_value
    passed = bool(regression <= max_regression + TOLERANCE)
    who = f"champion (version {known['version']})" if "version" in known else "champion"
    relation = "is not worse than" if passed else "is worse than"
    message = (f"challenger {name} {challenger_value:.4f} {relation} {who} {name} {champion_value:.4f} by more "
               f"than MaxRegression {max_regression:g}")
    return {"max_regression": max_regression, "champion_value": champion_value, "challenger_value": challenger_value,
            "passed": passed, "message": message}


def all_class_indices(labels: np.ndarray, n_classes: int) -> bool:
    return bool(labels.min() >= 0 and labels.max() < n_classes and np.all(labels == np.floor(labels)))


def score(booster: xgb.Booster, task: str, test_x: np.ndarray, test_y: np.ndarray, classes: list[str],
          class_order: np.ndarray | None = None) -> dict:
    """The task's report of ``booster`` on the test rows; ``class_order``: the challenger's index of each of the
    booster's class indices (a champion trained with the classes in another order)."""
    if task == "regression":
        return regression_report(test_y, booster.predict(xgb.DMatrix(test_x)).astype(np.float64))
    labels = test_y.astype(np.int64)
    if task == "binary":
        probability = booster.predict(xgb.DMatrix(test_x)).astype(np.float64)
        swapped = class_order is not None and bool(class_order[0] == 1)  # its positive class is our negative one
        return binary_report(labels, 1 - probability if swapped else probability, classes)
    predicted = predict_classes(booster, test_x)
    return metrics_report(labels, predicted if class_order is None else class_order[predicted], classes)


def evaluate(base: Path, gate_metric: str = "", gate_threshold: float = 0.9, max_regression: float = 0.01) -> dict:
    schema_path = base / "schema" / "schema.json"
    if not schema_path.is_file():
        raise InputError(f"{schema_path}: no schema")
    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
        classes, features = schema["classes"], schema["feature_columns"]
        task = schema.get("task", "multiclass")  # schemas written before the task was recorded: multiclass
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{schema_path}: not a schema written by the preprocess step ({first_line(exc)})") from None
    if task not in SECTIONS:
        raise InputError(f"{schema_path}: unknown task {task!r} (one of: {', '.join(SECTIONS)})")
    if max_regression < 0:
        raise InputError(f"--max-regression {max_regression:g} is negative")
    booster = load_booster(base / "model")
    if booster.num_features() != len(features):
        raise InputError(
            f"{base / 'model' / 'model.tar.gz'}: the model takes {booster.num_features()} features, "
            f"the schema names {len(features)}"
        )
    test_x, test_y = load_test(base / "test", len(features))
    if task != "regression" and not all_class_indices(test_y, len(classes)):
        raise InputError(f"{base / 'test'}: labels outside the {len(classes)} classes of the schema")
    champion, known, champion_schema = champion_input(base / "champion", base / "champion_schema")
    report = score(booster, task, test_x, test_y, classes)
    report["feature_importance"] = feature_importance(booster, features)
    report["gate"] = gate(report, task, gate_metric, gate_threshold)
    section = {**known, "max_regression": max_regression, "champion_value": None,
               "challenger_value": report["gate"]["value"]}
    order = None if champion is None else (contract_mismatch(champion, task, classes, features)
                                           or named_order(champion_schema, schema))
    if champion is None:
        report["champion"] = {**section, "status": "none", "reason": "no champion: the group has no live model yet; "
                              "the threshold alone decides"}
    elif isinstance(order, str):
        report["champion"] = {**section, "status": "not_comparable",
                              "reason": f"{order}: no comparable champion; the threshold alone decides"}
    else:
        columns, class_order = order
        champion_report = score(champion, task, test_x[:, columns], test_y, classes, class_order)
        champion_value = champion_report[SECTIONS[task]][report["gate"]["metric"]]["value"]
        comparison = champion_comparison(report["gate"], champion_value, max_regression, known)
        report["champion"] = {**section, "status": "compared", **comparison, **champion_report}
        report["gate"]["passed"] = report["gate"]["passed"] and comparison["passed"]
        report["gate"]["message"] += f"; {comparison['message']}"
    output = base / "evaluation" / "evaluation.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = evaluate(Path(args.base_dir), args.gate_metric, args.gate_threshold, args.max_regression)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    section = next(report[name] for name in SECTIONS.values() if name in report)
    shown = ", ".join(f"{name} {value['value']:.4f}" for name, value in section.items()
                      if name in ("accuracy", "macro_f1", "weighted_f1", "f1", "auc", "rmse", "mae", "r2"))
    champion = report["champion"]
    print(f"evaluated {report['test_rows']} test rows: {shown}; gate: {report['gate']['message']}")
    if champion["status"] != "compared":
        print(f"champion: {champion['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
