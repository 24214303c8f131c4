"""API Gateway Lambda proxy responses: a status, JSON headers and a JSON body."""

from __future__ import annotations

import json
import os

CORS_VARIABLE = "CORS_ALLOW_ORIGIN"


def cors_headers() -> dict[str, str]:
    """On AWS the handler's answer reaches the browser as it is, so it carries CORS itself when the stack sets
    ``CORS_ALLOW_ORIGIN``; the local gateway adds CORS to every response and leaves the variable unset."""
    origin = os.environ.get(CORS_VARIABLE)
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": "X-Next-Token"}


def json_response(status: int, body: object, headers: dict[str, str] | None = None) -> dict:
    """A proxy response with ``body`` as JSON (strict: NaN or infinity would be a bug, never sent)."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **cors_headers(), **(headers or {})},
        "body": json.dumps(body, allow_nan=False),
        "isBase64Encoded": False,
    }


def error_response(status: int, message: str) -> dict:
    """An error as API Gateway words its own: ``{"message": "..."}``."""
    return json_response(status, {"message": message})
