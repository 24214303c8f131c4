"""A data set whose features are some of its columns (``--feature-columns``): an id or text column is kept as it
is, runs train on exactly the named features, and feedback exported into it leaves the other columns empty."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cloudviz.api.local import LocalProject
from cloudviz.cli import main
from deploy.endpoint_state import EndpointFiles
from pipelines.data.versions import local_dataset_store
from pipelines.errors import UserError
from pipelines.registry import ModelRegistry
from pipelines.state import StateHome
from serving_lambdas.records import Feedback, PredictionRecord, new_ids, timestamp_text
from serving_lambdas.store.sqlite import SqliteStore

HEADER = "customer_id,tenure,charges,churned"
TWO_CLASSES = {"Objective": "binary:logistic"}


def churn_csv(path: Path, rows: int = 240) -> Path:
    """churned = yes exactly when tenure is below 12 months (none between 12 and 24); charges is noise. Customer
    ids like C-0001, one of them empty and one with spaces around it (kept as they are)."""
    rng = np.random.default_rng(5)
    churned = rng.random(rows) < 0.4
    tenure = np.where(churned, rng.uniform(0, 12, rows), rng.uniform(24, 72, rows))
    charges = rng.uniform(20, 120, rows)
    ids = [f"C-{i + 1:04d}" for i in range(rows)]
    ids[3], ids[4] = "", " C-0005 "
    lines = [HEADER] + [f"{ids[i]},{tenure[i]:.2f},{charges[i]:.2f},{'yes' if churned[i] else 'no'}"
                        for i in range(rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def part_rows(home: StateHome, sha256: str) -> list[list[str]]:
    text = (home.datasets / "churn" / "parts" / f"{sha256}.csv").read_text(encoding="utf-8")
    return list(csv.reader(text.splitlines()))


def add_churn(capsys: pytest.CaptureFixture[str], path: Path) -> dict:
    code, out, err = run(capsys, "data", "add", str(path), "--dataset", "churn", "--label-column", "churned",
                         "--feature-columns", "tenure, charges", "--json")
    assert code == 0, err
    return json.loads(out)


def test_an_id_column_is_refused_as_a_feature_and_kept_beside_the_named_features(
    home: StateHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = churn_csv(tmp_path / "churn.csv")
    code, _, err = run(capsys, "data", "add", str(path), "--dataset", "churn", "--label-column", "churned")
    assert code == 2
    assert err.startswith(f"cloudviz: error: {path}: line 2, column 'customer_id': 'C-0001' is not a number; ")

    document = add_churn(capsys, path)
    assert document["schema"]["columns"] == ["customer_id", "tenure", "charges", "churned"]
    assert document["schema"]["feature_columns"] == ["tenure", "charges"]
    assert document["parameters"] == {"LabelColumn": "churned", "FeatureColumns": "tenure,charges",
                                      "ClassNames": "no,yes", "ModelPackageGroupName": "Churn"}
    header, *rows = part_rows(home, document["parts"][0]["sha256"])
    assert header == HEADER.split(",")
    assert [row[0] for row in rows[:6]] == ["C-0001", "C-0002", "C-0003", "", " C-0005 ", "C-0006"]

    run_document = json.loads(run(capsys, "pipeline", "run", "--dataset", "churn", "--param",
                                    "Objective=binary:logistic", "--quiet", "--json")[1])
    assert run_document["status"] == "Succeeded", run_document
    assert run_document["parameters"]["FeatureColumns"] == "tenure,charges"
    package = ModelRegistry(home.registry_db).get("Churn", 1)
    assert package.lineage["schema"]["feature_columns"] == ["tenure", "charges"]
    assert package.lineage["data"]["dataset"] == {"name": "churn", "version": 1, "id": document["id"]}


def test_a_later_add_checks_the_same_columns(home: StateHome, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    add_churn(capsys, churn_csv(tmp_path / "churn.csv"))
    store = local_dataset_store(home)
    more = tmp_path / "more.csv"
    more.write_text(f"{HEADER}\nX-9,3,50.5,yes\nsome text,40,70,no\n", encoding="utf-8")
    assert store.add("churn", more).rows == 242
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{HEADER}\nC-1,three,50.5,yes\nC-2,40,70,maybe\n", encoding="utf-8")
    with pytest.raises(UserError) as error:
        store.add("churn", bad)
    assert str(error.value) == (f"{bad}: line 2, column 'tenure': 'three' is not a number; line 3, column "
                                "'churned': unknown label 'maybe' (the classes of data set churn: no, yes)")
    with pytest.raises(UserError, match=r"^--feature-columns 'tenure': data set churn has 'tenure,charges'"):
        store.add("churn", more, feature_columns=["tenure"])


@pytest.mark.parametrize(("features", "message"), [
    (["tenure", "monthly"], "--feature-columns 'monthly': {path} has no such column (its columns: customer_id, "
                            "tenure, charges, churned)"),
    (["tenure", "churned"], "--feature-columns 'churned': the label column (--label-column) cannot be a feature"),
    (["tenure", "tenure"], "--feature-columns 'tenure': named more than once"),
    ([], "--feature-columns: name at least one column"),
])
def test_feature_columns_that_are_not_features_of_the_file_are_refused(
    home: StateHome, tmp_path: Path, features: list[str], message: str
) -> None:
    path = churn_csv(tmp_path / "churn.csv", rows=10)
    store = local_dataset_store(home)
    with pytest.raises(UserError) as error:
        store.add("churn", path, label_column="churned", feature_columns=features)
    assert str(error.value).startswith(message.format(path=path))
    assert store.names() == ["iris"]


def test_the_command_names_an_unknown_feature_column(home: StateHome, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = churn_csv(tmp_path / "churn.csv", rows=10)
    code, out, err = run(capsys, "data", "add", str(path), "--dataset", "churn", "--label-column", "churned",
                         "--feature-columns", "tenure,monthly")
    assert (code, out) == (2, "")
    assert err == (f"cloudviz: error: --feature-columns 'monthly': {path} has no such column (its columns: "
                   "customer_id, tenure, charges, churned)\n")


def test_feedback_exported_into_it_leaves_the_id_column_empty_and_trains(
    home: StateHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = add_churn(capsys, churn_csv(tmp_path / "churn.csv"))
    store = SqliteStore(EndpointFiles.of(home, "Churn", "dev").predictions_db)
    moments = [datetime(2026, 11, 29, 3, tzinfo=UTC) + timedelta(minutes=i) for i in range(4)]
    records = [PredictionRecord(new_ids(moment, 1)[0], timestamp_text(moment), {"tenure": 5.0 + 10 * i,
                                "charges": 30.5 + i}, 0, "no", {"no": 0.9, "yes": 0.1}, 1, 2.0)
               for i, moment in enumerate(moments)]
    store.put(records)
    for record in records[:3]:
        truth = "yes" if record.features["tenure"] < 12 else "no"
        store.record_feedback(record.id, Feedback(truth, timestamp_text(datetime.now(UTC))))

    exported = LocalProject(home.root).data.export_feedback("churn")
    assert exported is not None and exported.ref == "churn@2" and exported.rows == first["rows"] + 3
    header, *rows = part_rows(home, exported.parts[-1].sha256)
    assert header == HEADER.split(",")
    assert sorted(rows) == [["", "15.0", "31.5", "no"], ["", "25.0", "32.5", "no"], ["", "5.0", "30.5", "yes"]]

    trained = LocalProject(home.root).pipeline.run(TWO_CLASSES, dataset="churn")
    assert trained.succeeded, trained.failure_reason
    assert trained.parameters["DataSetVersion"] == "churn@2"
    assert ModelRegistry(home.registry_db).get("Churn", 1).lineage["data"]["rows"]["input"] == first["rows"] + 3
