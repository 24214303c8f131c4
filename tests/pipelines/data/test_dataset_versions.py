"""Data sets on the local target: versions that grow, content-addressed parts, the bundled iris data set, and
files refused with their file, line and column."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from pipelines.data.manifest import parse_manifest
from pipelines.data.versions import DatasetStore, local_dataset_store
from pipelines.datasets import IRIS_PARAMETERS
from pipelines.errors import NotFoundError, UserError
from pipelines.state import StateHome

IRIS_ROWS = "x1,x2,x3,x4,species\n5.1,3.5,1.4,0.2,setosa\n6.7,3.3,5.7,2.5,virginica\n"


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return local_dataset_store(StateHome(tmp_path / "home"))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def stored_files(tmp_path: Path) -> list[str]:
    return sorted(str(path.relative_to(tmp_path)) for path in (tmp_path / "home" / "datasets").rglob("*"))


def part_rows(store: DatasetStore, name: str, sha256: str) -> list[list[str]]:
    data = store.storage.read(f"{name}/parts/{sha256}.csv")
    assert data is not None
    return list(csv.reader(data.decode("utf-8").splitlines()))


def test_iris_exists_implicitly_as_version_1_of_the_bundled_data(store: DatasetStore) -> None:
    version = store.resolve("iris")
    assert (version.ref, version.origin, version.rows, len(version.parts)) == ("iris@1", "bundled", 150, 1)
    assert version.parameters == {**IRIS_PARAMETERS, "ModelPackageGroupName": "CloudVizIris"}
    assert version.schema["classes"] == ["setosa", "virginica", "versicolor"]
    assert store.names() == ["iris"]
    assert store.resolve("iris") == version  # made once


def test_added_file_makes_a_version_holding_the_previous_parts_and_the_new_one(store: DatasetStore,
                                                                              tmp_path: Path) -> None:
    first = store.resolve("iris")
    added = store.add("iris", write(tmp_path, "more.csv", IRIS_ROWS))
    assert (added.ref, added.rows, added.origin) == ("iris@2", 152, "add more.csv")
    assert added.parts[:-1] == first.parts
    assert part_rows(store, "iris", added.parts[-1].sha256) == [line.split(",") for line in IRIS_ROWS.splitlines()]
    assert (added.parts[-1].rows, added.parts[-1].source) == (2, "more.csv")
    third = store.add("iris", write(tmp_path, "again.csv", "x1,x2,x3,x4,species\n4.9,3,1.4,0.2,setosa\n"))
    assert third.parts[:-1] == added.parts and third.rows == 153
    assert store.resolve("iris") == third
    assert store.resolve("iris@2") == added
    assert [version.version for version in store.versions("iris")] == [1, 2, 3]
    expected_id = hashlib.sha256("\n".join(sorted(p.sha256 for p in third.parts)).encode()).hexdigest()[:16]
    assert third.id == expected_id
    document = json.loads((tmp_path / "home/datasets/iris/versions/3.json").read_text(encoding="utf-8"))
    assert document["manifest"] == third.manifest_uri and document["origin"] == "add again.csv"


def test_the_same_content_twice_adds_no_version(store: DatasetStore, tmp_path: Path) -> None:
    added = store.add("iris", write(tmp_path, "more.csv", IRIS_ROWS))
    before = stored_files(tmp_path)
    # The same rows with other line ends and another column order are the same part.
    reordered = "species,x1,x2,x3,x4\r\nsetosa,5.1,3.5,1.4,0.2\r\nvirginica,6.7,3.3,5.7,2.5\r\n"
    assert store.add("iris", write(tmp_path, "copy.csv", reordered)) == added
    assert store.add("iris", tmp_path / "more.csv") == added
    assert stored_files(tmp_path) == [*before]
    assert store.resolve("iris").version == 2


@pytest.mark.parametrize(("text", "expected"), [
    ("x1,x2,x3,x5,species\n1,2,3,4,setosa\n", "bad.csv, line 1, column 'x5': not a column of the data set"),
    ("x1,x2,x3,species\n1,2,3,setosa\n", "bad.csv, line 1: missing column(s) 'x4'"),
    ("x1,x2,x3,x4,species\n1,2,3,4,setosa\n1,2,3,4,dog\n",
     "bad.csv: line 3, column 'species': unknown label 'dog' (the classes of data set iris: setosa, virginica, "
     "versicolor)"),
    ("x1,x2,x3,x4,species\n\n1,2,3,4,setosa\n1,two,3,4,setosa\n",
     "bad.csv: line 4, column 'x2': 'two' is not a number"),
    ("x1,x2,x3,x4,species\n1,2,3,inf,setosa\n", "bad.csv: line 2, column 'x4': 'inf' is not a number"),
    ("x1,x2,x3,x4,species\n1,2,3,4\n", "bad.csv: line 2: 4 cells, the header has 5"),
    ("x1,x2,x3,x4,species\n", "bad.csv: the file has a header but no rows"),
    ("", "bad.csv: the file is empty"),
])
def test_a_bad_file_names_file_line_and_column_and_writes_nothing(store: DatasetStore, tmp_path: Path, text: str,
                                                                  expected: str) -> None:
    store.resolve("iris")
    before = stored_files(tmp_path)
    with pytest.raises(UserError) as caught:
        store.add("iris", write(tmp_path, "bad.csv", text))
    assert expected in str(caught.value)
    assert str(tmp_path / "bad.csv") in str(caught.value)
    assert stored_files(tmp_path) == before


def test_every_bad_cell_up_to_a_limit_is_named(store: DatasetStore, tmp_path: Path) -> None:
    rows = "".join(f"{index},x,3,4,setosa\n" for index in range(30))
    with pytest.raises(UserError) as caught:
        store.add("iris", write(tmp_path, "bad.csv", "x1,x2,x3,x4,species\n" + rows))
    message = str(caught.value)
    assert "line 2, column 'x2'" in message and "line 11, column 'x2'" in message and message.endswith("(and more)")


def test_a_data_set_of_its_own_columns_and_classes(store: DatasetStore, tmp_path: Path) -> None:
    rows = "a,b,target\n1,2,north\n2,3,south\n3,4,east\n4,5,west\n"
    first = store.add("compass", write(tmp_path, "compass.csv", rows), label_column="target")
    assert first.ref == "compass@1"
    assert first.schema == {"columns": ["a", "b", "target"], "label_column": "target", "feature_columns": ["a", "b"],
                            "task": "classification", "classes": ["east", "north", "south", "west"]}
    assert first.parameters == {"LabelColumn": "target", "FeatureColumns": "a,b", "ClassNames": "east,north,south,west",
                                "ModelPackageGroupName": "Compass"}
    second = store.add("compass", write(tmp_path, "more.csv", "target,b,a\nwest,1,1\n"))
    assert second.rows == 5 and second.parameters == first.parameters
    with pytest.raises(UserError, match=r"line 2, column 'target': unknown label 'up'"):
        store.add("compass", write(tmp_path, "up.csv", "a,b,target\n1,1,up\n"))
    with pytest.raises(UserError, match=r"--group 'Other': data set compass has 'Compass'"):
        store.add("compass", tmp_path / "more.csv", group="Other")
    assert store.names() == ["compass", "iris"]


def test_a_two_class_data_set_reads_its_labels_as_preprocess_does(store: DatasetStore, tmp_path: Path) -> None:
    """Preprocess trims a label and refuses an empty one: ` yes` is the class yes, not a third class."""
    path = write(tmp_path, "churn.csv", "Customer Age,Monthly Spend,churned\n31,20.5,yes\n45,80, yes \n22,10,no\n")
    version = store.add("churn", path, label_column="churned")
    assert version.schema["classes"] == ["no", "yes"] and version.parameters["ClassNames"] == "no,yes"
    assert part_rows(store, "churn", version.parts[-1].sha256)[2] == ["45", "80", "yes"]
    with pytest.raises(UserError, match=r"blank.csv: line 3, column 'y': missing label"):
        store.add("blank", write(tmp_path, "blank.csv", "a,y\n1,x\n2,\n3,z\n"), label_column="y")
    with pytest.raises(UserError, match=r"more.csv: line 2, column 'churned': missing label"):
        store.add("churn", write(tmp_path, "more.csv", "Customer Age,Monthly Spend,churned\n1,2, \n"))


def test_a_regression_data_set_needs_numbers_in_its_target(store: DatasetStore, tmp_path: Path) -> None:
    path = write(tmp_path, "houses.csv", "rooms,area,price\n3,70.5,250000\n4,90,310000.5\n")
    version = store.add("houses", path, label_column="price", task="regression", group="HousePrices")
    assert version.schema["task"] == "regression" and version.schema["classes"] == []
    assert version.parameters == {"LabelColumn": "price", "FeatureColumns": "rooms,area", "ClassNames": "",
                                  "ModelPackageGroupName": "HousePrices"}
    with pytest.raises(UserError, match=r"bad.csv: line 2, column 'price': 'cheap' is not a number"):
        store.add("houses", write(tmp_path, "bad.csv", "rooms,area,price\n3,70,cheap\n"))


def test_a_new_data_set_needs_its_label_column(store: DatasetStore, tmp_path: Path) -> None:
    path = write(tmp_path, "new.csv", "a,b\n1,x\n")
    with pytest.raises(UserError, match=r"^--label-column: fresh is a new data set"):
        store.add("fresh", path)
    with pytest.raises(UserError, match=r"^--label-column 'c': .*new.csv has no such column \(its columns: a, b\)"):
        store.add("fresh", path, label_column="c")
    numbers = write(tmp_path, "numbers.csv", "a,y\n" + "".join(f"{i},{i * 1.5}\n" for i in range(30)))
    with pytest.raises(UserError, match=r"^--task: column 'y' of .* holds 30 distinct numbers"):
        store.add("fresh", numbers, label_column="y")
    assert store.names() == ["iris"]


def test_refs_and_names_are_checked(store: DatasetStore) -> None:
    with pytest.raises(NotFoundError, match=r"data set 'iris@9': no such version; iris has versions 1"):
        store.resolve("iris@9")
    with pytest.raises(NotFoundError, match=r"data set 'nothing': no such data set"):
        store.resolve("nothing")
    for bad in ("Iris", "iris@0", "iris@x", "../x", ""):
        with pytest.raises(UserError, match=r"expected NAME or NAME@N"):
            store.resolve(bad)
    with pytest.raises(UserError, match=r"name a data set, not one of its versions"):
        store.add("iris@1", Path("x.csv"))


def test_the_manifest_lists_every_part_below_the_data_sets_folder(store: DatasetStore, tmp_path: Path) -> None:
    version = store.add("iris", write(tmp_path, "more.csv", IRIS_ROWS))
    manifest_path = tmp_path / f"home/datasets/iris/versions/2-{version.id}.manifest"  # named by its content
    assert version.manifest_uri == manifest_path.as_uri()
    manifest = parse_manifest(manifest_path.read_bytes(), str(manifest_path))
    assert manifest.prefix == (tmp_path / "home/datasets/iris").as_uri() + "/"
    assert manifest.keys == tuple(f"parts/{part.sha256}.csv" for part in version.parts)
    for key, path in manifest.local_files():
        assert path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == key[6:-4]
