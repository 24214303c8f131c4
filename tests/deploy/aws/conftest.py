"""The fixture of the AWS deployment tests: moto's in-process account with an artifact bucket."""

from __future__ import annotations

import boto3
import pytest
from deployer_account import BUCKET, REGION
from moto import mock_aws
from moto_aws import urllib_through_requests
from moto_sagemaker import patch_update_model_package

APIGW_LOGGING_ROLE = "arn:aws:iam::123456789012:role/apigateway-cloudwatch-logs"


@pytest.fixture
def aws(monkeypatch):
    """moto's in-process AWS with dummy credentials and an artifact bucket: nothing leaves the process (dev's
    smoke test, which `deploy aws` runs, calls the API with urllib: routed to moto too). UpdateModelPackage, which
    records the smoke test, changes only what it names, as SageMaker's does. API Gateway's account setting names
    a CloudWatch Logs role, as in any account where an API logged before (the stage's access log needs one)."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    urllib_through_requests(monkeypatch)
    patch_update_model_package(monkeypatch)
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        boto3.client("apigateway", region_name=REGION).update_account(patchOperations=[
            {"op": "replace", "path": "/cloudwatchRoleArn", "value": APIGW_LOGGING_ROLE}])
        yield
