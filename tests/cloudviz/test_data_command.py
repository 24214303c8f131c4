"""``cloudviz data ...`` and ``project.data``: exit codes, messages and documents, on the local target and on S3
(moto)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

import cloudviz
from cloudviz.cli import main
from deploy.endpoint_state import EndpointFiles
from pipelines.errors import AwsError, NotFoundError, UserError
from pipelines.state import StateHome
from serving_lambdas.records import Feedback, PredictionRecord, new_ids, timestamp_text
from serving_lambdas.store.sqlite import SqliteStore

ROWS = "x1,x2,x3,x4,species\n5.1,3.5,1.4,0.2,setosa\n6.7,3.3,5.7,2.5,virginica\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def csv_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def serve_labelled_predictions(home: StateHome, group: str, labelled: int) -> None:
    """Predictions as a local endpoint of ``group`` stores them, ``labelled`` of them with their true label."""
    store = SqliteStore(EndpointFiles.of(home, group, "dev").predictions_db)
    moment = datetime.now(UTC)
    records = [PredictionRecord(prediction_id, timestamp_text(moment), {"x1": 5.0, "x2": 3.0, "x3": 1.5, "x4": 0.2},
                                0, "setosa", None, 1, 1.0) for prediction_id in new_ids(moment, 5)]
    store.put(records)
    for record in records[:labelled]:
        store.record_feedback(record.id, Feedback("setosa", timestamp_text(moment)))


def test_data_add_list_show(home: StateHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    more = csv_file(tmp_path, "more.csv", ROWS)
    code, out, _ = run(capsys, "data", "add", more)
    assert code == 0
    assert out.startswith(f"iris@2: added 2 rows from {more} (152 rows in 2 part(s), id ")
    assert "cloudviz pipeline run --dataset iris@2" in out
    code, out, _ = run(capsys, "data", "add", more, "--json")
    document = json.loads(out)
    assert (code, document["added"], document["version"], document["rows"]) == (0, False, 2, 152)
    code, out, _ = run(capsys, "data", "add", more)
    assert (code, out.strip()) == (0, f"no new version: the content of {more} is in iris@2 already")

    code, out, _ = run(capsys, "data", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["VERSION", "ID", "ROWS", "PARTS", "GROUP", "CREATED", "ORIGIN"]
    assert [line.split()[:5] for line in lines[1:]] == [
        ["iris@1", lines[1].split()[1], "150", "1", "CloudVizIris"], ["iris@2", lines[2].split()[1], "152", "2",
                                                                       "CloudVizIris"]]
    code, out, _ = run(capsys, "data", "list", "--json")
    assert [item["version"] for item in json.loads(out)] == [1, 2]

    code, out, _ = run(capsys, "data", "show", "iris@1")
    assert code == 0 and out.startswith("iris@1 (id ") and "150 rows in 1 part(s), bundled" in out
    assert "Task: classification; label species; features x1, x2, x3, x4; classes setosa, virginica, versicolor" in out
    first_id = out.split("(id ", 1)[1].split(")", 1)[0]
    assert f"Manifest: {(home.datasets / f'iris/versions/1-{first_id}.manifest').as_uri()}" in out
    code, out, _ = run(capsys, "data", "show", "iris", "--json")
    assert json.loads(out)["version"] == 2


def test_data_add_of_a_new_data_set(home: StateHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = csv_file(tmp_path, "my-points.csv", "a,b,target\n1,2,p\n2,3,q\n3,4,r\n4,5,s\n")
    code, _, err = run(capsys, "data", "add", path, "--dataset", "points")
    assert (code, err.strip()) == (2, "cloudviz: error: --label-column: points is a new data set; name the column "
                                      "of my-points.csv that holds the label")
    code, out, _ = run(capsys, "data", "add", path, "--dataset", "points", "--label-column", "target", "--json")
    document = json.loads(out)
    assert code == 0 and document["parameters"] == {"LabelColumn": "target", "FeatureColumns": "a,b",
                                                    "ClassNames": "p,q,r,s", "ModelPackageGroupName": "Points"}
    code, out, _ = run(capsys, "data", "list", "--dataset", "points")
    assert code == 0 and out.splitlines()[1].split()[0] == "points@1"


@pytest.mark.parametrize(("argv", "expected"), [
    (("data", "show", "nope"), "cloudviz: error: data set 'nope': no such data set"),
    (("data", "show", "iris@7"), "cloudviz: error: data set 'iris@7': no such version; iris has versions 1"),
    (("data", "show", "Bad Name"), "cloudviz: error: data set 'Bad Name': expected NAME or NAME@N"),
    (("data", "add", "{bad}"), "cloudviz: error: {bad}: line 4, column 'x3': 'x' is not a number"),
    (("data", "add", "{missing}"), "cloudviz: error: {missing}: no such file"),
    (("data", "list", "--target", "aws", "--region", "us-east-1"),
     "cloudviz: error: --bucket is required with --target aws (or set $CLOUDVIZ_BUCKET)"),
    (("data", "export-feedback"), "cloudviz: error: --group CloudVizIris: no predictions on this state home"),
])
def test_data_errors_exit_2_with_one_line(home: StateHome, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...],
                                          expected: str) -> None:
    monkeypatch.delenv("CLOUDVIZ_BUCKET", raising=False)
    files = {"bad": csv_file(tmp_path, "bad.csv", ROWS + "1,2,x,4,setosa\n"), "missing": str(tmp_path / "none.csv")}
    code, out, err = run(capsys, *(part.format(**files) for part in argv))
    assert (code, out) == (2, "")
    assert err.startswith(expected.format(**files)) and len(err.splitlines()) == 1


def test_data_export_feedback(home: StateHome, capsys: pytest.CaptureFixture[str]) -> None:
    serve_labelled_predictions(home, "CloudVizIris", 3)
    code, out, _ = run(capsys, "data", "export-feedback")
    assert code == 0 and out.startswith("iris@2: added 3 labelled prediction(s) (153 rows in 2 part(s))")
    code, out, _ = run(capsys, "data", "export-feedback", "--json")
    assert (code, json.loads(out)) == (0, None)
    code, out, _ = run(capsys, "data", "export-feedback")
    assert (code, out.strip()) == (0, "nothing to export: no labelled predictions that iris does not hold already")


def test_data_on_s3_through_the_command(home: StateHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    more = csv_file(tmp_path, "more.csv", ROWS)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        aws = ("--target", "aws", "--region", "us-east-1", "--bucket", "artifacts", "--prefix", "team")
        code, out, _ = run(capsys, "data", "add", more, *aws)
        assert code == 0 and out.startswith("iris@2: added 2 rows")
        code, out, _ = run(capsys, "data", "show", "iris", *aws, "--json")
        shown = json.loads(out)
        assert shown["manifest"] == f"s3://artifacts/team/datasets/iris/versions/2-{shown['id']}.manifest"
        keys = [item["Key"] for item in s3.list_objects_v2(Bucket="artifacts")["Contents"]]
        assert len(keys) == 6 and all(key.startswith("team/datasets/iris/") for key in keys)
    assert not home.datasets.exists()


def test_project_data_on_the_local_target(home: StateHome, tmp_path: Path) -> None:
    project = cloudviz.local(home.root)
    added = project.data.add(csv_file(tmp_path, "more.csv", ROWS))
    assert added.ref == "iris@2" and project.data.show() == added and project.data.show("iris@2") == added
    assert [version.ref for version in project.data.list()] == ["iris@1", "iris@2"]
    regression = project.data.add(csv_file(tmp_path, "h.csv", "r,price\n1,2.5\n2,3.5\n"), "houses",
                                  label_column="price", task="regression")
    assert regression.parameters["ModelPackageGroupName"] == "Houses"
    assert [version.ref for version in project.data.list("houses")] == ["houses@1"]
    with pytest.raises(UserError, match=r"--task 'classification': data set houses has 'regression'"):
        project.data.add(csv_file(tmp_path, "h2.csv", "r,price\n3,4.5\n"), "houses", task="classification")
    with pytest.raises(NotFoundError, match=r"--group CloudVizIris: no predictions"):
        project.data.export_feedback()
    serve_labelled_predictions(home, "CloudVizIris", 2)
    exported = project.data.export_feedback()
    assert exported is not None and exported.ref == "iris@3" and len(exported.exported_predictions) == 2
    assert project.data.export_feedback("iris", "CloudVizIris") is None


def test_project_data_on_aws(tmp_path: Path) -> None:
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="artifacts")
        project = cloudviz.aws(region="us-east-1", bucket="artifacts")
        added = project.data.add(csv_file(tmp_path, "more.csv", ROWS))
        assert added.manifest_uri == f"s3://artifacts/cloudviz/datasets/iris/versions/2-{added.id}.manifest"
        assert [version.ref for version in project.data.list()] == ["iris@1", "iris@2"]
        with pytest.raises(NotFoundError, match=r"no prediction table on any stage"):
            project.data.export_feedback()
        with pytest.raises(AwsError, match="^AWS: "):
            cloudviz.aws(region="us-east-1", bucket="no-such-bucket").data.list()
