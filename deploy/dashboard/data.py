"""The dashboard's data: one JSON document holding every panel, served at ``GET /dashboard/data``.

Each panel is read from where its truth lives; one whose source fails carries ``{"error": ...}`` instead of its data.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from deploy.deployments import Deployment
from deploy.monitoring.alarm_history import AlarmState
from deploy.monitoring.alarm_rules import LOW_LIVE_ACCURACY
from deploy.monitoring.drift import DriftMonitor
from deploy.monitoring.live_accuracy import LiveAccuracyMonitor
from deploy.monitoring.sampler import MetricSampler, PeriodSample
from pipelines.artifacts import artifact_json
from pipelines.errors import NotFoundError, UserError
from pipelines.model_quality import confusion_matrix, headline_metrics
from pipelines.registry import ModelPackage, ModelRegistry
from pipelines.runs import RunRecord, RunStore
from pipelines.state import StateHome
from serving_lambdas.drift import MODERATE_DRIFT, SIGNIFICANT_DRIFT
from serving_lambdas.records import time_bound
from serving_lambdas.store import PredictionStore

REFRESH_SECONDS = 5
DEFAULT_API_URL = "http://127.0.0.1:8000"  # `cloudviz serve`'s dev API, for sources that name no API
PREDICTION_WINDOW = timedelta(hours=1)
MAX_PREDICTION_ROWS = 50_000  # a busier hour is summarised from its newest rows; the panel says so
OVERLAP_SECONDS = 10.0  # how far back each refresh re-reads, for predictions committed out of id order
BUCKET_SECONDS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600)  # predictions-over-time bar widths to choose from
MAX_BUCKETS = 60
TRAFFIC_SUMMARY_SECONDS = 60.0  # the headline tiles cover the last minute
RUNS_SHOWN = 8
logger = logging.getLogger(__name__)


@dataclass
class DashboardSources:
    """Where each panel comes from. ``live`` answers the deployment the endpoint serves now, ``alarm_states``
    the evaluator's alarms as they stand; the sampler, the alarm states and the drift monitor are None when the
    server runs without them (their panels say so)."""

    home: StateHome
    group: str
    endpoint: str
    live: Callable[[], Deployment | None]
    store: PredictionStore
    example_body: Callable[[], str]  # the live model's example request body, for the curl hint
    sampler: MetricSampler | None = None
    alarm_states: Callable[[], Sequence[AlarmState]] | None = None
    drift: DriftMonitor | None = None
    live_accuracy: LiveAccuracyMonitor | None = None
    # The API's own URL, for the curl hint: never the request's Host, which a DNS-rebinding page chooses.
    api_url: Callable[[], str] = lambda: DEFAULT_API_URL  # noqa: E731 (a default, not a definition)

    @cached_property
    def registry(self) -> ModelRegistry:
        """The model registry, opened once (opening runs its schema script), not at every refresh."""
        return ModelRegistry(self.home.registry_db)


def clock(moment: datetime) -> str:
    """A UTC time as the page shows and plots it: ``YYYY-MM-DD HH:MM:SS.fff``, which plotly's date axes read
    without shifting it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def clock_of(iso: str | None) -> str | None:
    """An ISO-8601 time (``Z``, an offset, or naive UTC) as ``clock`` writes it."""
    if not iso:
        return None
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return clock(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def finite(value: float | None, digits: int = 6) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def build(
    sources: DashboardSources, recent: RecentPredictions, now: datetime | None = None
) -> dict[str, Any]:
    """The whole document. ``recent`` holds the store's newest predictions between calls."""
    now = now or datetime.now(UTC)
    live = sources.live()
    package = _package(sources, live)
    series = sources.sampler.series() if sources.sampler is not None else []
    document: dict[str, Any] = {
        "generated_at": clock(now),
        "refresh_seconds": REFRESH_SECONDS,
        "group": sources.group,
        "endpoint": sources.endpoint,
        "classes": _classes(package),
    }
    panels: dict[str, Callable[[], Any]] = {
        "traffic": lambda: traffic(sources.sampler, series),
        "alarms": lambda: alarms(sources.alarm_states),
        "predictions": lambda: predictions(recent, package, now, sources),
        "drift": lambda: drift(sources, package, series),
        "live_accuracy": lambda: live_accuracy(sources, package, series),
        "model": lambda: model(live, package),
        "runs": lambda: runs(RunStore(sources.home.runs), sources.group),
        "registry": lambda: registry(sources.registry, sources.group, live),
        "champion": lambda: champion(sources.registry.list_packages(sources.group), live),
    }
    for name, panel in panels.items():
        try:
            document[name] = panel()
        except Exception as error:  # one unreadable source must not blank the other panels
            logger.warning("dashboard: the %s panel failed: %s", name, error)
            document[name] = {"error": f"{type(error).__name__}: {error}"}
    return document


def to_json(document: dict) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _package(sources: DashboardSources, live: Deployment | None) -> ModelPackage | None:
    if live is None:
        return None
    try:
        return sources.registry.get(live.group, live.version)
    except NotFoundError:
        return None


def _classes(package: ModelPackage | None) -> list[str]:
    if package is None:
        return []
    return list(package.lineage.get("data", {}).get("classes") or package.metrics.get("classes") or [])


# -- traffic -------------------------------------------------------------------------------------


def _rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 3) if whole else None


