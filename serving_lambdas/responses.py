"""API Gateway Lambda proxy responses: a status, JSON headers and a JSON body; and the CORS headers of the answers
on AWS, where nothing between the handler and the browser adds them."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable

CORS_VARIABLE = "CORS_ALLOW_ORIGINS"  # the stage's allowed web origins, separated by commas; unset or "": no CORS
# The answer headers a web page may read: the listing's cursor, the request id (API Gateway's own, and the local
# gateway's), and the idempotent POST's replay flag and back-off.
EXPOSE_HEADERS = "X-Next-Token,x-amzn-RequestId,Idempotent-Replayed,Retry-After"
ProxyHandler = Callable[[dict, object], dict]


def request_origin(event: dict) -> str | None:
    """The request's ``Origin`` header (API Gateway keeps header names as the client sent them)."""
    return next((value for name, value in (event.get("headers") or {}).items() if name.lower() == "origin"), None)


def with_cors(event: dict, response: dict) -> dict:
    """``response`` with CORS for the request's origin when the stack lists it in ``CORS_ALLOW_ORIGINS``, and
    ``Vary: Origin`` whenever CORS is on; unchanged when it is off (the local gateway adds CORS itself)."""
    origins = {origin for origin in os.environ.get(CORS_VARIABLE, "").split(",") if origin}
    if not origins:
        return response
    headers = {**(response.get("headers") or {}), "Vary": "Origin"}
    origin = request_origin(event)
    if origin in origins:
        headers.update({"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": EXPOSE_HEADERS})
    return {**response, "headers": headers}


def answers_cors(handler: ProxyHandler) -> ProxyHandler:
    """A handler whose every answer goes through :func:`with_cors`."""

    @functools.wraps(handler)
    def answered(event: dict, context: object) -> dict:
        return with_cors(event, handler(event, context))

    return answered


def json_response(status: int, body: object, headers: dict[str, str] | None = None) -> dict:
    """A proxy response with ``body`` as JSON (strict: NaN or infinity would be a bug, never sent)."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body, allow_nan=False),
        "isBase64Encoded": False,
    }


def error_response(status: int, message: str) -> dict:
    """An error as API Gateway words its own: ``{"message": "..."}``."""
    return json_response(status, {"message": message})
