"""Runs on a data set version: the manifest's parts linked into Preprocess's input, every part read, the version
resolved before the run starts and named by the lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from generated_data import five_classes

from cloudviz.api.local import LocalProject
from cloudviz.cli import main
from pipelines.data.manifest import manifest_of
from pipelines.data.versions import local_dataset_store
from pipelines.datasets import iris_csv
from pipelines.definition import build_pipeline
from pipelines.errors import NotFoundError, UserError
from pipelines.local_steps.processing import link_manifest
from pipelines.registry import ModelRegistry
from pipelines.runner import LocalRunner
from pipelines.state import StateHome

# -- ManifestFile on the local target ----------------------------------------------------------------


def write_manifest(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_a_manifest_links_each_part_at_its_key(tmp_path: Path):
    base = tmp_path / "data"
    for key, text in (("parts/a.csv", "x\n1\n"), ("parts/deeper/b.csv", "x\n2\n"), ("other.csv", "x\n3\n")):
        (base / key).parent.mkdir(parents=True, exist_ok=True)
        (base / key).write_text(text, encoding="utf-8")
    manifest = tmp_path / "v.manifest"
    manifest.write_bytes(manifest_of(base.as_uri(), ["parts/a.csv", "parts/deeper/b.csv"]).to_bytes())
    link_manifest(manifest, tmp_path / "raw")
    found = sorted(p.relative_to(tmp_path / "raw").as_posix() for p in (tmp_path / "raw").rglob("*") if p.is_file())
    assert found == ["parts/a.csv", "parts/deeper/b.csv"]  # what it lists, nothing else below the prefix
    assert (tmp_path / "raw" / "parts" / "deeper" / "b.csv").resolve() == (base / "parts" / "deeper" / "b.csv")


def test_a_missing_part_is_named_with_the_manifest(tmp_path: Path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "a.csv").write_text("x\n1\n", encoding="utf-8")
    manifest = write_manifest(tmp_path / "v.manifest", [{"prefix": tmp_path.as_uri() + "/"}, "parts/a.csv",
                                                        "parts/gone.csv"])
    with pytest.raises(UserError) as error:
        link_manifest(manifest, tmp_path / "raw")
    assert str(error.value) == f"{manifest}: part parts/gone.csv does not exist ({tmp_path / 'parts' / 'gone.csv'})"


@pytest.mark.parametrize("document", [{"prefix": "file:///x/"}, ["parts/a.csv"], [{"prefix": "file:///x"}]])
def test_a_file_not_in_the_manifest_format_is_named(tmp_path: Path, document: object):
    manifest = write_manifest(tmp_path / "v.manifest", document)
    with pytest.raises(UserError) as error:
        link_manifest(manifest, tmp_path / "raw")
    assert str(error.value).startswith(f"{manifest}: not a manifest file")


def test_an_s3_manifest_is_refused_locally_naming_it(tmp_path: Path):
    manifest = write_manifest(tmp_path / "v.manifest", [{"prefix": "s3://bucket/data/"}, "parts/a.csv"])
    with pytest.raises(UserError) as error:
        link_manifest(manifest, tmp_path / "raw")
    assert str(error.value).startswith(f"{manifest}: ")
    assert "file://" in str(error.value)


def test_a_manifest_input_type_with_a_csv_fails_preprocess_naming_it(home: StateHome):
    data = iris_csv(home.data)
    record = LocalRunner(home, build_pipeline()).start(
        {"InputData": str(data), "InputDataType": "ManifestFile", "ModelPackageGroupName": "Mine"})
    assert record.status == "Failed"
    assert record.failure_reason.startswith(f"Preprocess: {data}: not a manifest file")


# -- runs on data set versions ------------------------------------------------------------------------


def more_iris(path: Path) -> Path:
    """New iris-like rows (the bundled rows shifted by 0.05 cm), in the data set's columns."""
    lines = iris_csv(path.parent).read_text(encoding="utf-8").splitlines()
    shifted = [",".join(f"{float(v) + 0.05:g}" for v in line.split(",")[:4]) + "," + line.split(",")[4]
               for line in lines[1:]]
    path.write_text("\n".join([lines[0], *shifted]) + "\n", encoding="utf-8")
    return path


