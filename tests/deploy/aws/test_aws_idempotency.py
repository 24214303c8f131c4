"""``Idempotency-Key`` through the deployed dev stage on moto: the header crosses API Gateway's proxy integration
into the inference function of the deployed zip, whose DynamoDB calls (every request botocore-validated) stay
within its role's PutItem and UpdateItem; a retry is stored once, its key item expires through the table's TTL."""

from __future__ import annotations

import json
import time

import boto3
import pytest
import requests
from aws_stage import validated_requests  # noqa: F401 (a fixture)
from moto_aws import aws_in_process  # noqa: F401 (a fixture)
from test_aws_end_to_end import NAMES, REGION, SEED, Deployment, deployed, prediction_items  # noqa: F401

from serving_lambdas.idempotency import REPLAYED_HEADER, WINDOW_SECONDS
from serving_lambdas.store.dynamodb import TTL_ATTRIBUTE

pytestmark = pytest.mark.filterwarnings("ignore:.*(not supported by moto|No Moto CloudFormation support).*")


def post(deployment: Deployment, body: object, key: str) -> requests.Response:
    headers = {"x-api-key": deployment.key, "Content-Type": "application/json", "idempotency-key": key}
    return requests.post(deployment.url, data=json.dumps(body), headers=headers, timeout=10)


def test_a_retry_through_the_stage_url_is_answered_once_and_stored_once(validated_requests, deployed):  # noqa: F811
    before, started = len(validated_requests), int(time.time())
    first = post(deployed, SEED, "stage-retry-1")
    assert first.status_code == 200, first.text
    again = post(deployed, SEED, "stage-retry-1")
    assert (again.status_code, again.json()) == (200, first.json())
    assert again.headers[REPLAYED_HEADER] == "true"
    other = post(deployed, {**SEED, "x1": 5.0}, "stage-retry-1")
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["message"]
    assert post(deployed, SEED, "k" * 256).status_code == 400
    sent = validated_requests[before:]
    assert {name for name in sent if name in {"GetItem", "Query", "Scan", "DeleteItem", "BatchWriteItem"}} == set()
    assert sent.count("TransactWriteItems") == 1  # the prediction and its answer, once

    assert [item["sk"]["S"] for item in prediction_items() if not item["pk"]["S"].startswith("idempotency#")] == [
        first.json()["id"]]
    items = boto3.client("dynamodb", region_name=REGION).scan(TableName=NAMES.table_name)["Items"]
    (key_item,) = [item for item in items if item["pk"]["S"].startswith("idempotency#")]
    claimed = int(key_item[TTL_ATTRIBUTE]["N"]) - WINDOW_SECONDS  # the table's TTL deletes it a window after
    assert started <= claimed <= time.time()
    assert "stage-retry-1" not in json.dumps(key_item)  # stored as a digest scoped to the caller's API key
