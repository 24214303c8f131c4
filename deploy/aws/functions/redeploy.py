"""Redeploy the endpoint when a newer model package is approved (boto3 + the standard library only).

EventBridge invokes ``handler`` with a "SageMaker Model Package State Change" event whose detail says the
group, the package ARN, its version and its approval status (the rule already filters to the stage's group
and ``Approved``). The function updates the endpoint stack with its previous template and the new
``ModelPackageArn``/``ModelVersion`` (every other parameter kept), through the stack's CloudFormation service
role, so the function itself needs no SageMaker or IAM rights beyond passing that role.

Configuration (environment): ``ENDPOINT_STACK`` (stack name), ``CLOUDFORMATION_ROLE_ARN`` (the service role),
``MODEL_PACKAGE_GROUP`` (the group it serves).

An approval of a version no newer than the one deployed changes nothing (the deployer's rule too: the newest
Approved version is served; roll back with ``cloudviz deploy aws``). While the stack is being updated the
function raises, and Lambda's asynchronous retries try again later.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import boto3
from botocore.exceptions import ClientError

logger = logging.getLogger()
logger.setLevel(logging.INFO)

MODEL_PARAMETERS = ("ModelPackageArn", "ModelVersion")
NO_UPDATES = "No updates are to be performed"


class StackBusy(RuntimeError):
    """The endpoint stack is being created, updated or rolled back: retry later."""


def approved_package(event: dict) -> tuple[str, int, str] | None:
    """(ARN, version, group) of the approved package the event announces; None when it announces anything else."""
    detail = event.get("detail") or {}
    if detail.get("ModelApprovalStatus") != "Approved":
        return None
    package_arn = detail.get("ModelPackageArn")
    version = detail.get("ModelPackageVersion")
    if not package_arn or version is None:
        raise ValueError(f"the event's detail has no ModelPackageArn/ModelPackageVersion: {sorted(detail)}")
    return package_arn, int(version), detail.get("ModelPackageGroupName", "")


def handler(event: dict, context: Any, cloudformation: Any = None) -> dict:
    stack_name = os.environ["ENDPOINT_STACK"]
    role_arn = os.environ["CLOUDFORMATION_ROLE_ARN"]
    group = os.environ["MODEL_PACKAGE_GROUP"]
    package = approved_package(event)
    detail = event.get("detail") or {}
    if detail.get("ModelPackageGroupName") != group:
        reason = f"a package of group {detail.get('ModelPackageGroupName')!r}, this function serves {group}"
    elif package is None:
        reason = f"approval status {detail.get('ModelApprovalStatus')!r}, not Approved"
    else:
        reason = ""
    if reason:
        logger.info("ignored: %s", reason)
        return {"updated": False, "reason": reason}
    package_arn, version, _ = package
    client = cloudformation if cloudformation is not None else boto3.client("cloudformation")
    stack = client.describe_stacks(StackName=stack_name)["Stacks"][0]
    if stack["StackStatus"].endswith("_IN_PROGRESS"):
        raise StackBusy(f"stack {stack_name} is {stack['StackStatus']}; version {version} will be retried")
    current = {parameter["ParameterKey"]: parameter.get("ParameterValue") for parameter in stack.get("Parameters", [])}
    deployed = int(current.get("ModelVersion") or 0)
    if version <= deployed:
        reason = f"version {version} is not newer than the deployed version {deployed}"
        logger.info("ignored: %s", reason)
        return {"updated": False, "reason": reason}
    parameters = [
        {"ParameterKey": key, "UsePreviousValue": True} for key in current if key not in MODEL_PARAMETERS
    ] + [
        {"ParameterKey": "ModelPackageArn", "ParameterValue": package_arn},
        {"ParameterKey": "ModelVersion", "ParameterValue": str(version)},
    ]
    try:
        client.update_stack(
            StackName=stack_name,
            UsePreviousTemplate=True,
            Parameters=parameters,
            Capabilities=["CAPABILITY_NAMED_IAM"],
            RoleARN=role_arn,
        )
    except ClientError as error:
        if NO_UPDATES in str(error):
            return {"updated": False, "reason": "the stack already serves this package"}
        raise
    logger.info("updating %s to model package %s (version %d)", stack_name, package_arn, version)
    return {"updated": True, "stack": stack_name, "modelPackageArn": package_arn, "modelVersion": version}
