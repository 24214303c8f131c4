"""The drift function: the AWS counterpart of the local drift monitor (``deploy.monitoring.drift``), as EMF metrics.

Environment: ``ENDPOINT_NAME``, ``PREDICTION_STORE`` (``dynamodb:TABLE``), ``BASELINE_STATISTICS_URI`` (``s3://...``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
from botocore.exceptions import ClientError

from serving_lambdas.config import drift_settings
from serving_lambdas.drift import DEFAULT_MIN_ROWS, DEFAULT_WINDOW, Baseline, BaselineError, DriftReport, measure
from serving_lambdas.live_accuracy import LiveAccuracy, live_accuracy
from serving_lambdas.metrics import emit
from serving_lambdas.store import open_store

PSI_UNIT = "None"  # PSI has no unit

logger = logging.getLogger(__name__)


def handler(event: dict, context: Any) -> dict:
    settings = drift_settings()
    baseline = read_baseline(settings.baseline_uri)
    records = open_store(settings.store).newest(DEFAULT_WINDOW)
    report = measure(baseline, records, DEFAULT_MIN_ROWS)
    publish_live_accuracy(live_accuracy(records), settings.endpoint_name)
    published = report.rows >= DEFAULT_MIN_ROWS
    if published:
        publish(report, settings.endpoint_name)
        prediction = "not measured" if report.prediction is None else f"{report.prediction:.4f}"
        logger.info("drift of the newest %d predictions: predicted %s %s, features %s", report.rows,
                    baseline.predicts, prediction, json.dumps(report.features))
        if baseline.prediction_unavailable_because:
            logger.info("prediction drift not measured: %s", baseline.prediction_unavailable_because)
    else:
        logger.info("drift not published: %d stored prediction(s), fewer than the %d it needs", report.rows,
                    DEFAULT_MIN_ROWS)
    return {**report.to_dict(), "published": published}


def read_baseline(uri: str) -> Baseline:
    """The statistics document at ``s3://BUCKET/KEY``; one that cannot be read or parsed is a BaselineError."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        details = error.response["Error"]
        raise BaselineError(f"{uri}: cannot read the baseline statistics ({details.get('Code')}: "
                            f"{details.get('Message')})") from None
    try:
        statistics = json.loads(body)
    except ValueError as error:
        raise BaselineError(f"{uri}: the baseline statistics are not JSON ({error})") from None
    return Baseline.from_statistics(statistics, uri)


def publish_live_accuracy(result: LiveAccuracy, endpoint: str) -> None:
    """The live accuracy (once enough predictions are labelled) and the labelled count by endpoint, each true
    class's recall by endpoint and label; nothing while no prediction is labelled (or for a regression model)."""
    if not result.labelled:
        return
    values = {"LabelledPredictions": (float(result.labelled), "Count")}
    if result.accuracy is not None:
        values["LiveAccuracy"] = (result.accuracy, "None")
    emit(values, Endpoint=endpoint)
    for label, recall in result.recall.items():
        emit({"LiveRecall": (recall, "None")}, Endpoint=endpoint, Label=label)
    logger.info("live accuracy of the newest %d labelled predictions: %s", result.labelled,
                "not measured (too few)" if result.accuracy is None else f"{result.accuracy:.4f}")


def publish(report: DriftReport, endpoint: str) -> None:
    """The report as EMF documents: the largest feature PSI and the prediction PSI (when measured) by endpoint,
    each feature's PSI by endpoint and feature."""
    values = {}
    if report.prediction is not None:
        values["PredictionClassDrift"] = (report.prediction, PSI_UNIT)
    if report.features:
        values["FeatureDrift"] = (max(report.features.values()), PSI_UNIT)
    if values:
        emit(values, Endpoint=endpoint)
    for name, value in report.features.items():
        emit({"FeatureDrift": (value, PSI_UNIT)}, Endpoint=endpoint, Feature=name)
