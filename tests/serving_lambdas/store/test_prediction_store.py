"""The prediction store, both implementations through one interface: SQLite on real files, DynamoDB under moto."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.validate import ParamValidator
from moto import mock_aws
from old_prediction_files import write_old_predictions_db

from serving_lambdas.records import PredictionRecord, new_ids, time_bound, timestamp_text
from serving_lambdas.store import DuplicateId, DynamoDbStore, SqliteStore, StoreSpec, open_store
from serving_lambdas.store.dynamodb import SHARDS, partition_of, table_definition

START = datetime(2026, 11, 29, 3, 20, 1, 123456, tzinfo=UTC)
SEED = {"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5}
READS_AND_WRITES = {"GetItem", "Query", "PutItem", "TransactWriteItems"}


def made_at(moment: datetime, count: int = 1, **changes) -> list[PredictionRecord]:
    fields = {
        "timestamp": timestamp_text(moment),
        "features": dict(SEED),
        "prediction": 1,
        "label": "virginica",
        "probabilities": {"setosa": 0.02, "virginica": 0.93, "versicolor": 0.05},
        "model_version": 3,
        "latency_ms": 1.25,
    }
    return [PredictionRecord(id=prediction_id, **{**fields, **changes}) for prediction_id in new_ids(moment, count)]


def spread(count: int, step: timedelta, start: datetime = START) -> list[PredictionRecord]:
    return [record for k in range(count) for record in made_at(start + k * step)]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    """moto's in-process AWS with dummy credentials: nothing leaves the process."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


@pytest.fixture
def dynamodb(aws):
    """A DynamoDB store on a table made from ``table_definition``; every operation it issues is recorded."""
    client = boto3.client("dynamodb")
    client.create_table(**table_definition("predictions"))
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    store = DynamoDbStore("predictions", client)
    store.calls = calls
    yield store
    assert set(calls) <= READS_AND_WRITES, f"the store issued {sorted(set(calls) - READS_AND_WRITES)}"


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        return SqliteStore(tmp_path / "state" / "predictions.db")
    return request.getfixturevalue("dynamodb")


def everything(store, limit: int, since: str = "", before: str = "~") -> tuple[list[str], int]:
    """Every id from ``newest`` page by page (limit + 1 fetched, as the retrieve handler does), and the page count."""
    ids: list[str] = []
    pages = 0
    while True:
        records = store.newest(limit + 1, since, before)
        pages += 1
        ids += [record.id for record in records[:limit]]
        if len(records) <= limit:
            return ids, pages
        before = records[limit - 1].id


# -- both stores ------------------------------------------------------------------------------------------------


def test_a_stored_prediction_comes_back_field_for_field(store):
    (record,) = made_at(START, features={"x1": 0.1, "x2": 1e-30, "x3": 3.0, "x4": 123456.789})
    (softmax,) = made_at(START + timedelta(seconds=1), probabilities=None, model_version=None)
    store.put([record])
    store.put([softmax])
    assert store.get(record.id) == record
    assert store.get(softmax.id) == softmax


def test_a_request_id_comes_back_with_its_prediction_and_in_its_document(store):
    with_id = made_at(START, 2, request_id="order-17:a")
    without = made_at(START + timedelta(seconds=1))
    store.put(with_id)
    store.put(without)
    assert [store.get(record.id) for record in with_id + without] == with_id + without
    assert [record.request_id for record in store.newest(10)] == [None, "order-17:a", "order-17:a"]
    assert list(store.get(with_id[0].id).document())[:2] == ["id", "request_id"]
    assert "request_id" not in store.get(without[0].id).document()


@pytest.mark.parametrize("prediction", [12.3, 12.0, -0.5, 0.0])
def test_a_regression_prediction_comes_back_as_a_float_without_label(store, prediction: float):
    (record,) = made_at(START, prediction=prediction, label=None, probabilities=None)
    store.put([record])
    stored = store.get(record.id)
    assert stored == record and isinstance(stored.prediction, float)
    assert stored.document() == {"id": record.id, "timestamp": record.timestamp, "features": SEED,
                                 "prediction": prediction, "model_version": 3, "latency_ms": 1.25}


def test_a_binary_prediction_comes_back_with_the_predicted_labels_probability(store):
    (record,) = made_at(START, prediction=1, label="churn", probabilities={"stay": 0.25, "churn": 0.75})
    store.put([record])
    stored = store.get(record.id)
    assert stored == record and isinstance(stored.prediction, int)
    assert stored.document()["probability"] == 0.75


@pytest.mark.parametrize("prediction_id", [new_ids(START, 1)[0], "no-such-prediction", "", "x" * 500])
def test_an_unknown_id_is_none(store, prediction_id: str):
    store.put(made_at(START))
    assert store.get(prediction_id) is None


def test_newest_first_page_by_page_across_hours_and_empty_days(store):
    records = spread(30, timedelta(minutes=7)) + spread(12, timedelta(minutes=13), START + timedelta(days=3))
    for record in records:
        store.put([record])
    ids, pages = everything(store, limit=7)
    assert ids == sorted((record.id for record in records), reverse=True)
    assert pages == 6  # 42 items, 7 a page: no empty last page


