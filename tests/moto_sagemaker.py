"""Make moto 5.2's UpdateModelPackage behave as SageMaker's, where the smoke-test record depends on it; and
approve a package as SageMaker does, with its state-change event.

moto's ``update_model_package`` assigns every field of the request, given or not (verified against moto 5.2.5):
an update that only records ``CustomerMetadataProperties`` sets the package's approval status and approval
description to None, and an update that only approves replaces the package's metadata properties with None
(losing the ``DataSchema`` the pipeline registered). SageMaker changes only what the request names: the
properties given are added or replaced, ``CustomerMetadataPropertiesToRemove`` removes keys (the reason that
field exists), and the approval status and description are kept when not given. The fixture patches moto's
backend to do the same; our code is not touched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.sagemaker.models import SageMakerModelBackend


def patch_update_model_package(monkeypatch: pytest.MonkeyPatch) -> None:
    original = SageMakerModelBackend.update_model_package

    def update_named_fields(self: Any, *, model_package_arn: str, model_approval_status: str | None,
                            approval_description: str | None, customer_metadata_properties: dict | None,
                            customer_metadata_properties_to_remove: list[str], **others: Any) -> str:
        name = self.model_package_name_mapping.get(model_package_arn, model_package_arn)
        package = self.model_packages.get(name)
        if package is not None:
            model_approval_status = model_approval_status or package.model_approval_status
            approval_description = approval_description or package.approval_description
            customer_metadata_properties = {**(package.customer_metadata_properties or {}),
                                            **(customer_metadata_properties or {})}
        return original(self, model_package_arn=model_package_arn, model_approval_status=model_approval_status,
                        approval_description=approval_description,
                        customer_metadata_properties=customer_metadata_properties,
                        customer_metadata_properties_to_remove=customer_metadata_properties_to_remove, **others)

    monkeypatch.setattr(SageMakerModelBackend, "update_model_package", update_named_fields)


@pytest.fixture
def model_packages_like_sagemaker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    patch_update_model_package(monkeypatch)
    yield


def approve_and_announce(arn: str) -> None:
    """Approve the version, and send the event SageMaker then sends to EventBridge (moto sends none), whose rules
    route it."""
    sagemaker = boto3.client("sagemaker")
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    detail = {key: package[key] for key in ("ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn",
                                            "ModelApprovalStatus")}
    answer = boto3.client("events").put_events(Entries=[{
        "Source": "aws.sagemaker", "DetailType": "SageMaker Model Package State Change", "Resources": [arn],
        "Detail": json.dumps(detail)}])
    assert answer["FailedEntryCount"] == 0
