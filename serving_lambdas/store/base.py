"""The interface both prediction stores implement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from serving_lambdas.records import Feedback, PredictionRecord


class DuplicateId(Exception):
    """A put carried an id the store already holds (or one id twice); nothing of that put was written."""


class FeedbackConflict(Exception):
    """The prediction already has another true label recorded; ``record`` is the prediction as stored."""

    def __init__(self, record: PredictionRecord) -> None:
        super().__init__(f"prediction {record.id} already has a recorded label")
        self.record = record


class ClaimLost(Exception):
    """The request no longer holds its Idempotency-Key (its lease ended and another request took the key over):
    nothing of the put was written."""


@dataclass(frozen=True)
class IdempotentRequest:
    """A POST /predictions under an Idempotency-Key, as a store remembers it (``serving_lambdas.idempotency``).

    ``digest`` names the caller's key, ``fingerprint`` the payload; ``token`` is the request serving it, until
    ``lease_until``; ``status`` and ``body`` (JSON text) its answer once served; forgotten at ``expires_at``. Times
    are epoch seconds."""

    digest: str
    fingerprint: str
    token: str
    lease_until: int
    expires_at: int
    status: int | None = None
    body: str | None = None

    def claimable(self, now: int) -> bool:
        """Whether another request may take the key over: forgotten, or never answered and its lease ended (the
        request serving it died)."""
        return self.expires_at <= now or (self.status is None and self.lease_until <= now)

    def answered(self, status: int, body: str) -> IdempotentRequest:
        return replace(self, status=status, body=body)


@dataclass(frozen=True)
class StorePage:
    """Records newest first; ``resume_before`` is set when the store stopped early (its per-page cost budget ran
    out) before reading every record of the range: the range below it (``id < resume_before``) is unread."""

    records: list[PredictionRecord]
    resume_before: str | None = None


class PredictionStore(Protocol):
    max_rows_per_put: int

    def put(self, records: Sequence[PredictionRecord], answered: IdempotentRequest | None = None) -> None:
        """Write every record or none of them; with ``answered``, its answer too, in the same write, while it still
        holds its key (else ``ClaimLost``, nothing written)."""

    def claim(self, request: IdempotentRequest, now: int) -> IdempotentRequest:
        """Remember ``request`` under its digest unless another one is held there (``claimable`` says when not),
        atomically: the request remembered afterwards (``request`` itself when it got the key)."""

    def release(self, request: IdempotentRequest) -> None:
        """End the lease of a claim that will not be answered, if it still holds its key: a retry serves afresh."""

    def get(self, prediction_id: str) -> PredictionRecord | None:
        """The record with this id, or None."""

    def newest(self, limit: int, since: str = "", before: str = "~") -> list[PredictionRecord]:
        """At most ``limit`` records with ``since <= id < before``, newest first (bounds compare as strings:
        ``records.time_bound`` of a time, or an id)."""

    def page(self, limit: int, since: str = "", before: str = "~") -> StorePage:
        """Like ``newest``, for a page of an API listing: it may stop early and say where (``resume_before``)."""

    def record_feedback(self, prediction_id: str, feedback: Feedback) -> PredictionRecord | None:
        """Record the true label of a stored prediction, atomically: the prediction as stored afterwards, or None
        when no prediction has this id. The same label again changes nothing (the first ``recorded_at`` stays);
        another label raises ``FeedbackConflict``."""
