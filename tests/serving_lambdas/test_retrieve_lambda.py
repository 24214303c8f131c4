"""The retrieve Lambda called as API Gateway calls it: pages newest first, time ranges, a prediction by id, bad
queries and tampered tokens; and both handlers on a DynamoDB store (moto)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from lambda_events import NAMED, SEED, SETOSA, get, post
from moto import mock_aws

from serving_lambdas.config import inference_settings
from serving_lambdas.records import PredictionRecord, new_ids, timestamp_text
from serving_lambdas.store import forget_opened_stores, open_store
from serving_lambdas.store.dynamodb import table_definition

# -- retrieval --------------------------------------------------------------------------------------------------


def seed_store(times: list[datetime]) -> list[PredictionRecord]:
    """Predictions made at ``times``, written straight into the configured store."""
    store = open_store(inference_settings().store)
    records = []
    for moment in times:
        (prediction_id,) = new_ids(moment, 1)
        records.append(
            PredictionRecord(prediction_id, timestamp_text(moment), dict(SEED), 1, "virginica", None, 3, 1.0)
        )
        store.put(records[-1:])
    return records


def test_pages_follow_x_next_token_newest_first_to_the_last_page(live):
    made = [post(SEED)[1]["id"] for _ in range(5)]
    seen, pages, query = [], 0, {"limit": "2"}
    while True:
        status, headers, page = get("/predictions", **query)
        assert status == 200 and isinstance(page, list) and len(page) <= 2
        seen += page
        pages += 1
        if "X-Next-Token" not in headers:
            break
        query = {"limit": "2", "next_token": headers["X-Next-Token"]}
    assert pages == 3
    assert [item["id"] for item in seen] == made[::-1]
    assert set(seen[0]) == {
        "id",
        "timestamp",
        "features",
        "prediction",
        "label",
        "probabilities",
        "model_version",
        "latency_ms",
    }


def test_an_empty_store_lists_an_empty_array(environment):
    assert get("/predictions") == (200, {"Content-Type": "application/json"}, [])


def test_the_default_page_is_50(environment):
    seed_store([datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=k) for k in range(51)])
    status, headers, page = get("/predictions")
    assert (status, len(page), "X-Next-Token" in headers) == (200, 50, True)


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("2026-11-29T01:00:00Z", "2026-11-29T03:00:00Z", [2, 1]),
        ("2026-11-29T01:00:00", None, [4, 3, 2, 1]),  # no zone: UTC, as the original API's timestamps
        ("2026-11-29T03:00:00+02:00", None, [4, 3, 2, 1]),
        (None, "2026-11-29T01:00:00.000001Z", [1, 0]),
        ("2026-11-29", "2026-11-30", [4, 3, 2, 1, 0]),
    ],
)
def test_since_is_inclusive_and_until_exclusive(environment, since, until, expected):
    records = seed_store([datetime(2026, 11, 29, hour, tzinfo=UTC) for hour in range(5)])
    query = {name: value for name, value in (("since", since), ("until", until)) if value is not None}
    ids = []
    while True:  # one item a page: the bounds hold across pages
        status, headers, page = get("/predictions", limit="1", **query)
        assert status == 200
        ids += [item["id"] for item in page]
        if "X-Next-Token" not in headers:
            break
        query["next_token"] = headers["X-Next-Token"]
    assert ids == [records[k].id for k in expected]


def test_get_by_id_answers_the_stored_prediction(live):
    made = post(SEED)[1]
    status, _, item = get(f"/predictions/{made['id']}")
    assert status == 200
    assert {key: item[key] for key in made} == made
    assert item["features"] == SEED


@pytest.mark.parametrize("prediction_id", ["no-such-prediction", "20261129T032001123456Z-0000000000000000"])
def test_an_unknown_id_is_a_404(environment, prediction_id):
    status, _, answer = get(f"/predictions/{prediction_id}")
    assert (status, answer) == (404, {"message": f"no prediction with id {prediction_id}"})


def tampered(token: str) -> str:
    _, bounds = token.split(".", 1)  # <after_id>.<since>.<until>
    return f"1 OR 1=1.{bounds}"


BAD_QUERIES = [
    ({"limit": "0"}, "limit must be an integer from 1 to 1000, not '0'"),
    ({"limit": "1001"}, "limit must be an integer from 1 to 1000"),
    ({"limit": "-1"}, "limit must be an integer from 1 to 1000"),
    ({"limit": "ten"}, "limit must be an integer from 1 to 1000"),
    ({"limit": ["1", "2"]}, "query parameter limit is given 2 times"),
    ({"since": "yesterday"}, "since must be an ISO-8601 time"),
    ({"until": "2026-13-01"}, "until must be an ISO-8601 time"),
    ({"since": "2026-11-29T02:00:00Z", "until": "2026-11-29T01:00:00Z"}, "since must be before until"),
    ({"sort": "asc"}, "unknown query parameter 'sort': use limit, since, until, next_token"),
    ({"next_token": "garbage!"}, "next_token is not a token this API issued"),
    ({"next_token": base64.urlsafe_b64encode(b'{"after_id": 1}').decode()}, "next_token is not a token this API"),
]


@pytest.mark.parametrize(("query", "message"), BAD_QUERIES, ids=[message for _, message in BAD_QUERIES])
def test_a_bad_query_is_a_400_naming_the_parameter(environment, query, message):
    status, _, answer = get("/predictions", **query)
    assert status == 400
    assert message in answer["message"]


def test_a_tampered_or_misapplied_next_token_is_a_400(environment):
    seed_store([datetime(2026, 11, 29, hour, tzinfo=UTC) for hour in range(3)])
    token = get("/predictions", limit="1", since="2026-11-29T00:00:00Z")[1]["X-Next-Token"]
    assert "=" not in token and get("/predictions", limit="1", next_token=token)[0] == 200
    status, _, answer = get("/predictions", next_token=tampered(token))
    assert (status, answer["message"]) == (
        400,
        "next_token is not a token this API issued: pass the X-Next-Token header of the last page",
    )
    status, _, answer = get("/predictions", next_token=token, since="2026-11-28T00:00:00Z")
    assert (status, answer["message"]) == (
        400,
        "next_token belongs to a query with another since: keep since as on the first page",
    )


# -- on AWS: the same handlers on DynamoDB ----------------------------------------------------------------------


@pytest.fixture
def moto_dynamodb(live):
    """The configuration on a DynamoDB table in moto; the store opened on it is forgotten afterwards, since its
    client belongs to this moto session."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        live.setenv(name, "testing")
    with mock_aws():
        boto3.client("dynamodb").create_table(**table_definition("cloudviz-handlers"))
        live.setenv("PREDICTION_STORE", "dynamodb:cloudviz-handlers")
        yield
    forget_opened_stores()


def test_the_handlers_on_a_dynamodb_store(moto_dynamodb):
    made = [post(SEED)[1]["id"], *(p["id"] for p in post({"input_data": [SETOSA, SETOSA]})[1]["predictions"])]
    first = get("/predictions", limit="2")
    second = get("/predictions", limit="2", next_token=first[1]["X-Next-Token"])
    assert [item["id"] for item in first[2] + second[2]] == made[::-1]
    assert "X-Next-Token" not in second[1]
    assert get(f"/predictions/{made[0]}")[2]["prediction"] == 1
    assert "request_id" not in get(f"/predictions/{made[0]}")[2]
    named = post({"instances": [{**NAMED, "request_id": "r-1"}, NAMED]})[1]["predictions"]
    assert [get(f"/predictions/{p['id']}")[2].get("request_id") for p in named] == ["r-1", None]
    assert [item.get("request_id") for item in get("/predictions", limit="2")[2]] == [None, "r-1"]
