"""Prometheus metrics of the local prediction API and endpoint, one registry each, served at their ``/metrics``.

The API's metrics come from two sources: the gateway's access-log entries (requests by route and status, their
latency) and the serving Lambdas' own metrics, which on AWS are CloudWatch embedded-metric-format log lines
(``serving_lambdas.metrics``) and here are handed over in-process as the same documents.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from deploy.gateway import PlainRoute
from deploy.http11 import Response

# Seconds, fine enough for p50..p99 from half a millisecond (a prediction) to ten seconds (a stuck request).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "unmatched"  # requests no route answered (403 Missing Authentication Token, 413, ...)
# Every label value comes from a closed set, so no client can grow the registry: a method outside these is "other",
# a route is its resource template (or UNMATCHED_ROUTE), a status is 100..599 by construction.
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER_METHOD = "other"


def method_label(method: str) -> str:
    """The method as a label value: a standard one as it is, any other (made up, lower-case) as ``other``."""
    return method if method in STANDARD_METHODS else OTHER_METHOD


def exposition(registry: CollectorRegistry) -> tuple[int, dict[str, str], bytes]:
    """The Prometheus text page, as a gateway plain route answers (status, headers, body)."""
    return 200, {"Content-Type": CONTENT_TYPE_LATEST}, generate_latest(registry)


class ApiMetrics:
    """Requests, latency, predictions by class, and the prediction store's writes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("cloudviz_api_requests", "API requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.duration = Histogram("cloudviz_api_request_duration_seconds", "API request latency",
                                  ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.predictions = Counter("cloudviz_predictions", "Predictions served, by predicted label", ["label"],
                                   registry=self.registry)
        self.model_latency = Histogram("cloudviz_api_model_latency_seconds", "The endpoint call, seen by the API",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.store_writes = Histogram("cloudviz_store_write_duration_seconds", "Prediction store write latency",
                                      buckets=LATENCY_BUCKETS, registry=self.registry)
        self.store_errors = Counter("cloudviz_store_errors", "Prediction store writes that failed",
                                    registry=self.registry)
        # Set by deploy.monitoring.drift: absent (features) or NaN (classes) until enough predictions are stored.
        self.feature_drift = Gauge("cloudviz_feature_drift", "PSI of a feature, newest predictions vs training",
                                   ["feature"], registry=self.registry)
        self.prediction_class_drift = Gauge("cloudviz_prediction_class_drift",
                                            "PSI of the predicted classes vs the training class distribution",
                                            registry=self.registry)
        self.prediction_class_drift.set(float("nan"))
        self.drift_window_rows = Gauge("cloudviz_drift_window_rows", "Predictions the drift gauges are computed over",
                                       registry=self.registry)
        # Set by deploy.monitoring.live_accuracy: NaN (accuracy) and absent (recall) until enough are labelled.
        self.live_accuracy = Gauge("cloudviz_live_accuracy",
                                   "Share of the newest labelled predictions whose predicted label was the true one",
                                   registry=self.registry)
        self.live_accuracy.set(float("nan"))
        self.live_recall = Gauge("cloudviz_live_recall", "Recall of a true class over the newest labelled predictions",
                                 ["label"], registry=self.registry)
        self.labelled_predictions = Gauge("cloudviz_labelled_predictions",
                                          "Labelled predictions live accuracy is computed over",
                                          registry=self.registry)

    def observe_request(self, entry: dict) -> None:
        """One gateway access-log entry (its ``resource`` is the matched route's template, never the raw path)."""
        route = entry.get("resource") or UNMATCHED_ROUTE
        method = method_label(entry["method"])
        self.requests.labels(route, method, str(entry["status"])).inc()
        self.duration.labels(route, method).observe(entry["latency_ms"] / 1000)

    def observe_lambda(self, document: dict) -> None:
        """One embedded-metric-format document from the serving Lambdas."""
        for definition in document["_aws"]["CloudWatchMetrics"]:
            for metric in definition["Metrics"]:
                self._record(metric["Name"], document)

    def _record(self, name: str, document: dict) -> None:
        value = document[name]
        if name == "Predictions":
            self.predictions.labels(document.get("Label", "")).inc(value)  # regression: no label
        elif name == "ModelLatency":
            self.model_latency.observe(value / 1000)
        elif name == "StoreWriteLatency":
            self.store_writes.observe(value / 1000)
        elif name == "StoreErrors":
            self.store_errors.inc(value)

    def route(self) -> PlainRoute:
        """``GET /metrics`` on the gateway, without the API key (a scraper on the same machine reads it)."""
        return PlainRoute("GET", "/metrics", lambda request: exposition(self.registry))


class EndpointMetrics:
    """Invocations by status, the time in the model, and which model version is live."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.registry = CollectorRegistry()
        self.invocations = Counter("cloudviz_endpoint_invocations", "Endpoint invocations by status", ["status"],
                                   registry=self.registry)
        self.model_latency = Histogram("cloudviz_model_latency_seconds", "Time in the model per invocation",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.live_version = Gauge("cloudviz_model_version_live", "Model version the endpoint serves", ["endpoint"],
                                  registry=self.registry)

    def observe_invocation(self, status: int, seconds: float) -> None:
        self.invocations.labels(str(status)).inc()
        if status < 400:
            self.model_latency.observe(seconds)

    def set_live_version(self, version: int | None) -> None:
        self.live_version.labels(self.endpoint).set(version if version is not None else float("nan"))

    def response(self) -> Response:
        status, headers, body = exposition(self.registry)
        return status, list(headers.items()), body
