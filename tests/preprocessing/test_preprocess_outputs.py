"""preprocessing/preprocess.py on real CSV files: the splits, the schema and the baseline it writes, for
classification and regression, and the channels as the training container reads them."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from preprocess_runs import (
    CONTRACT_CLASSES,
    FEATURES,
    OUTPUT_FILES,
    SCRIPT,
    SPLIT_FILES,
    fails,
    iris_species_by_features,
    read_split,
    rows,
    run,
    run_iris,
    write_iris,
)
from sklearn.datasets import load_iris

from preprocessing import preprocess

# -- the good path --------------------------------------------------------------------------------


def test_iris_channels_are_label_first_without_header(tmp_path: Path):
    out = run_iris(tmp_path)
    total = 0
    for name in SPLIT_FILES:
        text = (out / name).read_text(encoding="utf-8")
        first = text.splitlines()[0].split(",")
        assert len(first) == 5
        assert all(c.replace(".", "", 1).isdigit() for c in first), f"{name} starts with a header: {first}"
        labels, features = read_split(out / name)
        assert set(labels) <= {0.0, 1.0, 2.0}
        assert np.all(labels == np.round(labels))
        assert "." not in first[0], "the label is written as an integer class index"
        assert features.shape[1] == 4
        total += labels.size
    assert total == 150


def test_no_row_is_lost_or_duplicated(tmp_path: Path):
    out = run_iris(tmp_path)
    written = Counter()
    for name in SPLIT_FILES:
        labels, features = read_split(out / name)
        written.update((int(lab), *map(float, feat)) for lab, feat in zip(labels, features, strict=True))
    iris = load_iris()
    code = {"setosa": 0, "virginica": 1, "versicolor": 2}
    expected = Counter(
        (code[str(iris.target_names[t])], *map(float, row)) for row, t in zip(iris.data, iris.target, strict=True)
    )
    assert written == expected


def test_labels_follow_class_names_order(tmp_path: Path):
    out = run_iris(tmp_path)
    species = iris_species_by_features()
    seen = set()
    for name in SPLIT_FILES:
        labels, features = read_split(out / name)
        for label, row in zip(labels, features, strict=True):
            name_of_row = species[tuple(float(v) for v in row)]
            assert CONTRACT_CLASSES[int(label)] == name_of_row
            seen.add((int(label), name_of_row))
    assert seen == {(0, "setosa"), (1, "virginica"), (2, "versicolor")}
    schema = json.loads((out / "schema/schema.json").read_text())
    assert schema["classes"] == CONTRACT_CLASSES
    assert schema["label_map"] == {"setosa": 0, "virginica": 1, "versicolor": 2}


def test_without_class_names_the_classes_are_the_sorted_labels(tmp_path: Path):
    source = write_iris(tmp_path / "iris.csv")
    assert run(tmp_path / "out", source, "--class-names", "") == 0
    schema = json.loads((tmp_path / "out/schema/schema.json").read_text())
    assert schema["classes"] == ["setosa", "versicolor", "virginica"]
    species = iris_species_by_features()
    labels, features = read_split(tmp_path / "out/train/train.csv")
    for label, row in zip(labels, features, strict=True):
        assert schema["classes"][int(label)] == species[tuple(float(v) for v in row)]


def test_same_seed_gives_byte_identical_outputs(tmp_path: Path):
    first = run_iris(tmp_path, "first", "--seed", "7")
    second = run_iris(tmp_path, "second", "--seed", "7")
    for name in OUTPUT_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_a_different_seed_gives_a_different_split(tmp_path: Path):
    first = run_iris(tmp_path, "first", "--seed", "1")
    second = run_iris(tmp_path, "second", "--seed", "2")
    test_rows = [{tuple(r) for r in read_split(out / "test/test.csv")[1]} for out in (first, second)]
    assert test_rows[0] != test_rows[1]
    for out in (first, second):
        counts = json.loads((out / "schema/schema.json").read_text())["class_counts"]
        assert all(n > 0 for split in counts.values() for n in split.values()), "every class in every split"


def split_of_each_row(out: Path) -> dict[tuple[float, ...], str]:
    """Each written row (label, then features) -> the split it landed in."""
    return {tuple(map(float, (label, *row))): split for split in preprocess.SPLITS
            for label, row in zip(*read_split(out / f"{split}/{split}.csv"), strict=True)}


def test_a_row_keeps_its_split_as_the_data_set_grows_and_whatever_the_row_order(tmp_path: Path):
    header, *lines = write_iris(tmp_path / "iris.csv").read_text(encoding="utf-8").splitlines()
    first = tmp_path / "v1.csv"
    first.write_text("\n".join([header, *lines[::2]]) + "\n", encoding="utf-8")
    grown = tmp_path / "v2"
    grown.mkdir()
    (grown / "a.csv").write_text("\n".join([header, *lines[1::2]]) + "\n", encoding="utf-8")
    (grown / "b.csv").write_text("\n".join([header, *reversed(lines[::2])]) + "\n", encoding="utf-8")
    classes = ("--class-names", ",".join(CONTRACT_CLASSES))
    assert run(tmp_path / "out1", first, *classes) == 0
    assert run(tmp_path / "out2", grown, *classes) == 0
    before, after = split_of_each_row(tmp_path / "out1"), split_of_each_row(tmp_path / "out2")
    assert len(before) > 70 and len(after) > len(before)
    assert {row: after[row] for row in before} == before, "no old test row moves into training"


def test_every_class_lands_in_every_split_in_proportion(tmp_path: Path):
    counts = {"a": 100, "b": 40, "c": 20}
    text = "f1,f2,label\n" + "".join(rows(name, n, start=1000 * i) for i, (name, n) in enumerate(counts.items()))
    source = tmp_path / "data.csv"
    source.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    code = run(
        out, source, "--validation-fraction", "0.1", "--test-fraction", "0.2", label="label", features="f1,f2"
    )
    assert code == 0
    schema = json.loads((out / "schema/schema.json").read_text())
    assert schema["classes"] == ["a", "b", "c"]
    for split, fraction in (("test", 0.2), ("validation", 0.1)):
        labels, _ = read_split(out / f"{split}/{split}.csv")
        per_class = np.bincount(labels.astype(int), minlength=3)
        for code_, (name, n) in enumerate(counts.items()):
            # each row's split is drawn from its content hash: the count is binomial around n * fraction
            assert abs(per_class[code_] - n * fraction) <= 3 * (n * fraction * (1 - fraction)) ** 0.5, (split, name)
            assert schema["class_counts"][split][name] == per_class[code_]
    labels, _ = read_split(out / "train/train.csv")
    assert np.bincount(labels.astype(int)).tolist() == [
        counts[name] - schema["class_counts"]["test"][name] - schema["class_counts"]["validation"][name]
        for name in counts
    ]
    assert schema["rows"] == {"input": 160, **{split: sum(schema["class_counts"][split].values())
                                               for split in ("train", "validation", "test")}}


def test_a_small_class_still_gets_one_row_in_each_split(tmp_path: Path):
    source = tmp_path / "data.csv"
    source.write_text("f1,f2,label\n" + rows("big", 60) + rows("tiny", 3, start=500), encoding="utf-8")
    assert run(tmp_path / "out", source, label="label", features="f1,f2", objective="binary:logistic") == 0
    for name in SPLIT_FILES:
        labels, _ = read_split(tmp_path / "out" / name)
        assert (labels == 1).sum() == 1, name


def test_schema_describes_the_run(tmp_path: Path):
    out = run_iris(tmp_path, "out", "--seed", "5", "--validation-fraction", "0.2", "--test-fraction", "0.1")
    schema = json.loads((out / "schema/schema.json").read_text())
    source = tmp_path / "iris.csv"
    assert schema["label_column"] == "species"
    assert schema["feature_columns"] == FEATURES
    assert schema["rows"]["input"] == 150
    assert sum(schema["class_counts"]["validation"].values()) == schema["rows"]["validation"]
    assert schema["source"] == {
        "file": "iris.csv",
        "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "bytes": source.stat().st_size,
    }
    assert (schema["seed"], schema["validation_fraction"], schema["test_fraction"]) == (5, 0.2, 0.1)
    for split in ("train", "validation", "test"):
        labels, _ = read_split(out / f"{split}/{split}.csv")
        assert labels.size == schema["rows"][split]


def test_baseline_statistics_describe_the_training_split(tmp_path: Path):
    out = run_iris(tmp_path)
    stats = json.loads((out / "baseline/statistics.json").read_text())
    labels, features = read_split(out / "train/train.csv")
    assert list(stats["features"]) == FEATURES
    for j, name in enumerate(FEATURES):
        column = features[:, j]
        entry = stats["features"][name]
        assert entry["count"] == column.size == 97
        assert entry["mean"] == pytest.approx(column.mean(), rel=1e-12)
        assert entry["std"] == pytest.approx(column.std(), rel=1e-12)
        assert (entry["min"], entry["max"]) == (column.min(), column.max())
        for q in (1, 5, 25, 50, 75, 95, 99):
            assert entry["quantiles"][f"p{q}"] == pytest.approx(np.percentile(column, q), rel=1e-12)
        histogram = entry["histogram"]
        assert sum(histogram["counts"]) == column.size
        assert len(histogram["bin_edges"]) == len(histogram["counts"]) + 1
        assert histogram["bin_edges"][0] == column.min() and histogram["bin_edges"][-1] == column.max()
    train_counts = np.bincount(labels.astype(int), minlength=3) / labels.size
    assert stats["class_distribution"] == pytest.approx(dict(zip(CONTRACT_CLASSES, train_counts, strict=True)))
    # The statistics are of the training split only, not the whole file.
    all_x1 = load_iris().data[:, 0]
    assert stats["features"]["x1"]["mean"] != pytest.approx(all_x1.mean(), rel=1e-9)


@pytest.mark.parametrize(
    "column",
    [
        np.random.default_rng(0).normal(size=10_001),
        np.random.default_rng(1).integers(0, 4, size=999).astype(np.float64),  # ties: fewer, repeated edges
        np.full(50, 2.5),  # one edge, no bin
    ],
    ids=["continuous", "ties", "constant"],
)
def test_histogram_counts_are_numpys(column: np.ndarray):
    edges = np.unique(np.quantile(column, np.linspace(0, 1, preprocess.HISTOGRAM_BINS + 1)))
    assert preprocess.histogram_counts(column, edges) == np.histogram(column, bins=edges)[0].tolist()


def test_input_may_be_a_folder_holding_one_csv(tmp_path: Path):
    base = tmp_path / "processing"
    (base / "raw" / "nested").mkdir(parents=True)
    write_iris(base / "raw" / "nested" / "raw.csv")
    (base / "raw" / ".hidden").write_text("ignored", encoding="utf-8")
    assert run(base, None, "--class-names", ",".join(CONTRACT_CLASSES)) == 0
    schema = json.loads((base / "schema/schema.json").read_text())
    assert schema["source"]["file"] == "raw.csv"
    assert (base / "train/train.csv").is_file()


def test_extra_columns_are_ignored_and_feature_order_is_the_argument_order(tmp_path: Path):
    source = tmp_path / "data.csv"
    source.write_text("id,b,a,y\n" + "".join(f"row{i},{i},{100 + i},{'pq'[i % 2]}\n" for i in range(40)))
    assert run(tmp_path / "out", source, label="y", features="a,b", objective="binary:logistic") == 0
    _, features = read_split(tmp_path / "out/train/train.csv")
    assert np.all(features[:, 0] == features[:, 1] + 100)


def test_the_script_runs_standalone_as_a_processing_job(tmp_path: Path):
    source = write_iris(tmp_path / "iris.csv")
    args = [sys.executable, str(SCRIPT), "--base-dir", str(tmp_path / "out"), "--input", str(source)]
    good = subprocess.run(
        [*args, "--label-column", "species", "--feature-columns", "x1,x2,x3,x4"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert good.returncode == 0, good.stderr
    assert "train 97, validation 29, test 24" in good.stdout
    bad = subprocess.run(
        [*args, "--label-column", "species", "--feature-columns", "x1,x9"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"error: {source}: missing column(s) 'x9'; columns found: x1, x2, x3, x4, species"


def test_written_channels_parse_as_the_container_reads_them(tmp_path: Path):
    """No quoting, no header, a comma delimiter: what csv.Sniffer and XGBoost's CSV parser expect."""
    out = run_iris(tmp_path)
    with (out / "train/train.csv").open(newline="") as handle:
        first = handle.readline()
    assert '"' not in first
    assert csv.Sniffer().sniff(first, delimiters=",;\t|").delimiter == ","


