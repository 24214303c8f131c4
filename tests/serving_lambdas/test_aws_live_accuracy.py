"""The AWS drift function's live accuracy over moto's DynamoDB rows: the EMF lines it prints equal the shared
computation (and so the local gauges) on the same rows; nothing while no prediction is labelled."""

from __future__ import annotations

import dataclasses
import json

from drift_data import CLASSES, draw, house_records, records
from test_aws_drift import ENDPOINT, aws, store  # noqa: F401 (aws: a fixture)

from serving_lambdas.drift_monitor import handler
from serving_lambdas.live_accuracy import DEFAULT_MIN_LABELLED, live_accuracy
from serving_lambdas.metrics import NAMESPACE
from serving_lambdas.records import Feedback


def labelled(rows, wrong_every: int):
    def truth(index, record):
        return CLASSES[(CLASSES.index(record.label) + 1) % 3] if index % wrong_every == 0 else record.label
    return [dataclasses.replace(r, feedback=Feedback(truth(i, r), r.timestamp)) for i, r in enumerate(rows)]


def accuracy_lines(output: str) -> tuple[dict[str, float], dict[str, float]]:
    """(metric -> value by Endpoint, label -> LiveRecall by Endpoint and Label) of the live accuracy EMF lines."""
    by_endpoint, recall = {}, {}
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        document = json.loads(line)
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        names = [metric["Name"] for metric in directive["Metrics"]]
        assert directive["Namespace"] == NAMESPACE and document["Endpoint"] == ENDPOINT
        if directive["Dimensions"] == [["Endpoint", "Label"]]:
            assert names == ["LiveRecall"]
            recall[document["Label"]] = document["LiveRecall"]
        elif "LabelledPredictions" in names:
            assert directive["Dimensions"] == [["Endpoint"]]
            by_endpoint = {name: document[name] for name in names}
    return by_endpoint, recall


def test_the_drift_function_publishes_the_live_accuracy_of_the_same_rows(aws, iris, capsys):  # noqa: F811
    _, train = iris
    rows = labelled(records(draw(train, 200)), wrong_every=4) + records(draw(train, 250, seed=3))
    store(aws, rows)
    handler({}, None)
    expected = live_accuracy(rows)
    by_endpoint, recall = accuracy_lines(capsys.readouterr().out)
    assert by_endpoint == {"LabelledPredictions": 200, "LiveAccuracy": 0.75} and expected.accuracy == 0.75
    assert recall == expected.recall and set(recall) == set(CLASSES)


def test_too_few_labelled_publish_the_count_only_and_none_labelled_nothing(aws, iris, capsys):  # noqa: F811
    _, train = iris
    store(aws, records(draw(train, 300)))
    handler({}, None)
    assert accuracy_lines(capsys.readouterr().out) == ({}, {})
    store(aws, labelled(records(draw(train, DEFAULT_MIN_LABELLED - 1, seed=2)), wrong_every=2))
    handler({}, None)
    assert accuracy_lines(capsys.readouterr().out) == ({"LabelledPredictions": DEFAULT_MIN_LABELLED - 1}, {})


def test_a_regression_model_has_no_live_accuracy(aws, iris, capsys):  # noqa: F811
    _, train = iris
    houses = house_records(draw(train, 300)[:, :4])
    store(aws, [dataclasses.replace(r, feedback=Feedback(float(r.prediction), r.timestamp)) for r in houses])
    handler({}, None)
    assert accuracy_lines(capsys.readouterr().out) == ({}, {})
