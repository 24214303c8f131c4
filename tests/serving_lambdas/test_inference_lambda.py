"""The inference Lambda called as API Gateway calls it (REST API proxy events in, proxy responses out) against a
real local endpoint and a real prediction store: predictions, bad input (400 naming the field), the endpoint
down (503), and its configuration."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from pathlib import Path

import pytest
from lambda_events import (
    CLASSES,
    ENDPOINT,
    ID,
    NAMED,
    SEED,
    SETOSA,
    TIMESTAMP,
    check,
    get,
    post,
    rest_event,
    serve,
    stored,
)

from serving_lambdas import inference
from serving_lambdas.config import ConfigurationError, inference_settings
from serving_lambdas.endpoint import runtime_client

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
