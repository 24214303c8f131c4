"""``Idempotency-Key`` on POST /predictions: a retry with the same key within 24 h is answered the first answer (same
status, body and prediction ids) and stores nothing. Over HTTP on the local API (real endpoint, gateway and SQLite
file), through the handler on a real SQLite file, and on DynamoDB under moto; the clock is injected for expiry."""

from __future__ import annotations

import http.client
import json
import sqlite3
import threading
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.validate import ParamValidator
from lambda_events import CLASSES, NAMED, SEED, SETOSA, check, rest_event, stored
from moto import mock_aws

from deploy.aws.names import ResourceNames
from deploy.aws.templates.api import api_template
from deploy.local_service import lambda_environment
from deploy.model_signature import Signature
from deploy.prediction_api import build_prediction_api
from pipelines.state import StateHome
from serving_lambdas import idempotency, inference
from serving_lambdas.config import inference_settings
from serving_lambdas.payload import parse_payload
from serving_lambdas.store import IdempotentRequest, forget_opened_stores, open_store
from serving_lambdas.store.dynamodb import TTL_ATTRIBUTE, table_definition

KEY = "api-test-key-0123456789"
HEADER = "Idempotency-Key"
NOW = 1_796_000_000  # the injected clock's start (epoch seconds)
DAY = 24 * 3600
TABLE = "cloudviz-idempotency"
API_RESOURCES = api_template(ResourceNames("dev"))["Resources"]  # the api stack's table and inference role


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The idempotency clock, set by the test: ``clock[0]`` is now."""
    now = [NOW]
    monkeypatch.setattr(idempotency, "clock", lambda: now[0])
    return now


def event(body: object, key: str | list[str] | None = None, caller: str = "key1") -> dict:
    """A POST /predictions proxy event with ``key`` (one value, or a header repeated) from API key id ``caller``."""
    made = rest_event("POST", "/predictions", json.dumps(body))
    values = [] if key is None else [key] if isinstance(key, str) else key
    if values:
        made["headers"][HEADER] = values[-1]
        made["multiValueHeaders"][HEADER] = values
    made["requestContext"]["identity"]["apiKeyId"] = caller
    return made


def post(body: object, key: str | list[str] | None = None, caller: str = "key1") -> tuple[int, dict, dict]:
    response = inference.handler(event(body, key, caller), None)
    status, answer = check(response)
    return status, response["headers"], answer


# -- over HTTP on the local API (SQLite) --------------------------------------------------------------------------


@pytest.fixture
def api(endpoint, tmp_path: Path):
    """The local API on 127.0.0.1 in front of the served model, as `cloudviz serve` configures it."""
    home = StateHome(tmp_path / "home")
    environment = lambda_environment(Signature(("x1", "x2", "x3", "x4"), tuple(CLASSES)), endpoint.name,
                                     endpoint.url, home)
    with build_prediction_api(environment, KEY).start() as gateway:
        yield gateway


def call(api, method: str, target: str, body: object = None, key: str | None = None):
    """(status, headers, decoded body) of one HTTP request to the API."""
    headers = {"Content-Type": "application/json", "x-api-key": KEY}
    if key is not None:
        headers[HEADER] = key
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    try:
        connection.request(method, target, body=None if body is None else json.dumps(body).encode(), headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read())
    finally:
        connection.close()


def test_a_replayed_post_gets_the_stored_answer_and_is_stored_once(api, clock):
    status, headers, first = call(api, "POST", "/predictions", SEED, key="retry-1")
    assert status == 200 and headers[idempotency.REPLAYED_HEADER] is None
    clock[0] += DAY - 1  # still within the window
    for spelled in ("retry-1", '"retry-1"'):  # bare, and as the draft's quoted string
        status, headers, again = call(api, "POST", "/predictions", SEED, key=spelled)
        assert (status, again) == (200, first)
        assert headers[idempotency.REPLAYED_HEADER] == "true"
    batch = {"input_data": [SETOSA, list(SEED.values())]}
    status, _, predictions = call(api, "POST", "/predictions", batch, key="retry-2")
    assert status == 200
    assert call(api, "POST", "/predictions", batch, key="retry-2")[:3:2] == (200, predictions)
    listed = call(api, "GET", "/predictions")[2]
    assert [item["id"] for item in listed] == [p["id"] for p in reversed(predictions["predictions"])] + [first["id"]]


def test_the_same_key_with_another_body_is_a_422_naming_the_header(api, clock):
    assert call(api, "POST", "/predictions", SEED, key="order-17")[0] == 200
    status, _, answer = call(api, "POST", "/predictions", {**SEED, "x1": 5.0}, key="order-17")
    assert status == 422 and HEADER in answer["message"]
    assert len(call(api, "GET", "/predictions")[2]) == 1


def test_an_expired_key_is_served_and_stored_again(api, clock):
    first = call(api, "POST", "/predictions", SEED, key="daily")[2]
    clock[0] += DAY - 1
    assert call(api, "POST", "/predictions", SEED, key="daily")[2] == first
    clock[0] += 1
    status, headers, second = call(api, "POST", "/predictions", SEED, key="daily")
    assert status == 200 and second["id"] != first["id"] and headers[idempotency.REPLAYED_HEADER] is None
    assert len(call(api, "GET", "/predictions")[2]) == 2


def test_a_key_too_long_is_a_400_naming_the_header_and_stores_nothing(api, clock):
    status, _, answer = call(api, "POST", "/predictions", SEED, key="k" * 256)
    assert status == 400 and answer["message"] == f"{HEADER} must be 1 to 255 visible ASCII characters or spaces, " \
                                                  "not 256 characters"
    assert call(api, "GET", "/predictions")[2] == []
    assert call(api, "POST", "/predictions", SEED, key="k" * 255)[0] == 200


def test_concurrent_duplicates_store_one_prediction(api):
    """Eight clients send the same request with the same key at once: one is served, each other one gets its
    answer or 409 (Retry-After) while it is being served."""
    results: list[tuple] = []
    start = threading.Barrier(8)

    def client() -> None:
        start.wait()
        results.append(call(api, "POST", "/predictions", SEED, key="burst"))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 8
    answered = [answer for status, _, answer in results if status == 200]
    busy = [headers for status, headers, _ in results if status == 409]
    assert len(answered) + len(busy) == 8 and answered
    assert all(answer == answered[0] for answer in answered)
    assert all(headers["Retry-After"] == "1" for headers in busy)
    assert [item["id"] for item in call(api, "GET", "/predictions")[2]] == [answered[0]["id"]]


# -- the handler on a SQLite file ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "message"), [
    ("", "must be 1 to 255 visible ASCII characters or spaces, not 0 characters"),
    ('""', "must be 1 to 255 visible ASCII characters or spaces, not 0 characters"),
    ("a\x00b", "must be 1 to 255 visible ASCII characters or spaces: it holds '\\x00'"),
    ("tab\there", "it holds '\\t'"),
    ("del\x7f", "it holds '\\x7f'"),
    ("clé", "it holds 'é'"),
    ('"open', "starts with a quote: a quoted key ends with one"),
    ('"a"b"', "starts with a quote"),
    (["one", "two"], "is given 2 times: send one"),
])
def test_a_malformed_key_is_a_400_naming_the_header(live, clock, key, message):
    status, _, answer = post(SEED, key)
    assert status == 400 and answer["message"].startswith(HEADER) and message in answer["message"], answer
    assert stored() == []


def test_the_header_name_is_case_insensitive_and_the_same_rows_spelled_otherwise_are_the_same_request(live, clock):
    made = event(SEED)
    made["headers"]["idempotency-key"], made["multiValueHeaders"]["idempotency-key"] = "spelled", ["spelled"]
    first = check(inference.handler(made, None))
    assert first[0] == 200
    assert post({"features": NAMED}, "spelled")[::2] == first  # aliases, named form: the same single row
    assert post({"input_data": [list(SEED.values())]}, "spelled")[0] == 422  # a batch is answered otherwise
    assert post({**SEED, "request_id": "r-1"}, "spelled")[0] == 422  # its row id is answered with it
    assert len(stored()) == 1


def test_keys_are_scoped_to_the_callers_api_key(live, clock):
    mine = post(SEED, "shared-name", caller="key1")[2]
    theirs = post(SEED, "shared-name", caller="key2")[2]
    assert mine["id"] != theirs["id"] and len(stored()) == 2
    assert post(SEED, "shared-name", caller="key2")[2] == theirs
    local = event(SEED, "shared-name", caller="key1")  # the local gateway: the API key itself, no id
    local["requestContext"]["identity"]["apiKeyId"] = None
    assert check(inference.handler(local, None))[1]["id"] not in (mine["id"], theirs["id"])
    digests = {row[0] for row in _idempotency_rows()}
    assert len(digests) == 3 and not any("shared-name" in digest for digest in digests)


def test_a_key_being_served_answers_409_until_its_lease_ends(live, clock):
    """A request holds the key (claimed, not answered: it is being served, or its process died): the retry gets
    409 and stores nothing; once the lease has ended the retry takes the key over and is served."""
    held = IdempotentRequest(idempotency.digest(event(SEED), "held"), _fingerprint(SEED), "another-request",
                             NOW + idempotency.LEASE_SECONDS, NOW + DAY)
    store = open_store(inference_settings().store)
    assert store.claim(held, NOW) == held
    status, headers, answer = post(SEED, "held")
    assert (status, headers["Retry-After"]) == (409, "1") and HEADER in answer["message"]
    assert stored() == []
    clock[0] += idempotency.LEASE_SECONDS
    status, _, answer = post(SEED, "held")
    assert status == 200 and [record.id for record in stored()] == [answer["id"]]


def test_an_unavailable_endpoint_leaves_the_key_free_for_the_retry(environment, endpoint, clock):
    assert post(SEED, "after-503")[0] == 503
    assert stored() == [] and _idempotency_rows() == []
    environment.setenv("SAGEMAKER_RUNTIME_URL", endpoint.url)
    status, _, answer = post(SEED, "after-503")
    assert status == 200 and post(SEED, "after-503")[2] == answer
    assert len(stored()) == 1


def _fingerprint(body: dict) -> str:
    """The fingerprint of a single-row body, as the handler computes it."""
    settings = inference_settings()
    payload = parse_payload({"body": json.dumps(body)}, settings.feature_names, settings.aliases, 10)
    return idempotency.fingerprint(payload)


def _idempotency_rows() -> list[tuple]:
    path = inference_settings().store.target
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT digest, status FROM idempotency_keys").fetchall()


# -- on DynamoDB (moto) -------------------------------------------------------------------------------------------


@pytest.fixture
def dynamodb(live):
    """The handler on a DynamoDB table in moto, created with the api stack's TTL; every DynamoDB request it sends
    is checked by botocore's ParamValidator and recorded."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        live.setenv(name, "testing")
    sent: list[tuple[str, dict]] = []
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(**table_definition(TABLE))
        ttl = API_RESOURCES["PredictionTable"]["Properties"]["TimeToLiveSpecification"]
        client.update_time_to_live(TableName=TABLE, TimeToLiveSpecification=ttl)
        live.setenv("PREDICTION_STORE", f"dynamodb:{TABLE}")
        store = open_store(inference_settings().store)
        store.client.meta.events.register(
            "before-parameter-build.dynamodb", lambda params, model, **_: sent.append((model.name, dict(params))))
        yield sent
    forget_opened_stores()
    service = botocore.session.get_session().get_service_model("dynamodb")
    for name, params in sent:
        report = ParamValidator().validate(params, service.operation_model(name).input_shape)
        assert not report.has_errors(), report.generate_report()


