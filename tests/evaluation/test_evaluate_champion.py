"""Champion vs challenger in evaluation/evaluate.py: the live model scored on the same test rows, and the gate
failing when the new model is worse than it by more than MaxRegression (in the gate metric's direction)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from evaluation_runs import FEATURES, error_of, iris_contract_order, train, write_archive, write_layout
from sklearn.metrics import accuracy_score, mean_squared_error

from evaluation import evaluate


def write_champion(base: Path, booster: xgb.Booster, member: str = "xgboost-model", version: int | None = 3) -> None:
    write_archive(base / "champion" / "model.tar.gz", {member: bytes(booster.save_raw("ubj"))})
    if version is not None:
        known = {"group": "CloudVizIris", "version": version, "stage": "prod"}
        (base / "champion" / "champion.json").write_text(json.dumps(known), encoding="utf-8")


def evaluated(base: Path, *options: str) -> dict:
    assert evaluate.main(["--base-dir", str(base), *options]) == 0
    return json.loads((base / "evaluation" / "evaluation.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def weak(iris_split: dict) -> xgb.Booster:
    """One stump per class on sepal length alone: clearly worse than the softmax model on the test rows."""
    sepal_length_only = iris_split["train_x"] * np.array([1, 0, 0, 0])
    return xgb.train({"objective": "multi:softmax", "num_class": 3, "max_depth": 1},
                     xgb.DMatrix(sepal_length_only, label=iris_split["train_y"]), num_boost_round=1)


def accuracy_of(booster: xgb.Booster, split: dict) -> float:
    return accuracy_score(split["test_y"], booster.predict(xgb.DMatrix(split["test_x"])))


def test_a_champion_better_by_more_than_max_regression_fails_the_gate(
    tmp_path: Path, iris_split: dict, softmax: xgb.Booster, weak: xgb.Booster
):
    base = write_layout(tmp_path, weak, iris_split["test_x"], iris_split["test_y"])
    write_champion(base, softmax)
    report = evaluated(base, "--gate-threshold", "0.1")
    challenger, champion = accuracy_of(weak, iris_split), accuracy_of(softmax, iris_split)
    assert champion - challenger > 0.01
    assert report["gate"]["passed"] is False
    assert report["gate"]["message"] == (
        f"Accuracy {challenger:.4g} is at or above the threshold 0.1; challenger accuracy {challenger:.4f} is worse "
        f"than champion (version 3) accuracy {champion:.4f} by more than MaxRegression 0.01")
    section = report["champion"]
    assert (section["status"], section["version"], section["max_regression"]) == ("compared", 3, 0.01)
    assert (section["champion_value"], section["challenger_value"]) == pytest.approx((champion, challenger))
    assert section["multiclass_classification_metrics"]["accuracy"]["value"] == pytest.approx(champion)
    assert section["test_rows"] == report["test_rows"] == len(iris_split["test_y"])


def test_a_challenger_within_max_regression_passes(
    tmp_path: Path, iris_split: dict, softmax: xgb.Booster, weak: xgb.Booster
):
    base = write_layout(tmp_path, weak, iris_split["test_x"], iris_split["test_y"])
    write_champion(base, softmax, version=None)
    gap = accuracy_of(softmax, iris_split) - accuracy_of(weak, iris_split)
    report = evaluated(base, "--gate-threshold", "0.1", "--max-regression", f"{gap:.12f}")
    assert report["gate"]["passed"] is True
    assert f"is not worse than champion accuracy {accuracy_of(softmax, iris_split):.4f}" in report["gate"]["message"]
    assert report["champion"]["passed"] is True and "version" not in report["champion"]


def test_the_champion_itself_passes_and_a_failed_threshold_still_fails(
    tmp_path: Path, iris_split: dict, softmax: xgb.Booster
):
    base = write_layout(tmp_path, softmax, iris_split["test_x"], iris_split["test_y"])
    write_champion(base, softmax)
    assert evaluated(base, "--max-regression", "0")["champion"]["passed"] is True
    report = evaluated(base, "--gate-threshold", "0.999")
    assert (report["gate"]["passed"], report["champion"]["passed"]) == (False, True)


@pytest.mark.parametrize("marker", [None, "empty", "README.json"])
def test_no_champion_gates_on_the_threshold_alone(
    tmp_path: Path, iris_split: dict, weak: xgb.Booster, marker: str | None
):
    base = write_layout(tmp_path, weak, iris_split["test_x"], iris_split["test_y"])
    if marker:
        (base / "champion").mkdir()
    if marker == "README.json":
        (base / "champion" / "README.json").write_text('{"cloudviz": "no champion"}', encoding="utf-8")
    report = evaluated(base, "--gate-threshold", "0.1")
    assert report["gate"]["passed"] is True
    assert report["gate"]["message"] == f"Accuracy {accuracy_of(weak, iris_split):.4g} is at or above the threshold 0.1"
    assert report["champion"]["status"] == "none" and report["champion"]["champion_value"] is None
    assert report["champion"]["reason"].startswith("no champion")


def regression_layout(base: Path, depth: int, champion_depth: int) -> tuple[Path, float, float]:
    x, _ = iris_contract_order()
    target = x[:, 3] * 10 + x[:, 0]
    train_rows, test_rows = np.arange(len(x)) % 4 != 0, np.arange(len(x)) % 4 == 0
    boosters = [xgb.train({"max_depth": d, "eta": 0.3, "objective": "reg:squarederror"},
                          xgb.DMatrix(x[train_rows], label=target[train_rows]), 8) for d in (depth, champion_depth)]
    write_layout(base, boosters[0], x[test_rows], target[test_rows])
    lines = [",".join([repr(float(t)), *(repr(float(v)) for v in row)])
             for t, row in zip(target[test_rows], x[test_rows], strict=True)]
    (base / "test" / "test.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    schema = {"task": "regression", "classes": [], "feature_columns": FEATURES, "label_column": "y"}
    (base / "schema" / "schema.json").write_text(json.dumps(schema), encoding="utf-8")
    write_champion(base, boosters[1])
    rmse = [np.sqrt(mean_squared_error(target[test_rows], b.predict(xgb.DMatrix(x[test_rows])))) for b in boosters]
    return base, rmse[0], rmse[1]


def test_lower_is_better_metrics_count_a_higher_value_as_worse(tmp_path: Path):
    base, challenger, champion = regression_layout(tmp_path / "worse", depth=1, champion_depth=4)
    assert challenger - champion > 0.01
    report = evaluated(base, "--gate-metric", "rmse", "--gate-threshold", "100")
    assert report["gate"]["passed"] is False
    assert (f"challenger rmse {challenger:.4f} is worse than champion (version 3) rmse {champion:.4f} by more than "
            "MaxRegression 0.01") in report["gate"]["message"]
    # the other way round: a challenger with a lower rmse than its champion is better, whatever the gap
    base, challenger, champion = regression_layout(tmp_path / "better", depth=4, champion_depth=1)
    assert evaluated(base, "--gate-metric", "rmse", "--gate-threshold", "100")["gate"]["passed"] is True


def test_a_champion_for_another_contract_is_not_comparable(tmp_path: Path, iris_split: dict, weak: xgb.Booster):
    base = write_layout(tmp_path, weak, iris_split["test_x"], iris_split["test_y"])
    three_features = train({**iris_split, "train_x": iris_split["train_x"][:, :3]}, "multi:softprob")
    write_champion(base, three_features)
    report = evaluated(base, "--gate-threshold", "0.1")
    assert report["gate"]["passed"] is True
    assert report["champion"]["status"] == "not_comparable"
    assert report["champion"]["reason"] == ("the champion takes 3 features, the challenger's schema names 4: no "
                                            "comparable champion; the threshold alone decides")
    binary = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(iris_split["train_x"],
                                                                     label=iris_split["train_y"] > 0), 2)
    write_champion(base, binary)
    assert evaluated(base)["champion"]["reason"].startswith("the champion is a binary model (binary:logistic), ")


def test_a_champion_archive_is_read_as_the_serving_container_reads_it(
    tmp_path: Path, capsys, iris_split: dict, softmax: xgb.Booster
):
    base = write_layout(tmp_path, softmax, iris_split["test_x"], iris_split["test_y"])
    write_champion(base, softmax, member="model/saved.ubj")  # the archive's only file
    assert evaluated(base)["champion"]["status"] == "compared"
    (base / "champion" / "other.tar.gz").write_bytes(b"x")
    assert evaluate.main(["--base-dir", str(base)]) == 2
    assert error_of(capsys) == (f"{base / 'champion'}: the champion input holds one model archive, not 2 files "
                                "(model.tar.gz, other.tar.gz)")


def write_champion_schema(base: Path, classes: list[str], features: list[str]) -> None:
    schema = {"classes": classes, "feature_columns": features, "label_column": "species"}
    (base / "champion" / "schema.json").write_text(json.dumps(schema), encoding="utf-8")


def test_a_champion_with_the_classes_and_features_in_another_order_is_scored_by_name(
    tmp_path: Path, iris_split: dict, softmax: xgb.Booster
):
    """The champion trained on the same data with class indices and feature columns in another order: remapped by
    its schema, it is the same model, so it scores exactly as the challenger does."""
    permutation, columns = np.array([2, 0, 1]), [3, 1, 0, 2]  # challenger class i is the champion's permutation[i]
    classes = ["setosa", "virginica", "versicolor"]
    theirs = {**iris_split, "train_x": iris_split["train_x"][:, columns], "train_y": permutation[iris_split["train_y"]]}
    base = write_layout(tmp_path, softmax, iris_split["test_x"], iris_split["test_y"])
    write_champion(base, train(theirs, "multi:softmax"))
    write_champion_schema(base, [classes[i] for i in np.argsort(permutation)], [FEATURES[i] for i in columns])
    section = evaluated(base, "--max-regression", "0")["champion"]
    assert section["status"] == "compared"
    assert section["champion_value"] == pytest.approx(accuracy_of(softmax, iris_split))
    # on AWS the schema is an input of its own (ChampionDataSchema): the same remapping
    (base / "champion_schema").mkdir()
    (base / "champion" / "schema.json").rename(base / "champion_schema" / "schema.json")
    assert evaluated(base, "--max-regression", "0")["champion"] == section
    # without its schema (the no-champion marker in its place), the same champion is scored on the wrong indices
    (base / "champion_schema" / "schema.json").unlink()
    (base / "champion_schema" / "README.json").write_text('{"cloudviz": "no champion"}', encoding="utf-8")
    assert evaluated(base)["champion"]["champion_value"] < accuracy_of(softmax, iris_split) - 0.5


def test_a_champion_schema_input_that_is_not_a_schema_fails_the_step_naming_it(
    tmp_path: Path, iris_split: dict, softmax: xgb.Booster, capsys: pytest.CaptureFixture[str]
):
    base = write_layout(tmp_path, softmax, iris_split["test_x"], iris_split["test_y"])
    write_champion(base, softmax)
    (base / "champion_schema").mkdir()
    (base / "champion_schema" / "evaluation.json").write_text('{"gate": {}}', encoding="utf-8")
    assert evaluate.main(["--base-dir", str(base)]) == 2
    assert "evaluation.json: the champion's schema has no feature_columns list" in capsys.readouterr().err
    assert not (base / "evaluation" / "evaluation.json").exists()


def test_a_binary_champion_with_its_classes_swapped_is_scored_by_name(tmp_path: Path, iris_split: dict):
    def binary(split: dict, positive: int) -> dict:
        return {**split, "train_y": (split["train_y"] == 0) == positive, "test_y": (split["test_y"] == 0) == positive}

    ours, theirs = binary(iris_split, True), binary(iris_split, False)
    challenger, champion = (xgb.train({"objective": "binary:logistic", "max_depth": 2},
                                      xgb.DMatrix(split["train_x"], label=split["train_y"]), 4)
                            for split in (ours, theirs))
    base = write_layout(tmp_path, challenger, ours["test_x"], ours["test_y"].astype(float), classes=["other", "setosa"])
    (base / "schema" / "schema.json").write_text(json.dumps(
        {"task": "binary", "classes": ["other", "setosa"], "feature_columns": FEATURES}), encoding="utf-8")
    write_champion(base, champion)
    write_champion_schema(base, ["setosa", "other"], FEATURES)
    report = evaluated(base, "--gate-metric", "f1", "--gate-threshold", "0.1", "--max-regression", "0")
    assert report["champion"]["status"] == "compared"
    assert report["champion"]["champion_value"] == pytest.approx(report["gate"]["value"])


def test_a_champion_with_other_feature_or_class_names_is_not_comparable(
    tmp_path: Path, iris_split: dict, softmax: xgb.Booster
):
    base = write_layout(tmp_path, softmax, iris_split["test_x"], iris_split["test_y"])
    write_champion(base, softmax)
    write_champion_schema(base, ["setosa", "virginica", "versicolor"], ["x1", "x2", "x3", "petal_width"])
    assert evaluated(base)["champion"]["reason"] == (
        "the champion's features are x1, x2, x3, petal_width, the challenger's x1, x2, x3, x4: no comparable "
        "champion; the threshold alone decides")
    write_champion_schema(base, ["setosa", "virginica", "other"], FEATURES)
    assert evaluated(base)["champion"]["status"] == "not_comparable"
