"""The AWS drift function (serving_lambdas.drift_monitor) against moto's DynamoDB and S3: the same PSI values as
the local DriftMonitor on the same rows, published as CloudWatch EMF lines on stdout, as Lambda runs it."""

from __future__ import annotations

import json
import logging

import boto3
import pytest
from drift_data import AREA, FEATURES, HOUSE_FEATURES, PETAL_LENGTH, draw, house_records, records, shifted
from moto import mock_aws

from deploy.monitoring.drift import DriftMonitor
from serving_lambdas.config import ConfigurationError
from serving_lambdas.drift import DEFAULT_MIN_ROWS, MODERATE_DRIFT, SIGNIFICANT_DRIFT, BaselineError
from serving_lambdas.drift_monitor import handler
from serving_lambdas.metrics import NAMESPACE
from serving_lambdas.records import PredictionRecord
from serving_lambdas.store import DynamoDbStore, forget_opened_stores
from serving_lambdas.store.dynamodb import table_definition

REGION = "us-east-1"
TABLE = "cloudviz-dev-predictions"
BUCKET = "cloudviz-artifacts-test"
KEY = "cloudviz/executions/abc123/Preprocess/baseline/statistics.json"
ENDPOINT = "cloudviz-dev"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, iris) -> DynamoDbStore:
    """moto's DynamoDB and S3 with the prediction table, the baseline statistics in the bucket, and the drift
    function's environment as the monitoring stack sets it."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)
    monkeypatch.setenv("PREDICTION_STORE", f"dynamodb:{TABLE}")
    monkeypatch.setenv("BASELINE_STATISTICS_URI", f"s3://{BUCKET}/{KEY}")
    with mock_aws():
        forget_opened_stores()
        boto3.client("dynamodb", region_name=REGION).create_table(**table_definition(TABLE))
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps(iris[0]).encode())
        yield DynamoDbStore(TABLE, boto3.client("dynamodb", region_name=REGION))
        forget_opened_stores()


def use_baseline(statistics: dict) -> None:
    """``statistics`` in place of iris's, where BASELINE_STATISTICS_URI points."""
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps(statistics).encode())


def store(table: DynamoDbStore, rows: list[PredictionRecord]) -> None:
    for start in range(0, len(rows), table.max_rows_per_put):
        table.put(rows[start:start + table.max_rows_per_put])


def emf_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def published(output: str) -> tuple[dict[str, float], dict[str, float]]:
    """(metric -> value by Endpoint alone, feature -> FeatureDrift by Endpoint and Feature) of the EMF lines."""
    by_endpoint: dict[str, float] = {}
    by_feature: dict[str, float] = {}
    for document in emf_lines(output):
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE and document["Endpoint"] == ENDPOINT
        assert all(metric["Unit"] == "None" for metric in directive["Metrics"])
        if directive["Dimensions"] == [["Endpoint"]]:
            by_endpoint |= {metric["Name"]: document[metric["Name"]] for metric in directive["Metrics"]}
        else:
            assert directive["Dimensions"] == [["Endpoint", "Feature"]]
            assert [metric["Name"] for metric in directive["Metrics"]] == ["FeatureDrift"]
            by_feature[document["Feature"]] = document["FeatureDrift"]
    return by_endpoint, by_feature


def test_in_distribution_predictions_publish_low_drift_equal_to_the_local_monitor(aws, iris, capsys):
    statistics, train = iris
    old = records(shifted(draw(train, 200, seed=1), PETAL_LENGTH, 3.0), minutes_ago=90)  # outside the window
    new = records(draw(train, 500))
    store(aws, old + new)
    result = handler({"source": "aws.events"}, None)
    local = DriftMonitor(statistics).update(old + new)
    assert {key: result[key] for key in ("rows", "features", "prediction")} == local.to_dict()
    assert result["published"] is True and result["rows"] == 500
    by_endpoint, by_feature = published(capsys.readouterr().out)
    assert by_feature == local.features and set(by_feature) == set(FEATURES)
    assert by_endpoint == {"FeatureDrift": max(local.features.values()),
                           "PredictionClassDrift": local.prediction}
    assert all(value < MODERATE_DRIFT for value in [*by_feature.values(), *by_endpoint.values()]), by_endpoint


def test_shifted_predictions_publish_significant_drift_on_that_feature(aws, iris, capsys):
    statistics, train = iris
    rows = records(shifted(draw(train, 500, seed=8), PETAL_LENGTH, 0.5))
    store(aws, rows)
    result = handler({}, None)
    local = DriftMonitor(statistics).update(rows)
    by_endpoint, by_feature = published(capsys.readouterr().out)
    assert by_feature == local.features == result["features"]
    assert by_feature[PETAL_LENGTH] > SIGNIFICANT_DRIFT, by_feature
    assert all(value < MODERATE_DRIFT for name, value in by_feature.items() if name != PETAL_LENGTH), by_feature
    # The alarm's metric (Endpoint alone) is the largest feature's.
    assert by_endpoint["FeatureDrift"] == by_feature[PETAL_LENGTH]
    assert by_endpoint["PredictionClassDrift"] == local.prediction == result["prediction"]


