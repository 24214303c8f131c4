"""Hostile JSON bodies at both servers: nesting and number length past the limits of
``serving_lambdas.json_limits`` are answered 400 naming the limit, by the prediction API (its POST routes, over HTTP
on 127.0.0.1 with the real handlers) and by the local endpoint (application/json); never a 5xx, never a traceback."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import time
from pathlib import Path

import pytest
from test_postman import KEY, SEED, api, call, documented  # noqa: F401 (api: a fixture)

from deploy.endpoint import EndpointServer, ModelSlot, ServingModel
from serving_lambdas.json_limits import MAX_DEPTH, MAX_NUMBER_LENGTH, JsonLimitError, check_json_limits

DEEP = "[" * 100_000
LONG_NUMBER = "1" * 5_001  # past Python's 4,300-digit limit on int()
NESTED = "nested deeper than 32 levels"
TOO_LONG = "a number longer than 100 characters"


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


@pytest.mark.parametrize(("text", "message"), [
    (DEEP, NESTED),
    (nested(MAX_DEPTH + 1), NESTED),
    ('{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1), NESTED),
    (f'{{"x1": {LONG_NUMBER}}}', TOO_LONG),
    ("[-0." + "1" * MAX_NUMBER_LENGTH + "]", TOO_LONG),
    ("[1e" + "9" * MAX_NUMBER_LENGTH + "]", TOO_LONG),
])
def test_past_a_limit_is_refused_naming_it(text: str, message: str):
    with pytest.raises(JsonLimitError, match=message):
        check_json_limits(text)


@pytest.mark.parametrize("text", [
    nested(MAX_DEPTH),
    "[" + "1" * MAX_NUMBER_LENGTH + "]",
    json.dumps({"note": "[" * 1000 + "1" * 5000, "escaped": '\\"[[[[' * 50}),  # inside strings: not counted
    json.dumps({"x1": 6.7, "x2": -3.3e-12, "x3": 1e38, "x4": 2}),
])
def test_within_the_limits_is_left_to_the_parser(text: str):
    check_json_limits(text)


@pytest.mark.parametrize("text", [
    '\\"' * 500_000,  # quotes that open no string: a backtracking string pattern takes hours on this
    ("1" * MAX_NUMBER_LENGTH + ",") * 10_000,
    "[]" * 500_000,
    "[" * 1_000_000,
    '"' + "[" * 1_000_000,
], ids=["escaped-quotes", "numbers-at-the-limit", "flat-brackets", "open-brackets", "unterminated-string"])
def test_a_megabyte_of_anything_is_checked_within_a_second(text: str):
    started = time.perf_counter()
    with contextlib.suppress(JsonLimitError):
        check_json_limits(text)
    assert time.perf_counter() - started < 1


# -- the prediction API -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "message"), [
    (DEEP, NESTED),
    ('{"x1": ' + "[" * 50 + "]" * 50 + ', "x2": 1, "x3": 1, "x4": 1}', NESTED),
    (f'{{"x1": {LONG_NUMBER}, "x2": 3.3, "x3": 5.7, "x4": 2.5}}', TOO_LONG),
    (f'{{"input_data": [[6.7, 3.3, 5.7, 0.{LONG_NUMBER}]]}}', TOO_LONG),
])
def test_the_api_answers_400_naming_the_limit(api, raw: str, message: str):  # noqa: F811
    status, _, answer = call(api, "POST", "/predictions", raw=raw.encode())
    documented(api, "POST", "/predictions", status, answer)
    assert status == 400 and message in answer["message"], answer
    assert call(api, "GET", "/predictions")[2] == []  # nothing stored
    assert call(api, "POST", "/predictions", SEED)[0] == 200  # and the API still serves


def test_the_feedback_route_answers_400_naming_the_limit(api):  # noqa: F811
    status, _, prediction = call(api, "POST", "/predictions", SEED)
    assert status == 200
    for raw, message in ((DEEP, NESTED), (f'{{"label": {LONG_NUMBER}}}', TOO_LONG)):
        status, _, answer = call(api, "POST", f"/predictions/{prediction['id']}/feedback", raw=raw.encode())
        assert status == 400 and message in answer["message"], answer


def test_a_next_token_not_issued_by_the_api_is_a_400_even_when_it_is_deep_json(api):  # noqa: F811
    """Tokens used to be base64 JSON, decoded before they were checked: a deep one reached RecursionError."""
    forged = base64.urlsafe_b64encode(("[" * 2000).encode()).decode()
    status, _, answer = call(api, "GET", f"/predictions?next_token={forged}")
    assert status == 400 and answer["message"].startswith("next_token is not a token this API issued"), answer


# -- the endpoint -------------------------------------------------------------------------------------------------


@pytest.fixture
def endpoint(model_tarball: Path):
    with EndpointServer(ModelSlot(ServingModel.load(model_tarball, version=1))).start() as server:
        yield server


def invoke(server: EndpointServer, body: str, content_type: str = "application/json") -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("POST", "/invocations", body.encode(), {"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize(("body", "message"), [
    (DEEP, NESTED),
    ('{"instances": [{"features": ' + "[" * 40 + "]" * 40 + "}]}", NESTED),
    (f"[6.7, 3.3, 5.7, {LONG_NUMBER}]", TOO_LONG),
    (f'{{"features": [6.7, 3.3, 5.7, -{LONG_NUMBER}.5]}}', TOO_LONG),
])
def test_the_endpoint_answers_400_naming_the_limit(endpoint: EndpointServer, body: str, message: str,
                                                   capfd: pytest.CaptureFixture):
    status, answer = invoke(endpoint, body)
    assert status == 400 and message in answer, answer
    assert invoke(endpoint, "[6.7, 3.3, 5.7, 2.5]")[0] == 200
    assert "Traceback" not in capfd.readouterr().err
