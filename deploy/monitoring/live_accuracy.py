"""Live accuracy measured locally (``serving_lambdas.live_accuracy``) from the prediction store, published as
Prometheus gauges that the local alarm evaluator reads."""

from __future__ import annotations

import logging
import math
import threading

from deploy.monitoring.metrics import ApiMetrics
from serving_lambdas.drift import DEFAULT_WINDOW
from serving_lambdas.live_accuracy import DEFAULT_LABELLED_WINDOW, DEFAULT_MIN_LABELLED, LiveAccuracy, live_accuracy
from serving_lambdas.store import PredictionStore

logger = logging.getLogger(__name__)


class LiveAccuracyMonitor:
    """The live accuracy of the labelled predictions among the newest ``rows`` stored (the rows drift reads, as
    the AWS drift function does), set on ``metrics``' gauges. The alarm evaluator calls ``refresh`` before each
    sample (``AlarmEvaluator(..., before_sample=[monitor.refresh])``)."""

    def __init__(
        self,
        store: PredictionStore,
        metrics: ApiMetrics,
        rows: int = DEFAULT_WINDOW,
        window: int = DEFAULT_LABELLED_WINDOW,
        min_labelled: int = DEFAULT_MIN_LABELLED,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.rows = rows
        self.window = window
        self.min_labelled = min_labelled
        self.latest = LiveAccuracy(0, None, {})  # what the gauges show
        self._published: set[str] = set()
        self._lock = threading.Lock()

    def refresh(self) -> LiveAccuracy | None:
        """Read the store and update the gauges. A failed read is logged and leaves no accuracy (None), so the
        caller's loop goes on."""
        try:
            records = self.store.newest(self.rows)
        except Exception as error:  # the evaluator's loop must outlive a store that cannot be read for a moment
            logger.warning("live accuracy: cannot read the newest predictions: %s", error)
            self._publish(LiveAccuracy(0, None, {}))
            return None
        result = live_accuracy(records, self.window, self.min_labelled)
        self._publish(result)
        return result

    def _publish(self, result: LiveAccuracy) -> None:
        with self._lock:  # two refreshes at once would publish a mix of both
            self.metrics.live_accuracy.set(math.nan if result.accuracy is None else result.accuracy)
            self.metrics.labelled_predictions.set(result.labelled)
            for label, value in result.recall.items():
                self.metrics.live_recall.labels(label).set(value)
            for label in self._published - set(result.recall):
                self.metrics.live_recall.remove(label)
            self._published = set(result.recall)
            self.latest = result
