"""The model endpoint, called through boto3's ``sagemaker-runtime`` InvokeEndpoint.

``SAGEMAKER_RUNTIME_URL`` points the client at another Runtime API (the local endpoint); on AWS it is unset.
One client per URL for the life of the process: creating one costs milliseconds, calling one is thread-safe.
A loopback URL is the local endpoint, which checks no signature: its client signs nothing and so needs no
credentials. Rows go as CSV (the built-in container's native input), answers come back as JSON.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

logger = logging.getLogger(__name__)
VARIANT_VERSION = re.compile(r"v(\d+)")
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
    prediction: int
    probabilities: list[float] | None  # per class index (multi:softprob); None for multi:softmax


@dataclass(frozen=True)
class EndpointAnswer:
    scores: list[Score]
    model_version: int | None
    latency_ms: float


def runtime_client(runtime_url: str | None) -> Any:
    """The sagemaker-runtime client for ``runtime_url`` (None: the AWS service), created once. Under a lock:
    after a restart the first concurrent requests would each build a client (~0.2 s of CPU apiece) and queue
    behind one another for seconds."""
    with _client_lock:
        return _new_client(runtime_url)


_client_lock = threading.Lock()


@lru_cache(maxsize=8)
def _new_client(runtime_url: str | None) -> Any:
    config = Config(**CLIENT_CONFIG)
    if runtime_url is not None and urlsplit(runtime_url).hostname in LOOPBACK_HOSTS:
        config = config.merge(Config(signature_version=UNSIGNED))
    return boto3.session.Session().client("sagemaker-runtime", endpoint_url=runtime_url, config=config)


def invoke(endpoint_name: str, runtime_url: str | None, rows: list[list[float]]) -> EndpointAnswer:
    """Predict ``rows``; EndpointUnavailable when the endpoint does not answer them."""
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
    scores = [_score(prediction["score"]) for prediction in document["predictions"]]
    if len(scores) != len(rows):
        raise ValueError(f"endpoint {endpoint_name} answered {len(scores)} predictions for {len(rows)} rows")
    return EndpointAnswer(scores, model_version(response.get("InvokedProductionVariant")), latency_ms)


def _score(score: float | list[float]) -> Score:
    """multi:softprob scores are per-class probabilities (the class is the likeliest); multi:softmax's is the
    class index itself."""
    if isinstance(score, list):
        return Score(max(range(len(score)), key=score.__getitem__), [float(p) for p in score])
    if score != int(score):
        raise ValueError(f"the endpoint answered score {score}, not a class index: is the objective multi:*?")
    return Score(int(score), None)


@lru_cache(maxsize=32)
def model_version(variant: str | None) -> int | None:
    """The model version in a production variant name (``v3`` -> 3); None, logged once, for another name."""
    match = VARIANT_VERSION.fullmatch(variant or "")
    if match is None:
        logger.warning("production variant %r does not name a model version (v<N>): model_version is null", variant)
        return None
    return int(match.group(1))
