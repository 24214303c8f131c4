"""The local emulation of the built-in XGBoost training container, on a real /opt/ml layout in tmp_path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_iris

from pipelines.builtin_xgboost import train
from pipelines.builtin_xgboost.hyperparameters import DEFAULT_HYPERPARAMETERS

SCRIPT = Path(train.__file__)
CONTRACT_EXAMPLE = [6.7, 3.3, 5.7, 2.5]  # answered {"prediction": 1} (virginica) by the original deployment
ROUND_LINE = re.compile(r"^\[(\d+)\]#011train-mlogloss:(\d+\.\d{5})#011validation-mlogloss:(\d+\.\d{5})$")
# The metric definition SageMaker users attach to the built-in algorithm's training jobs.
SAGEMAKER_METRIC_REGEX = re.compile(
    r".*\[[0-9]+\].*#011validation-mlogloss:([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?).*"
)
CHANNELS = {"train": {"ContentType": "text/csv"}, "validation": {"ContentType": "text/csv"}}
# DEFAULT_HYPERPARAMETERS as XGBoost takes them, for reference trainings done directly with XGBoost.
PARAMS = {
    "max_depth": 5, "eta": 0.2, "gamma": 4.0, "min_child_weight": 6.0, "objective": "multi:softprob", "num_class": 3
}


def iris_contract_order() -> tuple[np.ndarray, np.ndarray]:
    """Iris with the contract's class indices: setosa=0, virginica=1, versicolor=2."""
    iris = load_iris()
    return iris.data, np.array([0, 2, 1])[iris.target]


def iris_rows(which: str) -> np.ndarray:
    """Label-first rows: every fifth row is validation, the rest train."""
    x, y = iris_contract_order()
    rows = np.column_stack([y, x])
    is_validation = np.arange(len(y)) % 5 == 0
    return rows[is_validation] if which == "validation" else rows[~is_validation]


