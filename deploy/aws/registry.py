"""Which model package the endpoint serves: the newest Approved version of a SageMaker model package group."""

from __future__ import annotations

from pipelines.errors import UserError

APPROVED = "Approved"


def latest_approved_package(sagemaker_client: object, group: str) -> tuple[str, int]:
    """The ARN and version of the highest-numbered Approved package of ``group``.

    Chosen by ``ModelPackageVersion`` over every page: creation time is not the version order (a version
    approved late, or re-approved after a rejection, keeps its number), and one page may not hold them all.
    """
    pages = sagemaker_client.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group, ModelApprovalStatus=APPROVED
    )
    newest = max(
        ((summary["ModelPackageVersion"], summary["ModelPackageArn"])
         for page in pages for summary in page["ModelPackageSummaryList"]
         if summary.get("ModelApprovalStatus", APPROVED) == APPROVED),
        default=None,
    )
    if newest is None:
        raise UserError(
            f"no Approved model package in group {group!r}: run the pipeline (`cloudviz pipeline start --target aws`) "
            "and approve a version (aws sagemaker update-model-package --model-package-arn ARN "
            "--model-approval-status Approved)"
        )
    version, arn = newest
    return arn, int(version)


def baseline_statistics_uri(sagemaker_client: object, package_arn: str) -> str:
    """The S3 URI of the training data's baseline statistics the pipeline registered with the package (its
    ModelDataQuality statistics), which the drift function measures against; "" when it has none (a package
    registered before the pipeline attached them, or by hand)."""
    package = sagemaker_client.describe_model_package(ModelPackageName=package_arn)
    metrics = package.get("ModelMetrics", {})
    return metrics.get("ModelDataQuality", {}).get("Statistics", {}).get("S3Uri", "")