def _prediction_items() -> list[dict]:
    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    return [item for item in items if item["pk"]["S"] != "hours" and not item["pk"]["S"].startswith("idempotency#")]


def test_on_dynamodb_a_replay_is_stored_once_with_a_conditional_write_and_a_ttl(dynamodb, clock):
    status, _, first = post(SEED, "aws-1")
    assert status == 200
    assert post(SEED, "aws-1")[::2] == (200, first)
    assert post({**SEED, "x4": 0.2}, "aws-1")[0] == 422
    assert [item["sk"]["S"] for item in _prediction_items()] == [first["id"]]
    (key_item,) = [item for item in boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
                   if item["pk"]["S"].startswith("idempotency#")]
    assert key_item[TTL_ATTRIBUTE] == {"N": str(NOW + DAY)}  # the table's TTL attribute: deleted after the window
    assert json.loads(key_item["answer_body"]["S"]) == first and "aws-1" not in json.dumps(key_item)
    operations = [name for name, _ in dynamodb]
    # the claim (a conditional PutItem), the prediction and its answer in one transaction, then two claims refused
    assert operations.count("TransactWriteItems") == 1 and "Scan" not in operations
    claims = [params for name, params in dynamodb if name == "PutItem" and params["Item"]["sk"]["S"] == "request"]
    assert len(claims) == 3 and all("attribute_not_exists(sk)" in claim["ConditionExpression"] for claim in claims)
    clock[0] += DAY
    status, _, again = post(SEED, "aws-1")
    assert status == 200 and again["id"] != first["id"] and len(_prediction_items()) == 2