def write_rows(path: Path, rows: np.ndarray, delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [delimiter.join([str(int(r[0])) if r[0] == int(r[0]) else repr(float(r[0])), *map(repr, map(float, r[1:]))])
             for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def layout(
    root: Path,
    hyperparameters: dict[str, str] | None = None,
    channels: dict[str, dict] | None = None,
    data: dict[str, np.ndarray] | None = None,
    delimiter: str = ",",
) -> Path:
    """An /opt/ml tree: input/config/{hyperparameters,inputdataconfig}.json and input/data/<channel>/<channel>.csv."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    hyperparameters = dict(DEFAULT_HYPERPARAMETERS) if hyperparameters is None else hyperparameters
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters), encoding="utf-8")
    channels = CHANNELS if channels is None else channels
    (config / "inputdataconfig.json").write_text(json.dumps(channels), encoding="utf-8")
    data = {"train": iris_rows("train"), "validation": iris_rows("validation")} if data is None else data
    for channel, rows in data.items():
        write_rows(root / "input" / "data" / channel / f"{channel}.csv", rows, delimiter)
    return root


def run(root: Path) -> int:
    return train.main(["--ml-root", str(root)])


def trained(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[xgb.Booster, list[str]]:
    """Run the trainer, expect success; return the stored booster and the stdout lines."""
    code = run(root)
    out = capsys.readouterr()
    assert code == 0, out.err
    booster = xgb.Booster()
    booster.load_model(root / "model" / "xgboost-model")
    return booster, out.out.splitlines()


def fails(root: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run the trainer, expect exit status 2; return the reason, checked against output/failure and stderr."""
    code = run(root)
    err = capsys.readouterr().err
    assert code == 2
    failure = (root / "output" / "failure").read_text(encoding="utf-8")
    assert failure.startswith("ClientError: ") and failure.endswith("\n") and failure.count("\n") == 1
    reason = failure.removeprefix("ClientError: ").rstrip("\n")
    assert err.splitlines() == [f"error: {reason}"]
    assert not (root / "model" / "xgboost-model").exists()
    return reason


def reference_booster(params: dict, rounds: int, **matrix: object) -> xgb.Booster:
    """The same training done directly with XGBoost, on the float32 values the container reads."""
    rows = iris_rows("train").astype(np.float32)
    return xgb.train(params, xgb.DMatrix(rows[:, 1:], label=rows[:, 0], **matrix), num_boost_round=rounds)


# -- the contract ---------------------------------------------------------------------------------


def test_iris_model_answers_the_contract_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    booster, _ = trained(layout(tmp_path / "ml"), capsys)
    probabilities = booster.predict(xgb.DMatrix(np.array([CONTRACT_EXAMPLE])))
    assert probabilities.shape == (1, 3)
    assert int(probabilities.argmax()) == 1
    config = json.loads(booster.save_config())["learner"]
    assert config["objective"]["name"] == "multi:softprob"
    assert config["learner_model_param"]["num_class"] == "3"
    assert booster.num_boosted_rounds() == 10
    assert booster.num_features() == 4


def test_model_is_what_xgboost_trains_with_the_same_hyperparameters(tmp_path: Path, capsys):
    booster, _ = trained(layout(tmp_path / "ml"), capsys)
    reference = reference_booster(PARAMS, 10)
    x, _ = iris_contract_order()
    everything = xgb.DMatrix(x)
    np.testing.assert_array_equal(
        booster.predict(everything, output_margin=True), reference.predict(everything, output_margin=True)
    )


def test_softprob_grows_the_original_softmax_model(tmp_path: Path, capsys):
    """The default objective differs from the original's only in what predict returns."""
    booster, _ = trained(layout(tmp_path / "ml"), capsys)
    original = reference_booster({**PARAMS, "objective": "multi:softmax"}, 10)
    x, _ = iris_contract_order()
    everything = xgb.DMatrix(x)
    np.testing.assert_array_equal(
        booster.predict(everything, output_margin=True), original.predict(everything, output_margin=True)
    )
    np.testing.assert_array_equal(booster.predict(everything).argmax(axis=1), original.predict(everything))


def test_model_file_is_ubjson(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = layout(tmp_path / "ml")
    trained(root, capsys)
    data = (root / "model" / "xgboost-model").read_bytes()
    assert data[:1] == b"{", "a UBJSON object"
    assert data[1:2] != b'"', "not JSON text"
    assert data[:2] == b"{L" or data[1:2] in (b"i", b"U", b"I", b"l", b"$", b"#")
    again = xgb.Booster()
    again.load_model(bytearray(data))  # the way the hosting container and evaluate.py load it
    assert again.predict(xgb.DMatrix(np.array([CONTRACT_EXAMPLE]))).argmax() == 1


def test_rounds_are_logged_in_the_container_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    _, lines = trained(layout(tmp_path / "ml"), capsys)
    rounds = [ROUND_LINE.match(line) for line in lines if line.startswith("[")]
    assert all(rounds), lines
    assert [int(m.group(1)) for m in rounds] == list(range(10))
    assert lines[0] == "Train matrix has 120 rows and 4 features"
    assert lines[-1].startswith("Stored trained model (10 rounds) at ")
    # The logged values are XGBoost's own evaluation, and SageMaker's metric regex reads them.
    evals: dict = {}
    rows, val = iris_rows("train").astype(np.float32), iris_rows("validation").astype(np.float32)
    dtrain, dval = xgb.DMatrix(rows[:, 1:], label=rows[:, 0]), xgb.DMatrix(val[:, 1:], label=val[:, 0])
    xgb.train(PARAMS, dtrain, 10, evals=[(dtrain, "train"), (dval, "validation")], evals_result=evals,
              verbose_eval=False)
    assert [m.group(2) for m in rounds] == [f"{v:.5f}" for v in evals["train"]["mlogloss"]]
    assert [m.group(3) for m in rounds] == [f"{v:.5f}" for v in evals["validation"]["mlogloss"]]
    scraped = [float(SAGEMAKER_METRIC_REGEX.match(m.group(0)).group(1)) for m in rounds]
    assert scraped == [float(m.group(3)) for m in rounds]


def test_without_a_validation_channel_only_train_is_logged(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = layout(tmp_path / "ml", channels={"train": {"ContentType": "text/csv"}},
                  data={"train": iris_rows("train")})
    _, lines = trained(root, capsys)
    logged = [line for line in lines if line.startswith("[")]
    assert len(logged) == 10
    assert all(re.fullmatch(r"\[\d+\]#011train-mlogloss:\d+\.\d{5}", line) for line in logged)


def test_the_script_runs_standalone(tmp_path: Path):
    root = layout(tmp_path / "ml")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--ml-root", str(root)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "[9]#011train-mlogloss:" in done.stdout
    assert (root / "model" / "xgboost-model").is_file()
    helped = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert helped.returncode == 0 and "--ml-root" in helped.stdout


# -- data channels --------------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_delimiter_is_sniffed(tmp_path: Path, capsys: pytest.CaptureFixture[str], delimiter: str):
    comma, _ = trained(layout(tmp_path / "comma"), capsys)
    other_root = layout(tmp_path / "other", delimiter=delimiter)
    assert delimiter in (other_root / "input/data/train/train.csv").read_text().splitlines()[0]
    other, _ = trained(other_root, capsys)
    assert bytes(other.save_raw("ubj")) == bytes(comma.save_raw("ubj"))


def test_files_of_a_channel_are_concatenated(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    single, _ = trained(layout(tmp_path / "single"), capsys)
    root = layout(tmp_path / "split", data={"validation": iris_rows("validation")})
    rows = iris_rows("train")
    write_rows(root / "input/data/train/part-0.csv", rows[:50])
    write_rows(root / "input/data/train/nested/part-1.csv", rows[50:])
    split, _ = trained(root, capsys)
    assert bytes(split.save_raw("ubj")) == bytes(single.save_raw("ubj"))


def test_channel_is_read_as_float32_with_empty_cells_missing(tmp_path: Path):
    channel = tmp_path / "train"
    write_rows(channel / "part-0.csv", iris_rows("train")[:3])
    (channel / "part-1.csv").write_text("1,0.1,,0.3,0.4\n", encoding="utf-8")
    features, labels = train.read_channel(channel, "train", num_class=3)
    assert features.dtype == labels.dtype == np.float32
    assert features.flags.c_contiguous, "handed to XGBoost without a copy"
    np.testing.assert_array_equal(features[:3], iris_rows("train")[:3, 1:].astype(np.float32))
    np.testing.assert_array_equal(features[3], np.array([0.1, np.nan, 0.3, 0.4], dtype=np.float32))
    np.testing.assert_array_equal(labels, np.append(iris_rows("train")[:3, 0], 1).astype(np.float32))


def test_hidden_and_underscore_files_are_not_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = layout(tmp_path / "ml")
    (root / "input/data/train/_SUCCESS").write_text("", encoding="utf-8")
    (root / "input/data/train/.DS_Store").write_bytes(b"\x00\x01binary")
    booster, lines = trained(root, capsys)
    assert lines[0] == "Train matrix has 120 rows and 4 features"


def test_missing_train_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = layout(tmp_path / "ml", data={"validation": iris_rows("validation")})
    assert fails(root, capsys) == f"No data in train channel path {root / 'input' / 'data' / 'train'}"


def test_empty_validation_channel(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = layout(tmp_path / "ml", data={"train": iris_rows("train")})
    (root / "input/data/validation").mkdir(parents=True)
    assert fails(root, capsys) == f"No data in validation channel path {root / 'input' / 'data' / 'validation'}"


@pytest.mark.parametrize(("channel", "row", "label"), [("train", 7, 3.0), ("validation", 2, -1.0), ("train", 1, 1.5)])
def test_label_outside_the_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str], channel, row, label):
    data = {"train": iris_rows("train"), "validation": iris_rows("validation")}
    data[channel][row - 1, 0] = label
    root = layout(tmp_path / "ml", data=data)
    assert fails(root, capsys) == (
        f"{channel} channel, {channel}.csv, row {row}: label {label:g} is not a class index in [0, 3) (num_class=3)"
    )


def test_non_numeric_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = layout(tmp_path / "ml")
    path = root / "input/data/train/train.csv"
    path.write_text(path.read_text().replace("\n", "\n1,x,1,1,1\n", 1), encoding="utf-8")
    assert fails(root, capsys) == "train channel, train.csv: every value must be a number"


def test_channels_with_different_feature_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = layout(tmp_path / "ml", data={"train": iris_rows("train"), "validation": iris_rows("validation")[:, :4]})
    assert fails(root, capsys) == "validation channel has 3 features, train channel has 4"


def test_unsupported_content_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = layout(tmp_path / "ml", channels={"train": {"ContentType": "text/libsvm"}})
    assert fails(root, capsys) == (
        "Channel train: content type 'text/libsvm' is not supported by the local trainer (use text/csv)"
    )


def test_csv_content_type_with_parameters_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    channels = {"train": {"ContentType": "text/csv; label_size=1"}, "validation": {"ContentType": "csv"}}
    booster, _ = trained(layout(tmp_path / "ml", channels=channels), capsys)
    assert booster.num_boosted_rounds() == 10


def test_extraneous_channel(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = layout(tmp_path / "ml", channels={**CHANNELS, "test": {"ContentType": "text/csv"}})
    assert fails(root, capsys) == "Extraneous channel found: test"


# -- hyperparameters ------------------------------------------------------------------------------


def test_bad_hyperparameter_fails_the_job_with_the_container_message(tmp_path: Path, capsys):
    root = layout(tmp_path / "ml", hyperparameters={**DEFAULT_HYPERPARAMETERS, "eta": "2.0"})
    assert fails(root, capsys) == "Hyperparameter eta: 2.0 is not in [0, 1]"


def test_unknown_hyperparameter(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = layout(tmp_path / "ml", hyperparameters={**DEFAULT_HYPERPARAMETERS, "foo": "1"})
    assert fails(root, capsys) == "Extraneous hyperparameter found: foo"


def test_no_hyperparameters_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = layout(tmp_path / "ml")
    (root / "input/config/hyperparameters.json").unlink()
    assert fails(root, capsys) == "Missing required hyperparameter: num_round"


def test_hyperparameters_file_that_is_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = layout(tmp_path / "ml")
    path = root / "input/config/hyperparameters.json"
    path.write_text("{num_round: 10}", encoding="utf-8")
    assert fails(root, capsys).startswith(f"{path}: not valid JSON (")


@pytest.mark.parametrize(
    "extra",
    [{"tree_method": "exact"}, {"tree_method": "approx"}, {"tree_method": "hist", "max_bin": "32"},
     {"booster": "gblinear"}, {"booster": "dart"}, {"learning_rate": "0.3"}],
)
def test_every_valid_hyperparameter_trains(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: dict):
    hyperparameters = {**DEFAULT_HYPERPARAMETERS, **extra}
    if extra.get("booster") == "gblinear":
        for tree_only in ("max_depth", "gamma", "min_child_weight"):
            del hyperparameters[tree_only]
    if "learning_rate" in extra:
        del hyperparameters["eta"]
    booster, _ = trained(layout(tmp_path / "ml", hyperparameters=hyperparameters), capsys)
    prediction = booster.predict(xgb.DMatrix(np.array([CONTRACT_EXAMPLE])))
    assert prediction.argmax() == 1


def test_eval_metric_list_is_logged_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = layout(tmp_path / "ml", hyperparameters={**DEFAULT_HYPERPARAMETERS, "eval_metric": "merror,mlogloss"})
    _, lines = trained(root, capsys)
    first = next(line for line in lines if line.startswith("[0]"))
    names = re.findall(r"#011([a-z]+-[a-z]+):", first)
    assert names == ["train-merror", "train-mlogloss", "validation-merror", "validation-mlogloss"]


def test_csv_weights_reads_the_second_column_as_instance_weights(tmp_path: Path, capsys):
    rows = iris_rows("train")
    weights = np.where(rows[:, 0] == 2, 5.0, 1.0)  # weigh versicolor up
    weighted = np.column_stack([rows[:, 0], weights, rows[:, 1:]])
    root = layout(
        tmp_path / "ml",
        hyperparameters={**DEFAULT_HYPERPARAMETERS, "csv_weights": "1"},
        channels={"train": {"ContentType": "text/csv"}},
        data={"train": weighted},
    )
    booster, _ = trained(root, capsys)
    assert booster.num_features() == 4, "the weight column is not a feature"
    reference = reference_booster(PARAMS, 10, weight=weights.astype(np.float32))
    unweighted = reference_booster(PARAMS, 10)
    x = xgb.DMatrix(iris_contract_order()[0])
    margin = booster.predict(x, output_margin=True)
    np.testing.assert_array_equal(margin, reference.predict(x, output_margin=True))
    assert not np.array_equal(margin, unweighted.predict(x, output_margin=True))


# -- early stopping -------------------------------------------------------------------------------


def test_early_stopping_keeps_the_best_round(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    hyperparameters = {**DEFAULT_HYPERPARAMETERS, "num_round": "500", "eta": "0.5", "early_stopping_rounds": "3"}
    booster, lines = trained(layout(tmp_path / "ml", hyperparameters=hyperparameters), capsys)
    logged = [ROUND_LINE.match(line) for line in lines if line.startswith("[")]
    validation = [float(m.group(3)) for m in logged]
    best = int(booster.attributes()["best_iteration"])
    assert len(validation) < 500, "training stopped early"
    assert len(validation) == best + 1 + 3, "every round is logged, up to three without improvement"
    assert validation[best] == min(validation)
    # As the container saves it (EarlyStopping save_best): the model ends at the best round.
    assert booster.num_boosted_rounds() == best + 1
    assert lines[-1].startswith(f"Stored trained model ({best + 1} rounds)")


def test_early_stopping_needs_a_validation_channel(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = layout(
        tmp_path / "ml",
        hyperparameters={**DEFAULT_HYPERPARAMETERS, "early_stopping_rounds": "3"},
        channels={"train": {"ContentType": "text/csv"}},
        data={"train": iris_rows("train")},
    )
    assert fails(root, capsys) == "early_stopping_rounds needs a validation channel"


@pytest.mark.parametrize("objective", ["binary:logistic", "reg:squarederror"])
def test_num_class_with_a_single_output_objective_fails_in_xgboost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], objective: str
):
    """The container's validation lets num_class through with these objectives (test_hyperparameters); XGBoost
    then refuses the label shape (two outputs per row). Why the pipeline sends num_class with multi:* only."""
    binary = {which: iris_rows(which) for which in ("train", "validation")}
    for rows in binary.values():
        rows[:, 0] = rows[:, 0] == 1
    hyperparameters = {"num_round": "3", "objective": objective, "num_class": "2"}
    reason = fails(layout(tmp_path / "ml", hyperparameters, data=binary), capsys)
    assert reason.endswith("Invalid shape of labels."), reason
    without = {k: v for k, v in hyperparameters.items() if k != "num_class"}
    booster, _ = trained(layout(tmp_path / "ml2", without, data=binary), capsys)
    assert booster.num_features() == 4