def traffic(sampler: MetricSampler | None, series: list[PeriodSample]) -> dict[str, Any]:
    """Per period: request rate, 4xx/5xx rates (% of requests), API latency percentiles and the model's p99."""
    if sampler is None:
        return {"available": False, "why": "this server runs no metric sampler, so there is no time series"}
    periods = max(1, round(TRAFFIC_SUMMARY_SECONDS / sampler.period_seconds))
    last = sampler.window(periods)
    summary = None
    if last is not None:
        summary = {
            "seconds": last.seconds,
            "requests": last.requests,
            "requests_per_second": round(last.requests / last.seconds, 3) if last.seconds else None,
            "error_5xx_percent": _rate(last.errors_5xx, last.requests),
            "latency_p99_ms": finite(last.latency_p99_ms, 3),
        }
    return {
        "available": True,
        "period_seconds": sampler.period_seconds,
        "summary": summary,
        "time": [clock_of(s.timestamp) for s in series],
        "requests_per_second": [round(s.requests / s.seconds, 3) if s.seconds else 0.0 for s in series],
        "requests": [s.requests for s in series],
        "error_4xx_percent": [_rate(s.errors_4xx, s.requests) for s in series],
        "error_5xx_percent": [_rate(s.errors_5xx, s.requests) for s in series],
        "latency_p50_ms": [finite(s.latency_p50_ms, 3) for s in series],
        "latency_p90_ms": [finite(s.latency_p90_ms, 3) for s in series],
        "latency_p99_ms": [finite(s.latency_p99_ms, 3) for s in series],
        "model_latency_p99_ms": [finite(s.model_latency_p99_ms, 3) for s in series],
    }


# -- alarms --------------------------------------------------------------------------------------


def alarms(states: Callable[[], Sequence[AlarmState]] | None) -> dict[str, Any]:
    if states is None:
        return {"available": False, "why": "this server runs no alarm evaluator"}
    rows = [
        {
            "name": s.name,
            "state": s.state,
            "reason": s.reason,
            "since": clock_of(s.since),
            "value": finite(s.value),
            "threshold": finite(s.threshold),
            "description": s.description,
            "metric": s.metric,
            "condition": s.condition or s.metric,
            "evaluated_at": clock_of(s.evaluated_at),
        }
        for s in states()
    ]
    return {"available": True, "states": rows, "in_alarm": sum(row["state"] == "ALARM" for row in rows)}


# -- predictions ---------------------------------------------------------------------------------


def curl_hint(api_url: str, home: StateHome, body: str) -> str:
    """A request to the API at ``api_url`` that makes a prediction with the live model's example ``body``, with
    the key read from where ``cloudviz serve`` took it."""
    key = "$CLOUDVIZ_API_KEY" if "CLOUDVIZ_API_KEY" in os.environ else f"$(cat {home.api_key_file})"
    return (f"curl -s -X POST {api_url}/predictions -H \"x-api-key: {key}\""
            f" -H 'Content-Type: application/json' -d '{body}'")


def bucket_seconds(span_seconds: float) -> int:
    """The narrowest bar width that draws ``span_seconds`` in at most ``MAX_BUCKETS`` bars."""
    for size in BUCKET_SECONDS:
        if span_seconds / size <= MAX_BUCKETS:
            return size
    return BUCKET_SECONDS[-1]


