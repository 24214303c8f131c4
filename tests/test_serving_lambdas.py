"""The serving Lambdas called as API Gateway calls them: REST API (v1) proxy events in, proxy responses out, against
a real local endpoint serving a model the real pipeline trained, and a real prediction store."""

from __future__ import annotations

import ast
import base64
import json
import logging
import re
import socket
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from deploy.endpoint import EndpointServer, ModelSlot, ServingModel
from pipelines.definition import build_pipeline
from pipelines.runner import LocalRunner
from pipelines.state import StateHome
from serving_lambdas import inference, retrieve
from serving_lambdas.config import ConfigurationError, inference_settings
from serving_lambdas.endpoint import runtime_client
from serving_lambdas.records import PredictionRecord, new_ids, timestamp_text
from serving_lambdas.served_version import forget_served_versions
from serving_lambdas.store import SqliteStore, StoreSpec, forget_opened_stores, open_store
from serving_lambdas.store.dynamodb import table_definition

PACKAGE = Path(__file__).resolve().parents[1] / "serving_lambdas"
ENDPOINT = "cloudviz-test-endpoint"
SEED = {"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5}
SETOSA = [5.1, 3.5, 1.4, 0.2]
CLASSES = ["setosa", "virginica", "versicolor"]
NAMED = {"sepal_length": 6.7, "sepal_width": 3.3, "petal_length": 5.7, "petal_width": 2.5}
ID = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{16}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


# -- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """model.tar.gz files trained by the real pipeline: the default multi:softprob, and multi:softmax."""
    home = StateHome(tmp_path_factory.mktemp("pipeline") / "home")
    runner = LocalRunner(home, build_pipeline())
    tarballs = {}
    for objective in ("multi:softprob", "multi:softmax"):
        record = runner.start({"Objective": objective})
        assert record.status == "Succeeded"
        tarballs[objective] = Path(record.steps["Train"].outputs["model"]) / "model.tar.gz"
    return tarballs


def serve(tarball: Path | None, version: int | None = 3) -> EndpointServer:
    model = None if tarball is None else ServingModel.load(tarball, version=version)
    return EndpointServer(ModelSlot(model), name=ENDPOINT).start()


@pytest.fixture
def endpoint(models):
    with serve(models["multi:softprob"]) as server:
        yield server


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The Lambdas' configuration as `cloudviz serve` sets it, with an empty SQLite store; no AWS credentials
    (the local endpoint needs none) and no instance metadata lookups."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "MAX_BATCH_ROWS"):
        monkeypatch.delenv(name, raising=False)
    values = {
        "ENDPOINT_NAME": ENDPOINT,
        "SAGEMAKER_RUNTIME_URL": f"http://127.0.0.1:{closed_port()}",
        "PREDICTION_STORE": f"sqlite:{tmp_path / 'state' / 'predictions.db'}",
        "FEATURE_NAMES": "x1,x2,x3,x4",
        "FEATURE_ALIASES": "sepal_length=x1,sepal_width=x2,petal_length=x3,petal_width=x4",
        "CLASS_NAMES": ",".join(CLASSES),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    forget_served_versions()  # a server of an earlier test may have had this test's port
    return monkeypatch


@pytest.fixture
def live(environment, endpoint):
    """The configuration pointed at the running endpoint."""
    environment.setenv("SAGEMAKER_RUNTIME_URL", endpoint.url)
    return environment


def closed_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rest_event(
    method: str,
    path: str,
    body: str | None = None,
    query: dict[str, list[str]] | None = None,
    base64_body: bool = False,
) -> dict:
    """An API Gateway REST API (v1) Lambda proxy integration event, as the service sends it."""
    resource, path_parameters = "/predictions", None
    if path.startswith("/predictions/"):
        resource, path_parameters = "/predictions/{id}", {"id": path.removeprefix("/predictions/")}
    headers = {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "pytest",
        "x-api-key": "k" * 32,
        "X-Forwarded-Proto": "https",
    }
    if base64_body and body is not None:
        body = base64.b64encode(body.encode("utf-8") if isinstance(body, str) else body).decode()
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None if query is None else {name: values[-1] for name, values in query.items()},
        "multiValueQueryStringParameters": query,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "extendedRequestId": "Xyz=",
            "httpMethod": method,
            "identity": {
                "apiKey": "k" * 32,
                "apiKeyId": "key1",
                "sourceIp": "203.0.113.7",
                "userAgent": "pytest",
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "user": None,
                "userArn": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
            },
            "path": f"/prod{path}",
            "protocol": "HTTP/1.1",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "requestTime": "29/Nov/2026:03:20:01 +0000",
            "requestTimeEpoch": 1795836001000,
            "resourceId": "a1b2c3",
            "resourcePath": resource,
            "stage": "prod",
        },
        "body": body,
        "isBase64Encoded": base64_body,
    }


