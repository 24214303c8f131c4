"""Data drift: the population stability index (PSI) of the newest predictions against the live model's training data.

Standard library only: shared by the local drift monitor and the AWS drift function (``serving_lambdas.drift_monitor``).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from serving_lambdas.records import PredictionRecord

EPSILON = 1e-4  # the share of a bin empty on either side: an empty bin would make the logarithm infinite
# Credit scoring's convention: below 0.1 stable, up to 0.25 a moderate move (worth a look), above it significant
# (worth an alarm and probably retraining).
MODERATE_DRIFT = 0.1
SIGNIFICANT_DRIFT = 0.25
DEFAULT_WINDOW = 500
DEFAULT_MIN_ROWS = 200  # PSI over fewer rows is mostly noise (benchmarks/README.md): below it, no value at all


class BaselineError(ValueError):
    """A document that is not preprocessing's baseline statistics; the message names its source and the field."""


def psi(expected: Sequence[float], actual: Sequence[float], epsilon: float = EPSILON) -> float:
    """The population stability index of two distributions over the same bins (each a list of shares):
    the sum over bins of ``(actual - expected) * ln(actual / expected)``."""
    if len(expected) != len(actual):
        raise ValueError(f"psi needs the same bins on both sides, got {len(expected)} and {len(actual)}")
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, epsilon), max(a, epsilon)
        total += (a - e) * math.log(a / e)
    return total


def shares(counts: Sequence[float]) -> list[float]:
    """Counts as shares of their total."""
    total = sum(counts)
    return [count / total for count in counts]


def check_window(window: int, min_rows: int) -> None:
    """``min_rows`` must fit in the ``window`` of predictions drift is measured over."""
    if not 1 <= min_rows <= window:
        raise ValueError(f"min_rows must be from 1 to window ({window}), not {min_rows}")


@dataclass(frozen=True)
class FeatureBaseline:
    """One feature's training distribution: the cut points between its bins and each bin's share."""

    cuts: tuple[float, ...]
    expected: tuple[float, ...]

    @classmethod
    def from_histogram(cls, edges: Sequence[float], counts: Sequence[int]) -> FeatureBaseline:
        """Bins of preprocessing's decile histogram, the outer ones open. A feature that was constant in training
        (one edge, no counts) gets three bins: below, at and above its value."""
        if len(edges) == 1 and not counts:
            value = float(edges[0])
            return cls((value, math.nextafter(value, math.inf)), (0.0, 1.0, 0.0))
        return cls(tuple(float(edge) for edge in edges[1:-1]), tuple(shares(counts)))

    def counts(self, values: Iterable[float]) -> list[int]:
        """How many of ``values`` fall into each bin (a value on a cut point goes to the bin above it, as in
        ``np.histogram`` and preprocessing's counts)."""
        counts = [0] * len(self.expected)
        for value in values:
            counts[bisect_right(self.cuts, value)] += 1
        return counts

    def psi(self, values: Iterable[float]) -> float:
        return psi(self.expected, shares(self.counts(values)))


@dataclass(frozen=True)
class Baseline:
    """The training statistics drift is measured against; ``source`` says where they came from.

    ``classes`` are a classifier's training class shares (empty for regression), ``target`` a regression
    model's training target distribution (None for a classifier, or a regression baseline without one, which
    ``prediction_unavailable_because`` then explains)."""

    features: dict[str, FeatureBaseline]
    classes: dict[str, float]
    source: str
    target: FeatureBaseline | None = None
    prediction_unavailable_because: str = ""

    @classmethod
    def from_statistics(cls, statistics: Mapping, source: str) -> Baseline:
        """From preprocessing's ``statistics.json`` document; a malformed one is a BaselineError naming the field."""
        field = "features"
        target = None
        try:
            features = {}
            for name, summary in statistics["features"].items():
                field = f"features.{name}.histogram"
                features[str(name)] = _feature_baseline(summary["histogram"])
            field = "class_distribution"
            classes = {str(name): float(share) for name, share in statistics["class_distribution"].items()}
            field = "target.histogram"
            summary = statistics.get("target")
            if not classes and isinstance(summary, Mapping) and "histogram" in summary:
                target = _feature_baseline(summary["histogram"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise BaselineError(
                f"{source}: {field}: not baseline statistics ({type(error).__name__}: {error})"
            ) from None
        if not features:
            raise BaselineError(f"{source}: the baseline statistics name no feature")
        why = "" if classes or target is not None else (
            f"{source} has no class shares (class_distribution) and no histogram of the regression target "
            "(target.histogram) to compare the predictions with")
        return cls(features, classes, source, target, why)

    @property
    def predicts(self) -> str:
        """What the model predicts, and so what its prediction drift is measured on: "class" or "value"."""
        return "class" if self.classes else "value"

    def prediction_psi(self, records: Sequence[PredictionRecord]) -> float | None:
        """PSI of the predictions in ``records``: the predicted classes against the training class shares, or the
        predicted values against the training target; None when the baseline has neither."""
        if self.classes:
            return self.class_psi([record.label for record in records])
        if self.target is not None:
            return self.target.psi(float(record.prediction) for record in records)
        return None

    def class_psi(self, labels: Sequence[str]) -> float:
        """PSI of predicted labels against the training class distribution; a label training never saw is a bin
        of its own with an expected share of zero."""
        counted = Counter(labels)
        names = [*self.classes, *sorted(set(counted) - set(self.classes))]
        expected = [self.classes.get(name, 0.0) for name in names]
        return psi(expected, shares([counted[name] for name in names]))


def _feature_baseline(histogram: Mapping) -> FeatureBaseline:
    edges, counts = list(histogram["bin_edges"]), list(histogram["counts"])
    constant = len(edges) == 1 and not counts
    if not constant and (len(edges) < 2 or len(counts) != len(edges) - 1 or sum(counts) <= 0):
        raise ValueError(f"a histogram needs n + 1 bin_edges for n counts, got {len(edges)} and {len(counts)}")
    return FeatureBaseline.from_histogram([float(edge) for edge in edges], [int(count) for count in counts])


@dataclass(frozen=True)
class DriftReport:
    """PSI per feature and of the predictions (classes or values) over ``rows`` predictions; a feature with fewer
    than ``min_rows`` values is left out, and ``prediction`` is None with fewer than ``min_rows`` rows or when
    the baseline cannot measure it."""

    rows: int
    features: dict[str, float]
    prediction: float | None

    def to_dict(self) -> dict:
        return {"rows": self.rows, "features": dict(self.features), "prediction": self.prediction}


def measure(baseline: Baseline | None, records: Sequence[PredictionRecord], min_rows: int) -> DriftReport:
    """The drift of ``records`` (the window, already chosen) against ``baseline``; no values without a baseline."""
    if baseline is None:
        return DriftReport(len(records), {}, None)
    features = {}
    for name, feature in baseline.features.items():
        values = [record.features[name] for record in records if name in record.features]
        if len(values) >= min_rows:
            features[name] = feature.psi(values)
    prediction = baseline.prediction_psi(records) if len(records) >= min_rows else None
    return DriftReport(len(records), features, prediction)
