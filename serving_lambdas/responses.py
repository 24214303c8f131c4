"""API Gateway Lambda proxy responses: a status, JSON headers and a JSON body."""

from __future__ import annotations

import json


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
