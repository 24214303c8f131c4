"""Model versions registered on moto as the pipeline registers them (data schema and baseline statistics in
S3), for the tests of the automation stack and of the smoke test."""

from __future__ import annotations

import json

import boto3
from deployer_account import BUCKET, NAMES

from deploy.aws.functions.smoke_test import IRIS_EXAMPLE

IRIS_FEATURES = list(IRIS_EXAMPLE)
IRIS_CLASSES = ["setosa", "virginica", "versicolor"]
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"


def put_json(key: str, document: dict) -> str:
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=json.dumps(document).encode())
    return f"s3://{BUCKET}/{key}"


def register(status: str, features: list[str] = IRIS_FEATURES, classes: list[str] = IRIS_CLASSES,
             run: str = "run1", task: str | None = None) -> tuple[str, str]:
    """A version registered as the pipeline registers it: its data schema and baseline statistics in S3. No
    ``task``: a schema as written before tasks were recorded (a multiclass model's)."""
    schema = put_json(f"cloudviz/executions/{run}/Preprocess/schema/schema.json",
                      {"feature_columns": features, "classes": classes, **({"task": task} if task else {})})
    statistics = {"features": {name: {"quantiles": {"p50": 1.5 + index}} for index, name in enumerate(features)}}
    baseline = put_json(f"cloudviz/executions/{run}/Preprocess/baseline/statistics.json", statistics)
    sagemaker = boto3.client("sagemaker")
    groups = sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"]
    if not groups:
        sagemaker.create_model_package_group(ModelPackageGroupName=NAMES.model_package_group)
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=NAMES.model_package_group, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": IMAGE}], "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]},
        ModelMetrics={"ModelDataQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": baseline}}},
        CustomerMetadataProperties={"DataSchema": schema},
    )["ModelPackageArn"]
    return arn, baseline
