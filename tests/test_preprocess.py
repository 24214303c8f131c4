"""preprocessing/preprocess.py on real CSV files: the splits, the schema, the baseline and every input error."""

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
from sklearn.datasets import load_iris

from preprocessing import preprocess

SCRIPT = Path(preprocess.__file__)
FEATURES = ["x1", "x2", "x3", "x4"]
CONTRACT_CLASSES = ["setosa", "virginica", "versicolor"]  # DESIGN.md: setosa=0, virginica=1, versicolor=2
SPLIT_FILES = ("train/train.csv", "validation/validation.csv", "test/test.csv")
OUTPUT_FILES = (*SPLIT_FILES, "schema/schema.json", "baseline/statistics.json")


def write_iris(path: Path) -> Path:
    """Iris as the raw CSV users give: a header, features x1..x4, then the species name."""
    iris = load_iris()
    lines = ["x1,x2,x3,x4,species"]
    for row, target in zip(iris.data, iris.target, strict=True):
        lines.append(",".join(repr(float(v)) for v in row) + f",{iris.target_names[target]}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def iris_species_by_features() -> dict[tuple[float, ...], str]:
    iris = load_iris()
    pairs = zip(iris.data, iris.target, strict=True)
    return {tuple(float(v) for v in row): str(iris.target_names[t]) for row, t in pairs}


def run(
    base: Path, source: Path | None, *extra: str, label: str = "species", features: str = "x1,x2,x3,x4",
    objective: str = "multi:softprob",
) -> int:
    argv = ["--base-dir", str(base), "--label-column", label, "--feature-columns", features,
            "--objective", objective, *extra]
    if source is not None:
        argv += ["--input", str(source)]
    return preprocess.main(argv)


def run_iris(tmp_path: Path, base: str = "out", *extra: str) -> Path:
    source = tmp_path / "iris.csv"
    if not source.exists():
        write_iris(source)
    out = tmp_path / base
    assert run(out, source, "--class-names", ",".join(CONTRACT_CLASSES), *extra) == 0
    return out


def read_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(path, delimiter=",", ndmin=2)
    return data[:, 0], data[:, 1:]


def error_of(capsys: pytest.CaptureFixture[str]) -> str:
    """The single ``error:`` line the script wrote on stderr (no traceback, nothing else)."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0].removeprefix("error: ")


def fails(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *extra: str, **kwargs: str) -> str:
    """Write ``text`` as data.csv, run the script on it, expect exit status 2 and return the message."""
    source = tmp_path / "data.csv"
    source.write_text(text, encoding="utf-8")
    code = run(tmp_path / "out", source, *extra, **kwargs)
    message = error_of(capsys)
    assert code == 2
    assert not (tmp_path / "out" / "train").exists(), "nothing is written for bad input"
    return message


def rows(label: str, count: int, start: int = 0) -> str:
    return "".join(f"{start + i}.5,{i % 7}.25,{label}\n" for i in range(count))


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
    schema = [json.loads((out / "schema/schema.json").read_text()) for out in (first, second)]
    assert schema[0]["class_counts"] == schema[1]["class_counts"], "only which rows, not how many"


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
            assert per_class[code_] == round(n * fraction), (split, name)
            assert schema["class_counts"][split][name] == per_class[code_]
    labels, _ = read_split(out / "train/train.csv")
    assert np.bincount(labels.astype(int)).tolist() == [70, 28, 14]
    assert schema["rows"] == {"input": 160, "train": 112, "validation": 16, "test": 32}


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
    assert schema["rows"] == {"input": 150, "train": 105, "validation": 30, "test": 15}
    assert schema["class_counts"]["validation"] == {"setosa": 10, "virginica": 10, "versicolor": 10}
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
        assert entry["count"] == column.size == 102
        assert entry["mean"] == pytest.approx(column.mean(), rel=1e-12)
        assert entry["std"] == pytest.approx(column.std(), rel=1e-12)
        assert (entry["min"], entry["max"]) == (column.min(), column.max())
        for q in (1, 5, 25, 50, 75, 95, 99):
            assert entry["quantiles"][f"p{q}"] == pytest.approx(np.percentile(column, q), rel=1e-12)
        histogram = entry["histogram"]
        assert sum(histogram["counts"]) == column.size
        assert len(histogram["bin_edges"]) == len(histogram["counts"]) + 1
        assert histogram["bin_edges"][0] == column.min() and histogram["bin_edges"][-1] == column.max()
    assert stats["class_distribution"] == pytest.approx({"setosa": 1 / 3, "virginica": 1 / 3, "versicolor": 1 / 3})
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
    assert "train 102, validation 24, test 24" in good.stdout
    bad = subprocess.run(
        [*args, "--label-column", "species", "--feature-columns", "x1,x9"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"error: {source}: missing column(s) 'x9'; columns found: x1, x2, x3, x4, species"


# -- bad input: one line naming the file, line and column; exit status 2 ------------------------------


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    missing = tmp_path / "nope.csv"
    assert run(tmp_path / "out", missing) == 2
    assert error_of(capsys) == f"{missing}: no such file or folder"


def test_errors_name_the_users_file_not_a_link_to_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """The local runner links the user's file into the step's input folder."""
    data = tmp_path / "data" / "bad.csv"
    data.parent.mkdir()
    data.write_text("x1,x2,x3,x4,species\n" + rows_for_iris(1) + "1,oops,3,4,setosa\n", encoding="utf-8")
    base = tmp_path / "processing"
    (base / "raw").mkdir(parents=True)
    (base / "raw" / "bad.csv").symlink_to(data)
    assert run(base, None) == 2
    assert error_of(capsys) == f"{data}, line 3, column 'x2': 'oops' is not a number"


def test_folder_with_two_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    folder = tmp_path / "in"
    folder.mkdir()
    write_iris(folder / "a.csv")
    write_iris(folder / "b.csv")
    assert run(tmp_path / "out", folder) == 2
    assert error_of(capsys) == f"{folder}: expected exactly one CSV file, found 2"


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    message = fails(tmp_path, capsys, "")
    assert message == f"{tmp_path / 'data.csv'}: the file is empty"


def test_header_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    message = fails(tmp_path, capsys, "x1,x2,x3,x4,species\n")
    assert message == f"{tmp_path / 'data.csv'}: the file has a header but no rows"


def test_missing_feature_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    message = fails(tmp_path, capsys, "x1,x2,x4,species\n1,2,3,setosa\n")
    assert message == f"{tmp_path / 'data.csv'}: missing column(s) 'x3'; columns found: x1, x2, x4, species"


def test_missing_label_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    message = fails(tmp_path, capsys, "x1,x2,x3,x4,kind\n1,2,3,4,setosa\n")
    assert message == f"{tmp_path / 'data.csv'}: missing column(s) 'species'; columns found: x1, x2, x3, x4, kind"


def test_duplicate_column_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    message = fails(tmp_path, capsys, "x1,x2,x3,x4,x2,species\n1,2,3,4,5,setosa\n")
    assert message == f"{tmp_path / 'data.csv'}: duplicate column name(s): x2"


def test_label_listed_as_a_feature(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    message = fails(tmp_path, capsys, "a,b,y\n1,2,p\n", label="y", features="a,y")
    assert message == "column 'y' is both the label and a feature"


def test_feature_listed_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    message = fails(tmp_path, capsys, "a,b,y\n1,2,p\n", label="y", features="a,b,a")
    assert message == "--feature-columns names 'a' more than once"


def test_without_feature_columns_every_column_but_the_label_is_a_feature_in_file_order(tmp_path: Path):
    source = tmp_path / "trees.csv"
    source.write_text("bark,tree,leaf\n" + "".join(f"{i % 5}.5,{'abc'[i % 3]},{i}.25\n" for i in range(60)))
    assert run(tmp_path / "out", source, label="tree", features=" , ") == 0
    schema = json.loads((tmp_path / "out/schema/schema.json").read_text())
    assert (schema["feature_columns"], schema["classes"]) == (["bark", "leaf"], ["a", "b", "c"])
    _, features = read_split(tmp_path / "out/train/train.csv")
    assert features.shape[1] == 2 and set(features[:, 1] % 1) == {0.25}  # leaf second, as in the file


def test_only_a_label_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    message = fails(tmp_path, capsys, "y\np\n", label="y", features="")
    assert message == f"{tmp_path / 'data.csv'}: no column but the label 'y': nothing to learn from"


def test_no_label_column_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    message = fails(tmp_path, capsys, "a,b,y\n1,2,p\n", label=" ", features="")
    assert message == f"{tmp_path / 'data.csv'}: no label column given: set LabelColumn to one of its columns: a, b, y"


@pytest.mark.parametrize("name", ["request_id", "sample_id", "instances", "input_data", "features"])
@pytest.mark.parametrize("features", ["", "a,{name}"])
def test_a_feature_named_as_the_api_request_body_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, features: str
):
    message = fails(tmp_path, capsys, f"a,{name},y\n1,2,p\n", label="y", features=features.format(name=name))
    assert message == (
        f"{tmp_path / 'data.csv'}: column {name!r} cannot be a feature: the prediction API's request body uses "
        f"{name!r} for {preprocess.RESERVED_NAMES[name]}; rename the column, or leave it out with FeatureColumns=a"
    )


def test_a_text_column_taken_as_a_feature_is_named_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """FeatureColumns empty takes an id column too: one line naming it (not one bad cell per row) and the fix."""
    text = "customer,tenure,churn,monthly\n" + "".join(f"c{i},{i}.5,{'no' if i % 2 else 'yes'},3\n" for i in range(30))
    message = fails(tmp_path, capsys, text, label="churn", features="", objective="binary:logistic")
    assert message == (
        f"{tmp_path / 'data.csv'}: column(s) 'customer' hold no numbers, so they cannot be features (FeatureColumns "
        "is empty: every column but the label); name the features: FeatureColumns=tenure,monthly"
    )


@pytest.mark.parametrize(
    ("cell", "what"),
    [
        ("abc", "'abc' is not a number"),
        ("1.2.3", "'1.2.3' is not a number"),
        ("0x10", "'0x10' is not a number"),
        ("", "missing value"),
        ("nan", "missing value"),
        ("NaN", "missing value"),
        ("inf", "non-finite value inf"),
        ("-inf", "non-finite value -inf"),
    ],
)
def test_bad_feature_cell_names_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cell: str, what: str
):
    # header = line 1; the bad cell is in column x3 of line 6
    text = "x1,x2,x3,x4,species\n" + rows_for_iris(4) + f"5.0,3.0,{cell},1.0,setosa\n" + rows_for_iris(3)
    message = fails(tmp_path, capsys, text)
    assert message == f"{tmp_path / 'data.csv'}, line 6, column 'x3': {what}"


def rows_for_iris(count: int) -> str:
    return "".join(f"5.{i},3.{i},1.{i},0.{i},setosa\n" for i in range(count))


def test_every_bad_cell_is_reported_at_once_in_file_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    text = (
        "x1,x2,x3,x4,species\n" + rows_for_iris(2)
        + "1,2,3,oops,setosa\n"  # line 4
        + "bad,2,n/a,4,\n"  # line 5: three bad cells, the label's among them
        + rows_for_iris(2)
        + "1,,3,inf,setosa\n"  # line 8
    )
    message = fails(tmp_path, capsys, text)
    assert message == (
        f"{tmp_path / 'data.csv'}: 6 bad cells: line 4, column 'x4': 'oops' is not a number; "
        "line 5, column 'x1': 'bad' is not a number; line 5, column 'x3': 'n/a' is not a number; "
        "line 5, column 'species': missing label; line 8, column 'x2': missing value; "
        "line 8, column 'x4': non-finite value inf"
    )


def test_bad_cells_past_the_cap_are_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    text = "x1,x2,x3,x4,species\n" + rows_for_iris(3) + "".join(f"{i},2,3,?,setosa\n" for i in range(25))
    message = fails(tmp_path, capsys, text)
    items = message.split(": 25 bad cells: ")[1].split("; ")
    assert len(items) == 21 and items[-1] == "and 5 more"
    assert items[0] == "line 5, column 'x4': '?' is not a number"
    assert items[19] == "line 24, column 'x4': '?' is not a number"


def test_unknown_labels_are_reported_with_the_bad_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    text = "x1,x2,x3,x4,species\n" + rows_for_iris(3) + "1,2,3,4,Setosa\n" + "1,2,x,4,setosa\n"
    message = fails(tmp_path, capsys, text, "--class-names", "setosa,virginica,versicolor")
    assert message == (
        f"{tmp_path / 'data.csv'}: 2 bad cells: line 5, column 'species': unknown label 'Setosa' "
        "(expected one of: setosa, virginica, versicolor); line 6, column 'x3': 'x' is not a number"
    )


def test_line_numbers_count_blank_lines_and_quoted_line_breaks(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    text = (
        "x1,x2,x3,x4,species\n"  # line 1
        "5.1,3.5,1.4,0.2,setosa\n"  # line 2
        "\n"  # line 3: blank, skipped by the reader
        '4.9,3.0,1.4,0.2,"setosa"\n'  # line 4
        '4.7,3.2,1.3,0.2,"multi\nline"\n'  # lines 5-6: one record
        "4.6,x,1.5,0.2,setosa\n"  # line 7
    )
    message = fails(tmp_path, capsys, text)
    assert message == f"{tmp_path / 'data.csv'}, line 7, column 'x2': 'x' is not a number"


def test_line_number_of_a_non_finite_value_after_a_blank_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    text = "x1,x2,x3,x4,species\n" + rows_for_iris(2) + "\n\n" + "1,2,3,inf,setosa\n"
    assert fails(tmp_path, capsys, text) == f"{tmp_path / 'data.csv'}, line 6, column 'x4': non-finite value inf"


def test_bad_cell_deep_in_a_large_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    body = "".join(f"{i % 9}.5,3.{i % 7},1.{i % 5},0.{i % 3},{'ab'[i % 2]}\n" for i in range(100_000))
    message = fails(tmp_path, capsys, "x1,x2,x3,x4,species\n" + body + "1,2,3,?,a\n")
    assert message == f"{tmp_path / 'data.csv'}, line 100002, column 'x4': '?' is not a number"


@pytest.mark.parametrize(
    ("row", "cells"), [("1,2,3,4,setosa,9", 6), ("1,2,3,setosa", 4)]
)
def test_row_with_wrong_number_of_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str], row: str, cells: int):
    text = "x1,x2,x3,x4,species\n" + rows_for_iris(3) + row + "\n" + rows_for_iris(2)
    message = fails(tmp_path, capsys, text)
    assert message == f"{tmp_path / 'data.csv'}, line 5: {cells} cells, the header has 5"


def test_row_with_wrong_number_of_cells_past_the_first_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    body = "".join(f"{i % 9}.5,3.{i % 7},1.{i % 5},0.{i % 3},{'ab'[i % 2]}\n" for i in range(100_000))
    message = fails(tmp_path, capsys, "x1,x2,x3,x4,species\n" + body + "1,2,3,4,a,extra\n")
    assert message == f"{tmp_path / 'data.csv'}, line 100002: 6 cells, the header has 5"


def test_unknown_label_when_class_names_are_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    text = "x1,x2,x3,x4,species\n" + rows_for_iris(3) + "1,2,3,4,  Setosa \n"
    message = fails(tmp_path, capsys, text, "--class-names", "setosa,virginica,versicolor")
    assert message == (
        f"{tmp_path / 'data.csv'}, line 5, column 'species': unknown label 'Setosa' "
        "(expected one of: setosa, virginica, versicolor)"
    )


@pytest.mark.parametrize("cell", ["", "   ", '""'])
def test_missing_label(tmp_path: Path, capsys: pytest.CaptureFixture[str], cell: str):
    text = "x1,x2,x3,x4,species\n" + rows_for_iris(2) + f"1,2,3,4,{cell}\n" + rows_for_iris(2)
    message = fails(tmp_path, capsys, text)
    assert message == f"{tmp_path / 'data.csv'}, line 4, column 'species': missing label"


def test_class_names_must_be_distinct(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    message = fails(tmp_path, capsys, "a,b,y\n" + rows("p", 9), "--class-names", "p,q,p", label="y", features="a,b")
    assert message == "class names must be distinct: p, q, p"


def test_too_few_rows_in_a_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    text = "a,b,y\n" + rows("p", 30) + rows("q", 2, start=100)
    message = fails(tmp_path, capsys, text, label="y", features="a,b", objective="binary:logistic")
    assert message == (
        "class 'q' has 2 row(s): too few to put at least one in each of train, validation and test (need at least 3)"
    )


def test_a_named_class_without_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    text = "a,b,y\n" + rows("p", 30) + rows("q", 30, start=100)
    message = fails(tmp_path, capsys, text, "--class-names", "p,q,r", label="y", features="a,b")
    assert message.startswith("class 'r' has 0 row(s): too few")


@pytest.mark.parametrize(
    ("validation", "test"),
    [("0", "0.15"), ("0.15", "0"), ("1", "0.1"), ("0.5", "0.5"), ("0.7", "0.4"), ("-0.1", "0.2")],
)
def test_bad_fractions(tmp_path: Path, capsys: pytest.CaptureFixture[str], validation: str, test: str):
    text = "a,b,y\n" + rows("p", 30) + rows("q", 30, start=100)
    args = ("--validation-fraction", validation, "--test-fraction", test)
    message = fails(tmp_path, capsys, text, *args, label="y", features="a,b", objective="binary:logistic")
    assert message == (
        "--validation-fraction and --test-fraction must each be in (0, 1) and sum to less than 1, "
        f"got {float(validation)} and {float(test)}"
    )


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
    assert [sum(y.size for y, _ in parts[split]) for split in preprocess.SPLITS] == [70, 15, 15]
    schema = json.loads((out / "schema" / "schema.json").read_text())
    train = np.concatenate([y for y, _ in parts["train"]])
    assert (schema["task"], schema["classes"], schema["num_class"], schema["class_counts"]) == (
        "regression", [], None, {})
    assert schema["target"] == {"name": "y", "min": train.min(), "max": train.max(),
                                "mean": pytest.approx(train.mean(), rel=1e-12)}
    baseline = json.loads((out / "baseline" / "statistics.json").read_text())
    assert baseline["class_distribution"] == {} and baseline["target"]["count"] == 70
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