UNLABELLED = "(regression: no classes)"  # a regression model's predictions, counted under one name


@dataclass(frozen=True)
class Recent:
    """One stored prediction, as the charts need it."""

    time: float  # seconds since the epoch
    label: str
    model_version: int | None


class RecentPredictions:
    """The stored predictions of the last ``window``, kept between refreshes so that a dashboard left open does
    not re-read a busy hour every few seconds: each read asks the store only for the rows made since
    ``OVERLAP_SECONDS`` before the newest one held (a row committed late, behind an id already read, is still
    found; ids dedupe the overlap). At most ``max_rows`` are held: past that the oldest are dropped and the
    panel says it shows the newest rows only."""

    def __init__(self, store: PredictionStore, window: timedelta = PREDICTION_WINDOW,
                 max_rows: int = MAX_PREDICTION_ROWS) -> None:
        self.store = store
        self.window = window
        self.max_rows = max_rows
        self.truncated = False
        self._rows: dict[str, Recent] = {}
        self._newest = 0.0
        self._complete_from = 0.0  # rows made before this time may be missing (the cap was hit)
        self._lock = threading.Lock()

    def read(self, now: datetime) -> list[Recent]:
        """The predictions made in the ``window`` before ``now``."""
        with self._lock:
            start = (now - self.window).timestamp()
            since = max(start, self._newest - OVERLAP_SECONDS)
            records = self.store.newest(self.max_rows, since=time_bound(datetime.fromtimestamp(since, UTC)))
            for record in records:
                moment = datetime.fromisoformat(record.timestamp.replace("Z", "+00:00")).timestamp()
                self._rows[record.id] = Recent(moment, record.label or UNLABELLED, record.model_version)
                self._newest = max(self._newest, moment)
            if len(records) == self.max_rows:  # the store holds more since then: keep the newest, with no gap
                oldest = records[-1].id
                self._complete_from = self._rows[oldest].time
                self._rows = {key: row for key, row in self._rows.items() if key >= oldest}
            cutoff = time_bound(datetime.fromtimestamp(start, UTC))
            self._rows = {key: row for key, row in self._rows.items() if key >= cutoff}
            if len(self._rows) > self.max_rows:
                keep = sorted(self._rows)[-self.max_rows:]
                self._rows = {key: self._rows[key] for key in keep}
                self._complete_from = self._rows[keep[0]].time
            self.truncated = self._complete_from > start
            return list(self._rows.values())


