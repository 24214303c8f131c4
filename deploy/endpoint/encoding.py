"""Predictions -> response bodies, as the built-in XGBoost container encodes them.

The raw prediction, or with ``SAGEMAKER_INFERENCE_OUTPUT`` the chosen keys per row (null where the objective has none).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from deploy.endpoint.errors import InvocationError

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
ACCEPTS = {CSV: CSV, JSON: JSON, JSONLINES: JSONLINES, "csv": CSV, "json": JSON, "text/*": CSV, "application/*": JSON}
DEFAULT_ACCEPT = CSV  # the container's default, as when SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT is unset

Row = float | list[float]
CLASSIFIER_KEYS = ("predicted_label", "labels", "raw_score", "raw_scores")
VALID_KEYS: dict[str, tuple[str, ...]] = {
    "reg:squarederror": ("predicted_score",),
    "reg:logistic": ("predicted_score",),
    "reg:gamma": ("predicted_score",),
    "reg:tweedie": ("predicted_score",),
    "binary:logistic": (*CLASSIFIER_KEYS, "probability", "probabilities"),
    "binary:logitraw": CLASSIFIER_KEYS,
    "binary:hinge": CLASSIFIER_KEYS,
    "multi:softmax": CLASSIFIER_KEYS,
    "multi:softprob": (*CLASSIFIER_KEYS, "probability", "probabilities"),
}
SELECTABLE_KEYS = frozenset(key for keys in VALID_KEYS.values() for key in keys)


def negotiate(header: str | None) -> str:
    """The response type for an Accept header: its first type this endpoint can produce; 406 if none."""
    if not header:
        return DEFAULT_ACCEPT
    for item in header.split(","):
        name = item.split(";", 1)[0].strip().lower()
        if name == "*/*":
            return DEFAULT_ACCEPT
        if name in ACCEPTS:
            return ACCEPTS[name]
    raise InvocationError(
        406, f"Accept type {header} is not supported. Please use supported accept types: {[CSV, JSON, JSONLINES]}."
    )


def selected_keys(setting: str | None) -> tuple[str, ...] | None:
    """Parse a SAGEMAKER_INFERENCE_OUTPUT value; ValueError naming an unknown key."""
    if setting is None:
        return None
    keys = tuple(key for key in setting.replace(" ", "").lower().split(",") if key)
    unknown = [key for key in keys if key not in SELECTABLE_KEYS]
    if unknown or not keys:
        raise ValueError(f"inference output {setting!r}: choose keys among {sorted(SELECTABLE_KEYS)}")
    return keys


def encode(predictions: np.ndarray, accept: str, objective: str, num_class: int, keys: tuple[str, ...] | None) -> bytes:
    """The response body for ``accept`` (as returned by ``negotiate``)."""
    rows: list[Row] = predictions.tolist()
    if keys is None:
        if accept == CSV:  # a multi:softprob row prints as a bracketed list: the container's legacy, kept
            return ",".join(map(str, rows)).encode()
        records = [{"score": row} for row in rows]
    else:
        records = [select(row, keys, objective, num_class) for row in rows]
        if accept == CSV:
            return "\n".join(",".join(csv_field(record[key]) for key in keys) for record in records).encode()
    if accept == JSON:
        return json.dumps({"predictions": records}).encode()
    return "\n".join(json.dumps(record) for record in records).encode()


def csv_field(value: object) -> str:
    if value is None:
        return "nan"
    return f'"{value}"' if isinstance(value, list) else str(value)


def select(row: Row, keys: tuple[str, ...], objective: str, num_class: int) -> dict[str, object]:
    valid = VALID_KEYS.get(objective)
    if valid is None:
        raise InvocationError(500, f"objective {objective} does not support selectable inference output")
    return {key: SELECTORS[key](row, objective, num_class) if key in valid else None for key in keys}


def predicted_label(row: Row, objective: str, num_class: int) -> int | float:
    if isinstance(row, list):
        return int(np.argmax(row))
    if objective == "binary:logistic":
        return int(row > 0.5)
    if objective == "binary:logitraw":
        return int(row > 0)
    return row


def labels(row: Row, objective: str, num_class: int) -> list[int]:
    return [0, 1] if objective.startswith("binary:") else list(range(num_class))


def probability(row: Row, objective: str, num_class: int) -> float:
    return max(row) if isinstance(row, list) else row


def probabilities(row: Row, objective: str, num_class: int) -> list[float]:
    # For a single score the container reports [1 - score, score], also for the raw scores of multi:softmax.
    return row if isinstance(row, list) else [1.0 - row, row]


def predicted_score(row: Row, objective: str, num_class: int) -> Row:
    return row


SELECTORS: dict[str, Callable[[Row, str, int], object]] = {
    "predicted_label": predicted_label,
    "labels": labels,
    "probability": probability,
    "probabilities": probabilities,
    "raw_score": probability,
    "raw_scores": probabilities,
    "predicted_score": predicted_score,
}
