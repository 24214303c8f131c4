"""The handlers' configuration, from environment variables as the Lambda function (or the local gateway) sets them.

Read on every call, parsed once per distinct set of values: a test or a redeployment that changes a variable
takes effect on the next call. A missing or malformed variable raises ``ConfigurationError``: an operator's
mistake, answered 502 by API Gateway and logged, never guessed around.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

from serving_lambdas.served_version import DEFAULT_TTL_SECONDS
from serving_lambdas.store import StoreSpec

DEFAULT_MAX_BATCH_ROWS = 100
TASKS = ("multiclass", "binary", "regression")  # MODEL_TASK: what the endpoint's score means, from the model's schema
MAX_RETENTION_DAYS = 36500
INFERENCE_VARIABLES = (
    "ENDPOINT_NAME",
    "SAGEMAKER_RUNTIME_URL",
    "PREDICTION_STORE",
    "FEATURE_NAMES",
    "FEATURE_ALIASES",
    "CLASS_NAMES",
    "MODEL_TASK",
    "MAX_BATCH_ROWS",
    "MODEL_VERSION_TTL_SECONDS",
    "PREDICTION_RETENTION_DAYS",
)


class ConfigurationError(RuntimeError):
    """An environment variable is missing or malformed."""


@dataclass(frozen=True)
class InferenceSettings:
    endpoint_name: str
    runtime_url: str | None
    store: StoreSpec
    feature_names: tuple[str, ...]
    aliases: Mapping[str, str]  # alias -> feature name
    class_names: tuple[str, ...]  # () for regression
    max_batch_rows: int
    version_ttl_seconds: float  # how long the served model version is trusted before it is looked up again
    task: str = "multiclass"  # one of TASKS


@dataclass(frozen=True)
class DriftSettings:
    endpoint_name: str
    store: StoreSpec
    baseline_uri: str  # s3://bucket/key of the served model's statistics.json


def drift_settings(environ: Mapping[str, str] = os.environ) -> DriftSettings:
    """The drift function's settings: ENDPOINT_NAME, PREDICTION_STORE and BASELINE_STATISTICS_URI."""
    uri = _required("BASELINE_STATISTICS_URI", environ.get("BASELINE_STATISTICS_URI"))
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise ConfigurationError(f"BASELINE_STATISTICS_URI must be s3://BUCKET/KEY, not {uri!r}")
    return DriftSettings(_required("ENDPOINT_NAME", environ.get("ENDPOINT_NAME")), store_spec(environ), uri)


def inference_settings(environ: Mapping[str, str] = os.environ) -> InferenceSettings:
    return _parse_inference(tuple(environ.get(name) for name in INFERENCE_VARIABLES))


def store_spec(environ: Mapping[str, str] = os.environ) -> StoreSpec:
    return _parse_store(environ.get("PREDICTION_STORE"), environ.get("PREDICTION_RETENTION_DAYS"))


@lru_cache(maxsize=16)
def _parse_store(text: str | None, retention: str | None = None) -> StoreSpec:
    try:
        spec = StoreSpec.parse(_required("PREDICTION_STORE", text))
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    if retention in (None, ""):
        return spec
    if not retention.isdigit() or not 1 <= int(retention) <= MAX_RETENTION_DAYS:
        raise ConfigurationError(f"PREDICTION_RETENTION_DAYS must be a number of days from 1 to "
                                 f"{MAX_RETENTION_DAYS}, not {retention!r}")
    return replace(spec, retention_days=int(retention))


@lru_cache(maxsize=16)
def _parse_inference(values: tuple[str | None, ...]) -> InferenceSettings:
    endpoint, runtime_url, store, features, aliases, classes, task, max_rows, version_ttl, retention = values
    spec = _parse_store(store, retention)
    feature_names = _names("FEATURE_NAMES", _required("FEATURE_NAMES", features))
    task = task or "multiclass"
    if task not in TASKS:
        raise ConfigurationError(f"MODEL_TASK must be one of {', '.join(TASKS)}, not {task!r}")
    return InferenceSettings(
        endpoint_name=_required("ENDPOINT_NAME", endpoint),
        runtime_url=runtime_url or None,
        store=spec,
        feature_names=feature_names,
        aliases=_aliases(aliases or "", feature_names),
        class_names=_class_names(task, classes),
        max_batch_rows=_max_batch_rows(max_rows, spec.max_rows_per_put),
        version_ttl_seconds=_seconds("MODEL_VERSION_TTL_SECONDS", version_ttl, DEFAULT_TTL_SECONDS),
        task=task,
    )


def _class_names(task: str, text: str | None) -> tuple[str, ...]:
    """CLASS_NAMES in class-index order: required for classification (two of them for binary), ignored for
    regression (a regression model has no classes to name)."""
    if task == "regression":
        return ()
    names = _names("CLASS_NAMES", _required("CLASS_NAMES", text))
    if task == "binary" and len(names) != 2:
        raise ConfigurationError(f"CLASS_NAMES must name 2 classes when MODEL_TASK is binary, not {text!r}")
    return names


def _required(name: str, value: str | None) -> str:
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


def _names(variable: str, text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if "" in names or len(set(names)) != len(names):
        raise ConfigurationError(f"{variable} must list distinct comma-separated names, not {text!r}")
    return names


def _aliases(text: str, feature_names: tuple[str, ...]) -> dict[str, str]:
    """``sepal_length=x1,...`` -> {"sepal_length": "x1", ...}; an alias names one feature and is not one."""
    aliases: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        alias, _, name = (part.strip() for part in pair.partition("="))
        if not alias or name not in feature_names or alias in feature_names or alias in aliases:
            raise ConfigurationError(
                f"FEATURE_ALIASES entry {pair!r} must be alias=feature, a feature of FEATURE_NAMES, each alias once"
            )
        aliases[alias] = name
    return aliases


def _max_batch_rows(text: str | None, store_limit: int) -> int:
    if text is None or text == "":
        return min(DEFAULT_MAX_BATCH_ROWS, store_limit)
    if not text.isdigit() or not 1 <= int(text) <= store_limit:
        raise ConfigurationError(f"MAX_BATCH_ROWS must be an integer from 1 to {store_limit}, not {text!r}")
    return int(text)


def _seconds(name: str, text: str | None, default: float) -> float:
    if text is None or text == "":
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise ConfigurationError(f"{name} must be a number of seconds from 0 to 3600, not {text!r}")
    return seconds
