"""Handlers for tests/deploy/gateway/test_lambda_pool.py: module-level, so the pool's workers import them by name
(``pool_handlers``, with tests/ on their PYTHONPATH)."""

from __future__ import annotations

import json
import logging
import os
import time

from serving_lambdas import metrics

logger = logging.getLogger("tests.pool_handlers")


def where(event: dict, context: object) -> dict:
    """Answers the process it ran in and the configuration it read; logs a line and emits a metric."""
    logger.warning("served %s in process %d", event["path"], os.getpid())
    metrics.emit({"PoolTestCalls": (1, "Count")}, Endpoint="pool-test")
    body = {"pid": os.getpid(), "setting": os.environ.get("POOL_TEST_SETTING"), "body": event["body"]}
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def fails(event: dict, context: object) -> dict:
    raise RuntimeError("the handler's own failure")


def crashes(event: dict, context: object) -> dict:
    os._exit(3)


def hangs(event: dict, context: object) -> dict:
    time.sleep(60)
    return {"statusCode": 200, "body": "too late"}
