"""``Idempotency-Key`` on POST /predictions: a client that retries a request whose answer it lost (a timeout) with
the same key gets the first answer again, and nothing new is stored.

As draft-ietf-httpapi-idempotency-key-header (and Stripe) describe it:

- The key: 1 to 255 visible ASCII characters or spaces, in one header, bare (``Idempotency-Key: 8e03978e-...``) or
  as the draft's quoted string (``"8e03978e-..."``, the same key); anything else is a 400 naming the header.
- Scoped per caller: a key is stored as the SHA-256 digest of the caller's API key (its id on AWS) and the key,
  so two callers' keys never meet and neither the API key nor the key is stored as sent.
- Remembered for ``WINDOW_SECONDS`` (24 h) from its first request. A replay within it is answered the stored
  status and body, with ``Idempotent-Replayed: true``; after it, the key is new again.
- The same key with another payload (other rows, row ids or form): 422. While the first request is being served:
  409 with ``Retry-After``. A request refused (400) or not served (503: the endpoint or the store unavailable)
  leaves the key free: its retry is served afresh.
- The answer is remembered in the write that stores its predictions (one SQLite transaction, one DynamoDB
  transaction), so a prediction is never stored without its answer remembered. A key whose request died before
  answering (its process crashed) is taken over after ``LEASE_SECONDS``, longer than a function may run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable

from serving_lambdas.payload import Payload
from serving_lambdas.responses import error_response, json_response
from serving_lambdas.store import IdempotentRequest, PredictionStore

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
WINDOW_SECONDS = 24 * 3600  # how long a key's answer is replayed
LEASE_SECONDS = 60  # how long a request holds its key before answering: above the function's 25 s timeout
RETRY_AFTER_SECONDS = 1
KEY_RULE = f"1 to {MAX_KEY_LENGTH} visible ASCII characters or spaces"
QUOTED = re.compile(r'"((?:[ !#-\[\]-~]|\\["\\])*)"')  # RFC 8941 sf-string: only \" and \\ escaped
clock: Callable[[], float] = time.time  # the time keys are claimed and expire by (a test sets it)
logger = logging.getLogger(__name__)


class IdempotencyKeyError(ValueError):
    """The header is malformed; the message names it and says why."""


def requested_key(event: dict) -> str | None:
    """The ``Idempotency-Key`` of a proxy event (header names are case-insensitive), or None without one."""
    values = [value for name, values in _headers(event).items() if name.lower() == HEADER.lower()
              for value in values]
    if not values:
        return None
    if len(values) > 1:
        raise IdempotencyKeyError(f"{HEADER} is given {len(values)} times: send one")
    key = values[0].strip(" \t")  # optional whitespace around a field value is not part of it
    unprintable = next((char for char in key if not " " <= char <= "~"), None)
    if unprintable is not None:
        raise IdempotencyKeyError(f"{HEADER} must be {KEY_RULE}: it holds {unprintable!r}")
    if key.startswith('"'):
        quoted = QUOTED.fullmatch(key)
        if quoted is None:
            raise IdempotencyKeyError(f'{HEADER} starts with a quote: a quoted key ends with one and escapes only '
                                      f'\\" and \\\\ inside')
        key = re.sub(r'\\(["\\])', r"\1", quoted.group(1))
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise IdempotencyKeyError(f"{HEADER} must be {KEY_RULE}, not {len(key)} characters")
    return key


def serve_once(key: str, event: dict, payload: Payload, store: PredictionStore,
               serve: Callable[[IdempotentRequest], dict]) -> dict:
    """The answer to a request with ``key``: the remembered one, a 422 or a 409, or ``serve``'s own, which must
    store the request's answer with its predictions (``store.put(records, answered)``) when it answers 200."""
    now = int(clock())
    request = IdempotentRequest(digest=digest(event, key), fingerprint=fingerprint(payload),
                                token=secrets.token_hex(16), lease_until=now + LEASE_SECONDS,
                                expires_at=now + WINDOW_SECONDS)
    held = store.claim(request, now)
    if held.token != request.token:
        return _answer_held(held, request)
    response = None
    try:
        response = serve(request)
    finally:
        if response is None or response["statusCode"] != 200:  # not answered: the key is free for the retry
            _release(store, request)
    return response


def answered(request: IdempotentRequest, status: int, body: object) -> IdempotentRequest:
    """``request`` with its answer, as ``serve`` stores it (the JSON text the response carries)."""
    return request.answered(status, json.dumps(body, allow_nan=False))


def in_progress() -> dict:
    """409: a request with the key is being served (or took the key over while this one was served)."""
    return json_response(409, {"message": f"a request with this {HEADER} is still being served: retry in a moment"},
                         {"Retry-After": str(RETRY_AFTER_SECONDS)})


def digest(event: dict, key: str) -> str:
    """The key, scoped to the caller: its API key's id (AWS), else its API key (the local gateway), else none."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    if identity.get("apiKeyId"):
        caller = f"api-key-id:{identity['apiKeyId']}"
    elif identity.get("apiKey"):
        caller = f"api-key:{identity['apiKey']}"
    else:
        caller = "anonymous"
    return hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest()


def fingerprint(payload: Payload) -> str:
    """The payload as served: the same rows, row ids and form give the same answer, whatever the JSON's spelling."""
    served = [payload.batch, payload.rows, payload.request_ids]
    return hashlib.sha256(json.dumps(served, separators=(",", ":")).encode()).hexdigest()


def _answer_held(held: IdempotentRequest, request: IdempotentRequest) -> dict:
    if held.fingerprint != request.fingerprint:
        return error_response(422, f"this {HEADER} was used with another request body in the last "
                                   f"{WINDOW_SECONDS // 3600} h: send a new key for a new request")
    if held.status is None or held.body is None:
        return in_progress()
    logger.info("replayed the answer of idempotency key %s", held.digest)
    return json_response(held.status, json.loads(held.body), {REPLAYED_HEADER: "true"})


def _release(store: PredictionStore, request: IdempotentRequest) -> None:
    """Free the key; if the store cannot, its lease ends it anyway (the request's own error is what counts)."""
    try:
        store.release(request)
    except Exception:
        logger.exception("could not release idempotency key %s; it frees itself in %d s", request.digest,
                         LEASE_SECONDS)


def _headers(event: dict) -> dict[str, list[str]]:
    """Every value of every header: ``multiValueHeaders`` when API Gateway sent them, else ``headers``."""
    multi = event.get("multiValueHeaders")
    if multi:
        return multi
    return {name: [value] for name, value in (event.get("headers") or {}).items()}