def test_on_dynamodb_a_full_batch_keeps_its_answer_outside_the_transaction(dynamodb, clock, live):
    """100 rows fill a transaction: the answer is written right after it, and replayed the same."""
    live.setenv("MAX_BATCH_ROWS", "100")
    batch = {"input_data": [SETOSA] * 100}
    status, _, first = post(batch, "full")
    assert status == 200 and len(first["predictions"]) == 100
    assert post(batch, "full")[::2] == (200, first)
    assert len(_prediction_items()) == 100


def test_on_dynamodb_the_calls_are_those_the_functions_role_grants(dynamodb, clock, live):
    """Served, replayed, refused (422), and a key released after a 503: PutItem (claims, predictions),
    TransactWriteItems of Puts and an Update, UpdateItem (the release): exactly the DynamoDB actions the api stack's
    inference role grants (PutItem and UpdateItem, each on the table)."""
    assert [post(body, "granted")[0] for body in (SEED, SEED, {"x1": 1, "x2": 1, "x3": 1, "x4": 1})] == [200, 200, 422]
    live.setenv("SAGEMAKER_RUNTIME_URL", "http://127.0.0.1:9")  # the endpoint gone
    assert post(SEED, "released")[0] == 503
    actions = set()
    for name, params in dynamodb:
        if name == "TransactWriteItems":
            actions |= {f"dynamodb:{kind}Item" for item in params["TransactItems"] for kind in item}
        else:
            actions.add(f"dynamodb:{name}")
    policies = API_RESOURCES["InferenceRole"]["Properties"]["Policies"]
    granted = {action for policy in policies for statement in policy["PolicyDocument"]["Statement"]
               for action in statement["Action"] if action.startswith("dynamodb:")}
    assert actions == granted == {"dynamodb:PutItem", "dynamodb:UpdateItem"}
