"""Small builders shared by the stack templates: intrinsic functions, ARNs, IAM roles and the template frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deploy.aws.names import ResourceNames

TEMPLATE_VERSION = "2010-09-09"
LAMBDA_RUNTIME = "python3.12"
LAMBDA_ARCHITECTURE = "arm64"  # pure-Python functions: Graviton is cheaper and runs them unchanged
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                      3288, 3653)


def ref(name: str) -> dict:
    return {"Ref": name}


def get_att(resource: str, attribute: str) -> dict:
    return {"Fn::GetAtt": [resource, attribute]}


def sub(text: str) -> dict:
    return {"Fn::Sub": text}


def arn(service: str, resource: str, region: bool = True, account: bool = True) -> dict:
    """``arn:<partition>:<service>:<region>:<account>:<resource>`` with the stack's pseudo-parameters."""
    return sub(
        f"arn:${{AWS::Partition}}:{service}:{'${AWS::Region}' if region else ''}:"
        f"{'${AWS::AccountId}' if account else ''}:{resource}"
    )


def log_group_arn(log_group: str) -> dict:
    """The ARN of a log group and its streams (what logs:CreateLogStream/PutLogEvents are granted on)."""
    return arn("logs", f"log-group:{log_group}:*")


def statement(actions: list[str], resources: list[Any], sid: str | None = None) -> dict:
    document: dict[str, Any] = {"Effect": "Allow", "Action": actions, "Resource": resources}
    if sid is not None:
        document["Sid"] = sid
    return document


def write_logs(log_group: str) -> dict:
    """A Lambda function writing to its own log group, which the stack creates (so no logs:CreateLogGroup)."""
    return statement(["logs:CreateLogStream", "logs:PutLogEvents"], [log_group_arn(log_group)], "OwnLogGroup")


def function_runtime(log_group: str) -> list[dict]:
    """What every function's role grants its runtime rather than its code: writing its own log group, and sending
    its X-Ray trace segments (``TracingConfig: Active``; X-Ray's write actions have no resource type, so "*")."""
    return [write_logs(log_group),
            statement(["xray:PutTraceSegments", "xray:PutTelemetryRecords"], ["*"], "Tracing")]


def role(name: str, service: str, policy_name: str, statements: list[dict], description: str) -> dict:
    """An IAM role assumable by ``service`` (e.g. ``lambda.amazonaws.com``) with one inline policy."""
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": name,
            "Description": description,
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"},
                ],
            },
            "Policies": [
                {"PolicyName": policy_name, "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}},
            ],
        },
    }


@dataclass(frozen=True)
class LambdaSpec:
    """One function of the project's zips: its name, handler, role, log group (logical ids) and sizing."""

    name: str
    handler: str
    description: str
    role_id: str
    log_group_id: str
    environment: dict
    timeout_seconds: int
    memory_mb: int
    reserved_concurrency: int = 0  # 0: none (draws on the account's unreserved pool)


def lambda_function(spec: LambdaSpec) -> dict:
    """An ``AWS::Lambda::Function`` from the zip at ``CodeBucket``/``CodeKey``, logging JSON records (with the
    request id) to its own log group; the EMF lines the handlers print stay as printed, as CloudWatch needs.
    Traced by X-Ray (active tracing: Lambda records each sampled invocation's segments, joined to the API stage's
    trace; the role allows it by :func:`function_runtime`)."""
    function = {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "FunctionName": spec.name,
            "Description": spec.description,
            "Runtime": LAMBDA_RUNTIME,
            "Architectures": [LAMBDA_ARCHITECTURE],
            "Handler": spec.handler,
            "Code": {"S3Bucket": ref("CodeBucket"), "S3Key": ref("CodeKey")},
            "Role": get_att(spec.role_id, "Arn"),
            "Timeout": spec.timeout_seconds,
            "MemorySize": spec.memory_mb,
            "Environment": {"Variables": spec.environment},
            "LoggingConfig": {"LogGroup": ref(spec.log_group_id), "LogFormat": "JSON",
                              "ApplicationLogLevel": "INFO", "SystemLogLevel": "WARN"},
            "TracingConfig": {"Mode": "Active"},
        },
    }
    if spec.reserved_concurrency:
        function["Properties"]["ReservedConcurrentExecutions"] = spec.reserved_concurrency
    return function


def checkov_skip(resource: dict, *skips: tuple[str, str]) -> dict:
    """``resource`` with checkov checks skipped, each ``(check id, why)``, in checkov's CloudFormation inline form
    (``Metadata.checkov.skip``), added to any skips and metadata it has. tests/deploy/aws/test_checkov.py fails on a
    skip without a reason and on a skip of a check that passes."""
    metadata = dict(resource.get("Metadata", {}))
    checkov = dict(metadata.get("checkov", {}))
    checkov["skip"] = [*checkov.get("skip", []), *({"id": check, "comment": why} for check, why in skips)]
    return {**resource, "Metadata": {**metadata, "checkov": checkov}}


FUNCTION_LOGS_KEY = ("encrypted at rest by CloudWatch Logs' own keys, as every log group; the functions log no "
                     "secret, so a customer managed key (and its key policy for the logs service) buys nothing")


def log_group(name: str, retention: Any, why_no_customer_key: str = FUNCTION_LOGS_KEY) -> dict:
    """A log group deleted with its stack, keeping ``retention`` days, with the reason it needs no customer managed
    KMS key (checkov's CKV_AWS_158)."""
    return checkov_skip(
        {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {"LogGroupName": name, "RetentionInDays": retention},
        },
        ("CKV_AWS_158", why_no_customer_key),
    )


def retention_parameter(default: int = 30) -> dict:
    return {
        "Type": "Number",
        "Default": default,
        "AllowedValues": list(LOG_RETENTION_DAYS),
        "Description": "days the functions' log groups keep their events",
    }


def stack_tags(names: ResourceNames) -> dict[str, str]:
    """The tags every stack (and so every taggable resource in it) carries."""
    return {"project": "cloudviz", "stage": names.stage}


def template(
    description: str, parameters: dict, resources: dict, outputs: dict, conditions: dict | None = None
) -> dict:
    document: dict[str, Any] = {
        "AWSTemplateFormatVersion": TEMPLATE_VERSION,
        "Description": description,
        "Parameters": parameters,
    }
    if conditions:
        document["Conditions"] = conditions
    document["Resources"] = resources
    document["Outputs"] = outputs
    return document


def output(value: Any, description: str) -> dict:
    return {"Description": description, "Value": value}