def post(body: object, raw: str | None = None, base64_body: bool = False) -> tuple[int, dict]:
    response = inference.handler(
        rest_event("POST", "/predictions", raw if raw is not None else json.dumps(body), base64_body=base64_body), None
    )
    return check(response)


def get(path: str, **query: str | list[str]) -> tuple[int, dict, object]:
    values = {name: value if isinstance(value, list) else [value] for name, value in query.items()} or None
    response = retrieve.handler(rest_event("GET", path, query=values), None)
    status, body = check(response)
    return status, response["headers"], body


def check(response: dict) -> tuple[int, object]:
    """The status and decoded body of a proxy response, after checking its shape."""
    assert set(response) <= {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
    assert response["headers"]["Content-Type"] == "application/json"
    assert isinstance(response["body"], str)
    return response["statusCode"], json.loads(response["body"])


def stored(limit: int = 1000) -> list[PredictionRecord]:
    return open_store(inference_settings().store).newest(limit)


# -- predictions ------------------------------------------------------------------------------------------------


def test_the_original_seed_example_predicts_virginica_and_is_stored_first(live):
    status, answer = post(SEED)
    assert status == 200, answer
    assert (answer["prediction"], answer["label"], answer["model_version"]) == (1, "virginica", 3)
    assert list(answer["probabilities"]) == CLASSES
    assert max(answer["probabilities"], key=answer["probabilities"].get) == "virginica"
    assert sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert ID.fullmatch(answer["id"]) and TIMESTAMP.fullmatch(answer["timestamp"])
    (record,) = stored()
    assert record.answer() == answer
    assert record.features == SEED and record.latency_ms > 0


def test_a_batch_answers_in_row_order_and_stores_every_row(live):
    status, answer = post({"input_data": [list(SEED.values()), SETOSA, list(SEED.values())]})
    assert status == 200, answer
    predictions = answer["predictions"]
    assert [p["prediction"] for p in predictions] == [1, 0, 1]
    assert [p["label"] for p in predictions] == ["virginica", "setosa", "virginica"]
    assert len({p["id"] for p in predictions}) == 3 and len({p["timestamp"] for p in predictions}) == 1
    assert [record.answer() for record in stored()] == predictions[::-1]  # newest first: the last row last made


@pytest.mark.parametrize(
    "features",
    [NAMED, {"x1": 6.7, "sepal_width": 3.3, "x3": 5.7, "petal_width": 2.5}, SEED],
    ids=["aliases", "mixed", "canonical"],
)
def test_named_features_accept_aliases_and_canonical_names(live, features):
    status, answer = post({"features": features})
    assert (status, answer["prediction"]) == (200, 1)
    assert stored()[0].features == SEED


def test_named_instances_answer_in_order_with_each_rows_request_id_stored_and_listed(live):
    instances = [{"request_id": "order-17:a", **NAMED}, dict(zip(NAMED, SETOSA, strict=True)),
                 {"x1": 6.7, "sepal_width": 3.3, "x3": 5.7, "petal_width": 2.5, "request_id": "B_2.x"}]
    status, answer = post({"instances": instances})
    assert status == 200, answer
    predictions = answer["predictions"]
    assert [(p["label"], p.get("request_id")) for p in predictions] == [
        ("virginica", "order-17:a"), ("setosa", None), ("virginica", "B_2.x")]
    assert list(predictions[0])[3:5] == ["id", "request_id"] and "request_id" not in predictions[1]
    assert [record.request_id for record in stored()] == ["B_2.x", None, "order-17:a"]
    assert [record.features for record in stored()][::2] == [SEED, SEED]
    listed = get("/predictions")[2]
    assert [(item["id"], item.get("request_id")) for item in listed] == [
        (p["id"], p.get("request_id")) for p in predictions[::-1]]
    assert get(f"/predictions/{predictions[0]['id']}")[2]["request_id"] == "order-17:a"


@pytest.mark.parametrize("body", [{**SEED, "request_id": "a" * 128}, {"features": NAMED, "request_id": "a" * 128}],
                         ids=["positional", "named"])
def test_a_single_rows_request_id_is_answered_stored_and_returned_by_get(live, body):
    status, answer = post(body)
    assert status == 200, answer
    assert list(answer) == ["prediction", "label", "probabilities", "id", "request_id", "timestamp", "model_version"]
    assert answer["request_id"] == "a" * 128
    assert stored()[0].answer() == answer
    assert get(f"/predictions/{answer['id']}")[2]["request_id"] == "a" * 128


def test_without_a_request_id_the_answer_and_the_stored_document_have_none(live):
    answer = post(SEED)[1]
    assert list(answer) == ["prediction", "label", "probabilities", "id", "timestamp", "model_version"]
    assert "request_id" not in get(f"/predictions/{answer['id']}")[2]
    assert "request_id" not in get("/predictions")[2][0]


def test_integers_and_a_base64_encoded_body_are_accepted(live):
    status, answer = post(None, raw=json.dumps({"x1": 7, "x2": 3, "x3": 6, "x4": 2.5}), base64_body=True)
    assert (status, answer["prediction"]) == (200, 1)
    assert stored()[0].features == {"x1": 7.0, "x2": 3.0, "x3": 6.0, "x4": 2.5}


def test_multi_softmax_answers_the_class_with_no_probabilities(live, models):
    with serve(models["multi:softmax"], version=7) as server:
        live.setenv("SAGEMAKER_RUNTIME_URL", server.url)
        status, answer = post(SEED)
    assert status == 200, answer
    assert (answer["prediction"], answer["label"], answer["probabilities"], answer["model_version"]) == (
        1,
        "virginica",
        None,
        7,
    )
    assert stored()[0].probabilities is None


def test_a_configuration_without_a_version_tag_gives_a_null_model_version_and_a_warning(live, models, caplog):
    with serve(models["multi:softprob"], version=None) as server, caplog.at_level(logging.WARNING):
        live.setenv("SAGEMAKER_RUNTIME_URL", server.url)
        status, answer = post(SEED)
    assert (status, answer["model_version"]) == (200, None)
    assert f"endpoint configuration {ENDPOINT}-unversioned has no cloudviz:model-version tag" in caplog.text


def test_concurrent_requests_from_threads_are_all_answered_and_stored(live):
    statuses: list[int] = []

    def client() -> None:
        for _ in range(10):
            statuses.append(post(SEED)[0])

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 80
    assert len({record.id for record in stored()}) == 80


def test_the_runtime_client_is_created_once_per_url(live):
    post(SEED)
    client = runtime_client(inference_settings().runtime_url)
    post(SEED)
    assert runtime_client(inference_settings().runtime_url) is client


# -- bad input: 400 naming the field, nothing stored ------------------------------------------------------------

BAD_BODIES = [
    ({"x1": 6.7, "x2": 3.3, "x3": 5.7}, "x4 is missing"),
    ({**SEED, "x5": 1.0}, "unexpected field 'x5'"),
    ({**SEED, "x2": "wide"}, "x2 must be a number, not a string"),
    ({**SEED, "x1": True}, "x1 must be a number, not a boolean"),
    ({**SEED, "x3": None}, "x3 must be a number, not null"),
    ({**SEED, "x4": [2.5]}, "x4 must be a number, not an array"),
    ('{"x1": NaN, "x2": 3.3, "x3": 5.7, "x4": 2.5}', "x1 must be a finite number"),
    ('{"x1": 6.7, "x2": -Infinity, "x3": 5.7, "x4": 2.5}', "x2 must be a finite number"),
    ('{"x1": 6.7, "x2": 3.3, "x3": 1e999, "x4": 2.5}', "x3 must be a finite number"),
    ({**SEED, "x4": 1e39}, "x4 is outside the model's float32 range"),
    ({**SEED, "x4": 10**40}, "x4 is outside the model's float32 range"),
    ('{"x1": 6.7, "x1": 6.8, "x2": 3.3, "x3": 5.7, "x4": 2.5}', "the body gives 'x1' twice"),
    ("x1=6.7&x2=3.3", "the body is not JSON: Expecting value at line 1 column 1"),
    ('{"x1": 6.7,', "the body is not JSON"),
    ("", "the body is empty"),
    ([6.7, 3.3, 5.7, 2.5], "the body must be a JSON object, not an array"),
    ('"virginica"', "the body must be a JSON object, not a string"),
    ({"input_data": []}, "input_data has 0 rows: send 1 to 100"),
    ({"input_data": [SETOSA] * 101}, "input_data has 101 rows: send 1 to 100"),
    ({"input_data": SETOSA}, "input_data[0] must be an array of 4 numbers (x1, x2, x3, x4), not a number"),
    ({"input_data": "rows"}, "input_data must be an array of rows"),
    ({"input_data": [SETOSA, [1, 2, 3]]}, "input_data[1] has 3 values, expected 4 numbers (x1, x2, x3, x4)"),
    ({"input_data": [SETOSA, [1, 2, 3, 4, 5]]}, "input_data[1] has 5 values"),
    ({"input_data": [SETOSA, [1, 2, "3", 4]]}, "input_data[1][2] (x3) must be a number, not a string"),
    ({"input_data": [SETOSA, [1, 2, False, 4]]}, "input_data[1][2] (x3) must be a number, not a boolean"),
    ({"input_data": [SETOSA], "x1": 6.7}, "unexpected field 'x1' beside input_data"),
    ({"features": {**NAMED, "colour": 1}}, "features.colour is not a feature: use x1, x2, x3, x4, sepal_length"),
    ({"features": {**NAMED, "x1": 6.7}}, "features.x1 is given twice (as sepal_length and x1)"),
    ({"features": {"x1": 6.7, "x2": 3.3, "x4": 2.5}}, "features.x3 is missing (or petal_length)"),
    ({"features": {**NAMED, "sepal_width": "3.3"}}, "features.sepal_width must be a number, not a string"),
    ({"features": [6.7, 3.3, 5.7, 2.5]}, "features must be an object of feature values, not an array"),
    ({"features": NAMED, "model": "v2"}, "unexpected field 'model' beside features"),
    ({"instances": []}, "instances has 0 rows: send 1 to 100"),
    ({"instances": [NAMED] * 101}, "instances has 101 rows: send 1 to 100"),
    ({"instances": NAMED}, "instances must be an array of objects of feature values, not an object"),
    ({"instances": [NAMED, [6.7, 3.3, 5.7, 2.5]]}, "instances[1] must be an object of feature values, not an array"),
    ({"instances": [NAMED, {**NAMED, "colour": 1}]}, "instances[1].colour is not a feature: use x1, x2, x3, x4"),
    ({"instances": [NAMED, NAMED, {"x1": 6.7, "x2": 3.3, "x4": 2.5}]}, "instances[2].x3 is missing (or petal_length)"),
    ({"instances": [NAMED, {**NAMED, "sepal_width": "3.3"}]}, "instances[1].sepal_width must be a number, not a str"),
    ({"instances": [{**NAMED, "petal_width": None}]}, "instances[0].petal_width must be a number, not null"),
    ({"instances": [NAMED], "request_id": "r1"}, "unexpected field 'request_id' beside instances: a request_id names"),
    ({"input_data": [SETOSA], "request_id": "r1"}, "unexpected field 'request_id' beside input_data"),
    ({**SEED, "request_id": ""}, "request_id must be 1 to 128 letters, digits, '.', '_', ':' or '-', not ''"),
    ({**SEED, "request_id": "a" * 129}, "...' (129 characters)"),
    ({**SEED, "request_id": "a b"}, "request_id must be 1 to 128 letters, digits, '.', '_', ':' or '-', not 'a b'"),
    ({**SEED, "request_id": "caf\u00e9"}, "request_id must be 1 to 128 letters, digits, '.', '_', ':' or '-', not 'c"),
    ({**SEED, "request_id": 17}, "request_id must be a string of 1 to 128 letters, digits, '.', '_', ':' or '-', not"),
    ({"features": NAMED, "request_id": None}, "request_id must be a string of 1 to 128"),
    ({"features": {**NAMED, "request_id": "r1"}}, "features.request_id is not a feature"),
    ({"instances": [NAMED, {**NAMED, "request_id": "a/b"}]}, "instances[1].request_id must be 1 to 128 letters"),
    ({"instances": [{**NAMED, "request_id": ["r1"]}]}, "instances[0].request_id must be a string of"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES, ids=[message for _, message in BAD_BODIES])
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(live, body, message):
    status, answer = post(body, raw=body if isinstance(body, str) else None)
    assert status == 400
    assert message in answer["message"]
    assert list(answer) == ["message"]
    assert stored() == []


def test_a_body_that_is_not_utf8_is_a_400(live):
    event = rest_event("POST", "/predictions")
    event.update(body=base64.b64encode(b"\xff\xfe{}").decode(), isBase64Encoded=True)
    status, answer = check(inference.handler(event, None))
    assert (status, answer) == (400, {"message": "the body is not JSON: it is not UTF-8 text"})


def test_max_batch_rows_comes_from_the_environment(live):
    live.setenv("MAX_BATCH_ROWS", "2")
    status, answer = post({"input_data": [SETOSA] * 3})
    assert (status, answer["message"]) == (400, "input_data has 3 rows: send 1 to 2")
    assert post({"input_data": [SETOSA] * 2})[0] == 200
    assert post({"instances": [NAMED] * 3})[1]["message"] == "instances has 3 rows: send 1 to 2"
    assert post({"instances": [NAMED] * 2})[0] == 200


# -- the endpoint down: 503, nothing stored ---------------------------------------------------------------------


def unavailable(body: object = SEED) -> None:
    status, answer = post(body)
    assert (status, answer) == (503, {"message": "the model endpoint is unavailable; nothing was stored, retry later"})
    assert stored() == []


def test_a_closed_port_is_a_503(environment):
    unavailable()
    unavailable({"input_data": [SETOSA, SETOSA]})


def test_an_endpoint_with_no_model_loaded_is_a_503(environment):
    with serve(None) as server:
        environment.setenv("SAGEMAKER_RUNTIME_URL", server.url)
        unavailable()


def test_a_model_error_is_a_503(live):
    live.setenv("FEATURE_NAMES", "x1,x2,x3,x4,x5")  # a model of four features refuses five: ModelError
    live.delenv("FEATURE_ALIASES")
    unavailable({**SEED, "x5": 1.0})


def test_an_unknown_endpoint_name_is_a_503(live):
    live.setenv("ENDPOINT_NAME", "no-such-endpoint")
    unavailable()


def test_a_store_that_cannot_write_is_a_503_naming_the_store(live, tmp_path: Path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    live.setenv("PREDICTION_STORE", f"sqlite:{blocker / 'predictions.db'}")  # its folder cannot be made
    status, answer = post(SEED)
    assert (status, answer) == (503, {
        "message": "the prediction store is unavailable; the prediction was not stored or answered, retry later"
    })
    assert f"prediction store {blocker / 'predictions.db'} failed" in caplog.text


# -- configuration ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ENDPOINT_NAME", None, "environment variable ENDPOINT_NAME is not set"),
        ("PREDICTION_STORE", "mysql:predictions", "PREDICTION_STORE must be sqlite:"),
        ("FEATURE_NAMES", "x1,x1", "FEATURE_NAMES must list distinct comma-separated names"),
        ("FEATURE_ALIASES", "sepal_length=x9", "FEATURE_ALIASES entry 'sepal_length=x9'"),
        ("CLASS_NAMES", None, "environment variable CLASS_NAMES is not set"),
        ("MAX_BATCH_ROWS", "ten", "MAX_BATCH_ROWS must be an integer from 1 to 65536"),
        ("MODEL_TASK", "ranking", "MODEL_TASK must be one of multiclass, binary, regression, not 'ranking'"),
    ],
)
def test_a_misconfigured_lambda_fails_loudly(environment, name, value, message):
    if value is None:
        environment.delenv(name)
    else:
        environment.setenv(name, value)
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        inference.handler(rest_event("POST", "/predictions", json.dumps(SEED)), None)


def test_the_task_decides_whether_class_names_are_needed(environment):
    environment.setenv("MODEL_TASK", "binary")
    with pytest.raises(ConfigurationError, match="CLASS_NAMES must name 2 classes when MODEL_TASK is binary"):
        inference_settings()
    environment.setenv("MODEL_TASK", "regression")
    environment.delenv("CLASS_NAMES")
    settings = inference_settings()
    assert (settings.task, settings.class_names) == ("regression", ())


def test_a_model_of_another_task_than_configured_is_not_answered_as_one(live, caplog: pytest.LogCaptureFixture):
    """The iris endpoint (multi:softprob) behind an API configured for regression: its lists of probabilities are no
    value to answer; the request fails rather than storing a made-up prediction."""
    live.setenv("MODEL_TASK", "regression")
    with pytest.raises(ValueError, match=r"a list of scores, not a value: is the objective reg:\*\?"):
        inference.handler(rest_event("POST", "/predictions", json.dumps(SEED)), None)


def test_a_dynamodb_store_takes_at_most_100_rows_a_batch(environment):
    environment.setenv("PREDICTION_STORE", "dynamodb:predictions")
    environment.setenv("MAX_BATCH_ROWS", "101")
    with pytest.raises(ConfigurationError, match="MAX_BATCH_ROWS must be an integer from 1 to 100"):
        inference_settings()


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
    document = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    document["after_id"] = "1 OR 1=1"
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()


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


# -- packaging --------------------------------------------------------------------------------------------------


def test_the_lambdas_import_only_the_standard_library_boto3_and_their_own_package():
    allowed = set(sys.stdlib_module_names) | {"boto3", "botocore", "serving_lambdas", "__future__"}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]} if node.level == 0 else set()
            else:
                continue
            assert roots <= allowed, f"{path.name} imports {roots - allowed}"


