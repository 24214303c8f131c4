"""What one page of ``GET /predictions`` may cost on DynamoDB: a bounded number of Queries, whatever the data.

On sparse data (a prediction every few hours, over months) a page used to need ``SHARDS`` sequential Queries per
hour holding a prediction: thousands for a page of 1000, far past Lambda's 25 s. The retrieve handler runs here on
moto's DynamoDB, each Query counted; paging on ``X-Next-Token`` still returns every prediction once, newest first.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from serving_lambdas import retrieve
from serving_lambdas.config import store_spec
from serving_lambdas.records import PredictionRecord, new_ids, timestamp_text
from serving_lambdas.store import DynamoDbStore, forget_opened_stores, open_store
from serving_lambdas.store.dynamodb import TTL_ATTRIBUTE, partition_of, table_definition

TABLE = "predictions"
BOUND = 64  # Queries one page may cost (serving_lambdas/store/dynamodb.py QUERY_BUDGET)
START = datetime(2026, 6, 1, 0, 17, 3, 250000, tzinfo=UTC)


def made_at(moment: datetime, count: int = 1) -> list[PredictionRecord]:
    return [PredictionRecord(id=prediction_id, timestamp=timestamp_text(moment), features={"x1": 1.0, "x2": 2.0},
                             prediction=0, label="setosa", probabilities=None, model_version=1, latency_ms=1.0)
            for prediction_id in new_ids(moment, count)]


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "PREDICTION_STORE": f"dynamodb:{TABLE}",
                        "PREDICTION_RETENTION_DAYS": "30"}.items():
        monkeypatch.setenv(name, value)
    forget_opened_stores()
    with mock_aws():
        boto3.client("dynamodb").create_table(**table_definition(TABLE))
        yield
    forget_opened_stores()


def counted(store: DynamoDbStore) -> list[str]:
    """The Queries ``store`` sends from now on (one entry each)."""
    queries: list[str] = []
    store.client.meta.events.register("before-call.dynamodb.Query", lambda **_: queries.append("Query"))
    return queries


def get_page(limit: int, token: str | None) -> tuple[list[str], str | None]:
    query = {"limit": str(limit), **({"next_token": token} if token else {})}
    response = retrieve.handler({"httpMethod": "GET", "path": "/predictions", "queryStringParameters": query}, None)
    assert response["statusCode"] == 200, response["body"]
    return [item["id"] for item in json.loads(response["body"])], response["headers"].get("X-Next-Token")


def test_a_page_on_months_of_sparse_data_costs_a_bounded_number_of_queries(table):
    store = open_store(store_spec())
    records = [record for k in range(300) for record in made_at(START + k * timedelta(hours=7))]  # ~3 months
    for record in records:
        store.put([record])
    queries = counted(store)
    pages: list[list[str]] = []
    costs: list[int] = []
    token = None
    while True:
        before = len(queries)
        ids, token = get_page(1000, token)
        costs.append(len(queries) - before)
        pages.append(ids)
        if token is None:
            break
    assert max(costs) <= BOUND, f"a page cost {max(costs)} Queries (bound {BOUND}); every page: {costs}"
    listed = [prediction_id for page in pages for prediction_id in page]
    assert listed == sorted((record.id for record in records), reverse=True), "every prediction once, newest first"
    assert len(pages) > 1 and all(len(page) <= 1000 for page in pages)


def test_a_page_cut_inside_an_hour_resumes_exactly_where_it_stopped(table):
    """DynamoDB may end a Query early (at 1 MB) with a LastEvaluatedKey: here every Query is cut at 3 items, and the
    budget runs out inside a dense hour. The page ends at the id every shard was read down to; nothing is lost or
    repeated across pages."""
    client = boto3.client("dynamodb")
    client.meta.events.register("provide-client-params.dynamodb.Query",
                                lambda params, **_: params.update(Limit=min(params.get("Limit", 3), 3)))
    store = DynamoDbStore(TABLE, client, query_budget=9)
    records = made_at(START, 40) + made_at(START + timedelta(minutes=5), 40)
    for batch in (records[:40], records[40:]):
        store.put(batch)
    queries = counted(store)
    listed: list[str] = []
    before, pages = "~", 0
    while True:
        spent = len(queries)
        page = store.page(26, "", before)
        assert len(queries) - spent <= 9
        pages += 1
        listed += [record.id for record in page.records[:25]]
        if len(page.records) > 25:
            before = page.records[24].id
        elif page.resume_before is not None:
            before = page.resume_before
        else:
            break
    assert listed == sorted((record.id for record in records), reverse=True)
    assert pages > 80 // 25 + 1, "some pages were cut short by the budget"


def test_every_item_expires_after_the_retention(table):
    store = open_store(store_spec())
    (record,) = made_at(START)
    store.put([record])
    client = boto3.client("dynamodb")
    item = client.get_item(TableName=TABLE, Key={"pk": {"S": partition_of(record.id)}, "sk": {"S": record.id}})
    assert int(item["Item"][TTL_ATTRIBUTE]["N"]) == int((START + timedelta(days=30)).timestamp())
    (hour,) = client.query(TableName=TABLE, KeyConditionExpression="pk = :pk",
                           ExpressionAttributeValues={":pk": {"S": "hours"}})["Items"]
    assert int(hour[TTL_ATTRIBUTE]["N"]) == int((START.replace(minute=0, second=0, microsecond=0)
                                                 + timedelta(days=30, hours=1)).timestamp())


def test_a_token_may_carry_where_the_store_stopped_and_nothing_else(table):
    assert get_page(10, "20260601T000000000000Z..") == ([], None)  # <after_id>.<since>.<until>
    forged = "20260601T00.."
    response = retrieve.handler({"httpMethod": "GET", "path": "/predictions",
                                 "queryStringParameters": {"next_token": forged}}, None)
    assert response["statusCode"] == 400 and "next_token" in response["body"]
