"""Who may call and from which web page: the ``x-api-key`` check and the CORS headers.

CORS is answered as API Gateway's "Enable CORS" sets it up: a preflight ``OPTIONS`` on every resource
that needs no key, and ``Access-Control-Allow-Origin`` on every response, the gateway's errors included,
so a browser page (the Postman visualizer, a dashboard) can read error messages and ``X-Next-Token``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

ALLOW_HEADERS = "Content-Type,X-Amz-Date,Authorization,X-Api-Key,X-Amz-Security-Token"  # API Gateway's default
EXPOSE_HEADERS = "X-Next-Token,x-amzn-RequestId"
PREFLIGHT_MAX_AGE_SECONDS = "600"


def key_matches(supplied: str | None, expected: str) -> bool:
    """Compared in constant time, so response timing says nothing about the key."""
    return supplied is not None and hmac.compare_digest(supplied.encode(), expected.encode())


def preflight_headers(origin: str, methods: Iterable[str]) -> list[tuple[str, str]]:
    return [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Methods", ",".join(sorted({*methods, "OPTIONS"}))),
        ("Access-Control-Allow-Headers", ALLOW_HEADERS),
        ("Access-Control-Max-Age", PREFLIGHT_MAX_AGE_SECONDS),
    ]


def with_cors(headers: list[tuple[str, str]], origin: str) -> list[tuple[str, str]]:
    """``headers`` plus the CORS response headers a handler did not set itself."""
    present = {name.lower() for name, _ in headers}
    if "access-control-allow-origin" not in present:
        headers.append(("Access-Control-Allow-Origin", origin))
    if "access-control-expose-headers" not in present:
        headers.append(("Access-Control-Expose-Headers", EXPOSE_HEADERS))
    return headers
