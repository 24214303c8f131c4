"""What goes back to the client: a handler's proxy response checked as API Gateway checks it, or one of the
gateway's own answers (the bodies and ``x-amzn-ErrorType`` values API Gateway uses for them)."""

from __future__ import annotations

import base64
import binascii
import json

from deploy.http11 import PHRASES, Response

_PROXY_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}


class MalformedProxyResponse(Exception):
    """The handler returned something API Gateway would reject (it answers 502 and logs this)."""


def gateway_error(status: int, message: str, error_type: str | None = None) -> Response:
    headers = [("Content-Type", "application/json")]
    if error_type is not None:
        headers.append(("x-amzn-ErrorType", error_type))
    return status, headers, json.dumps({"message": message}, separators=(",", ":")).encode()


def refused(status: int, message: str) -> Response:
    """A request the gateway could not read or accept, headed as API Gateway words it (413: "Request Too Long")."""
    if status == 413:
        return gateway_error(413, f"Request Too Long: {message}", "RequestTooLarge")
    return gateway_error(status, f"{PHRASES.get(status, 'Error')}: {message}")


def forbidden() -> Response:
    return gateway_error(403, "Forbidden", "ForbiddenException")


def missing_authentication_token() -> Response:
    """A REST API's answer to a path or method it does not define (it cannot tell a typo from an unsigned call)."""
    return gateway_error(403, "Missing Authentication Token", "MissingAuthenticationTokenException")


def misdirected() -> Response:
    """The gateway's own pages asked for by another name than this machine's (a DNS-rebinding web page)."""
    return gateway_error(421, "Misdirected Request: this page answers only at 127.0.0.1, [::1] or localhost")


def internal_server_error() -> Response:
    return gateway_error(502, "Internal server error", "InternalServerErrorException")


def _strings(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise MalformedProxyResponse(f"{name} must be a string, got {type(value).__name__}")


def from_proxy_result(result: object) -> Response:
    """The HTTP response for a Lambda proxy response; values in ``multiValueHeaders`` win over ``headers``."""
    if not isinstance(result, dict):
        raise MalformedProxyResponse(f"the handler returned {type(result).__name__}, not an object")
    unknown = set(result) - _PROXY_KEYS
    if unknown:
        raise MalformedProxyResponse(f"unexpected fields {sorted(unknown)}")
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise MalformedProxyResponse(f"statusCode must be an HTTP status, got {status!r}")
    headers: list[tuple[str, str]] = []
    multi = result.get("multiValueHeaders") or {}
    for name, values in multi.items():
        if not isinstance(values, list):
            raise MalformedProxyResponse(f"multiValueHeaders[{name!r}] must be a list")
        for value in values:
            _strings(f"multiValueHeaders[{name!r}]", value)
            headers.append((name, value))
    overridden = {name.lower() for name in multi}
    for name, value in (result.get("headers") or {}).items():
        _strings(f"headers[{name!r}]", value)
        if name.lower() not in overridden:
            headers.append((name, value))
    body = result.get("body")
    if body is None:
        return status, headers, b""
    _strings("body", body)
    if not result.get("isBase64Encoded"):
        return status, headers, body.encode("utf-8")
    try:
        return status, headers, base64.b64decode(body, validate=True)
    except binascii.Error as error:
        raise MalformedProxyResponse(f"body is not valid base64: {error}") from None
