"""Runs of evaluation/evaluate.py on a processing job's layout: XGBoost models trained on iris, the model
archive, schema and test split written where the script reads them, and what it wrote or said."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_iris

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


def train(split: dict[str, np.ndarray], objective: str, **extra: object) -> xgb.Booster:
    params = {**HYPERPARAMETERS, "objective": objective, **extra}
    return xgb.train(params, xgb.DMatrix(split["train_x"], label=split["train_y"]), num_boost_round=NUM_ROUND)


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
