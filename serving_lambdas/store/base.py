"""The interface both prediction stores implement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from serving_lambdas.records import Feedback, PredictionRecord


class DuplicateId(Exception):
    """A put carried an id the store already holds (or one id twice); nothing of that put was written."""


class FeedbackConflict(Exception):
    """The prediction already has another true label recorded; ``record`` is the prediction as stored."""

    def __init__(self, record: PredictionRecord) -> None:
        super().__init__(f"prediction {record.id} already has a recorded label")
        self.record = record


@dataclass(frozen=True)
class StorePage:
    """Records newest first; ``resume_before`` is set when the store stopped early (its per-page cost budget ran
    out) before reading every record of the range: the range below it (``id < resume_before``) is unread."""

    records: list[PredictionRecord]
    resume_before: str | None = None


class PredictionStore(Protocol):
    max_rows_per_put: int

    def put(self, records: Sequence[PredictionRecord]) -> None:
        """Write every record or none of them."""

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
