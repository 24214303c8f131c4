"""What the drift tests share: the features of iris and of a generated regression set, stored predictions of
their rows, and the drift gauges' samples (the baselines themselves: the ``iris`` and ``houses`` fixtures of
tests/conftest.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from serving_lambdas.records import PredictionRecord, new_ids, utc_now

FEATURES = ("x1", "x2", "x3", "x4")
CLASSES = ("setosa", "virginica", "versicolor")
PETAL_LENGTH = "x3"
HOUSE_FEATURES, AREA = ("area", "rooms", "age"), "area"  # the regression set: price = 3 area + 2 rooms (+ noise)


def read_split(path: Path) -> np.ndarray:
    """A channel CSV (label first, no header) as rows of floats."""
    return np.loadtxt(path, delimiter=",", ndmin=2)


def records(rows: np.ndarray, minutes_ago: float = 0.0, features: tuple[str, ...] = FEATURES,
            classes: tuple[str, ...] = CLASSES) -> list[PredictionRecord]:
    """Stored predictions of channel rows, made in row order: the label column taken as the predicted class, or
    without ``classes`` as a regression's predicted value."""
    ids = new_ids(utc_now() - timedelta(minutes=minutes_ago), len(rows))
    return [
        PredictionRecord(
            id=ids[i], timestamp="", features=dict(zip(features, map(float, row[1:]), strict=True)),
            prediction=int(row[0]) if classes else float(row[0]), label=classes[int(row[0])] if classes else None,
            probabilities=None, model_version=1, latency_ms=1.0,
        )
        for i, row in enumerate(rows)
    ]


def shifted(rows: np.ndarray, feature: str, by: float, features: tuple[str, ...] = FEATURES) -> np.ndarray:
    moved = rows.copy()
    moved[:, 1 + features.index(feature)] += by
    return moved


def samples(registry_or_text: object) -> dict[tuple[str, tuple], float]:
    """Every sample of a registry or a /metrics page: (name, sorted labels) -> value."""
    if isinstance(registry_or_text, str):
        families = text_string_to_metric_families(registry_or_text)
    else:
        families = registry_or_text.collect()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in families for sample in family.samples}


def feature_gauges(values: dict[tuple[str, tuple], float]) -> dict[str, float]:
    return {dict(labels)["feature"]: value for (name, labels), value in values.items()
            if name == "cloudviz_feature_drift"}


def house_records(rows: np.ndarray, predicted_by: float = 0.0) -> list[PredictionRecord]:
    """Stored regression predictions of channel rows: the target (plus ``predicted_by``) as the predicted value."""
    moved = rows.copy()
    moved[:, 0] += predicted_by
    return records(moved, features=HOUSE_FEATURES, classes=())


def draw(train: np.ndarray, count: int, seed: int = 7) -> np.ndarray:
    """``count`` rows drawn from the training split, with replacement."""
    return train[np.random.default_rng(seed).integers(0, len(train), count)]
