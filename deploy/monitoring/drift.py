"""Drift measured locally (``serving_lambdas.drift``): the newest stored predictions against the live model's training
statistics, published as Prometheus gauges that the local alarm evaluator reads.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence

from deploy.monitoring.metrics import ApiMetrics
from pipelines.artifacts import artifact_json
from pipelines.errors import UserError
from pipelines.registry import ModelPackage
from pipelines.runs import RunStore
from serving_lambdas.drift import (
    DEFAULT_MIN_ROWS,
    DEFAULT_WINDOW,
    Baseline,
    BaselineError,
    DriftReport,
    check_window,
    measure,
)
from serving_lambdas.records import PredictionRecord
from serving_lambdas.store import PredictionStore

logger = logging.getLogger(__name__)


def load_baseline(runs: RunStore, package: ModelPackage) -> Baseline:
    """The training statistics ``package`` was registered with (``runs``: where a version registered before the
    registry recorded them finds them)."""
    statistics = artifact_json(package, "baseline_statistics", runs)
    source = f"baseline/statistics.json of run {package.lineage.get('run_id', 'unknown')}"
    try:
        return Baseline.from_statistics(statistics, source)
    except BaselineError as error:
        raise UserError(str(error)) from None


class DriftMonitor:
    """PSI of the newest ``window`` predictions against the live model's baseline, published as gauges. Below
    ``min_rows`` the feature gauges are absent and the prediction gauge is NaN, as for a baseline that cannot
    measure the predictions.

    ``refresh`` reads the store and updates the gauges: the alarm evaluator calls it before each sample
    (``AlarmEvaluator(..., before_sample=[monitor.refresh])``). ``set_baseline`` follows the live model.
    """

    def __init__(
        self,
        baseline: Baseline | Mapping | None,
        window: int = DEFAULT_WINDOW,
        min_rows: int = DEFAULT_MIN_ROWS,
        metrics: ApiMetrics | None = None,
        store: PredictionStore | None = None,
        unavailable_because: str = "",
    ) -> None:
        check_window(window, min_rows)
        self.window = window
        self.min_rows = min_rows
        self.metrics = metrics
        self.store = store
        self._published: set[str] = set()
        self._lock = threading.Lock()
        self.set_baseline(baseline, unavailable_because)

    @property
    def baseline(self) -> Baseline | None:
        return self._baseline

    def set_baseline(self, baseline: Baseline | Mapping | None, unavailable_because: str = "") -> None:
        """Measure against ``baseline`` from the next update on (None: no baseline, no drift values, and
        ``unavailable_because`` says why); a mapping is a ``statistics.json`` document."""
        if isinstance(baseline, Mapping):
            baseline = Baseline.from_statistics(baseline, "baseline statistics")
        self._baseline = baseline
        self.unavailable_because = "" if baseline is not None else unavailable_because

    def update(self, records: Sequence[PredictionRecord]) -> DriftReport:
        """Drift of the newest ``window`` of ``records``, also set on the gauges when there are metrics."""
        newest = sorted(records, key=lambda record: record.id, reverse=True)[: self.window]
        with self._lock:  # two updates at once would publish a mix of both
            report = measure(self._baseline, newest, self.min_rows)
            self._publish(report)
        return report

    def refresh(self) -> DriftReport | None:
        """Read the newest ``window`` predictions from the store and update. A failed read is logged and leaves
        no drift values (None), so the caller's loop goes on."""
        if self.store is None:
            raise RuntimeError("DriftMonitor.refresh needs the prediction store it was created with")
        try:
            records = self.store.newest(self.window)
        except Exception as error:  # the evaluator's loop must outlive a store that cannot be read for a moment
            logger.warning("drift: cannot read the newest predictions: %s", error)
            with self._lock:
                self._publish(DriftReport(0, {}, None))
            return None
        return self.update(records)

    def _publish(self, report: DriftReport) -> None:
        if self.metrics is None:
            return
        for name, value in report.features.items():
            self.metrics.feature_drift.labels(name).set(value)
        for name in self._published - set(report.features):
            self.metrics.feature_drift.remove(name)
        self._published = set(report.features)
        prediction = report.prediction
        self.metrics.prediction_class_drift.set(math.nan if prediction is None else prediction)
        self.metrics.drift_window_rows.set(report.rows)
