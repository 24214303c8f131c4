"""The serving Lambdas' metrics as CloudWatch embedded metric format (EMF): one JSON log line per document.

On AWS, Lambda sends stdout to CloudWatch Logs, which turns each document into metrics in ``NAMESPACE`` with
no API call from the function. Where the handlers run in-process (the local gateway), ``set_sink`` hands the
same documents to the host instead (its Prometheus registry), and nothing is printed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

NAMESPACE = "CloudViz"
Sink = Callable[[dict], None]


def _print(document: dict) -> None:
    print(json.dumps(document), flush=True)


_sink: Sink = _print


def set_sink(sink: Sink | None) -> None:
    """Where documents go from now on; None: back to stdout (the Lambda runtime)."""
    global _sink
    _sink = sink or _print


def document(values: Mapping[str, tuple[float, str]], dimensions: Mapping[str, str]) -> dict:
    """An EMF document: ``values`` maps a metric name to (value, CloudWatch unit)."""
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [list(dimensions)],
                "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in values.items()],
            }],
        },
        **dimensions,
        **{name: value for name, (value, _) in values.items()},
    }


def emit(values: Mapping[str, tuple[float, str]], **dimensions: str) -> None:
    publish(document(values, dimensions))


def publish(emf_document: dict) -> None:
    """Send a document made here or by a handler in another process (the local gateway's workers) to the sink."""
    _sink(emf_document)
