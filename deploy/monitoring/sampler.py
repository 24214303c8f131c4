"""A time series of the API and endpoint metrics: one ``PeriodSample`` per period, kept in a ring buffer.

Prometheus counters and histograms only ever grow; the sampler reads both registries at the end of each
period and keeps the differences from the previous reading (requests, errors, latency percentiles from the
histogram buckets that filled in the period, predictions by class) plus the drift gauges as they stand. The
alarm evaluator and the dashboard read the series; nothing here needs a Prometheus server.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from deploy.monitoring.metrics import ApiMetrics, EndpointMetrics

# The gateway's own pages are not API traffic: a scraper or an open dashboard must not move the request rate.
MONITORING_ROUTES = ("/metrics", "/dashboard")
DEFAULT_SAMPLE_SECONDS = 10.0


def iso_time(timestamp: float) -> str:
    """ISO-8601 UTC with milliseconds, the form of every time in the alarm history and notifications."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def sampling_period(alarm_period_seconds: float | None) -> float:
    """The sampler period under alarms evaluated every ``alarm_period_seconds`` (None: the rules' own periods):
    at most 10 s, so the dashboard's series stays fine, and a whole fraction of the alarm period."""
    if alarm_period_seconds is None:
        return DEFAULT_SAMPLE_SECONDS
    return alarm_period_seconds / math.ceil(alarm_period_seconds / DEFAULT_SAMPLE_SECONDS)


def is_monitoring_route(route: str) -> bool:
    return any(route == prefix or route.startswith(prefix + "/") for prefix in MONITORING_ROUTES)


@dataclass(frozen=True)
class PeriodSample:
    """What happened in one period (``seconds`` long, ending at ``timestamp``). Latencies are None in a period
    without requests (or invocations); drift values are the gauges at the end of the period, {} / None until
    the drift monitor has enough predictions."""

    timestamp: str
    seconds: float
    requests: int
    errors_4xx: int
    errors_5xx: int
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    invocations: int
    invocation_5xx_errors: int
    model_latency_p99_ms: float | None
    store_errors: int
    predictions: dict[str, int] = field(default_factory=dict)
    feature_drift: dict[str, float] = field(default_factory=dict)
    class_drift: float | None = None
    live_accuracy: float | None = None
    labelled_predictions: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Reading:
    """The cumulative values of both registries at one instant (only the parts the samples need)."""

    time: float
    api_statuses: dict[str, float]  # status code -> requests, monitoring routes left out
    api_buckets: dict[float, float]  # histogram upper bound -> cumulative count, summed over routes
    invocations: dict[str, float]  # status code -> invocations
    model_buckets: dict[float, float]
    store_errors: float
    predictions: dict[str, float]
    feature_drift: dict[str, float]
    class_drift: float | None
    live_accuracy: float | None = None
    labelled: float = 0.0


def _samples(registry: CollectorRegistry) -> Iterable[tuple[str, dict[str, str], float]]:
    for family in registry.collect():
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value


def _read(api: ApiMetrics, endpoint: EndpointMetrics, now: float) -> _Reading:
    statuses: dict[str, float] = {}
    api_buckets: dict[float, float] = {}
    predictions: dict[str, float] = {}
    feature_drift: dict[str, float] = {}
    store_errors, class_drift, accuracy, labelled = 0.0, None, None, 0.0
    for name, labels, value in _samples(api.registry):
        if name == "cloudviz_api_requests_total" and not is_monitoring_route(labels["route"]):
            statuses[labels["status"]] = statuses.get(labels["status"], 0.0) + value
        elif name == "cloudviz_api_request_duration_seconds_bucket" and not is_monitoring_route(labels["route"]):
            bound = float(labels["le"])
            api_buckets[bound] = api_buckets.get(bound, 0.0) + value
        elif name == "cloudviz_predictions_total":
            predictions[labels["label"]] = value
        elif name == "cloudviz_store_errors_total":
            store_errors = value
        elif name == "cloudviz_feature_drift" and not math.isnan(value):
            feature_drift[labels["feature"]] = value
        elif name == "cloudviz_prediction_class_drift" and not math.isnan(value):
            class_drift = value
        elif name == "cloudviz_live_accuracy" and not math.isnan(value):
            accuracy = value
        elif name == "cloudviz_labelled_predictions":
            labelled = value
    invocations: dict[str, float] = {}
    model_buckets: dict[float, float] = {}
    for name, labels, value in _samples(endpoint.registry):
        if name == "cloudviz_endpoint_invocations_total":
            invocations[labels["status"]] = value
        elif name == "cloudviz_model_latency_seconds_bucket":
            model_buckets[float(labels["le"])] = value
    return _Reading(now, statuses, api_buckets, invocations, model_buckets, store_errors, predictions,
                    feature_drift, class_drift, accuracy, labelled)


