"""The interface both prediction stores implement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from serving_lambdas.records import PredictionRecord


class DuplicateId(Exception):
    """A put carried an id the store already holds (or one id twice); nothing of that put was written."""


class PredictionStore(Protocol):
    max_rows_per_put: int

    def put(self, records: Sequence[PredictionRecord]) -> None:
        """Write every record or none of them."""

    def get(self, prediction_id: str) -> PredictionRecord | None:
        """The record with this id, or None."""

    def newest(self, limit: int, since: str = "", before: str = "~") -> list[PredictionRecord]:
        """At most ``limit`` records with ``since <= id < before``, newest first (bounds compare as strings:
        ``records.time_bound`` of a time, or an id)."""
