"""The AWS prediction store: one DynamoDB table, read only by GetItem and Query, never by Scan.

Key design (``pk`` partition key, ``sk`` sort key, both strings):
- a prediction: ``pk = "<hour>#<shard>"`` (e.g. ``20261129T03#2``), ``sk = id``. The hour is the first 11
  characters of the id; the shard is derived from the id's random part, so writes of one hour spread over
  ``SHARDS`` partitions instead of making the current hour one hot partition. Get-by-id computes
  ``(pk, sk)`` from the id alone: one GetItem.
- the hour index: ``pk = "hours"``, ``sk = <hour>``, one item per hour that holds predictions, written once
  per hour by each process (an idempotent put). Listing newest first queries the index for the hours between
  the bounds (newest first), then each hour's shards with ``sk`` between the bounds, merging the shards by id,
  until the page is full; empty hours cost nothing. A page's cursor is the last id it returned, so the next
  page is simply ``id < cursor``: pagination crosses hours and shards with no per-partition state.
Numbers are stored as ``Decimal`` (DynamoDB's number type); a batch is one TransactWriteItems (all or nothing,
at most 100 items).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from serving_lambdas.records import ID_PATTERN, PredictionRecord
from serving_lambdas.store.base import DuplicateId

SHARDS = 4
HOUR_LENGTH = 11  # "20261129T03"
HOURS_PARTITION = "hours"
HOURS_PER_QUERY = 24
KEY_SCHEMA = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
ATTRIBUTE_DEFINITIONS = [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}]
BILLING_MODE = "PAY_PER_REQUEST"
SMALLEST_NUMBER = 1e-130
RANGE_QUERY = "pk = :pk AND sk BETWEEN :low AND :high"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def table_definition(table_name: str) -> dict[str, Any]:
    """CreateTable arguments of the prediction table (the AWS stack generates its CloudFormation from the same
    KEY_SCHEMA, ATTRIBUTE_DEFINITIONS and BILLING_MODE)."""
    return {
        "TableName": table_name,
        "KeySchema": KEY_SCHEMA,
        "AttributeDefinitions": ATTRIBUTE_DEFINITIONS,
        "BillingMode": BILLING_MODE,
    }


def partition_of(prediction_id: str) -> str:
    return f"{prediction_id[:HOUR_LENGTH]}#{int(prediction_id[-16:-4], 16) % SHARDS}"


class DynamoDbStore:
    """Predictions in the DynamoDB table ``table_name`` (see the module docstring for its keys)."""

    max_rows_per_put = 100  # TransactWriteItems' limit

    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table_name = table_name
        self.client = client if client is not None else boto3.session.Session().client("dynamodb")
        self._indexed_hours: set[str] = set()
        self._lock = threading.Lock()

    def put(self, records: Sequence[PredictionRecord]) -> None:
        self._index_hours({record.id[:HOUR_LENGTH] for record in records})
        puts = [
            {"TableName": self.table_name, "Item": _item(record), "ConditionExpression": "attribute_not_exists(sk)"}
            for record in records
        ]
        try:
            if len(puts) == 1:
                self.client.put_item(**puts[0])
            else:
                self.client.transact_write_items(TransactItems=[{"Put": put} for put in puts])
        except ClientError as error:
            if _is_duplicate(error):
                raise DuplicateId(f"a prediction id is already stored ({error.response['Error']['Code']})") from None
            raise

    def get(self, prediction_id: str) -> PredictionRecord | None:
        if ID_PATTERN.fullmatch(prediction_id) is None:
            return None
        key = {"pk": {"S": partition_of(prediction_id)}, "sk": {"S": prediction_id}}
        item = self.client.get_item(TableName=self.table_name, Key=key).get("Item")
        return None if item is None else _record(item)

    def newest(self, limit: int, since: str = "", before: str = "~") -> list[PredictionRecord]:
        if since >= before:
            return []
        found: list[dict] = []
        for hour in self._hours(since[:HOUR_LENGTH] or "0", before[:HOUR_LENGTH]):
            wanted = limit - len(found)
            low, high = max(since, hour), min(before, f"{hour}~")  # never empty: DynamoDB refuses "" in a key
            shards = [self._query(f"{hour}#{shard}", low, high, wanted) for shard in range(SHARDS)]
            found += sorted((item for items in shards for item in items), key=_id, reverse=True)[:wanted]
            if len(found) == limit:
                break
        return [_record(item) for item in found]

    def _index_hours(self, hours: set[str]) -> None:
        with self._lock:
            new = hours - self._indexed_hours
        for hour in sorted(new):
            self.client.put_item(TableName=self.table_name, Item={"pk": {"S": HOURS_PARTITION}, "sk": {"S": hour}})
            with self._lock:
                self._indexed_hours.add(hour)

    def _hours(self, low: str, high: str) -> Iterator[str]:
        """The indexed hours from ``high`` down to ``low`` (both inclusive), read lazily."""
        request = {
            "TableName": self.table_name,
            "KeyConditionExpression": RANGE_QUERY,
            "ExpressionAttributeValues": {":pk": {"S": HOURS_PARTITION}, ":low": {"S": low}, ":high": {"S": high}},
            "ScanIndexForward": False,
            "Limit": HOURS_PER_QUERY,
        }
        while True:
            answer = self.client.query(**request)
            yield from (item["sk"]["S"] for item in answer["Items"])
            if "LastEvaluatedKey" not in answer:
                return
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def _query(self, partition: str, low: str, high: str, limit: int) -> list[dict]:
        """At most ``limit`` items of one partition with ``low <= id < high``, newest first. BETWEEN is inclusive,
        so ``high`` itself (a previous page's last id) is dropped here, hence ``limit + 1``."""
        request = {
            "TableName": self.table_name,
            "KeyConditionExpression": RANGE_QUERY,
            "ExpressionAttributeValues": {":pk": {"S": partition}, ":low": {"S": low}, ":high": {"S": high}},
            "ScanIndexForward": False,
            "Limit": limit + 1,
        }
        items: list[dict] = []
        while len(items) < limit:
            answer = self.client.query(**request)
            items += [item for item in answer["Items"] if _id(item) < high]
            if "LastEvaluatedKey" not in answer:
                break
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return items[:limit]


def _is_duplicate(error: ClientError) -> bool:
    """A failed condition (an id already stored), in a put or a transaction, or one id twice in a transaction."""
    code = error.response["Error"]["Code"]
    reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
    return (
        code == "ConditionalCheckFailedException"
        or (code == "TransactionCanceledException" and "ConditionalCheckFailed" in reasons)
        or (code == "ValidationException" and "multiple operations" in error.response["Error"]["Message"])
    )


def _id(item: dict) -> str:
    return item["sk"]["S"]


def _decimal(value: Any) -> Any:
    """Floats as Decimal, the number type DynamoDB takes (``repr`` keeps the float's shortest exact form);
    a magnitude below DynamoDB's smallest number (1E-130, far below float32's) is stored as 0."""
    if isinstance(value, float):
        return Decimal(repr(value)) if abs(value) >= SMALLEST_NUMBER else Decimal(0)
    if isinstance(value, dict):
        return {key: _decimal(inner) for key, inner in value.items()}
    return value


def _item(record: PredictionRecord) -> dict:
    fields = {
        "pk": partition_of(record.id),
        "sk": record.id,
        "timestamp": record.timestamp,
        "features": record.features,
        "prediction": record.prediction,
        "label": record.label,
        "probabilities": record.probabilities,
        "model_version": record.model_version,
        "latency_ms": record.latency_ms,
    }
    return {name: _serializer.serialize(_decimal(value)) for name, value in fields.items()}


def _record(item: dict) -> PredictionRecord:
    fields = {name: _deserializer.deserialize(value) for name, value in item.items()}
    probabilities = fields["probabilities"]
    return PredictionRecord(
        id=fields["sk"],
        timestamp=fields["timestamp"],
        features={name: float(value) for name, value in fields["features"].items()},
        prediction=int(fields["prediction"]),
        label=fields["label"],
        probabilities=None if probabilities is None else {name: float(p) for name, p in probabilities.items()},
        model_version=None if fields["model_version"] is None else int(fields["model_version"]),
        latency_ms=float(fields["latency_ms"]),
    )