def predictions(
    recent: RecentPredictions, package: ModelPackage | None, now: datetime, sources: DashboardSources
) -> dict[str, Any]:
    """Predictions of the last hour by class, in time buckets, and each class's share against training."""
    rows = recent.read(now)
    document: dict[str, Any] = {
        "window_minutes": round(PREDICTION_WINDOW.total_seconds() / 60),
        "rows": len(rows),
        "truncated": recent.truncated,
        "hint": curl_hint(sources.api_url(), sources.home, sources.example_body()),
        "training_share": _training_shares(sources, package),
    }
    if not rows:
        return document
    start, newest = min(row.time for row in rows), max(row.time for row in rows)
    size = bucket_seconds(max(now.timestamp() - start, 60.0))
    first = math.floor(start / size) * size
    count = math.floor(now.timestamp() / size) - math.floor(start / size) + 1
    by_class: dict[str, list[int]] = {}
    for row in rows:
        index = min(int((row.time - first) // size), count - 1)
        by_class.setdefault(row.label, [0] * count)[index] += 1
    document.update({
        "bucket_seconds": size,
        "time": [clock(datetime.fromtimestamp(first + i * size, UTC)) for i in range(count)],
        "by_class": by_class,
        "class_counts": dict(Counter(row.label for row in rows)),
        "newest": clock(datetime.fromtimestamp(newest, UTC)),
        "model_versions": dict(Counter(str(row.model_version) for row in rows)),
    })
    return document


def _training_shares(sources: DashboardSources, package: ModelPackage | None) -> dict[str, float] | None:
    """The live model's training class distribution (preprocessing's baseline statistics), when it is known: the
    drift monitor holds it already (loaded when the version went live); without one, read from the registered file."""
    if sources.drift is not None:
        baseline = sources.drift.baseline
        return dict(baseline.classes) if baseline is not None else None
    if package is None:
        return None
    try:
        statistics = artifact_json(package, "baseline_statistics", RunStore(sources.home.runs))
    except UserError:
        return None
    return statistics.get("class_distribution")


# -- drift ---------------------------------------------------------------------------------------


def drift(sources: DashboardSources, package: ModelPackage | None, series: list[PeriodSample]) -> dict[str, Any]:
    """The newest PSI per feature and of the predictions (``prediction_label``: the predicted classes, or a
    regression's predicted values), their history, and why there may be none."""
    monitor = sources.drift
    document: dict[str, Any] = {
        "moderate": MODERATE_DRIFT,
        "significant": SIGNIFICANT_DRIFT,
        "baseline_version": package.version if package is not None else None,
    }
    if monitor is None:
        return {**document, "available": False, "why": "this server runs no drift monitor"}
    baseline = monitor.baseline
    predicts = baseline.predicts if baseline is not None else ("class" if _classes(package) else "value")
    document.update({"available": True, "window": monitor.window, "min_rows": monitor.min_rows,
                     "prediction_label": f"predicted {predicts}"})
    if baseline is None:
        document["why"] = f"drift is not measured for this version: {monitor.unavailable_because}"
    elif baseline.prediction_unavailable_because:
        document["prediction_why"] = f"prediction drift is not measured: {baseline.prediction_unavailable_because}"
    latest = series[-1] if series else None
    if latest is None or not latest.feature_drift:
        document["stored_rows"] = len(sources.store.newest(monitor.min_rows))
        document["features"] = {}
        document["prediction_drift"] = None
    else:
        document["measured_at"] = clock_of(latest.timestamp)
        document["features"] = {name: finite(value) for name, value in sorted(latest.feature_drift.items())}
        document["prediction_drift"] = finite(latest.class_drift)
    history = [s for s in series if s.feature_drift]
    document["history"] = {
        "time": [clock_of(s.timestamp) for s in history],
        "features": {
            name: [finite(s.feature_drift.get(name)) for s in history]
            for name in sorted({name for s in history for name in s.feature_drift})
        },
        "prediction_drift": [finite(s.class_drift) for s in history],
    }
    return document


# -- live accuracy -------------------------------------------------------------------------------


def live_accuracy(sources: DashboardSources, package: ModelPackage | None,
                  series: list[PeriodSample]) -> dict[str, Any]:
    """The newest live accuracy, each true class's recall, how many predictions are labelled, and the accuracy at
    each sampling period; a regression model has none (``serving_lambdas.live_accuracy`` says why)."""
    monitor = sources.live_accuracy
    if monitor is None:
        return {"available": False, "why": "this server runs no live-accuracy monitor"}
    if package is not None and not _classes(package):
        return {"available": False, "why": "live accuracy is a classifier's measure; this model is a regression"}
    latest = monitor.latest
    return {
        "available": True,
        "window": monitor.window,
        "min_labelled": monitor.min_labelled,
        "threshold": LOW_LIVE_ACCURACY,
        "labelled": latest.labelled,
        "accuracy": finite(latest.accuracy),
        "recall": {label: finite(value) for label, value in latest.recall.items()},
        "history": {"time": [clock_of(s.timestamp) for s in series],
                    "accuracy": [finite(s.live_accuracy) for s in series],
                    "labelled": [s.labelled_predictions for s in series]},
    }


# -- the live model ------------------------------------------------------------------------------


def model(live: Deployment | None, package: ModelPackage | None) -> dict[str, Any]:
    """The live version, its approval and deployment, and its evaluation on the test split."""
    if live is None or package is None:
        return {"live": False}
    document: dict[str, Any] = {
        "live": True,
        "version": package.version,
        "approval_status": package.approval_status,
        "deployed_at": clock_of(live.deployed_at),
        "deployed_because": live.reason,
        "created_at": clock_of(package.created_at),
        "run_id": package.lineage.get("run_id"),
        "evaluation": None,
    }
    metrics = package.metrics
    headline = {name: finite(value) for name, value in headline_metrics(metrics).items()}
    if not headline:
        return document
    classes = metrics.get("classes") or list(metrics.get("per_class", {}))
    table = confusion_matrix(metrics) or {}
    importance = sorted(metrics.get("feature_importance", {}).items(), key=lambda item: item[1], reverse=True)
    document["evaluation"] = {
        "test_rows": metrics.get("test_rows"),
        "metrics": headline,  # the family's headline metrics: accuracy and F1s, auc, or rmse, mae and r2
        **{name: headline.get(name) for name in ("accuracy", "macro_f1", "weighted_f1")},
        "classes": classes,
        "per_class": {
            name: {key: finite(scores[key]) for key in ("precision", "recall", "f1")} | {"support": scores["support"]}
            for name, scores in metrics.get("per_class", {}).items()
        },
        "confusion_matrix": [[table.get(actual, {}).get(predicted, 0) for predicted in classes] for actual in classes],
        "feature_importance": {name: finite(gain) for name, gain in importance},
    }
    return document


# -- pipeline runs and the registry ---------------------------------------------------------------


def _run(record: RunRecord) -> dict[str, Any]:
    evaluation = record.output_json("evaluation", "evaluation.json")
    registered = record.registered()
    return {
        "run_id": record.run_id,
        "status": record.status,
        "created_at": clock_of(record.created_at),
        "seconds": finite(sum(step.duration_seconds or 0.0 for step in record.steps.values()), 3),
        "accuracy": finite(headline_metrics(evaluation).get("accuracy")) if evaluation else None,
        "registered_version": registered["version"] if registered else None,
        "failure_reason": record.failure_reason,
        "steps": [
            {"name": step.name, "status": step.status, "seconds": finite(step.duration_seconds, 3),
             "cached": step.cached_from is not None}
            for step in record.steps.values()
        ],
    }


def runs(store: RunStore, group: str) -> dict[str, Any]:
    """The newest runs of this group's pipeline (runs registering into another group are left out)."""
    records = [r for r in store.list() if r.parameters.get("ModelPackageGroupName", group) == group]
    return {"runs": [_run(record) for record in records[:RUNS_SHOWN]], "total": len(records)}


def registry(models: ModelRegistry, group: str, live: Deployment | None) -> dict[str, Any]:
    packages = models.list_packages(group)
    rows = []
    for package in packages:
        headline = headline_metrics(package.metrics)
        rows.append({
            "version": package.version,
            "approval_status": package.approval_status,
            "status_reason": package.status_reason,
            "accuracy": finite(headline.get("accuracy")),
            "macro_f1": finite(headline.get("macro_f1")),
            "created_at": clock_of(package.created_at),
            "updated_at": clock_of(package.updated_at),
            "run_id": package.lineage.get("run_id"),
            "live": live is not None and live.version == package.version,
        })
    return {"versions": rows}


def champion_row(package: ModelPackage, live: bool, newest: bool) -> dict[str, Any]:
    """A version's gate metric beside its champion's (the model its Evaluate compared it with, on the same test
    rows), as the ``champion`` section of its evaluation records it. ``status`` is ``compared``, ``none`` (the
    group had no live model), ``not_comparable`` (``reason`` says why) or ``unrecorded`` (evaluated before
    champion comparison existed)."""
    gate = package.metrics.get("gate") or {}
    section = package.metrics.get("champion")
    row: dict[str, Any] = {
        "version": package.version,
        "live": live,
        "newest": newest,
        "metric": gate.get("metric"),
        "direction": gate.get("direction"),
        "value": finite(gate.get("value")),
        "status": "unrecorded",
        "reason": f"version {package.version}'s evaluation recorded no champion comparison",
        "champion_group": None,
        "champion_version": None,
        "champion_stage": None,
        "champion_value": None,
        "max_regression": None,
        "passed": None,
    }
    if section is None:
        return row
    return {**row, "status": section["status"], "reason": section.get("reason"),
            "champion_group": section.get("group"), "champion_version": section.get("version"),
            "champion_stage": section.get("stage"), "champion_value": finite(section.get("champion_value")),
            "max_regression": finite(section.get("max_regression")), "passed": section.get("passed")}


def champion(packages: Sequence[ModelPackage], live: Deployment | None) -> dict[str, Any]:
    """Champion vs challenger for the live version and the group's newest one (one row when they are the same),
    newest first."""
    live_version = live.version if live is not None else None
    newest = packages[0].version if packages else None
    shown = [p for p in packages if p.version in (newest, live_version)]
    return {"versions": [champion_row(p, p.version == live_version, p.version == newest) for p in shown]}
