"""Who may call and from which web page: the ``x-api-key`` check, the CORS headers and the ``Host`` check.

CORS is answered only on the API's own routes (the Lambda routes), and only to the origins the serve was given
(``--cors-origin``; none by default, so no ``Access-Control-*`` header at all): the request's ``Origin`` is echoed
when listed, with ``Vary: Origin`` so a cache keeps one answer per origin. The gateway's own pages (``/metrics``,
``/dashboard``, ``/openapi.json``) never carry CORS and answer only to a loopback ``Host``: a web page that
rebinds its DNS name to 127.0.0.1 sends its own name as ``Host`` and is refused (421).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Sequence

from serving_lambdas.responses import EXPOSE_HEADERS

# API Gateway's default, and Idempotency-Key (POST /predictions may be retried from a web page).
ALLOW_HEADERS = "Content-Type,X-Amz-Date,Authorization,X-Api-Key,X-Amz-Security-Token,Idempotency-Key"
PREFLIGHT_MAX_AGE_SECONDS = "600"
# An origin as a browser sends it: scheme, host and optional port; no path, no wildcard.
ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?")
LOOPBACK_HOST = re.compile(r"(127\.0\.0\.1|\[::1\]|localhost)(:\d{1,5})?", re.IGNORECASE)


def key_matches(supplied: str | None, expected: str) -> bool:
    """Compared in constant time, so response timing says nothing about the key."""
    return supplied is not None and hmac.compare_digest(supplied.encode(), expected.encode())


def is_loopback_host(host: str | None) -> bool:
    """Whether a ``Host`` header names this machine by its loopback address or name (any port)."""
    return host is not None and LOOPBACK_HOST.fullmatch(host) is not None


def checked_origins(origins: Iterable[str]) -> tuple[str, ...]:
    """The allowed origins, each checked (ValueError naming the bad one); a trailing ``/`` is dropped."""
    checked = []
    for origin in origins:
        origin = origin.removesuffix("/")
        if not ORIGIN.fullmatch(origin):
            raise ValueError(f"CORS origin {origin!r} must be scheme://host[:port], e.g. https://app.example.com "
                             "(no path, no wildcard)")
        checked.append(origin)
    return tuple(dict.fromkeys(checked))


class CorsPolicy:
    """The allowed origins of the API's routes; empty: CORS off."""

    def __init__(self, origins: Sequence[str] = ()) -> None:
        self.origins = frozenset(checked_origins(origins))

    def allows(self, origin: str | None) -> bool:
        return origin is not None and origin in self.origins

    def preflight(self, origin: str | None, methods: Iterable[str]) -> list[tuple[str, str]] | None:
        """The headers of a preflight answer to ``origin``; None when the origin may not call."""
        if not self.allows(origin):
            return None
        return [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Methods", ",".join(sorted({*methods, "OPTIONS"}))),
            ("Access-Control-Allow-Headers", ALLOW_HEADERS),
            ("Access-Control-Max-Age", PREFLIGHT_MAX_AGE_SECONDS),
            ("Vary", "Origin"),
        ]

    def apply(self, headers: list[tuple[str, str]], origin: str | None) -> list[tuple[str, str]]:
        """``headers`` of an API route's answer plus the CORS headers a handler did not set itself."""
        if not self.origins:
            return headers
        present = {name.lower() for name, _ in headers}
        if "vary" not in present:
            headers.append(("Vary", "Origin"))
        if self.allows(origin) and "access-control-allow-origin" not in present:
            headers.append(("Access-Control-Allow-Origin", origin))
            headers.append(("Access-Control-Expose-Headers", EXPOSE_HEADERS))
        return headers
