"""The local API gateway on a real socket, with small test handlers: the proxy event, routing, auth, CORS,
the body limit, failing handlers and the access log."""

from __future__ import annotations

import base64
import http.client
import json
import os
from pathlib import Path

import pytest

from deploy.gateway import ApiGateway, LambdaRoute, PlainRequest, PlainRoute
from deploy.gateway.access_log import AccessLog

KEY = "test-key-0123456789abcdef"
ORIGIN = "http://example.test"  # the one web origin the test gateway answers CORS to


def echo(event, context):
    """Answers the event and the context it was called with."""
    seen = {
        "function_name": context.function_name,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
    body = json.dumps({"event": event, "context": seen})
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": body}


def latest(event, context):
    return {"statusCode": 200, "body": "latest"}


def fails(event, context):
    raise RuntimeError("secret detail of a failure")


def malformed(event, context):
    return {"status": 200, "body": "no statusCode"}


def rich_response(event, context):
    return {
        "statusCode": 201,
        "headers": {"X-Single": "from headers", "X-Both": "from headers"},
        "multiValueHeaders": {"X-Both": ["one", "two"], "Set-Cookie": ["a=1", "b=2"]},
        "body": base64.b64encode(b"\x00\xffbinary").decode(),
        "isBase64Encoded": True,
    }


def configuration(event, context):
    """Answers the handler configuration it reads from the environment, as a Lambda function does."""
    values = {name: os.environ.get(name) for name in ("GATEWAY_TEST_SET", "GATEWAY_TEST_NEW")}
    return {"statusCode": 200, "body": json.dumps(values)}


def plain_page(request: PlainRequest):
    return 200, {"Content-Type": "text/plain"}, f"plain {request.method} {request.query}".encode()


ROUTES = [
    LambdaRoute("GET", "/items", echo, "items-fn"),
    LambdaRoute("POST", "/items", echo, "items-fn", memory_limit_in_mb=256),
    LambdaRoute("GET", "/items/{id}", echo, "items-fn"),
    LambdaRoute("GET", "/items/latest", latest, "latest-fn"),
    LambdaRoute("GET", "/public", echo, "public-fn", api_key_required=False),
    LambdaRoute("GET", "/fails", fails, "fails-fn"),
    LambdaRoute("GET", "/malformed", malformed, "malformed-fn"),
    LambdaRoute("GET", "/rich", rich_response, "rich-fn"),
    PlainRoute("GET", "/page", plain_page),
]


@pytest.fixture
def access_log(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "access.log"


@pytest.fixture
def gateway(tmp_path: Path, access_log: Path):
    static = tmp_path / "doc.json"
    static.write_text('{"openapi": "3.0.3"}', encoding="utf-8")
    with ApiGateway(ROUTES, KEY, max_body_bytes=1000, access_log=access_log, static={"/doc.json": static},
                    cors_origins=[ORIGIN]) as api:
        yield api.start()


@pytest.fixture
def connection(gateway: ApiGateway):
    client = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    yield client
    client.close()


def call(client: http.client.HTTPConnection, method: str, target: str, body: bytes | None = None, key=KEY, **headers):
    if key is not None:
        headers["x-api-key"] = key
    client.request(method, target, body=body, headers=headers)
    response = client.getresponse()
    return response, response.read()


def event_of(client: http.client.HTTPConnection, method: str, target: str, body: bytes | None = None, **headers):
    response, payload = call(client, method, target, body, **headers)
    assert response.status == 200, payload
    return json.loads(payload)


def log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_event_has_the_rest_api_proxy_shape(connection, gateway):
    answer = event_of(connection, "GET", "/items/abc", **{"User-Agent": "pytest"})
    event = answer["event"]
    assert set(event) == {
        "resource", "path", "httpMethod", "headers", "multiValueHeaders", "queryStringParameters",
        "multiValueQueryStringParameters", "pathParameters", "stageVariables", "requestContext", "body",
        "isBase64Encoded",
    }  # fmt: skip
    assert (event["resource"], event["path"], event["httpMethod"]) == ("/items/{id}", "/items/abc", "GET")
    assert event["pathParameters"] == {"id": "abc"}
    assert event["queryStringParameters"] is None and event["multiValueQueryStringParameters"] is None
    assert event["stageVariables"] is None
    assert event["body"] is None and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["resourcePath"] == "/items/{id}"
    assert context["httpMethod"] == "GET"
    assert context["stage"] == "local"
    assert context["path"] == "/local/items/abc"
    assert context["protocol"] == "HTTP/1.1"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["identity"]["apiKey"] == KEY
    assert context["identity"]["userAgent"] == "pytest"
    assert isinstance(context["requestTimeEpoch"], int) and context["requestTimeEpoch"] > 1_700_000_000_000
    assert context["domainName"] == f"127.0.0.1:{gateway.port}"
    assert len(context["requestId"]) == 36


def test_context_is_lambda_like(connection):
    first = event_of(connection, "POST", "/items", b"{}")
    second = event_of(connection, "POST", "/items", b"{}")
    context = first["context"]
    assert context["function_name"] == "items-fn"
    assert context["invoked_function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:items-fn"
    assert context["memory_limit_in_mb"] == 256
    assert 0 < context["remaining_ms"] <= 29_000
    assert context["aws_request_id"] != second["context"]["aws_request_id"]
    assert context["aws_request_id"] != first["event"]["requestContext"]["requestId"]


def test_query_string_keeps_repeated_keys_and_decodes_values(connection):
    event = event_of(connection, "GET", "/items?limit=5&tag=a&tag=b%20c&empty=")["event"]
    assert event["queryStringParameters"] == {"limit": "5", "tag": "b c", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {"limit": ["5"], "tag": ["a", "b c"], "empty": [""]}


def test_path_parameters_are_percent_decoded(connection):
    event = event_of(connection, "GET", "/items/a%20b%2Fc")["event"]
    assert event["pathParameters"] == {"id": "a b/c"}
    assert event["path"] == "/items/a b/c"


def test_literal_resource_wins_over_template(connection):
    response, payload = call(connection, "GET", "/items/latest")
    assert (response.status, payload) == (200, b"latest")


def test_repeated_headers_arrive_in_multi_value_headers(connection):
    connection.putrequest("GET", "/items")
    connection.putheader("x-api-key", KEY)
    connection.putheader("X-Trace", "first")
    connection.putheader("X-Trace", "second")
    connection.endheaders()
    event = json.loads(connection.getresponse().read())["event"]
    assert event["headers"]["X-Trace"] == "second"
    assert event["multiValueHeaders"]["X-Trace"] == ["first", "second"]
    assert event["headers"]["x-api-key"] == KEY


def test_text_body_arrives_as_is_and_binary_base64(connection):
    event = event_of(connection, "POST", "/items", b'{"x1": 1}', **{"Content-Type": "application/json"})["event"]
    assert (event["body"], event["isBase64Encoded"]) == ('{"x1": 1}', False)
    event = event_of(connection, "POST", "/items", b"\xff\xfe\x00")["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xfe\x00"


def test_proxy_response_headers_status_and_base64_body(connection):
    response, payload = call(connection, "GET", "/rich")
    assert response.status == 201
    assert payload == b"\x00\xffbinary"
    assert response.getheader("X-Single") == "from headers"
    assert response.msg.get_all("X-Both") == ["one", "two"]  # multiValueHeaders win over headers
    assert response.msg.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert response.getheader("x-amzn-RequestId")


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789abcdef", ""])
def test_missing_or_wrong_key_is_forbidden(connection, key):
    response, payload = call(connection, "GET", "/items", key=key)
    assert response.status == 403
    assert json.loads(payload) == {"message": "Forbidden"}
    assert response.getheader("x-amzn-ErrorType") == "ForbiddenException"


def test_key_header_name_is_case_insensitive(connection):
    response, _ = call(connection, "GET", "/items", key=None, **{"X-API-Key": KEY})
    assert response.status == 200


def test_route_without_key_requirement_needs_no_key(connection):
    event = event_of(connection, "GET", "/public", key=None)["event"]
    assert event["requestContext"]["identity"]["apiKey"] is None


@pytest.mark.parametrize(("method", "target"), [("GET", "/nowhere"), ("DELETE", "/items"), ("GET", "/items/a/b")])
def test_unknown_route_answers_missing_authentication_token(connection, method, target):
    response, payload = call(connection, method, target)
    assert response.status == 403
    assert json.loads(payload) == {"message": "Missing Authentication Token"}
    assert response.getheader("x-amzn-ErrorType") == "MissingAuthenticationTokenException"


def test_cors_preflight_is_answered_by_the_gateway_without_a_key(connection):
    response, payload = call(
        connection,
        "OPTIONS",
        "/items",
        key=None,
        Origin=ORIGIN,
        **{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key,content-type"},
    )
    assert (response.status, payload) == (204, b"")
    assert response.getheader("Access-Control-Allow-Origin") == ORIGIN
    assert response.getheader("Vary") == "Origin"
    assert response.getheader("Access-Control-Allow-Methods") == "GET,OPTIONS,POST"
    assert "X-Api-Key" in response.getheader("Access-Control-Allow-Headers").split(",")


def test_cors_headers_are_on_every_answer_of_an_api_route_to_an_allowed_origin(connection):
    for target, key in [("/items", KEY), ("/items", None), ("/fails", KEY)]:
        response, _ = call(connection, "GET", target, key=key, Origin=ORIGIN)
        assert response.getheader("Access-Control-Allow-Origin") == ORIGIN, target
        assert "X-Next-Token" in response.getheader("Access-Control-Expose-Headers").split(","), target
    for target in ("/nowhere", "/page"):  # not an API route: no CORS
        response, _ = call(connection, "GET", target, Origin=ORIGIN)
        assert response.getheader("Access-Control-Allow-Origin") is None, target


def test_oversize_body_is_refused_with_413_and_the_connection_stays_usable(connection, access_log):
    response, payload = call(connection, "POST", "/items", b"x" * 1001)
    assert response.status == 413
    assert json.loads(payload)["message"].startswith("Request Too Long")
    assert "1000" in json.loads(payload)["message"]
    assert event_of(connection, "POST", "/items", b"x" * 1000)["event"]["body"] == "x" * 1000
    assert [line["status"] for line in log_lines(access_log)] == [413, 200]


def test_chunked_body_is_refused_with_411(connection):
    response, payload = call(connection, "POST", "/items", iter([b"abc"]), **{"Transfer-Encoding": "chunked"})
    assert response.status == 411
    assert "Content-Length" in json.loads(payload)["message"]


def test_failing_handler_gives_502_and_its_traceback_goes_to_the_log_only(connection, access_log):
    response, payload = call(connection, "GET", "/fails")
    assert response.status == 502
    assert json.loads(payload) == {"message": "Internal server error"}
    assert b"secret" not in payload
    (line,) = log_lines(access_log)
    assert line["status"] == 502
    assert "Traceback" in line["error"] and "RuntimeError: secret detail of a failure" in line["error"]
    assert event_of(connection, "GET", "/items")  # the gateway keeps serving


def test_malformed_proxy_response_gives_502(connection, access_log):
    response, payload = call(connection, "GET", "/malformed")
    assert response.status == 502
    assert json.loads(payload) == {"message": "Internal server error"}
    assert "Malformed Lambda proxy response" in log_lines(access_log)[0]["error"]


def test_access_log_has_one_json_line_per_request(connection, access_log):
    call(connection, "GET", "/items?limit=1")
    call(connection, "POST", "/items", b"12345")
    call(connection, "GET", "/items", key=None)
    lines = log_lines(access_log)
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/items", 200),
        ("POST", "/items", 200),
        ("GET", "/items", 403),
    ]
    for line in lines:
        assert {"time", "request_id", "resource", "latency_ms", "source_ip", "bytes", "request_bytes"} <= set(line)
        assert line["source_ip"] == "127.0.0.1"
        assert line["latency_ms"] >= 0
        assert "error" not in line
    assert lines[1]["request_bytes"] == 5
    assert lines[2]["bytes"] == len(b'{"message":"Forbidden"}')
    assert len({line["request_id"] for line in lines}) == 3


def test_access_log_rotates_by_size_with_whole_lines_and_an_existing_file_counted(tmp_path: Path):
    path = tmp_path / "access.log"
    path.write_text(json.dumps({"status": 0, "note": "x" * 150}) + "\n", encoding="utf-8")  # a serve of before
    log = AccessLog(path, max_bytes=300)
    for number in range(1, 10):
        log.write({"status": 200, "number": number})
    log.close()
    files = [path, *(path.with_name(f"access.log.{n}") for n in range(1, 6))]
    kept = [file for file in files if file.exists()]
    assert all(file.stat().st_size <= 300 for file in kept)
    numbers = sorted(line.get("number", 0) for file in kept for line in log_lines(file))
    assert numbers == list(range(10))  # nothing lost or split: every line whole, in one of the files
    assert path.with_name("access.log.1").exists()


def test_request_id_header_matches_the_event_and_the_log(connection, access_log):
    response, payload = call(connection, "GET", "/items")
    request_id = response.getheader("x-amzn-RequestId")
    assert json.loads(payload)["event"]["requestContext"]["requestId"] == request_id
    assert log_lines(access_log)[0]["request_id"] == request_id


def test_keep_alive_serves_many_requests_on_one_connection(connection):
    call(connection, "GET", "/items")
    socket_before = connection.sock
    for _ in range(20):
        response, _ = call(connection, "GET", "/items")
        assert response.status == 200
    assert connection.sock is socket_before


def test_plain_and_static_routes_answer_without_a_key(connection):
    response, payload = call(connection, "GET", "/page?a=1&a=2", key=None)
    assert (response.status, payload) == (200, b"plain GET {'a': ['1', '2']}")
    assert response.getheader("Access-Control-Allow-Origin") is None
    response, payload = call(connection, "GET", "/doc.json", key=None)
    assert (response.status, payload) == (200, b'{"openapi": "3.0.3"}')
    assert response.getheader("Content-Type") == "application/json"


def test_close_ends_idle_keep_alive_connections(tmp_path):
    api = ApiGateway(ROUTES, KEY).start()
    client = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
    assert call(client, "GET", "/items")[0].status == 200
    api.close()
    assert client.sock.recv(1) == b""  # the server side closed the idle connection
    client.close()


def test_two_routes_for_one_method_and_resource_are_refused():
    with pytest.raises(ValueError, match="two routes for GET /items"):
        ApiGateway([LambdaRoute("GET", "/items", echo, "a"), LambdaRoute("get", "/items/", echo, "b")], KEY)


def test_handlers_read_the_environment_while_serving_and_it_is_restored_at_close(monkeypatch):
    monkeypatch.setenv("GATEWAY_TEST_SET", "before")
    monkeypatch.delenv("GATEWAY_TEST_NEW", raising=False)
    environment = {"GATEWAY_TEST_SET": "served", "GATEWAY_TEST_NEW": "added"}
    api = ApiGateway([LambdaRoute("GET", "/configuration", configuration, "config-fn")], KEY, environment=environment)
    assert os.environ["GATEWAY_TEST_SET"] == "before"  # nothing is set before the gateway starts
    with api.start():
        client = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
        response, payload = call(client, "GET", "/configuration")
        client.close()
        assert (response.status, json.loads(payload)) == (200, environment)
    assert os.environ["GATEWAY_TEST_SET"] == "before"
    assert "GATEWAY_TEST_NEW" not in os.environ
