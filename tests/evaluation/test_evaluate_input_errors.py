"""evaluation/evaluate.py on bad input: one line naming what is wrong, exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import xgboost as xgb
from evaluation_runs import FEATURES, HYPERPARAMETERS, fails, write_archive, write_layout

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
