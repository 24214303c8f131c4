"""The model endpoint, called through boto3's ``sagemaker-runtime`` InvokeEndpoint: rows as CSV, answers as JSON.

``SAGEMAKER_RUNTIME_URL`` points it at the local endpoint (loopback: unsigned, no credentials); on AWS it is unset.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from serving_lambdas.served_version import DEFAULT_TTL_SECONDS, served_version

logger = logging.getLogger(__name__)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
CLIENT_CONFIG = {
    "connect_timeout": 2,
    "read_timeout": 25,  # inside API Gateway's 29 s integration timeout
    "retries": {"mode": "standard", "total_max_attempts": 2},
    "max_pool_connections": 64,  # the local gateway calls the handler from many threads
}


class EndpointUnavailable(Exception):
    """The endpoint could not answer (down, unreachable, or failing); nothing was predicted."""


@dataclass(frozen=True)
class Score:
    prediction: int | float  # a class index (classification) or the predicted value (regression)
    probabilities: list[float] | None  # per class index; None for multi:softmax and regression


@dataclass(frozen=True)
class EndpointAnswer:
    scores: list[Score]
    model_version: int | None
    latency_ms: float


def runtime_client(runtime_url: str | None) -> Any:
    """The sagemaker-runtime client for ``runtime_url`` (None: the AWS service), created once."""
    return client("sagemaker-runtime", runtime_url)


def client(service: str, url: str | None) -> Any:
    """The boto3 client of ``service`` at ``url`` (None: AWS), created once. Under a lock: after a restart the
    first concurrent requests would each build a client (~0.2 s of CPU apiece) and queue behind one another
    for seconds."""
    with _client_lock:
        return _new_client(service, url)


_client_lock = threading.Lock()


@lru_cache(maxsize=8)
def _new_client(service: str, url: str | None) -> Any:
    config = Config(**CLIENT_CONFIG)
    if url is not None and urlsplit(url).hostname in LOOPBACK_HOSTS:
        config = config.merge(Config(signature_version=UNSIGNED))
    return boto3.session.Session().client(service, endpoint_url=url, config=config)


def invoke(
    endpoint_name: str, runtime_url: str | None, rows: list[list[float]],
    version_ttl_seconds: float = DEFAULT_TTL_SECONDS, task: str = "multiclass",
) -> EndpointAnswer:
    """Predict ``rows``; EndpointUnavailable when the endpoint does not answer them. ``task`` (MODEL_TASK) says
    what a score means. The model version is the one the endpoint's configuration names, looked up at most once
    per ``version_ttl_seconds``."""
    body = "\n".join(",".join(repr(value) for value in row) for row in rows)
    started = time.perf_counter()
    try:
        response = runtime_client(runtime_url).invoke_endpoint(
            EndpointName=endpoint_name, Body=body.encode(), ContentType="text/csv", Accept="application/json"
        )
        document = json.loads(response["Body"].read())
    except ClientError as error:
        logger.warning(
            "endpoint %s answered %s: %s",
            endpoint_name,
            error.response["Error"]["Code"],
            error.response["Error"].get("Message", ""),
        )
        raise EndpointUnavailable(endpoint_name) from None
    except (BotoConnectionError, HTTPClientError) as error:
        logger.warning("endpoint %s is unreachable: %s", endpoint_name, type(error).__name__)
        raise EndpointUnavailable(endpoint_name) from None
    latency_ms = (time.perf_counter() - started) * 1000
    scores = [SCORES[task](prediction["score"]) for prediction in document["predictions"]]
    if len(scores) != len(rows):
        raise ValueError(f"endpoint {endpoint_name} answered {len(scores)} predictions for {len(rows)} rows")
    version = served_version(client("sagemaker", runtime_url), runtime_url, endpoint_name, version_ttl_seconds)
    return EndpointAnswer(scores, version, latency_ms)


def _class_score(score: float | list[float]) -> Score:
    """A classifier's score: per-class probabilities (multi:softprob, also with two classes) make the likeliest
    class the prediction; a single number is multi:softmax's class index."""
    if isinstance(score, list):
        return Score(max(range(len(score)), key=score.__getitem__), [float(p) for p in score])
    if score != int(score):
        raise ValueError(f"the endpoint answered score {score}, not a class index: is the objective multi:*?")
    return Score(int(score), None)


def _binary_score(score: float | list[float]) -> Score:
    """binary:logistic answers one number per row, the probability of class 1: the class is 1 above 0.5, as the
    container's ``predicted_label`` decides; a two-class multi:softprob answers both probabilities."""
    if isinstance(score, list):
        return _class_score(score)
    if not 0 <= score <= 1:
        raise ValueError(f"the endpoint answered score {score}, not a probability: is the objective binary:logistic?")
    return Score(int(score > 0.5), [1.0 - float(score), float(score)])


def _regression_score(score: float | list[float]) -> Score:
    """A regression objective (reg:*) answers the predicted value itself."""
    if isinstance(score, list):
        raise ValueError("the endpoint answered a list of scores, not a value: is the objective reg:*?")
    return Score(float(score), None)


SCORES: dict[str, Callable[[float | list[float]], Score]] = {
    "multiclass": _class_score, "binary": _binary_score, "regression": _regression_score,
}