def test_time_bounds_include_since_and_exclude_until(store):
    records = spread(10, timedelta(minutes=30))
    store.put(records)
    since, until = START + timedelta(minutes=60), START + timedelta(minutes=180)
    ids, _ = everything(store, limit=2, since=time_bound(since), before=time_bound(until))
    assert ids == [record.id for record in records[2:6]][::-1]
    assert store.newest(10, time_bound(until), time_bound(since)) == []


def test_a_batch_lists_in_row_order_newest_first(store):
    batch = made_at(START, 3)
    store.put(batch)
    assert [record.id for record in store.newest(10)] == [record.id for record in reversed(batch)]


def test_a_batch_is_stored_whole_or_not_at_all(store):
    (first,) = made_at(START)
    store.put([first])
    (fresh,) = made_at(START + timedelta(seconds=1))
    with pytest.raises(DuplicateId):
        store.put([fresh, first])
    with pytest.raises(DuplicateId):
        store.put([fresh, fresh])
    assert store.get(fresh.id) is None
    assert [record.id for record in store.newest(10)] == [first.id]


def test_sqlite_reports_only_a_stored_id_as_a_duplicate(tmp_path: Path):
    store = SqliteStore(tmp_path / "predictions.db")
    (fresh,) = made_at(START)
    (broken,) = made_at(START + timedelta(seconds=1), latency_ms=None)  # NOT NULL: a bug, not a duplicate
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        store.put([fresh, broken])
    assert store.get(fresh.id) is None, "the batch is rolled back whole"
    store.put([fresh])
    assert store.get(fresh.id) == fresh


def test_the_store_spec_names_the_kind_and_the_target():
    assert StoreSpec.parse("sqlite:/srv/p.db") == StoreSpec("sqlite", "/srv/p.db")
    assert StoreSpec.parse("dynamodb:CloudVizPredictions") == StoreSpec("dynamodb", "CloudVizPredictions")
    for bad in ["", "sqlite:", "sqlite:relative.db", "postgres://db", "dynamodb"]:
        with pytest.raises(ValueError, match="PREDICTION_STORE"):
            StoreSpec.parse(bad)


# -- SQLite -----------------------------------------------------------------------------------------------------


def test_sqlite_takes_concurrent_writers_from_threads_and_a_second_store_on_the_file(tmp_path: Path):
    path = tmp_path / "predictions.db"
    stores = [SqliteStore(path), SqliteStore(path)]  # two Lambdas (or processes) on one file
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for k in range(25):
                moment = START + timedelta(seconds=worker, microseconds=k)
                stores[worker % 2].put(made_at(moment, 1 + k % 3))
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    expected = 16 * sum(1 + k % 3 for k in range(25))
    ids, _ = everything(SqliteStore(path), limit=100)
    assert len(ids) == len(set(ids)) == expected


def test_sqlite_is_wal_and_lists_by_a_primary_key_range_not_a_scan(tmp_path: Path):
    path = tmp_path / "predictions.db"
    SqliteStore(path).put(made_at(START))
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    plan = " ".join(
        row[-1]
        for row in connection.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM predictions WHERE id >= ? AND id < ? ORDER BY id DESC LIMIT ?",
            ("", "~", 5),
        )
    )
    assert "USING PRIMARY KEY" in plan and "SCAN" not in plan


# -- DynamoDB ---------------------------------------------------------------------------------------------------


def test_dynamodb_table_is_created_from_the_definition_data(dynamodb):
    description = boto3.client("dynamodb").describe_table(TableName="predictions")["Table"]
    definition = table_definition("predictions")
    assert description["KeySchema"] == definition["KeySchema"]
    assert description["AttributeDefinitions"] == definition["AttributeDefinitions"]
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_dynamodb_reads_by_get_item_and_query_only(dynamodb):
    records = spread(20, timedelta(minutes=20))
    dynamodb.put(records[:10])
    for record in records[10:]:
        dynamodb.put([record])
    everything(dynamodb, limit=3, since=time_bound(START + timedelta(minutes=30)))
    dynamodb.get(records[4].id)
    assert {"GetItem", "Query", "PutItem", "TransactWriteItems"} == set(dynamodb.calls)


def test_dynamodb_get_by_id_is_one_get_item(dynamodb):
    (record,) = made_at(START)
    dynamodb.put([record])
    dynamodb.calls.clear()
    assert dynamodb.get(record.id) == record
    assert dynamodb.calls == ["GetItem"]


def test_dynamodb_spreads_one_hours_writes_over_its_shards(dynamodb):
    records = spread(200, timedelta(milliseconds=10))
    for record in records:
        dynamodb.put([record])
    partitions = {partition_of(record.id) for record in records}
    assert partitions == {f"20261129T03#{shard}" for shard in range(SHARDS)}
    counts = [
        dynamodb.client.query(
            TableName="predictions",
            KeyConditionExpression="pk = :pk",
            Select="COUNT",
            ExpressionAttributeValues={":pk": {"S": partition}},
        )["Count"]
        for partition in sorted(partitions)
    ]
    assert sum(counts) == 200 and min(counts) > 200 / SHARDS / 2


