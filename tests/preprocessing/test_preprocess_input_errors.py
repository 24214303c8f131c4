"""preprocessing/preprocess.py on bad input: one line naming the file, line and column, exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from preprocess_runs import error_of, fails, read_split, rows, run

from preprocessing import preprocess

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


def test_folder_without_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A folder of several files is read whole (tests/preprocessing/test_preprocess_parts.py); of none, refused."""
    folder = tmp_path / "in"
    folder.mkdir()
    assert run(tmp_path / "out", folder) == 2
    assert error_of(capsys) == f"{folder}: no CSV file in the folder"


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