def test_a_store_spec_opens_one_store_per_process(tmp_path: Path):
    spec = StoreSpec("sqlite", str(tmp_path / "predictions.db"))
    assert open_store(spec) is open_store(spec)
    assert isinstance(open_store(spec), SqliteStore)


def test_metrics_are_embedded_metric_format_log_lines(capsys: pytest.CaptureFixture[str]):
    from serving_lambdas import metrics  # noqa: PLC0415

    metrics.emit({"Predictions": (2, "Count"), "ModelLatency": (1.5, "Milliseconds")}, Endpoint="e", Label="setosa")
    line = json.loads(capsys.readouterr().out)
    assert line["_aws"]["CloudWatchMetrics"] == [{
        "Namespace": "CloudViz",
        "Dimensions": [["Endpoint", "Label"]],
        "Metrics": [{"Name": "Predictions", "Unit": "Count"}, {"Name": "ModelLatency", "Unit": "Milliseconds"}],
    }]
    assert (line["Endpoint"], line["Label"], line["Predictions"], line["ModelLatency"]) == ("e", "setosa", 2, 1.5)
    assert abs(line["_aws"]["Timestamp"] / 1000 - time.time()) < 60
    received: list[dict] = []
    metrics.set_sink(received.append)
    try:
        metrics.emit({"StoreErrors": (1, "Count")}, Endpoint="e")
    finally:
        metrics.set_sink(None)
    assert capsys.readouterr().out == "" and received[0]["StoreErrors"] == 1


def test_answers_carry_cors_when_the_stack_sets_an_origin(live):
    """On AWS nothing adds CORS to a proxy response; locally the gateway does and the variable is unset."""
    event = rest_event("POST", "/predictions", json.dumps(SEED))
    assert "Access-Control-Allow-Origin" not in inference.handler(event, None)["headers"]
    live.setenv("CORS_ALLOW_ORIGIN", "https://app.example.com")
    for response in (inference.handler(event, None), inference.handler(rest_event("POST", "/predictions", "{"), None),
                     retrieve.handler(rest_event("GET", "/predictions"), None)):
        assert response["headers"]["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert response["headers"]["Access-Control-Expose-Headers"] == "X-Next-Token"