# -- tasks ----------------------------------------------------------------------------------------------


def regression_rows(count: int) -> str:
    return "".join(f"{i}.5,{i % 7}.25,{i * 1.5 + 0.25}\n" for i in range(count))


def test_regression_keeps_the_label_as_a_float_and_splits_by_a_seeded_shuffle(tmp_path: Path):
    source = tmp_path / "data.csv"
    source.write_text("a,b,y\n" + regression_rows(100), encoding="utf-8")
    out = tmp_path / "out"
    assert run(out, source, "--parts", "2", label="y", features="a,b", objective="reg:squarederror") == 0
    parts = {split: [read_split(path) for path in sorted((out / split).glob("*.csv"))] for split in preprocess.SPLITS}
    labels = np.concatenate([y for chunks in parts.values() for y, _ in chunks])
    assert sorted(labels.tolist()) == [i * 1.5 + 0.25 for i in range(100)], "every row once, the label a float"
    assert [sum(y.size for y, _ in parts[split]) for split in preprocess.SPLITS] == [73, 16, 11]
    schema = json.loads((out / "schema" / "schema.json").read_text())
    train = np.concatenate([y for y, _ in parts["train"]])
    assert (schema["task"], schema["classes"], schema["num_class"], schema["class_counts"]) == (
        "regression", [], None, {})
    assert schema["target"] == {"name": "y", "min": train.min(), "max": train.max(),
                                "mean": pytest.approx(train.mean(), rel=1e-12)}
    baseline = json.loads((out / "baseline" / "statistics.json").read_text())
    assert baseline["class_distribution"] == {} and baseline["target"]["count"] == 73
    again = tmp_path / "again"
    assert run(again, source, "--parts", "2", label="y", features="a,b", objective="reg:squarederror") == 0
    assert (again / "test" / "test-part-00000.csv").read_bytes() == (out / "test" / "test-part-00000.csv").read_bytes()


