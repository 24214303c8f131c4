"""Which model version an endpoint serves, and its data schema's URI: tags of the endpoint configuration in service.

The variant keeps one name across versions (blue/green requires it), so InvokeEndpoint's answer cannot say which.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)
MODEL_VERSION_TAG = "cloudviz:model-version"
DATA_SCHEMA_TAG = "cloudviz:data-schema"
DEFAULT_TTL_SECONDS = 30
# The longest TTL the api stack takes: dev's smoke test waits for it after an update, within its Lambda timeout.
MAX_TTL_SECONDS = 300
BAKING = "Baking"  # the new fleet has all the traffic (ALL_AT_ONCE) and is watched by the rollback alarms


@dataclass(frozen=True)
class Served:
    """What an endpoint configuration's tags say it serves: the model version and the URI of its data schema."""

    version: int | None = None
    schema_uri: str | None = None


NOTHING_KNOWN = Served()


@dataclass(frozen=True)
class _Lookup:
    config_name: str | None
    served: Served
    at: float  # time.monotonic() of the lookup


_lock = threading.Lock()
_endpoints: dict[tuple[str | None, str], _Lookup] = {}  # (url, endpoint) -> its last lookup
# (url, endpoint configuration) -> what it serves: configurations are immutable, so each is read once
_configs: dict[tuple[str | None, str], Served] = {}


def served_version(sagemaker: Any, url: str | None, endpoint_name: str, ttl_seconds: float) -> int | None:
    """The model version ``endpoint_name`` serves, from the ``sagemaker`` client at ``url`` (None: AWS),
    looked up again once ``ttl_seconds`` have passed; None (logged) when it cannot be known."""
    return served_model(sagemaker, url, endpoint_name, ttl_seconds).version


def served_model(sagemaker: Any, url: str | None, endpoint_name: str, ttl_seconds: float) -> Served:
    """The model version and schema URI ``endpoint_name`` serves, as ``served_version`` looks them up."""
    key = (url, endpoint_name)
    known = _endpoints.get(key)
    if known is not None and time.monotonic() - known.at < ttl_seconds:
        return known.served
    # One lookup at a time. A request that has a stale answer keeps it while another request looks up afresh
    # (the answer is then at most one lookup older); only a request with no answer yet waits for the lookup.
    if not _lock.acquire(blocking=known is None):
        return known.served
    try:
        known = _endpoints.get(key)
        if known is not None and time.monotonic() - known.at < ttl_seconds:
            return known.served
        config_name, served = _look_up(sagemaker, url, endpoint_name)
        if config_name is not None and (known is None or known.config_name != config_name):
            logger.info("endpoint %s serves configuration %s: model version %s", endpoint_name, config_name,
                        served.version)
        _endpoints[key] = _Lookup(config_name, served, time.monotonic())
        return served
    finally:
        _lock.release()


def forget_served_versions() -> None:
    """Forget every lookup, so the next request looks up afresh (a test's moto session ends)."""
    with _lock:
        _endpoints.clear()
        _configs.clear()


def serving_config(description: dict) -> str:
    """The configuration that takes the traffic, from a DescribeEndpoint answer: during a blue/green update, the
    pending one once its fleet bakes (it took all the traffic), else the endpoint's."""
    pending = description.get("PendingDeploymentSummary") or {}
    statuses = (status.get("Status") for variant in pending.get("ProductionVariants", [])
                for status in variant.get("VariantStatus", []))
    if BAKING in statuses:
        return pending["EndpointConfigName"]
    return description["EndpointConfigName"]


def _look_up(sagemaker: Any, url: str | None, endpoint_name: str) -> tuple[str | None, Served]:
    try:
        config_name = serving_config(sagemaker.describe_endpoint(EndpointName=endpoint_name))
        if (url, config_name) not in _configs:
            arn = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["EndpointConfigArn"]
            tags = {tag["Key"]: tag["Value"] for tag in sagemaker.list_tags(ResourceArn=arn).get("Tags", [])}
            _configs[url, config_name] = Served(_version(config_name, tags.get(MODEL_VERSION_TAG)),
                                                tags.get(DATA_SCHEMA_TAG) or None)
        return config_name, _configs[url, config_name]
    except (ClientError, BotoCoreError) as error:
        logger.warning("cannot tell which model version endpoint %s serves (model_version is null): %s",
                       endpoint_name, error)
        return None, NOTHING_KNOWN


def _version(config_name: str, value: str | None) -> int | None:
    if value is None or not value.isdigit():
        logger.warning("endpoint configuration %s has no %s tag holding a version number (it has %r): "
                       "model_version is null", config_name, MODEL_VERSION_TAG, value)
        return None
    return int(value)
