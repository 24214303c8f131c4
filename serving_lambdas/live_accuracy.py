"""Live accuracy: how often the served classifier was right, over the newest predictions whose true label a client
recorded (POST /predictions/{id}/feedback).

Standard library only: shared by the local live-accuracy gauges (``deploy.monitoring.live_accuracy``) and the AWS
drift function (``serving_lambdas.drift_monitor``), which compute it from the same rows as drift: the newest
``serving_lambdas.drift.DEFAULT_WINDOW`` predictions.

A regression model has no live accuracy: its predictions are values, and "equal to the true value" is almost never
true of a continuous prediction; an error measure (e.g. RMSE) would need its own threshold per data set. Its
predictions are not counted as labelled here, so nothing is published for it and its alarm stays without data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from serving_lambdas.records import PredictionRecord

DEFAULT_LABELLED_WINDOW = 200  # the newest labelled predictions live accuracy is computed over
DEFAULT_MIN_LABELLED = 50  # fewer labelled predictions: no accuracy (too noisy for an alarm)


@dataclass(frozen=True)
class LiveAccuracy:
    """Over ``labelled`` predictions: the share predicted right (None below the minimum) and each true class's
    recall (the share of its predictions predicted as it; empty below the minimum)."""

    labelled: int
    accuracy: float | None
    recall: dict[str, float]

    def to_dict(self) -> dict:
        return {"labelled": self.labelled, "accuracy": self.accuracy, "recall": dict(self.recall)}


def live_accuracy(
    records: Sequence[PredictionRecord],
    window: int = DEFAULT_LABELLED_WINDOW,
    min_labelled: int = DEFAULT_MIN_LABELLED,
) -> LiveAccuracy:
    """The live accuracy of the newest ``window`` classifier predictions of ``records`` that have feedback."""
    if not 1 <= min_labelled <= window:
        raise ValueError(f"min_labelled must be from 1 to window ({window}), not {min_labelled}")
    labelled = [record for record in records if record.label is not None and record.feedback is not None]
    newest = sorted(labelled, key=lambda record: record.id, reverse=True)[:window]
    if len(newest) < min_labelled:
        return LiveAccuracy(len(newest), None, {})
    truths = Counter(str(record.feedback.label) for record in newest)
    right = Counter(record.label for record in newest if record.label == str(record.feedback.label))
    recall = {label: right[label] / count for label, count in sorted(truths.items())}
    return LiveAccuracy(len(newest), sum(right.values()) / len(newest), recall)
