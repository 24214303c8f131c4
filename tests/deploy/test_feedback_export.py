"""Labelled predictions back into a data set: from the real SQLite store a local endpoint writes, and from a
stage's DynamoDB table (moto); each prediction exported once."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from deploy.aws.names import ResourceNames
from deploy.endpoint_state import EndpointFiles
from deploy.feedback_export import dynamodb_prediction_stores, export_feedback, local_prediction_stores
from pipelines.data.versions import DatasetStore, local_dataset_store, s3_dataset_store
from pipelines.errors import NotFoundError, UserError
from pipelines.state import StateHome
from serving_lambdas.records import Feedback, PredictionRecord, new_ids, timestamp_text
from serving_lambdas.store.dynamodb import DynamoDbStore, table_definition
from serving_lambdas.store.sqlite import SqliteStore

CLASSES = ("setosa", "virginica", "versicolor")
REGION = "us-east-1"


def predictions(count: int, features: tuple[str, ...] = ("x1", "x2", "x3", "x4")) -> list[PredictionRecord]:
    start = datetime(2026, 11, 29, 3, tzinfo=UTC)
    records = []
    for index in range(count):
        moment = start + timedelta(minutes=index)
        records.append(PredictionRecord(
            new_ids(moment, 1)[0], timestamp_text(moment), {name: 1.5 + index + k for k, name in enumerate(features)},
            index % 3, CLASSES[index % 3], None, 1, 2.0))
    return records


def label(store: SqliteStore | DynamoDbStore, records: list[PredictionRecord], which: range) -> dict[str, list[str]]:
    """Record true labels of ``records[which]`` (each the class after the predicted one); the expected rows by id."""
    rows = {}
    for record in (records[index] for index in which):
        truth = CLASSES[(record.prediction + 1) % 3]
        store.record_feedback(record.id, Feedback(truth, timestamp_text(datetime.now(UTC))))
        rows[record.id] = [repr(record.features[name]) for name in ("x1", "x2", "x3", "x4")] + [truth]
    return rows


def part_rows(datasets: DatasetStore, sha256: str) -> list[list[str]]:
    return list(csv.reader(datasets.storage.read(f"iris/parts/{sha256}.csv").decode().splitlines()))


@pytest.fixture
def local(tmp_path: Path) -> tuple[StateHome, SqliteStore, list[PredictionRecord]]:
    home = StateHome(tmp_path / "home")
    store = SqliteStore(EndpointFiles.of(home, "CloudVizIris", "dev").predictions_db)
    records = predictions(12)
    store.put(records)
    return home, store, records


def test_labelled_predictions_become_a_version_once(local: tuple, tmp_path: Path) -> None:
    home, store, records = local
    datasets = local_dataset_store(home)
    expected = label(store, records, range(0, 12, 3))
    version = export_feedback(datasets, "iris", "CloudVizIris", local_prediction_stores(home, "CloudVizIris"))
    assert version is not None
    assert (version.ref, version.origin, version.rows) == ("iris@2", "export-feedback", 154)
    assert sorted(version.exported_predictions) == sorted(expected)
    header, *rows = part_rows(datasets, version.parts[-1].sha256)
    assert header == ["x1", "x2", "x3", "x4", "species"]
    assert sorted(rows) == sorted(expected.values())
    assert version.parts[-1].source.startswith("feedback-CloudVizIris-")

    assert export_feedback(datasets, "iris", "CloudVizIris", local_prediction_stores(home, "CloudVizIris")) is None
    assert datasets.resolve("iris") == version

    more = label(store, records, range(1, 3))
    third = export_feedback(datasets, "iris", "CloudVizIris", local_prediction_stores(home, "CloudVizIris"))
    assert third is not None and third.ref == "iris@3" and sorted(third.exported_predictions) == sorted(more)
    assert sorted(part_rows(datasets, third.parts[-1].sha256)[1:]) == sorted(more.values())


def test_predictions_of_other_features_are_refused_naming_the_missing_columns(tmp_path: Path) -> None:
    home = StateHome(tmp_path / "home")
    store = SqliteStore(EndpointFiles.of(home, "Other", "prod").predictions_db)
    records = predictions(2, ("x1", "petal"))
    store.put(records)
    store.record_feedback(records[0].id, Feedback("setosa", timestamp_text(datetime.now(UTC))))
    datasets = local_dataset_store(home)
    with pytest.raises(UserError, match=r"the predictions of Other lack the data set's feature column\(s\) x2, x3, "
                                        r"x4 \(the model's features: x1, petal\)"):
        export_feedback(datasets, "iris", "Other", local_prediction_stores(home, "Other"))
    assert datasets.resolve("iris").version == 1
    with pytest.raises(NotFoundError, match=r"--group Nobody: no predictions on this state home"):
        local_prediction_stores(home, "Nobody")


def test_feedback_from_each_stages_dynamodb_table_into_s3(tmp_path: Path) -> None:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="artifacts")
        expected = {}
        for stage, count in (("dev", 5), ("prod", 4)):
            table = ResourceNames(stage, "CloudVizIris").table_name
            dynamodb.create_table(**table_definition(table))
            store = DynamoDbStore(table, dynamodb)
            records = predictions(count)
            store.put(records)
            expected |= label(store, records, range(0, count, 2))
        datasets = s3_dataset_store(s3, "artifacts", "cloudviz")
        stores = dynamodb_prediction_stores(dynamodb, "CloudVizIris")
        assert sorted(stores) == ["dev", "prod"]
        version = export_feedback(datasets, "iris", "CloudVizIris", stores)
        assert version is not None and version.rows == 150 + len(expected) == 155
        assert sorted(part_rows(datasets, version.parts[-1].sha256)[1:]) == sorted(expected.values())
        assert export_feedback(datasets, "iris", "CloudVizIris", stores) is None
        with pytest.raises(NotFoundError, match=r"--group Nobody: no prediction table on any stage"):
            dynamodb_prediction_stores(dynamodb, "Nobody")