def test_dynamodb_numbers_are_numbers(dynamodb):
    (record,) = made_at(START, probabilities={"setosa": 1e-200, "virginica": 0.9, "versicolor": 0.1})
    dynamodb.put([record])
    item = dynamodb.client.get_item(
        TableName="predictions", Key={"pk": {"S": partition_of(record.id)}, "sk": {"S": record.id}}
    )["Item"]
    assert item["features"]["M"]["x1"] == {"N": "6.7"}
    assert item["model_version"] == {"N": "3"}
    assert item["probabilities"]["M"]["setosa"] == {"N": "0"}  # below DynamoDB's smallest number


def test_dynamodb_put_items_of_every_task_pass_botocores_own_validation(dynamodb):
    """The PutItem and TransactWriteItems parameters the store sends, checked by botocore's ParamValidator against
    the DynamoDB service model (a float prediction, a null label and null probabilities included)."""
    sent: list[tuple[str, dict]] = []
    dynamodb.client.meta.events.register(
        "before-parameter-build.dynamodb", lambda params, model, **_: sent.append((model.name, dict(params))))
    regression = made_at(START, prediction=12.3, label=None, probabilities=None)
    binary = made_at(START, 2, prediction=0, label="stay", probabilities={"stay": 0.9, "churn": 0.1})
    dynamodb.put(regression)
    dynamodb.put(binary)
    dynamodb.put(made_at(START, request_id="r-1"))
    dynamodb.put([*made_at(START, request_id="r-2"), *made_at(START)])
    service = botocore.session.get_session().get_service_model("dynamodb")
    writes = [(name, params) for name, params in sent if name in ("PutItem", "TransactWriteItems")]
    assert [name for name, _ in writes] == ["PutItem", "PutItem", "TransactWriteItems", "PutItem", "TransactWriteItems"]
    for name, params in writes:  # the hour index, then one prediction, a batch, one with a request_id, a mixed batch
        report = ParamValidator().validate(params, service.operation_model(name).input_shape)
        assert not report.has_errors(), report.generate_report()
    item = writes[1][1]["Item"]
    assert (item["prediction"], item["label"], item["probabilities"]) == ({"N": "12.3"}, {"NULL": True}, {"NULL": True})
    assert "request_id" not in item and writes[3][1]["Item"]["request_id"] == {"S": "r-1"}
    mixed = [put["Put"]["Item"] for put in writes[4][1]["TransactItems"]]
    assert [item.get("request_id") for item in mixed] == [{"S": "r-2"}, None]


def test_a_sqlite_file_of_before_regression_is_migrated_with_its_rows(tmp_path: Path):
    """Files made before regression models declared ``label TEXT NOT NULL`` (and had no request_id): opening one
    keeps every row and then takes predictions without a label, or with a request_id."""
    path = tmp_path / "predictions.db"
    (old,) = made_at(START)
    write_old_predictions_db(path, old, "id TEXT PRIMARY KEY, timestamp TEXT NOT NULL, features TEXT NOT NULL, "
                             "prediction INTEGER NOT NULL, label TEXT NOT NULL, probabilities TEXT, "
                             "model_version INTEGER, latency_ms REAL NOT NULL")
    store = SqliteStore(path)
    (regression,) = made_at(START + timedelta(seconds=1), prediction=2.5, label=None, probabilities=None)
    (joined,) = made_at(START + timedelta(seconds=2), request_id="r-1")
    store.put([regression, joined])
    assert store.newest(10) == [joined, regression, old]
    assert SqliteStore(path).newest(10) == [joined, regression, old]  # a second open finds nothing left to migrate


def test_a_sqlite_file_of_before_request_ids_gains_the_column_and_keeps_its_rows(tmp_path: Path):
    """Files made before clients could send a request_id have no such column: opening one adds it in place."""
    path = tmp_path / "predictions.db"
    (old,) = made_at(START, prediction=2.5, label=None, probabilities=None)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE predictions (id TEXT PRIMARY KEY, timestamp TEXT NOT NULL, features TEXT NOT"
                           " NULL, prediction NUMERIC NOT NULL, label TEXT, probabilities TEXT, model_version"
                           " INTEGER, latency_ms REAL NOT NULL) WITHOUT ROWID")
        connection.execute("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (old.id, old.timestamp, json.dumps(old.features), 2.5, None, None, 3, 1.25))
    store = SqliteStore(path)
    (joined,) = made_at(START + timedelta(seconds=1), request_id="r-1")
    store.put([joined])
    assert store.newest(10) == [joined, old]
    assert SqliteStore(path).newest(10) == [joined, old]  # a second open finds nothing left to migrate


def test_the_first_concurrent_opens_share_one_store(tmp_path: Path):
    """After a restart, the first requests arrive together: each used to open the file and switch it to WAL."""
    spec = StoreSpec.parse(f"sqlite:{tmp_path / 'predictions.db'}")
    opened: list[object] = []
    errors: list[BaseException] = []

    def first_request() -> None:
        try:
            opened.append(open_store(spec))
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=first_request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({id(store) for store in opened}) == 1
