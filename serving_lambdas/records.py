"""A stored prediction, and the ids and timestamps that order predictions in time.

An id is ``<UTC time, compact>-<12 random hex><row, 4 hex>``, e.g. ``20261129T032001123456Z-3f9a2c7e1b5d0001``:
ids sort as the predictions were made (rows of one batch in row order), so a store needs one ordered key for
both get-by-id and list-by-time, and a time bound is a plain string bound on ids (see ``time_bound``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

ID_PATTERN = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{16}")
ID_TIME_LENGTH = 22  # the compact time at the start of an id


@dataclass(frozen=True)
class Feedback:
    """The true label of a prediction, as a client reported it: a class name, or a regression model's value."""

    label: str | float
    recorded_at: str  # timestamp_text of when it was recorded


@dataclass(frozen=True)
class PredictionRecord:
    """One served prediction: what the API answered, plus what came in and how long the endpoint took.

    A classifier's prediction is the class index and ``label`` its name; a regression model's prediction is the
    predicted value, with no label and no probabilities. A two-class model's answer also carries ``probability``,
    the probability of the predicted label. ``request_id`` is the client's own id of the row, when it gave one:
    answered after ``id``, and left out of the answer when not given. ``feedback`` is the true label recorded
    later (POST /predictions/{id}/feedback), shown by GET /predictions only once recorded."""

    id: str
    request_id: str | None = field(default=None, kw_only=True)  # kw_only: the other fields stay positional
    timestamp: str
    features: dict[str, float]
    prediction: int | float
    label: str | None  # None: a regression prediction
    probabilities: dict[str, float] | None
    model_version: int | None
    latency_ms: float
    feedback: Feedback | None = field(default=None, kw_only=True)

    def answer(self) -> dict:
        """The POST /predictions answer for this prediction."""
        return self._shaped({
            "prediction": self.prediction,
            "label": self.label,
            "probabilities": self.probabilities,
            "id": self.id,
            "request_id": self.request_id,
            "timestamp": self.timestamp,
            "model_version": self.model_version,
        })

    def document(self) -> dict:
        """The stored item as GET /predictions answers it."""
        return self._shaped(asdict(self))

    def _shaped(self, fields: dict) -> dict:
        """``fields`` as this prediction's task answers them: regression without label and probabilities, two
        classes with the predicted label's probability before them all; no request_id when the client gave none,
        no feedback before one is recorded."""
        absent = {name for name in ("request_id", "feedback") if getattr(self, name) is None}
        fields = {name: value for name, value in fields.items() if name not in absent}
        if self.label is None:
            return {name: value for name, value in fields.items() if name not in ("label", "probabilities")}
        if self.probabilities is None or len(self.probabilities) != 2:
            return fields
        shaped = {}
        for name, value in fields.items():
            if name == "probabilities":
                shaped["probability"] = self.probabilities[self.label]
            shaped[name] = value
        return shaped


def utc_now() -> datetime:
    return datetime.now(UTC)


def timestamp_text(moment: datetime) -> str:
    """UTC ISO-8601 with microseconds and ``Z``: ``2026-11-29T03:20:01.123456Z``."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def time_bound(moment: datetime) -> str:
    """The compact form of ``moment`` that starts ids: every id made at or after ``moment`` sorts >= it,
    every id made before it sorts < it."""
    return timestamp_text(moment).translate(str.maketrans("", "", "-:."))


def new_ids(moment: datetime, count: int) -> list[str]:
    """``count`` fresh ids made at ``moment``, in row order."""
    prefix = f"{time_bound(moment)}-{secrets.token_hex(6)}"
    return [f"{prefix}{row:04x}" for row in range(count)]


def is_prediction_id(text: str) -> bool:
    return ID_PATTERN.fullmatch(text) is not None
