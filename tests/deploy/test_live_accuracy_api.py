"""Live accuracy end to end on the local API: 200 predictions and their feedback over HTTP, then the gauges read from
the API's own SQLite store give the accuracy and recall a hand count of the answers gives."""

from __future__ import annotations

import os

import pytest
from drift_data import samples
from test_postman import CLASSES, SEED, SETOSA, api, call  # noqa: F401 (api: a fixture)

from deploy.monitoring.live_accuracy import LiveAccuracyMonitor
from deploy.monitoring.metrics import ApiMetrics
from serving_lambdas.store import StoreSpec, open_store

VERSICOLOR = {"x1": 6.0, "x2": 2.7, "x3": 4.2, "x4": 1.3}
ROWS = (SEED, dict(zip(("x1", "x2", "x3", "x4"), SETOSA, strict=True)), VERSICOLOR)


def test_feedback_on_200_predictions_gives_the_hand_counted_live_accuracy(api):  # noqa: F811
    truths: list[tuple[str, str]] = []  # (predicted, true) as the client saw and reported them
    for index in range(200):
        status, _, answer = call(api, "POST", "/predictions", ROWS[index % 3])
        assert status == 200, answer
        predicted = answer["label"]
        true = predicted if index % 5 else CLASSES[(CLASSES.index(predicted) + 1) % 3]  # every 5th: wrong
        status, _, recorded = call(api, "POST", f"/predictions/{answer['id']}/feedback", {"label": true})
        assert status == 200, recorded
        truths.append((predicted, true))
    assert call(api, "POST", "/predictions", SEED)[0] == 200  # newest, and not labelled: not counted

    metrics = ApiMetrics()
    store = open_store(StoreSpec.parse(os.environ["PREDICTION_STORE"]))  # the store the API wrote to
    result = LiveAccuracyMonitor(store, metrics).refresh()

    right = sum(predicted == true for predicted, true in truths)
    assert (result.labelled, right) == (200, 160)
    values = samples(metrics.registry)
    assert values[("cloudviz_live_accuracy", ())] == result.accuracy == 0.8
    assert values[("cloudviz_labelled_predictions", ())] == 200
    for label in {true for _, true in truths}:
        of_label = [predicted for predicted, true in truths if true == label]
        recall = of_label.count(label) / len(of_label)
        assert values[("cloudviz_live_recall", (("label", label),))] == pytest.approx(recall) == result.recall[label]
