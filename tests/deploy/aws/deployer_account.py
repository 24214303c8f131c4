"""What the deployer's tests share with the redeploy's (test_aws_redeploy.py): moto's account, its registry
versions, and the `cloudviz` command's JSON or error line."""

from __future__ import annotations

import json

from cloudviz.cli import main
from deploy.aws.names import ResourceNames

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "cloudviz-artifacts-test"
BASELINE_URI = f"s3://{BUCKET}/cloudviz/executions/abc123/Preprocess/baseline/statistics.json"
NAMES = ResourceNames("dev")


def register(sagemaker, group: str, statuses: list[str]) -> list[str]:
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    arns = []
    for status in statuses:
        arns.append(sagemaker.create_model_package(
            ModelPackageGroupName=group, ModelApprovalStatus=status,
            InferenceSpecification={"Containers": [{"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/xgb:1"}],
                                    "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        )["ModelPackageArn"])
    return arns


def cli_json(capsys, *argv: str) -> dict:
    code = main([*argv, "--region", REGION, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def cli_error(capsys, *argv: str) -> str:
    assert main([*argv, "--region", REGION]) == 2
    return capsys.readouterr().err


def register_more(sagemaker, statuses: list[str], baseline: str = "") -> list[str]:
    """More versions of the group; with ``baseline``, registered as the pipeline does: the training data's
    statistics as the package's ModelDataQuality statistics."""
    metrics = {"ModelMetrics": {"ModelDataQuality": {"Statistics": {"ContentType": "application/json",
                                                                    "S3Uri": baseline}}}} if baseline else {}
    return [sagemaker.create_model_package(
        ModelPackageGroupName=NAMES.model_package_group, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/xgb:1"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        **metrics,
    )["ModelPackageArn"] for status in statuses]
