"""The moto account the SageMaker pipeline tests upsert into and start in."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from sagemaker_definition import BUCKET, REGION, ROLE


@pytest.fixture
def account(home, monkeypatch):
    """A moto account with the artifact bucket, the CLI's AWS options in the environment; its SageMaker client."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", REGION), ("CLOUDVIZ_SAGEMAKER_ROLE_ARN", ROLE),
                        ("CLOUDVIZ_BUCKET", BUCKET)):
        monkeypatch.setenv(name, value)
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield boto3.client("sagemaker", region_name=REGION)