def test_a_regression_label_that_is_not_a_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    text = "a,b,y\n" + regression_rows(5) + "1,2,cheap\n" + regression_rows(5)
    message = fails(tmp_path, capsys, text, label="y", features="a,b", objective="reg:squarederror")
    assert message == f"{tmp_path / 'data.csv'}, line 7, column 'y': 'cheap' is not a number"


def test_an_objective_the_pipeline_does_not_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    message = fails(tmp_path, capsys, "a,b,y\n" + regression_rows(9), label="y", features="a,b", objective="rank:map")
    assert message.startswith("Objective 'rank:map' is not one of multi:softprob, multi:softmax")


def test_the_schema_lists_features_with_their_training_ranges_and_medians(tmp_path: Path):
    out = run_iris(tmp_path)
    schema = json.loads((out / "schema" / "schema.json").read_text())
    _, train = read_split(out / "train" / "train.csv")
    assert schema["features"] == [
        {"name": name, "type": "number", "min": train[:, j].min(), "max": train[:, j].max(),
         "median": pytest.approx(float(np.median(train[:, j])))}
        for j, name in enumerate(["x1", "x2", "x3", "x4"])
    ]
    assert (schema["task"], schema["objective"], schema["num_class"]) == ("multiclass", "multi:softprob", 3)