def _delta(new: Mapping, old: Mapping) -> dict:
    return {key: value - old.get(key, 0.0) for key, value in new.items()}


def histogram_quantile(quantile: float, buckets: Mapping[float, float]) -> float | None:
    """The ``quantile`` of a histogram given as cumulative counts per upper bound (``inf`` last), interpolated
    linearly inside the bucket it falls in, as Prometheus' ``histogram_quantile`` does; in the ``+Inf`` bucket,
    the largest finite bound. None for an empty histogram."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank = quantile * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, count
    return lower


def _milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _status_total(statuses: Mapping[str, float], first: int, last: int) -> int:
    return round(sum(count for status, count in statuses.items() if first <= int(status) <= last))


def _between(old: _Reading, new: _Reading, drift: Iterable[_Reading]) -> PeriodSample:
    """The sample of the period from ``old`` to ``new``; drift is the largest value of the ``drift`` readings."""
    statuses = _delta(new.api_statuses, old.api_statuses)
    api_buckets = _delta(new.api_buckets, old.api_buckets)
    invocations = _delta(new.invocations, old.invocations)
    model_buckets = _delta(new.model_buckets, old.model_buckets)
    feature_drift: dict[str, float] = {}
    class_drifts = []
    accuracies = [reading.live_accuracy for reading in drift if reading.live_accuracy is not None]
    for reading in drift:
        for feature, value in reading.feature_drift.items():
            feature_drift[feature] = max(value, feature_drift.get(feature, value))
        if reading.class_drift is not None:
            class_drifts.append(reading.class_drift)
    return PeriodSample(
        timestamp=iso_time(new.time),
        seconds=round(new.time - old.time, 3),
        requests=round(sum(statuses.values())),
        errors_4xx=_status_total(statuses, 400, 499),
        errors_5xx=_status_total(statuses, 500, 599),
        latency_p50_ms=_milliseconds(histogram_quantile(0.5, api_buckets)),
        latency_p90_ms=_milliseconds(histogram_quantile(0.9, api_buckets)),
        latency_p99_ms=_milliseconds(histogram_quantile(0.99, api_buckets)),
        invocations=round(sum(invocations.values())),
        invocation_5xx_errors=_status_total(invocations, 500, 599),
        model_latency_p99_ms=_milliseconds(histogram_quantile(0.99, model_buckets)),
        store_errors=round(new.store_errors - old.store_errors),
        predictions={label: round(count) for label, count in _delta(new.predictions, old.predictions).items()},
        feature_drift=feature_drift,
        class_drift=max(class_drifts) if class_drifts else None,
        live_accuracy=min(accuracies) if accuracies else None,
        labelled_predictions=round(new.labelled),
    )


class MetricSampler:
    """Samples ``api`` and ``endpoint`` when asked (the alarm evaluator asks every ``period_seconds``) and keeps
    the newest ``keep`` samples: 360 of 10 s, an hour. The first sample counts from the sampler's creation."""

    def __init__(
        self,
        api: ApiMetrics,
        endpoint: EndpointMetrics,
        period_seconds: float = DEFAULT_SAMPLE_SECONDS,
        keep: int = 360,
    ) -> None:
        if period_seconds <= 0:
            raise ValueError(f"period_seconds must be positive, got {period_seconds}")
        if keep < 1:
            raise ValueError(f"keep must be 1 or more, got {keep}")
        self.api = api
        self.endpoint = endpoint
        self.period_seconds = period_seconds
        self.keep = keep
        self._lock = threading.Lock()
        self._samples: deque[PeriodSample] = deque(maxlen=keep)
        self._readings: deque[_Reading] = deque([_read(api, endpoint, time.time())], maxlen=keep + 1)

    def sample(self, timestamp: float | None = None) -> PeriodSample:
        """Close the current period at ``timestamp`` (seconds since the epoch; default now) and keep its sample."""
        with self._lock:
            reading = _read(self.api, self.endpoint, time.time() if timestamp is None else timestamp)
            sample = _between(self._readings[-1], reading, [reading])
            self._readings.append(reading)
            self._samples.append(sample)
            return sample

    def series(self) -> list[PeriodSample]:
        """The kept samples, oldest first."""
        with self._lock:
            return list(self._samples)

    def window(self, count: int) -> PeriodSample | None:
        """One sample over the newest ``count`` periods (fewer when fewer were sampled; None before the first):
        counts summed, latency percentiles from the buckets of the whole window, the largest drift values."""
        with self._lock:
            available = min(count, len(self._readings) - 1)
            if available < 1:
                return None
            readings = list(self._readings)[-available - 1:]
            return _between(readings[0], readings[-1], readings[1:])
