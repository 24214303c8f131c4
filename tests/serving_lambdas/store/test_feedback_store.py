"""Recording a prediction's true label, in both stores: SQLite on real files, DynamoDB under moto (one conditional
UpdateItem, never a read first)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.validate import ParamValidator
from old_prediction_files import write_old_predictions_db
from test_prediction_store import START, aws, made_at  # noqa: F401 (aws: a fixture)

from serving_lambdas.records import Feedback, new_ids
from serving_lambdas.store import DynamoDbStore, FeedbackConflict, SqliteStore
from serving_lambdas.store.dynamodb import table_definition

VIRGINICA = Feedback("virginica", "2026-11-29T04:00:00.000000Z")


@pytest.fixture
def dynamodb(aws):  # noqa: F811 (aws: the imported fixture)
    """A DynamoDB store whose every request is recorded with its parameters as sent."""
    client = boto3.client("dynamodb")
    client.create_table(**table_definition("predictions"))
    store = DynamoDbStore("predictions", client)
    store.sent = []
    client.meta.events.register("before-parameter-build.dynamodb",
                                lambda params, model, **_: store.sent.append((model.name, dict(params))))
    return store


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        return SqliteStore(tmp_path / "state" / "predictions.db")
    return request.getfixturevalue("dynamodb")


def test_a_label_is_recorded_and_shown_with_its_prediction(store):
    (record,) = made_at(START)
    store.put([record])
    stored = store.record_feedback(record.id, VIRGINICA)
    assert stored.feedback == VIRGINICA and stored.id == record.id and stored.label == record.label
    assert store.get(record.id) == stored and store.newest(5) == [stored]
    document = stored.document()
    assert document["feedback"] == {"label": "virginica", "recorded_at": VIRGINICA.recorded_at}
    assert {name: value for name, value in document.items() if name != "feedback"} == record.document()
    assert "feedback" not in record.document()


def test_the_same_label_again_changes_nothing(store):
    (record,) = made_at(START)
    store.put([record])
    first = store.record_feedback(record.id, VIRGINICA)
    again = store.record_feedback(record.id, Feedback("virginica", "2026-11-30T00:00:00.000000Z"))
    assert again == first and again.feedback.recorded_at == VIRGINICA.recorded_at


def test_another_label_is_a_conflict_and_keeps_the_first(store):
    (record,) = made_at(START)
    store.put([record])
    store.record_feedback(record.id, VIRGINICA)
    with pytest.raises(FeedbackConflict) as raised:
        store.record_feedback(record.id, Feedback("setosa", "2026-11-30T00:00:00.000000Z"))
    assert raised.value.record.feedback == VIRGINICA
    assert store.get(record.id).feedback == VIRGINICA


@pytest.mark.parametrize("prediction_id", [new_ids(START, 1)[0], "no-such-prediction"])
def test_an_unknown_id_is_none_and_creates_nothing(store, prediction_id: str):
    store.put(made_at(START))
    assert store.record_feedback(prediction_id, VIRGINICA) is None
    assert store.get(prediction_id) is None and len(store.newest(5)) == 1


def test_a_regression_value_comes_back_as_a_number(store):
    (record,) = made_at(START, prediction=12.3, label=None, probabilities=None)
    store.put([record])
    stored = store.record_feedback(record.id, Feedback(12.5, VIRGINICA.recorded_at))
    assert store.get(record.id).feedback == Feedback(12.5, VIRGINICA.recorded_at) == stored.feedback
    assert store.record_feedback(record.id, Feedback(12.5, "2026-12-01T00:00:00.000000Z")) == stored
    with pytest.raises(FeedbackConflict):
        store.record_feedback(record.id, Feedback(12.0, VIRGINICA.recorded_at))


def test_dynamodb_feedback_is_one_conditional_update_item_that_botocore_validates(dynamodb):
    """Recorded, repeated, conflicting and unknown: each is exactly one UpdateItem (no GetItem, no Scan), whose
    parameters pass botocore's ParamValidator against the DynamoDB service model."""
    (record,) = made_at(START)
    dynamodb.put([record])
    dynamodb.sent.clear()
    dynamodb.record_feedback(record.id, VIRGINICA)
    dynamodb.record_feedback(record.id, VIRGINICA)
    with pytest.raises(FeedbackConflict):
        dynamodb.record_feedback(record.id, Feedback("setosa", VIRGINICA.recorded_at))
    dynamodb.record_feedback(new_ids(START, 1)[0], VIRGINICA)
    assert [name for name, _ in dynamodb.sent] == ["UpdateItem"] * 4
    service = botocore.session.get_session().get_service_model("dynamodb")
    for _, params in dynamodb.sent:
        report = ParamValidator().validate(params, service.operation_model("UpdateItem").input_shape)
        assert not report.has_errors(), report.generate_report()
        assert "attribute_not_exists" in params["ConditionExpression"]
    assert dynamodb.sent[0][1]["ExpressionAttributeValues"][":feedback"] == {
        "M": {"label": {"S": "virginica"}, "recorded_at": {"S": VIRGINICA.recorded_at}}}


def test_a_sqlite_file_of_before_feedback_gains_its_columns_and_keeps_its_rows(tmp_path: Path):
    """A predictions.db made before feedback (with request_id, without the feedback columns): opening it adds them
    in place; its rows take a label."""
    path = tmp_path / "predictions.db"
    (old,) = made_at(START, request_id="r-1")
    write_old_predictions_db(path, old, "id TEXT PRIMARY KEY, timestamp TEXT NOT NULL, features TEXT NOT NULL, "
                             "prediction NUMERIC NOT NULL, label TEXT, probabilities TEXT, model_version INTEGER, "
                             "latency_ms REAL NOT NULL, request_id TEXT", "r-1")
    store = SqliteStore(path)
    assert store.newest(10) == [old]
    assert store.record_feedback(old.id, VIRGINICA).feedback == VIRGINICA
    with sqlite3.connect(path) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(predictions)")]
    assert columns[-2:] == ["feedback_label", "feedback_recorded_at"]
    assert SqliteStore(path).get(old.id).feedback == VIRGINICA  # a second open finds nothing left to migrate
