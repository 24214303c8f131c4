"""What the serving Lambdas' tests share: API Gateway REST API (v1) proxy events, the handlers' answers and the
stored predictions, and a local endpoint serving a trained model."""

from __future__ import annotations

import base64
import json
import re
import socket
from pathlib import Path

from deploy.endpoint import EndpointServer, ModelSlot, ServingModel
from serving_lambdas import inference, retrieve
from serving_lambdas.config import inference_settings
from serving_lambdas.records import PredictionRecord
from serving_lambdas.store import open_store

ENDPOINT = "cloudviz-test-endpoint"
SEED = {"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5}
SETOSA = [5.1, 3.5, 1.4, 0.2]
CLASSES = ["setosa", "virginica", "versicolor"]
NAMED = {"sepal_length": 6.7, "sepal_width": 3.3, "petal_length": 5.7, "petal_width": 2.5}
ID = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{16}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def serve(tarball: Path | None, version: int | None = 3) -> EndpointServer:
    model = None if tarball is None else ServingModel.load(tarball, version=version)
    return EndpointServer(ModelSlot(model), name=ENDPOINT).start()


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