def test_a_run_on_a_version_of_two_parts_reads_both_and_its_lineage_names_the_version(
    home: StateHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    store = local_dataset_store(home)
    first = store.resolve("iris")
    second = store.add("iris", more_iris(tmp_path / "more" / "more.csv"))
    assert (first.version, second.version, len(second.parts)) == (1, 2, 2)

    assert main(["pipeline", "run", "--dataset", "iris@2", "--quiet", "--json"]) == 0, capsys.readouterr().err
    run = json.loads(capsys.readouterr().out)
    assert run["status"] == "Succeeded"
    parameters = run["parameters"]
    assert parameters["DataSetVersion"] == "iris@2"
    assert parameters["InputDataType"] == "ManifestFile"
    assert Path(parameters["InputData"]).as_uri() == second.manifest_uri
    assert (parameters["LabelColumn"], parameters["ClassNames"]) == ("species", "setosa,virginica,versicolor")

    package = ModelRegistry(home.registry_db).get("CloudVizIris", 1)
    data = package.lineage["data"]
    assert data["dataset"] == {"name": "iris", "version": 2, "id": second.id}
    assert data["rows"]["input"] == second.rows == 300
    assert [f["sha256"] for f in data["files"]] == sorted(p.sha256 for p in second.parts)
    assert package.lineage["schema"]["classes"] == ["setosa", "virginica", "versicolor"]  # the contract's order


def test_a_run_on_the_newest_version_of_another_data_set_takes_its_parameters(home: StateHome, tmp_path: Path):
    generated = five_classes(tmp_path / "generated")
    text = generated.path.read_text(encoding="utf-8").splitlines()
    halves = [tmp_path / "first.csv", tmp_path / "second.csv"]
    halves[0].write_text("\n".join(text[: len(text) // 2]) + "\n", encoding="utf-8")
    halves[1].write_text("\n".join([text[0], *text[len(text) // 2:]]) + "\n", encoding="utf-8")
    store = local_dataset_store(home)
    store.add("trees", halves[0], label_column=generated.label)
    newest = store.add("trees", halves[1])

    run = LocalProject(home.root).pipeline.run(dataset="trees")
    assert run.succeeded, run.failure_reason
    assert run.parameters["DataSetVersion"] == "trees@2"
    assert run.parameters["LabelColumn"] == generated.label
    assert run.parameters["ModelPackageGroupName"] == newest.group == "Trees"
    package = ModelRegistry(home.registry_db).get("Trees", 1)
    assert package.lineage["data"]["dataset"] == {"name": "trees", "version": 2, "id": newest.id}
    assert package.lineage["data"]["rows"]["input"] == len(text) - 1
    assert package.lineage["data"]["classes"] == sorted(generated.classes)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"DataSetVersion": "nothing"}, NotFoundError,
         "parameter DataSetVersion: data set 'nothing': no such data set"),
        ({"DataSetVersion": "iris@7"}, NotFoundError,
         "parameter DataSetVersion: data set 'iris@7': no such version; iris has versions 1"),
        ({"DataSetVersion": "Not A Ref"}, UserError, "parameter DataSetVersion: data set 'Not A Ref': expected NAME"),
        ({"DataSetVersion": "iris", "InputData": "x.csv"}, UserError,
         "parameter InputData: not with DataSetVersion iris@1"),
    ],
)
def test_a_data_set_version_that_cannot_be_read_is_refused_before_the_run_starts(
    home: StateHome, overrides: dict, error: type, message: str
):
    with pytest.raises(error) as raised:
        LocalRunner(home, build_pipeline()).start(overrides)
    assert type(raised.value) is error
    assert str(raised.value).startswith(message)
    assert not home.runs.exists() or not any(home.runs.iterdir())


def test_the_given_describing_parameters_win_over_the_versions(home: StateHome):
    values = LocalRunner(home, build_pipeline()).resolve_parameters(
        {"DataSetVersion": "iris", "ClassNames": "", "ModelPackageGroupName": "Mine"})
    assert (values["DataSetVersion"], values["ClassNames"], values["ModelPackageGroupName"]) == ("iris@1", "", "Mine")
    assert values["LabelColumn"] == "species"


@pytest.mark.parametrize(("header", "rows", "task", "objective"), [
    ("tenure,charges,churned", [f"{i % 60},{20 + (i * 7) % 100},{'yes' if (i * 7) % 100 > 50 else 'no'}"
                                for i in range(120)], None, "binary:logistic"),
    ("rooms,area,price", [f"{1 + i % 6},{40 + i},{100 + 3 * i + 20 * (i % 6)}" for i in range(120)], "regression",
     "reg:squarederror"),
])
def test_a_two_class_or_regression_data_set_trains_without_naming_its_objective(
        home: StateHome, tmp_path: Path, header: str, rows: list[str], task: str | None, objective: str):
    """The default objective (multi:softprob) needs three classes: the data set's version names the one its task
    needs, so `pipeline run --dataset NAME` alone trains it."""
    path = tmp_path / "mine.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    version = local_dataset_store(home).add("mine", path, label_column=header.rsplit(",", 1)[1], task=task)
    record = LocalRunner(home, build_pipeline()).start({"DataSetVersion": "mine"})
    assert record.status == "Succeeded", record.failure_reason
    assert record.parameters["Objective"] == objective and version.schema["task"] == (task or "classification")