def test_below_min_rows_nothing_is_published_and_the_log_says_why(aws, iris, capsys, caplog):
    store(aws, records(draw(iris[1], DEFAULT_MIN_ROWS - 1)))
    with caplog.at_level(logging.INFO, logger="serving_lambdas.drift_monitor"):
        result = handler({}, None)
    assert result == {"rows": 199, "features": {}, "prediction": None, "published": False}
    assert emf_lines(capsys.readouterr().out) == []
    assert "drift not published: 199 stored prediction(s), fewer than the 200 it needs" in caplog.text


def test_an_empty_table_publishes_nothing(aws, capsys):
    assert handler({}, None)["published"] is False
    assert emf_lines(capsys.readouterr().out) == []


def test_an_unreadable_baseline_is_a_clear_error(aws, iris, monkeypatch, capsys):
    store(aws, records(draw(iris[1], 300)))
    s3 = boto3.client("s3", region_name=REGION)
    missing = f"s3://{BUCKET}/no/such/statistics.json"
    monkeypatch.setenv("BASELINE_STATISTICS_URI", missing)
    with pytest.raises(BaselineError, match=f"^{missing}: cannot read the baseline statistics \\(NoSuchKey: "):
        handler({}, None)
    monkeypatch.setenv("BASELINE_STATISTICS_URI", f"s3://no-such-bucket/{KEY}")
    with pytest.raises(BaselineError, match="cannot read the baseline statistics \\(NoSuchBucket: "):
        handler({}, None)
    s3.put_object(Bucket=BUCKET, Key="garbled.json", Body=b"{not json")
    monkeypatch.setenv("BASELINE_STATISTICS_URI", f"s3://{BUCKET}/garbled.json")
    with pytest.raises(BaselineError, match=f"^s3://{BUCKET}/garbled.json: the baseline statistics are not JSON "):
        handler({}, None)
    s3.put_object(Bucket=BUCKET, Key="evaluation.json", Body=b'{"multiclass_classification_metrics": {}}')
    monkeypatch.setenv("BASELINE_STATISTICS_URI", f"s3://{BUCKET}/evaluation.json")
    with pytest.raises(BaselineError, match=f"^s3://{BUCKET}/evaluation.json: features: not baseline statistics "
                                            r"\(KeyError: 'features'\)$"):
        handler({}, None)
    monkeypatch.setenv("BASELINE_STATISTICS_URI", f"{BUCKET}/{KEY}")
    with pytest.raises(ConfigurationError, match="^BASELINE_STATISTICS_URI must be s3://BUCKET/KEY, not "):
        handler({}, None)
    monkeypatch.delenv("BASELINE_STATISTICS_URI")
    with pytest.raises(ConfigurationError, match="^environment variable BASELINE_STATISTICS_URI is not set$"):
        handler({}, None)
    assert emf_lines(capsys.readouterr().out) == []



@pytest.mark.parametrize(("area_by", "predicted_by", "drifted"), [(0.0, 0.0, False), (3.0, 8.0, True)])
def test_a_regression_baseline_publishes_the_drift_of_the_predicted_values_equal_to_the_local_monitor(
    aws, houses, capsys, area_by: float, predicted_by: float, drifted: bool
):
    statistics, train = houses
    use_baseline(statistics)
    rows = house_records(shifted(draw(train, 500), AREA, area_by, HOUSE_FEATURES), predicted_by)
    store(aws, rows)
    result = handler({}, None)
    local = DriftMonitor(statistics).update(rows)
    assert {key: result[key] for key in ("rows", "features", "prediction")} == local.to_dict()
    by_endpoint, by_feature = published(capsys.readouterr().out)
    assert by_feature == local.features and set(by_feature) == set(HOUSE_FEATURES)
    # The predicted values' PSI is the metric the prediction alarm watches, as the predicted classes' is.
    assert by_endpoint == {"FeatureDrift": max(local.features.values()), "PredictionClassDrift": local.prediction}
    if drifted:
        assert by_feature[AREA] > SIGNIFICANT_DRIFT and local.prediction > SIGNIFICANT_DRIFT, by_endpoint
    else:
        assert all(value < MODERATE_DRIFT for value in [*by_feature.values(), *by_endpoint.values()]), by_endpoint


def test_an_older_regression_baseline_publishes_feature_drift_and_logs_why_not_the_predictions(
    aws, houses, capsys, caplog
):
    statistics, train = houses
    use_baseline({key: value for key, value in statistics.items() if key != "target"})
    store(aws, house_records(shifted(draw(train, 300), AREA, 3.0, HOUSE_FEATURES)))
    with caplog.at_level(logging.INFO, logger="serving_lambdas.drift_monitor"):
        result = handler({}, None)
    assert result["published"] is True and result["prediction"] is None and result["rows"] == 300
    by_endpoint, by_feature = published(capsys.readouterr().out)
    assert by_feature == result["features"] and by_feature[AREA] > SIGNIFICANT_DRIFT
    assert by_endpoint == {"FeatureDrift": by_feature[AREA]}
    assert (f"prediction drift not measured: s3://{BUCKET}/{KEY} has no class shares (class_distribution) and no "
            "histogram of the regression target (target.histogram) to compare the predictions with") in caplog.text
