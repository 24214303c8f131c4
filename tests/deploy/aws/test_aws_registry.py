"""The deployer's registry selection against moto: the highest approved version, every page, a missing group,
the registered baseline statistics."""

from __future__ import annotations

import boto3
import pytest
from deployer_account import BASELINE_URI, REGION, register, register_more
from moto_cloudformation import cloudformation_like_aws  # noqa: F401  (a fixture)

from deploy.aws.registry import baseline_statistics_uri, latest_approved_package
from pipelines.errors import UserError

pytestmark = [
    pytest.mark.usefixtures("cloudformation_like_aws"),
    # moto's CloudFormation skips some resource types of the real stacks (alarms, SNS subscriptions, API keys,
    # schedules...) with this warning; the template tests (test_aws_*templates.py) check those resources.
    pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto"),
]


# Registry selection -------------------------------------------------------------------------------------------


def test_registry_picks_the_highest_approved_version(aws):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    arns = register(sagemaker, "CloudVizIris", ["Approved", "Rejected", "Approved", "PendingManualApproval",
                                                 "Rejected"])
    register(sagemaker, "OtherGroup", ["Approved"] * 5)
    assert latest_approved_package(sagemaker, "CloudVizIris") == (arns[2], 3)
    # Approving an older version later does not make it the newest: the version number decides.
    sagemaker.update_model_package(ModelPackageArn=arns[3], ModelApprovalStatus="Approved")
    sagemaker.update_model_package(ModelPackageArn=arns[0], ModelApprovalStatus="Approved")
    assert latest_approved_package(sagemaker, "CloudVizIris") == (arns[3], 4)


def test_registry_reads_every_page(aws):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    statuses = ["Rejected"] * 130
    statuses[4] = statuses[117] = "Approved"  # the newest Approved version is beyond the first page of 100
    arns = register(sagemaker, "CloudVizIris", statuses)
    first_page = sagemaker.list_model_packages(ModelPackageGroupName="CloudVizIris")
    assert "NextToken" in first_page
    assert latest_approved_package(sagemaker, "CloudVizIris") == (arns[117], 118)


@pytest.mark.parametrize("statuses", [[], ["PendingManualApproval", "Rejected"]])
def test_registry_without_an_approved_version_names_the_group(aws, statuses):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    register(sagemaker, "CloudVizIris", statuses)
    with pytest.raises(UserError, match="no Approved model package in group 'CloudVizIris'"):
        latest_approved_package(sagemaker, "CloudVizIris")


def test_registry_reads_the_baseline_statistics_the_pipeline_registered(aws):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    (without,) = register(sagemaker, "CloudVizIris", ["Approved"])
    (with_baseline,) = register_more(sagemaker, ["Approved"], baseline=BASELINE_URI)
    assert baseline_statistics_uri(sagemaker, with_baseline) == BASELINE_URI
    assert baseline_statistics_uri(sagemaker, without) == ""


def test_registry_with_no_such_group_names_it(aws):
    with pytest.raises(UserError, match="'Missing'"):
        latest_approved_package(boto3.client("sagemaker", region_name=REGION), "Missing")


# Change sets ----------------------------------------------------------------------------------------------------
