"""The automation stack: scheduled retraining (an EventBridge Scheduler schedule starting the SageMaker
pipeline) and approval-triggered redeployment (an EventBridge rule on the model registry's approvals invoking
the redeploy function, which updates the endpoint stack)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deploy.aws.lambda_zip import REDEPLOY_HANDLER
from deploy.aws.names import ResourceNames
from deploy.aws.templates.common import (
    LambdaSpec,
    arn,
    get_att,
    lambda_function,
    log_group,
    output,
    ref,
    retention_parameter,
    role,
    statement,
    template,
    write_logs,
)
from deploy.aws.templates.endpoint import role_arn, topic_arn
from pipelines.definition import APPROVAL_STATUSES

if TYPE_CHECKING:
    from deploy.aws.stacks import AwsSettings

APPROVED = "Approved"
MODEL_PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
REDEPLOY_TIMEOUT_SECONDS = 60
REDEPLOY_RETRIES = 2  # Lambda's asynchronous retries (about 1 and 2 minutes later) when the stack is busy
MAX_EVENT_AGE_SECONDS = 3600
# An EventBridge Scheduler expression: recurring (cron, rate) or one-time (at).
SCHEDULE_PATTERN = r"(cron|rate|at)\(.+\)"


def pipeline_arn(names: ResourceNames) -> dict:
    """SageMaker writes resource names in lower case in ARNs."""
    return arn("sagemaker", f"pipeline/{names.pipeline_name.lower()}")


def endpoint_stack_arn(names: ResourceNames) -> dict:
    return arn("cloudformation", f"stack/{names.endpoint_stack}/*")


def automation_template(names: ResourceNames, settings: AwsSettings) -> dict:
    """The automation stack's template."""
    parameters = {
        "ScheduleExpression": {"Type": "String", "Default": settings.schedule_expression,
                               "AllowedPattern": SCHEDULE_PATTERN,
                               "Description": "when the pipeline retrains (EventBridge Scheduler expression, UTC)"},
        "ScheduleState": {"Type": "String", "Default": "DISABLED", "AllowedValues": ["ENABLED", "DISABLED"],
                          "Description": "scheduled retraining is off until turned on"},
        "RetrainApprovalStatus": {"Type": "String", "Default": "PendingManualApproval",
                                  "AllowedValues": list(APPROVAL_STATUSES),
                                  "Description": "approval status a scheduled run registers its model with"},
        "CodeBucket": {"Type": "String", "Description": "S3 bucket holding the redeploy function's zip"},
        "CodeKey": {"Type": "String", "Description": "S3 key of the redeploy function's zip (redeploy-*.zip)"},
        "LogRetentionDays": retention_parameter(),
    }
    resources: dict[str, dict] = {
        "SchedulerRole": role(
            names.scheduler_role_name, "scheduler.amazonaws.com", "start-pipeline",
            [statement(["sagemaker:StartPipelineExecution"], [pipeline_arn(names)], "StartThePipeline")],
            "EventBridge Scheduler: starts the CloudViz pipeline",
        ),
        "RetrainSchedule": {
            "Type": "AWS::Scheduler::Schedule",
            "Properties": {
                "Name": names.schedule_name,
                "Description": f"scheduled retraining: starts {names.pipeline_name}",
                "ScheduleExpression": ref("ScheduleExpression"),
                "ScheduleExpressionTimezone": "UTC",
                "State": ref("ScheduleState"),
                "FlexibleTimeWindow": {"Mode": "OFF"},
                "Target": {
                    "Arn": pipeline_arn(names),
                    "RoleArn": get_att("SchedulerRole", "Arn"),
                    "SageMakerPipelineParameters": {"PipelineParameterList": [
                        {"Name": "ModelPackageGroupName", "Value": names.model_package_group},
                        {"Name": "ModelApprovalStatus", "Value": ref("RetrainApprovalStatus")},
                    ]},
                    "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": MAX_EVENT_AGE_SECONDS},
                },
            },
        },
        "RedeployLogGroup": log_group(names.redeploy_log_group, ref("LogRetentionDays")),
        "RedeployRole": role(
            names.redeploy_role_name, "lambda.amazonaws.com", "update-endpoint-stack",
            [
                statement(["cloudformation:DescribeStacks", "cloudformation:UpdateStack"],
                          [endpoint_stack_arn(names)], "UpdateTheEndpointStack"),
                {**statement(["iam:PassRole"], [role_arn(names.endpoint_deploy_role_name)], "PassItsServiceRole"),
                 "Condition": {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}},
                statement(["sns:Publish"], [topic_arn(names)], "ReportFailures"),
                write_logs(names.redeploy_log_group),
            ],
            "Redeploys the endpoint stack when a model package is approved",
        ),
        "RedeployFunction": lambda_function(LambdaSpec(
            names.redeploy_function, REDEPLOY_HANDLER, "updates the endpoint stack to a newly approved model package",
            "RedeployRole", "RedeployLogGroup",
            {
                "ENDPOINT_STACK": names.endpoint_stack,
                "CLOUDFORMATION_ROLE_ARN": role_arn(names.endpoint_deploy_role_name),
                "MODEL_PACKAGE_GROUP": names.model_package_group,
            },
            REDEPLOY_TIMEOUT_SECONDS, 128,
        )),
        "RedeployInvokeConfig": {
            # A redeploy that still fails after the retries is published to the alarm topic (monitoring stack).
            "Type": "AWS::Lambda::EventInvokeConfig",
            "Properties": {
                "FunctionName": ref("RedeployFunction"),
                "Qualifier": "$LATEST",
                "MaximumRetryAttempts": REDEPLOY_RETRIES,
                "MaximumEventAgeInSeconds": MAX_EVENT_AGE_SECONDS,
                "DestinationConfig": {"OnFailure": {"Destination": topic_arn(names)}},
            },
        },
        "ApprovalRule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Name": names.approval_rule_name,
                "Description": f"a model package of {names.model_package_group} was approved: redeploy",
                "State": "ENABLED",
                "EventPattern": {
                    "source": ["aws.sagemaker"],
                    "detail-type": [MODEL_PACKAGE_STATE_CHANGE],
                    "detail": {"ModelPackageGroupName": [names.model_package_group],
                               "ModelApprovalStatus": [APPROVED]},
                },
                "Targets": [{"Id": "redeploy", "Arn": get_att("RedeployFunction", "Arn")}],
            },
        },
        "ApprovalRulePermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": ref("RedeployFunction"),
                "Principal": "events.amazonaws.com",
                "SourceArn": get_att("ApprovalRule", "Arn"),
            },
        },
    }
    outputs = {
        "ScheduleName": output(ref("RetrainSchedule"), "the retraining schedule (disabled by default)"),
        "ApprovalRuleName": output(ref("ApprovalRule"), "the rule redeploying on approval"),
        "RedeployFunctionName": output(ref("RedeployFunction"), "the redeploy function"),
    }
    return template(f"CloudViz {names.stage}: scheduled retraining and approval-triggered redeployment",
                    parameters, resources, outputs)
