"""Redeploy the dev stage when a newer model package is approved (boto3 + the standard library only).

Events come one at a time through SQS; a busy stack fails the message (it returns after the visibility timeout), a
contract change is refused on the alarm topic. Environment: ``ENDPOINT_STACK``, ``API_STACK``, ``MONITORING_STACK``,
``CLOUDFORMATION_ROLE_ARN``, ``MODEL_PACKAGE_GROUP``, ``TOPIC_ARN``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

logger = logging.getLogger()
logger.setLevel(logging.INFO)

APPROVED = "Approved"
BUSY_SUFFIX = "_IN_PROGRESS"
NO_UPDATES = "No updates are to be performed"
CAPABILITIES = ["CAPABILITY_NAMED_IAM"]
DEFAULT_TASK = "multiclass"  # a schema, or an api stack, from before tasks were recorded


class StackBusy(RuntimeError):
    """A stack of the stage is being created, updated or rolled back: the message is retried later."""


class Refused(RuntimeError):
    """The package cannot be deployed by a parameter update: said on the alarm topic, not retried."""


@dataclass(frozen=True)
class Package:
    """An approved model package the event announces."""

    arn: str
    version: int
    group: str


def approved_package(event: dict) -> tuple[Package | None, str]:
    """The approved package of ``event`` (with ""), or None with the reason it announces nothing to deploy."""
    detail = event.get("detail") or {}
    group = os.environ["MODEL_PACKAGE_GROUP"]
    if detail.get("ModelPackageGroupName") != group:
        return None, f"a package of group {detail.get('ModelPackageGroupName')!r}, this function serves {group}"
    if detail.get("ModelApprovalStatus") != APPROVED:
        return None, f"approval status {detail.get('ModelApprovalStatus')!r}, not {APPROVED}"
    package_arn, version = detail.get("ModelPackageArn"), detail.get("ModelPackageVersion")
    if not package_arn or version is None:
        raise ValueError(f"the event's detail has no ModelPackageArn/ModelPackageVersion: {sorted(detail)}")
    return Package(package_arn, int(version), group), ""


class Stage:
    """The stage's stacks as the function sees and changes them."""

    def __init__(self, clients: dict[str, Any]) -> None:
        self.clients = clients
        self.cloudformation = self.client("cloudformation")

    def client(self, name: str) -> Any:
        return self.clients.get(name) or boto3.client(name)

    def parameters(self, stack_name: str) -> dict[str, str]:
        """The stack's current parameters; raises StackBusy while an operation runs on it."""
        stack = self.cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        if stack["StackStatus"].endswith(BUSY_SUFFIX):
            raise StackBusy(f"stack {stack_name} is {stack['StackStatus']}")
        return {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}

    def update(self, stack_name: str, current: dict[str, str], changes: dict[str, str], role_arn: str = "") -> None:
        """Update the stack's parameters in ``changes`` (its template and other parameters kept)."""
        parameters = [{"ParameterKey": key, "UsePreviousValue": True} for key in current if key not in changes]
        parameters += [{"ParameterKey": key, "ParameterValue": value} for key, value in changes.items()]
        arguments = {"StackName": stack_name, "UsePreviousTemplate": True, "Parameters": parameters,
                     "Capabilities": CAPABILITIES, **({"RoleARN": role_arn} if role_arn else {})}
        try:
            self.cloudformation.update_stack(**arguments)
        except ClientError as error:
            message = str(error)
            if NO_UPDATES in message:
                return
            if error.response["Error"]["Code"] == "ValidationError" and BUSY_SUFFIX in message:
                raise StackBusy(f"stack {stack_name} became busy") from error  # another update won the race
            raise
        logger.info("updating %s: %s", stack_name, ", ".join(f"{key}={value}" for key, value in changes.items()))

    def package_data(self, package: Package) -> tuple[str, str, Contract]:
        """The package's baseline statistics URI, the URI of its registered data schema and that schema's
        contract."""
        described = self.client("sagemaker").describe_model_package(ModelPackageName=package.arn)
        metrics = described.get("ModelMetrics", {})
        baseline = metrics.get("ModelDataQuality", {}).get("Statistics", {}).get("S3Uri", "")
        schema_uri = (described.get("CustomerMetadataProperties") or {}).get("DataSchema", "")
        if not schema_uri.startswith("s3://"):
            raise Refused(f"version {package.version} was registered without a DataSchema (its features and "
                          "classes are unknown)")
        bucket, _, key = schema_uri.removeprefix("s3://").partition("/")
        schema = json.loads(self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
        return baseline, schema_uri, Contract(schema.get("task", DEFAULT_TASK),
                                              ",".join(map(str, schema["feature_columns"])),
                                              ",".join(map(str, schema["classes"])))


@dataclass(frozen=True)
class Contract:
    """What an API's consumers depend on: the task, the features and the classes (comma-separated, as the api
    stack's ``ModelTask``, ``FeatureNames`` and ``ClassNames``)."""

    task: str
    features: str
    classes: str

    def __str__(self) -> str:
        return f"a {self.task} model with features {self.features} and classes {self.classes or '(none)'}"


def bucket_of(uri: str) -> str:
    return uri.removeprefix("s3://").partition("/")[0]


def redeploy(package: Package, stage: Stage) -> dict:
    """Bring the stage to ``package``: what was updated, or why nothing was.

    The endpoint stack gets the package and its data schema (through the automation stack's CloudFormation role),
    the monitoring stack its baseline statistics. Refused: a package whose task, features or classes differ from
    the api stack's (API consumers depend on them), or that would add or remove the drift function or move its
    baseline to another bucket (a change of resources, not of parameters: ``cloudviz deploy aws`` deploys it).
    """
    names = {kind: os.environ[f"{kind.upper()}_STACK"] for kind in ("endpoint", "api", "monitoring")}
    endpoint = stage.parameters(names["endpoint"])
    monitoring = stage.parameters(names["monitoring"])
    deployed = int(endpoint.get("ModelVersion") or 0)
    if package.version < deployed:
        return {"updated": [], "reason": f"version {package.version} is older than the deployed version {deployed}"}
    baseline, schema_uri, contract = stage.package_data(package)
    api = stage.parameters(names["api"])
    served = Contract(api.get("ModelTask", DEFAULT_TASK), api["FeatureNames"], api["ClassNames"])
    if contract != served:
        raise Refused(f"version {package.version} is {contract}; the {names['api']} API serves {served}, which its "
                      "consumers depend on")
    current_baseline = monitoring.get("BaselineStatisticsUri", "")
    if bool(current_baseline) != bool(baseline) or (baseline and bucket_of(baseline) != bucket_of(current_baseline)):
        raise Refused(f"version {package.version} has baseline statistics {baseline or 'none'}, the drift function "
                      f"measures against {current_baseline or 'none'}: the drift function's resources would change")
    updated = []
    served = {"ModelPackageArn": package.arn, "ModelVersion": str(package.version)}
    if "DataSchemaUri" in endpoint:  # an endpoint stack deployed before the parameter existed has none
        served["DataSchemaUri"] = schema_uri
    if any(endpoint.get(key) != value for key, value in served.items()):
        stage.update(names["endpoint"], endpoint, served, os.environ["CLOUDFORMATION_ROLE_ARN"])
        updated.append(names["endpoint"])
    if baseline != current_baseline:
        stage.update(names["monitoring"], monitoring, {"BaselineStatisticsUri": baseline})
        updated.append(names["monitoring"])
    if not updated:
        return {"updated": [], "reason": f"version {package.version} is already deployed"}
    return {"updated": updated, "modelPackageArn": package.arn, "modelVersion": package.version}


def handle(event: dict, stage: Stage) -> dict:
    """One approval event: redeploy, log the outcome in one line, publish a refusal. Raises StackBusy."""
    package, reason = approved_package(event)
    if package is None:
        logger.info("ignored: %s", reason)
        return {"updated": [], "reason": reason}
    try:
        outcome = redeploy(package, stage)
    except StackBusy as busy:
        logger.warning("%s; version %d will be retried", busy, package.version)
        raise
    except Refused as refusal:
        message = f"{refusal}. Deploy it with `cloudviz deploy aws`."
        logger.error("refused: %s", message)
        stage.client("sns").publish(TopicArn=os.environ["TOPIC_ARN"], Message=message,
                                    Subject=f"CloudViz: version {package.version} was not redeployed")
        return {"updated": [], "refused": message}
    if not outcome["updated"]:
        logger.info("nothing to do: %s", outcome["reason"])
    return outcome


def handler(event: dict, context: Any, clients: dict[str, Any] | None = None) -> dict:
    """The SQS batch (one message, the EventBridge event as its body): a message whose stack is busy is reported
    as failed (``ReportBatchItemFailures``), so SQS delivers it again after the visibility timeout."""
    stage = Stage(clients or {})
    failures = []
    for record in event.get("Records", []):
        try:
            handle(json.loads(record["body"]), stage)
        except StackBusy:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
