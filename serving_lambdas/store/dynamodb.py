"""The AWS prediction store: one DynamoDB table (keys: ``DynamoDbStore``), read by GetItem and Query, never Scan."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from serving_lambdas.records import ID_PATTERN, ID_TIME_LENGTH, Feedback, PredictionRecord
from serving_lambdas.store.base import ClaimLost, DuplicateId, FeedbackConflict, IdempotentRequest, StorePage

SHARDS = 4
HOUR_LENGTH = 11  # "20261129T03"
HOURS_PARTITION = "hours"
HOURS_PER_QUERY = 24
KEY_SCHEMA = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
ATTRIBUTE_DEFINITIONS = [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}]
BILLING_MODE = "PAY_PER_REQUEST"
SMALLEST_NUMBER = 1e-130
QUERY_BUDGET = 64  # Queries one page may cost (the hour index's and the shards'): ~16 parallel rounds
DEFAULT_RETENTION_DAYS = 365
DAY_SECONDS = 86400
RANGE_QUERY = "pk = :pk AND sk BETWEEN :low AND :high"
TTL_ATTRIBUTE = "expires_at"  # epoch seconds: the table's TimeToLiveSpecification deletes the item after it
FEEDBACK_ATTRIBUTE = "feedback"  # a map {label, recorded_at}, set once by record_feedback
MAX_TRANSACTION_ITEMS = 100  # TransactWriteItems' limit
IDEMPOTENCY_PARTITION = "idempotency#"  # + the key's digest: one partition per key, no hot partition
IDEMPOTENCY_SORT_KEY = "request"
# Another request may take a key over (IdempotentRequest.claimable), decided by DynamoDB in the claim's PutItem.
CLAIMABLE = ("attribute_not_exists(sk) OR expires_at <= :now "
             "OR (attribute_not_exists(answer_status) AND lease_until <= :now)")
HELD_BY = "claim_token = :token AND attribute_not_exists(answer_status)"  # the claim is still this request's

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
    """Predictions in the DynamoDB table ``table_name``; keys ``pk`` (partition) and ``sk`` (sort), both strings.

    - a prediction: ``pk = "<hour>#<shard>"`` (e.g. ``20261129T03#2``), ``sk = id``. The hour is the id's first 11
      characters, the shard derived from its random part, so one hour's writes spread over ``SHARDS`` partitions
      instead of one hot partition; get-by-id computes ``(pk, sk)`` from the id alone: one GetItem.
    - the hour index: ``pk = "hours"``, ``sk = <hour>``, one item per hour that holds predictions (an idempotent
      put, once per hour by each process). A page queries the index for the hours between the bounds, newest
      first, then each hour's shards in parallel, merged by id, until it is full; its cursor is the last id, so
      the next page is ``id < cursor``, across hours and shards with no per-partition state.
    - every item carries ``expires_at`` (epoch seconds, ``retention_days`` after it was made; an hour's index item
      after its last prediction's), which the table's TTL deletes; a prediction whose client gave a
      ``request_id`` carries it, others have no such attribute; one whose true label was recorded carries
      ``feedback`` (a map: ``label``, ``recorded_at``).
    - an Idempotency-Key: ``pk = "idempotency#<digest>"``, ``sk = "request"``, with ``fingerprint``,
      ``claim_token``, ``lease_until``, ``expires_at`` (the key's window, which TTL deletes; TTL runs late, so every
      condition compares it too), and once answered ``answer_status`` and ``answer_body``. Claimed by one
      conditional PutItem; answered by an Update in the predictions' transaction.

    Numbers are stored as ``Decimal``; a batch is one TransactWriteItems (all or nothing, at most 100 items).
    """

    max_rows_per_put = 100  # TransactWriteItems' limit

    def __init__(self, table_name: str, client: Any = None, retention_days: int = DEFAULT_RETENTION_DAYS,
                 query_budget: int = QUERY_BUDGET) -> None:
        if query_budget < 1 + SHARDS:
            raise ValueError(f"a page needs a budget of at least {1 + SHARDS} Queries (the index and one hour)")
        self.table_name = table_name
        self.client = client if client is not None else boto3.session.Session().client("dynamodb")
        self.retention = timedelta(days=retention_days)
        self.query_budget = query_budget
        self._indexed_hours: set[str] = set()
        self._lock = threading.Lock()
        self._shards = ThreadPoolExecutor(max_workers=SHARDS, thread_name_prefix="dynamodb-shard")

    def put(self, records: Sequence[PredictionRecord], answered: IdempotentRequest | None = None) -> None:
        """One PutItem, or one TransactWriteItems of the predictions and the key's answer. A batch of 100 leaves no
        room for the answer in the transaction: it is written right after (a crash in between leaves the key held
        until its lease ends)."""
        self._index_hours({record.id[:HOUR_LENGTH] for record in records})
        puts = [
            {"Put": {"TableName": self.table_name, "Item": _item(record, self.retention),
                     "ConditionExpression": "attribute_not_exists(sk)"}}
            for record in records
        ]
        answer = [] if answered is None else [{"Update": self._answer(answered)}]
        try:
            if len(puts) + len(answer) == 1:
                self.client.put_item(**puts[0]["Put"])
            elif len(puts) + len(answer) <= MAX_TRANSACTION_ITEMS:
                self.client.transact_write_items(TransactItems=puts + answer)
            else:
                self.client.transact_write_items(TransactItems=puts)
                self.client.update_item(**answer[0]["Update"])
        except ClientError as error:
            if answered is not None and _failed_condition(error, len(puts)):
                raise ClaimLost(f"idempotency key {answered.digest} is no longer held by this request") from None
            if _is_duplicate(error):
                raise DuplicateId(f"a prediction id is already stored ({error.response['Error']['Code']})") from None
            raise

    def claim(self, request: IdempotentRequest, now: int) -> IdempotentRequest:
        """One conditional PutItem; when the key is held, the item the failed condition returns."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={name: _serializer.serialize(value) for name, value in _idempotency_fields(request).items()},
                ConditionExpression=CLAIMABLE,
                ExpressionAttributeValues={":now": {"N": str(now)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return _idempotent_request(error.response["Item"])
        return request

    def release(self, request: IdempotentRequest) -> None:
        """Its lease set to 0 by one conditional UpdateItem (the function's role grants no DeleteItem)."""
        try:
            self.client.update_item(
                TableName=self.table_name, Key=_idempotency_key(request.digest),
                UpdateExpression="SET lease_until = :zero", ConditionExpression=HELD_BY,
                ExpressionAttributeValues={":zero": {"N": "0"}, ":token": {"S": request.token}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def _answer(self, answered: IdempotentRequest) -> dict:
        """The Update that records the answer, while the request holds the key."""
        return {
            "TableName": self.table_name,
            "Key": _idempotency_key(answered.digest),
            "UpdateExpression": "SET answer_status = :status, answer_body = :body",
            "ConditionExpression": HELD_BY,
            "ExpressionAttributeValues": {":status": {"N": str(answered.status)}, ":body": {"S": answered.body},
                                          ":token": {"S": answered.token}},
        }

    def get(self, prediction_id: str) -> PredictionRecord | None:
        if ID_PATTERN.fullmatch(prediction_id) is None:
            return None
        key = {"pk": {"S": partition_of(prediction_id)}, "sk": {"S": prediction_id}}
        item = self.client.get_item(TableName=self.table_name, Key=key).get("Item")
        return None if item is None else _record(item)

    def record_feedback(self, prediction_id: str, feedback: Feedback) -> PredictionRecord | None:
        """One conditional UpdateItem (the item exists and has no feedback yet); when the condition fails, the item
        it returns tells apart an unknown id, the same label again and a conflict."""
        if ID_PATTERN.fullmatch(prediction_id) is None:
            return None
        try:
            answer = self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": partition_of(prediction_id)}, "sk": {"S": prediction_id}},
                UpdateExpression="SET #feedback = :feedback",
                ConditionExpression="attribute_exists(sk) AND attribute_not_exists(#feedback)",
                ExpressionAttributeNames={"#feedback": FEEDBACK_ATTRIBUTE},
                ExpressionAttributeValues={":feedback": _serializer.serialize(_decimal(asdict(feedback)))},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            item = error.response.get("Item")
            if item is None:
                return None
            record = _record(item)
            if record.feedback is None or record.feedback.label != feedback.label:
                raise FeedbackConflict(record) from None
            return record
        return _record(answer["Attributes"])

    def newest(self, limit: int, since: str = "", before: str = "~") -> list[PredictionRecord]:
        return self.page(limit, since, before).records

    def page(self, limit: int, since: str = "", before: str = "~") -> StorePage:
        """At most ``limit`` records with ``since <= id < before``, newest first, for at most ``query_budget``
        Queries: on sparse data a full page would need ``SHARDS`` Queries per hour. When the budget runs out the page
        stops short and says where (``StorePage.resume_before``: the start of the last hour read whole, or the lowest
        id a cut shard was read down to), and the next page resumes below it."""
        found: list[dict] = []
        if since >= before:
            return StorePage([])
        index = {
            "TableName": self.table_name,
            "KeyConditionExpression": RANGE_QUERY,
            "ExpressionAttributeValues": {":pk": {"S": HOURS_PARTITION}, ":low": {"S": since[:HOUR_LENGTH] or "0"},
                                          ":high": {"S": before[:HOUR_LENGTH]}},
            "ScanIndexForward": False,
            "Limit": HOURS_PER_QUERY,
        }
        hours: list[str] = []
        more_hours, left, read_down_to = True, self.query_budget, before
        while len(found) < limit and (hours or more_hours):
            if left < (0 if hours else 1) + SHARDS:  # the next hour (and the index page naming it) would not fit
                return StorePage(_records(found), read_down_to)
            if not hours:
                answer = self.client.query(**index)
                left -= 1
                hours = [item["sk"]["S"] for item in answer["Items"]]
                more_hours = "LastEvaluatedKey" in answer
                index["ExclusiveStartKey"] = answer.get("LastEvaluatedKey")
                continue
            hour = hours.pop(0)
            low, high = max(since, hour), min(before, f"{hour}~")  # never empty: DynamoDB refuses "" in a key
            items, cost, cut = self._read_hour(hour, low, high, limit - len(found), left)
            left -= cost
            found += items
            if cut is not None:
                return StorePage(_records(found), cut if len(found) < limit else None)
            read_down_to = hour_start(hour)
        return StorePage(_records(found))

    def _index_hours(self, hours: set[str]) -> None:
        with self._lock:
            new = hours - self._indexed_hours
        for hour in sorted(new):
            expires = _epoch(datetime.strptime(hour, "%Y%m%dT%H").replace(tzinfo=UTC) + timedelta(hours=1)
                             + self.retention)
            item = {"pk": {"S": HOURS_PARTITION}, "sk": {"S": hour}, TTL_ATTRIBUTE: {"N": str(expires)}}
            self.client.put_item(TableName=self.table_name, Item=item)
            with self._lock:
                self._indexed_hours.add(hour)

    def _read_hour(
        self, hour: str, low: str, high: str, wanted: int, allowance: int
    ) -> tuple[list[dict], int, str | None]:
        """The newest ``wanted`` items of the hour with ``low <= id < high``, its shards queried in parallel
        rounds while ``allowance`` Queries last; with the Queries spent and, when a shard could not be read to the
        end (DynamoDB pages a Query at 1 MB), the id down to which every shard was read (items below it dropped).
        BETWEEN is inclusive, so ``high`` itself (a previous page's last id) is dropped here, hence ``wanted + 1``."""
        requests = {shard: {
            "TableName": self.table_name,
            "KeyConditionExpression": RANGE_QUERY,
            "ExpressionAttributeValues": {":pk": {"S": f"{hour}#{shard}"}, ":low": {"S": low}, ":high": {"S": high}},
            "ScanIndexForward": False,
            "Limit": wanted + 1,
        } for shard in range(SHARDS)}
        read: dict[int, list[dict]] = {shard: [] for shard in requests}
        unfinished, spent = sorted(requests), 0
        while unfinished and spent + len(unfinished) <= allowance:
            answers = list(self._shards.map(lambda shard: self.client.query(**requests[shard]), unfinished))
            spent += len(unfinished)
            for shard, answer in zip(list(unfinished), answers, strict=True):
                read[shard] += [item for item in answer["Items"] if _id(item) < high]
                if "LastEvaluatedKey" in answer and len(read[shard]) < wanted:
                    requests[shard]["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
                else:
                    unfinished.remove(shard)
        cut = max((_id(read[shard][-1]) if read[shard] else high for shard in unfinished), default=None)
        items = [item for items in read.values() for item in items if cut is None or _id(item) >= cut]
        return sorted(items, key=_id, reverse=True)[:wanted], spent, cut


def hour_start(hour: str) -> str:
    """The bound every id of ``hour`` (``20261129T03``) sorts at or above, and every earlier id below."""
    return f"{hour}0000000000Z"


def _is_duplicate(error: ClientError) -> bool:
    """A failed condition (an id already stored), in a put or a transaction, or one id twice in a transaction."""
    code = error.response["Error"]["Code"]
    reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
    return (
        code == "ConditionalCheckFailedException"
        or (code == "TransactionCanceledException" and "ConditionalCheckFailed" in reasons)
        or (code == "ValidationException" and "multiple operations" in error.response["Error"]["Message"])
    )


def _failed_condition(error: ClientError, index: int) -> bool:
    """The condition of the ``index``-th item of a transaction failed (or of the single request sent)."""
    code = error.response["Error"]["Code"]
    reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
    if code == "TransactionCanceledException":
        return len(reasons) > index and reasons[index] == "ConditionalCheckFailed"
    return code == "ConditionalCheckFailedException"


def _idempotency_key(digest: str) -> dict:
    return {"pk": {"S": f"{IDEMPOTENCY_PARTITION}{digest}"}, "sk": {"S": IDEMPOTENCY_SORT_KEY}}


def _idempotency_fields(request: IdempotentRequest) -> dict[str, Any]:
    return {"pk": f"{IDEMPOTENCY_PARTITION}{request.digest}", "sk": IDEMPOTENCY_SORT_KEY,
            "fingerprint": request.fingerprint, "claim_token": request.token, "lease_until": request.lease_until,
            TTL_ATTRIBUTE: request.expires_at}


def _idempotent_request(item: dict) -> IdempotentRequest:
    fields = {name: _deserializer.deserialize(value) for name, value in item.items()}
    status = fields.get("answer_status")
    return IdempotentRequest(
        digest=fields["pk"].removeprefix(IDEMPOTENCY_PARTITION),
        fingerprint=fields["fingerprint"],
        token=fields["claim_token"],
        lease_until=int(fields["lease_until"]),
        expires_at=int(fields[TTL_ATTRIBUTE]),
        status=None if status is None else int(status),
        body=fields.get("answer_body"),
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


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _records(items: list[dict]) -> list[PredictionRecord]:
    return [_record(item) for item in items]


def _item(record: PredictionRecord, retention: timedelta) -> dict:
    made = datetime.strptime(record.id[:ID_TIME_LENGTH], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)  # its id's time
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
        TTL_ATTRIBUTE: _epoch(made + retention),
    }
    if record.request_id is not None:
        fields["request_id"] = record.request_id
    if record.feedback is not None:
        fields[FEEDBACK_ATTRIBUTE] = asdict(record.feedback)
    return {name: _serializer.serialize(_decimal(value)) for name, value in fields.items()}


def _record(item: dict) -> PredictionRecord:
    fields = {name: _deserializer.deserialize(value) for name, value in item.items()}
    probabilities = fields["probabilities"]
    feedback = fields.get(FEEDBACK_ATTRIBUTE)
    return PredictionRecord(
        id=fields["sk"],
        request_id=fields.get("request_id"),
        timestamp=fields["timestamp"],
        features={name: float(value) for name, value in fields["features"].items()},
        prediction=float(fields["prediction"]) if fields["label"] is None else int(fields["prediction"]),
        label=fields["label"],
        probabilities=None if probabilities is None else {name: float(p) for name, p in probabilities.items()},
        model_version=None if fields["model_version"] is None else int(fields["model_version"]),
        latency_ms=float(fields["latency_ms"]),
        feedback=None if feedback is None else Feedback(
            feedback["label"] if isinstance(feedback["label"], str) else float(feedback["label"]),
            feedback["recorded_at"]),
    )
