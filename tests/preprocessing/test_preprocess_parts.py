"""preprocessing/preprocess.py on a folder of several CSV files (a data set version's parts): read whole, in sorted
path order, one header, bad cells and headers named with their file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from preprocess_runs import CONTRACT_CLASSES, SPLIT_FILES, error_of, read_split, rows, run, write_iris

HEADER = "x,y,label\n"


def write_parts(folder: Path, texts: dict[str, str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return [folder / name for name in texts]


def test_rows_are_the_sum_of_the_parts_and_the_source_describes_each(tmp_path: Path):
    folder = tmp_path / "raw"
    parts = write_parts(folder, {
        "b.csv": HEADER + rows("a", 20) + rows("b", 20),
        "a.csv": HEADER + rows("a", 10, start=100) + rows("b", 10, start=100) + rows("c", 30),
        "sub/c.csv": HEADER + rows("c", 10, start=200),
    })
    assert run(tmp_path / "out", folder, label="label", features="x,y") == 0
    schema = json.loads((tmp_path / "out" / "schema" / "schema.json").read_text(encoding="utf-8"))
    assert schema["rows"]["input"] == 100 == sum(read_split(tmp_path / "out" / name)[0].size for name in SPLIT_FILES)
    assert schema["class_counts"]["train"]["c"] + schema["class_counts"]["test"]["c"] + (
        schema["class_counts"]["validation"]["c"]) == 40
    in_order = sorted(parts, key=lambda p: p.relative_to(folder).as_posix())  # a.csv, b.csv, sub/c.csv
    source = schema["source"]
    assert source["sha256"] == hashlib.sha256(b"".join(p.read_bytes() for p in in_order)).hexdigest()
    assert source["bytes"] == sum(p.stat().st_size for p in parts)
    assert source["files"] == [
        {"file": p.relative_to(folder).as_posix(), "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
         "bytes": p.stat().st_size, "rows": rows_of}
        for p, rows_of in zip(in_order, (50, 40, 10), strict=True)
    ]
    assert source["file"] == "3 files"


def test_one_file_in_a_folder_is_described_as_the_one_file(tmp_path: Path):
    folder = tmp_path / "raw"
    folder.mkdir()
    write_iris(folder / "iris.csv")
    assert run(tmp_path / "out", folder, "--class-names", ",".join(CONTRACT_CLASSES)) == 0
    schema = json.loads((tmp_path / "out" / "schema" / "schema.json").read_text(encoding="utf-8"))
    data = (folder / "iris.csv").read_bytes()
    assert schema["source"] == {"file": "iris.csv", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def test_the_split_does_not_depend_on_how_the_rows_are_cut_into_parts(tmp_path: Path):
    whole = tmp_path / "whole.csv"
    text = rows("a", 30) + rows("b", 30) + rows("c", 30)
    whole.write_text(HEADER + text, encoding="utf-8")
    lines = text.splitlines(keepends=True)
    folder = tmp_path / "raw"
    write_parts(folder, {"1.csv": HEADER + "".join(lines[:40]), "2.csv": HEADER + "".join(lines[40:])})
    assert run(tmp_path / "one", whole, label="label", features="x,y") == 0
    assert run(tmp_path / "two", folder, label="label", features="x,y") == 0
    for name in SPLIT_FILES:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_a_part_with_another_header_is_named_with_its_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    folder = tmp_path / "raw"
    first, second = write_parts(folder, {"a.csv": HEADER + rows("a", 10), "b.csv": "x,z,label\n" + rows("a", 10)})
    assert run(tmp_path / "out", folder, label="label", features="x,y") == 2
    assert error_of(capsys) == f"{second}: its header x,z,label differs from the header of {first}: x,y,label"
    assert not (tmp_path / "out" / "train").exists()


def test_bad_cells_are_named_with_their_part_and_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    folder = tmp_path / "raw"
    write_parts(folder, {"a.csv": HEADER + rows("a", 10) + "oops,1,a\n", "b.csv": HEADER + rows("b", 5) + "1,2,zz\n"})
    assert run(tmp_path / "out", folder, "--class-names", "a,b", label="label", features="x,y",
               objective="binary:logistic") == 2
    assert error_of(capsys) == (
        f"{folder}: 2 bad cells: a.csv, line 12, column 'x': 'oops' is not a number; "
        "b.csv, line 7, column 'label': unknown label 'zz' (expected one of: a, b)"
    )


def test_one_bad_cell_in_a_later_part_names_that_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    folder = tmp_path / "raw"
    _, second = write_parts(folder, {"a.csv": HEADER + rows("a", 10), "b.csv": HEADER + rows("b", 5) + "1,nan,b\n"})
    assert run(tmp_path / "out", folder, label="label", features="x,y", objective="binary:logistic") == 2
    assert error_of(capsys) == f"{second}, line 7, column 'y': missing value"


def test_a_part_with_a_header_only_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    folder = tmp_path / "raw"
    _, second = write_parts(folder, {"a.csv": HEADER + rows("a", 10) + rows("b", 10), "b.csv": HEADER})
    assert run(tmp_path / "out", folder, label="label", features="x,y", objective="binary:logistic") == 2
    assert error_of(capsys) == f"{second}: the file has a header but no rows"
