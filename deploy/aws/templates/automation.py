"""The automation stack: scheduled retraining, approval-triggered redeployment and the smoke test.

Every stage gets the retraining schedule. ``dev`` also gets the approval rule -> SQS queue -> redeploy function
(``prod`` gets a package by promotion, as in the official SageMaker MLOps template), the endpoint stack's
CloudFormation service role (here, so no role can rewrite its own policy) and the smoke-test function.
"""

from __future__ import annotations

import math

from deploy.aws.functions.smoke_test import longest_run_seconds
from deploy.aws.lambda_zip import REDEPLOY_HANDLER, SMOKE_TEST_HANDLER
from deploy.aws.names import ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.templates.common import (
    LambdaSpec,
    arn,
    checkov_skip,
    get_att,
    lambda_function,
    log_group,
    output,
    ref,
    retention_parameter,
    role,
    statement,
    sub,
    template,
    write_logs,
)
from deploy.aws.templates.endpoint import MAX_DEPLOYMENT_SECONDS, endpoint_rules, role_arn, topic_arn
from pipelines.registry import APPROVAL_STATUSES
from serving_lambdas.served_version import MAX_TTL_SECONDS

APPROVED = "Approved"
MODEL_PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
STACK_STATUS_CHANGE = "CloudFormation Stack Status Change"
FINISHED_STATUSES = ["CREATE_COMPLETE", "UPDATE_COMPLETE"]
APPROVAL_STAGES = ("dev",)  # where an approval deploys; the other stages get a package by promotion
SMOKE_TESTED_STAGES = ("dev",)  # where each deployment is smoke-tested (its record gates the promotion)
REDEPLOY_TIMEOUT_SECONDS = 60
# The wait for the API's version cache (at most the api stack's longest ModelVersionTtlSeconds), the API calls
# and the AWS calls around them.
SMOKE_TEST_TIMEOUT_SECONDS = math.ceil(longest_run_seconds(MAX_TTL_SECONDS))
MAX_EVENT_AGE_SECONDS = 3600
# A busy stack's message comes back every VISIBILITY_TIMEOUT_SECONDS (AWS asks for at least six times the
# function's timeout on a queue a function reads). It is retried for RETRY_WINDOW_SECONDS: a prod update is
# instance provisioning, the blue/green bake (10 min) and the old fleet's termination wait (5 min), bounded by the
# deployment's own maximum (MAX_DEPLOYMENT_SECONDS, 1 h), and it may be followed by a rollback of as long; a
# `cloudviz deploy aws` of the four stacks may come on top. Six times that maximum covers all of them.
VISIBILITY_TIMEOUT_SECONDS = 600
RETRY_WINDOW_SECONDS = 6 * MAX_DEPLOYMENT_SECONDS
MAX_RECEIVE_COUNT = RETRY_WINDOW_SECONDS // VISIBILITY_TIMEOUT_SECONDS
QUEUE_RETENTION_SECONDS = 86_400  # a day: longer than the retry window
DEAD_LETTER_RETENTION_SECONDS = 1_209_600  # 14 days (SQS's maximum), to investigate and redrive
REDEPLOY_CONCURRENCY = 2  # the event source mapping's minimum; a second message meets a busy stack and waits
# An EventBridge Scheduler expression: recurring (cron, rate) or one-time (at).
SCHEDULE_PATTERN = r"(cron|rate|at)\(.+\)"
MANAGED_ROLE_ACTIONS = [
    "iam:GetRole", "iam:CreateRole", "iam:DeleteRole", "iam:UpdateRole", "iam:UpdateRoleDescription",
    "iam:UpdateAssumeRolePolicy", "iam:GetRolePolicy", "iam:PutRolePolicy", "iam:DeleteRolePolicy",
    "iam:ListRolePolicies", "iam:ListAttachedRolePolicies", "iam:TagRole", "iam:UntagRole",
]


def pipeline_arn(names: ResourceNames) -> dict:
    """SageMaker writes resource names in lower case in ARNs."""
    return arn("sagemaker", f"pipeline/{names.pipeline_name.lower()}")


def stack_arn(stack_name: str) -> dict:
    return arn("cloudformation", f"stack/{stack_name}/*")


def packages_arn(names: ResourceNames) -> dict:
    """Every version of the stage's model package group (SageMaker writes the group in lower case)."""
    return arn("sagemaker", f"model-package/{names.model_package_group.lower()}/*")


def artifact_objects(suffix: str) -> dict:
    """Objects of the artifact bucket whose key ends in ``suffix`` (the pipeline's schema or statistics)."""
    return sub(f"arn:${{AWS::Partition}}:s3:::${{ArtifactBucket}}/*/{suffix}")


# The queues are encrypted at rest with SSE-SQS (SQS-owned keys), not KMS: EventBridge cannot send to a queue under
# the AWS managed key aws/sqs (its key policy cannot admit events.amazonaws.com), and a customer managed key costs
# a key and its policy for messages that hold no secret (an approval event: package ARN, version, status).
SQS_KMS_SKIP = ("CKV_AWS_27", "encrypted with SSE-SQS (SqsManagedSseEnabled): EventBridge cannot send to a queue under "
                              "the AWS managed aws/sqs KMS key, and approval events hold no secret")
LAMBDA_SKIPS = (
    ("CKV_AWS_116", "invoked by EventBridge/SQS, whose failures go to the dead-letter queue or the alarm topic"),
    ("CKV_AWS_117", "calls only AWS APIs and the stage's public API: no VPC resource to reach"),
    ("CKV_AWS_173", "its environment holds stack names and ARNs, no secret: the default AWS-managed key"),
)


def endpoint_deploy_role(names: ResourceNames) -> dict:
    """The endpoint stack's CloudFormation service role: every resource of that stack, and never itself (once a
    stack was updated with a role, CloudFormation uses it for every later operation on that stack)."""
    alarms = [arn("cloudwatch", f"alarm:{names.alarm_name(rule.name)}") for rule in endpoint_rules()]
    return role(
        names.endpoint_deploy_role_name, "cloudformation.amazonaws.com", "manage-endpoint-stack",
        [
            statement(["sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:DeleteModel"],
                      [arn("sagemaker", "model/*")], "Models"),
            statement(["sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig",
                       "sagemaker:DeleteEndpointConfig"], [arn("sagemaker", "endpoint-config/*")], "EndpointConfigs"),
            statement(["sagemaker:CreateEndpoint", "sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpoint",
                       "sagemaker:DeleteEndpoint"], [arn("sagemaker", f"endpoint/{names.endpoint_name}")], "Endpoint"),
            statement(["sagemaker:AddTags", "sagemaker:DeleteTags", "sagemaker:ListTags"],
                      [arn("sagemaker", "model/*"), arn("sagemaker", "endpoint-config/*"),
                       arn("sagemaker", f"endpoint/{names.endpoint_name}")], "Tags"),
            statement(["sagemaker:DescribeModelPackage"], [packages_arn(names)], "ReadApprovedPackage"),
            statement(["iam:PassRole"], [role_arn(names.model_role_name)], "PassModelRole"),
            statement(MANAGED_ROLE_ACTIONS, [role_arn(names.model_role_name)], "ModelRole"),
            statement(["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms",
                       "cloudwatch:TagResource", "cloudwatch:UntagResource", "cloudwatch:ListTagsForResource"],
                      alarms, "EndpointAlarms"),
        ],
        "CloudFormation service role of the endpoint stack (the redeploy function updates the stack through it)",
    )


def redeploy_resources(names: ResourceNames) -> dict[str, dict]:
    """The approval rule, its queue, the queue's dead letters and their alarm, the redeploy function and its role,
    and the endpoint stack's service role: the stages an approval deploys to (``APPROVAL_STAGES``)."""
    queue_arn = get_att("RedeployQueue", "Arn")
    drift_function_arn = arn("lambda", f"function:{names.drift_function}")
    return {
        "EndpointDeployRole": endpoint_deploy_role(names),
        "RedeployDeadLetterQueue": checkov_skip({
            "Type": "AWS::SQS::Queue",
            "Properties": {"QueueName": names.redeploy_dead_letter_queue_name, "SqsManagedSseEnabled": True,
                           "MessageRetentionPeriod": DEAD_LETTER_RETENTION_SECONDS},
        }, SQS_KMS_SKIP),
        "RedeployQueue": checkov_skip({
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": names.redeploy_queue_name,
                "SqsManagedSseEnabled": True,
                "VisibilityTimeout": VISIBILITY_TIMEOUT_SECONDS,
                "MessageRetentionPeriod": QUEUE_RETENTION_SECONDS,
                "RedrivePolicy": {"deadLetterTargetArn": get_att("RedeployDeadLetterQueue", "Arn"),
                                  "maxReceiveCount": MAX_RECEIVE_COUNT},
            },
        }, SQS_KMS_SKIP),
        "RedeployDeadLetterAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": names.redeploy_dead_letter_alarm_name,
                "AlarmDescription": f"an approval could not be redeployed for {RETRY_WINDOW_SECONDS // 3600} hours: "
                                    f"see the {names.redeploy_function} logs, then redrive the dead letters",
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [{"Name": "QueueName", "Value": get_att("RedeployDeadLetterQueue", "QueueName")}],
                "Statistic": "Maximum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": 0,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": [topic_arn(names)],
                "OKActions": [topic_arn(names)],
            },
        },
        "RedeployLogGroup": log_group(names.redeploy_log_group, ref("LogRetentionDays")),
        "RedeployRole": role(
            names.redeploy_role_name, "lambda.amazonaws.com", "redeploy-the-stage",
            [
                statement(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                           "sqs:GetQueueAttributes"], [queue_arn], "ReadTheQueue"),
                statement(["cloudformation:DescribeStacks"],
                          [stack_arn(names.endpoint_stack), stack_arn(names.api_stack),
                           stack_arn(names.monitoring_stack)], "ReadTheStacks"),
                statement(["cloudformation:UpdateStack"],
                          [stack_arn(names.endpoint_stack), stack_arn(names.monitoring_stack)], "UpdateTheStacks"),
                {**statement(["iam:PassRole"], [role_arn(names.endpoint_deploy_role_name)], "PassItsServiceRole"),
                 "Condition": {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}},
                # The monitoring stack is updated with the function's own rights: a new baseline changes the
                # drift function's environment only (its role reads statistics anywhere in the bucket).
                statement(["lambda:GetFunction", "lambda:UpdateFunctionConfiguration"], [drift_function_arn],
                          "UpdateTheDriftBaseline"),
                {**statement(["iam:PassRole"], [role_arn(names.drift_role_name)], "KeepTheDriftRole"),
                 "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}},
                statement(["sagemaker:DescribeModelPackage"], [packages_arn(names)], "ReadThePackage"),
                statement(["s3:GetObject"], [artifact_objects("schema.json")], "ReadTheDataSchema"),
                statement(["sns:Publish"], [topic_arn(names)], "ReportRefusals"),
                write_logs(names.redeploy_log_group),
            ],
            "Redeploys the stage when a model package is approved",
        ),
        "RedeployFunction": checkov_skip(lambda_function(LambdaSpec(
            names.redeploy_function, REDEPLOY_HANDLER, "brings the stage to a newly approved model package",
            "RedeployRole", "RedeployLogGroup",
            {
                "ENDPOINT_STACK": names.endpoint_stack,
                "API_STACK": names.api_stack,
                "MONITORING_STACK": names.monitoring_stack,
                "CLOUDFORMATION_ROLE_ARN": get_att("EndpointDeployRole", "Arn"),
                "MODEL_PACKAGE_GROUP": names.model_package_group,
                "TOPIC_ARN": topic_arn(names),
            },
            REDEPLOY_TIMEOUT_SECONDS, 128,
        )), *LAMBDA_SKIPS, ("CKV_AWS_115", "one message at a time by its event source mapping's own limit")),
        "RedeployEventSourceMapping": {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {
                "EventSourceArn": queue_arn,
                "FunctionName": ref("RedeployFunction"),
                "BatchSize": 1,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "ScalingConfig": {"MaximumConcurrency": REDEPLOY_CONCURRENCY},
            },
        },
        "ApprovalRule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Name": names.approval_rule_name,
                "Description": f"a model package of {names.model_package_group} was approved: redeploy {names.stage}",
                "State": "ENABLED",
                "EventPattern": {
                    "source": ["aws.sagemaker"],
                    "detail-type": [MODEL_PACKAGE_STATE_CHANGE],
                    "detail": {"ModelPackageGroupName": [names.model_package_group],
                               "ModelApprovalStatus": [APPROVED]},
                },
                "Targets": [{"Id": "redeploy-queue", "Arn": queue_arn}],
            },
        },
        "RedeployQueuePolicy": {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [ref("RedeployQueue")],
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Sid": "TheApprovalRuleOnly",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": get_att("ApprovalRule", "Arn")}},
                }]},
            },
        },
    }


def smoke_test_resources(names: ResourceNames) -> dict[str, dict]:
    """The smoke-test function, its role and log group, and the rule running it after the endpoint stack's
    creations and updates."""
    return {
        "SmokeTestLogGroup": log_group(names.smoke_test_log_group, ref("LogRetentionDays")),
        "SmokeTestRole": role(
            names.smoke_test_role_name, "lambda.amazonaws.com", "smoke-test-the-stage",
            [
                statement(["cloudformation:DescribeStacks"],
                          [stack_arn(names.endpoint_stack), stack_arn(names.api_stack)], "ReadTheStacks"),
                statement(["apigateway:GET"], [arn("apigateway", "/apikeys/*", account=False)], "ReadTheApiKey"),
                statement(["sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage"], [packages_arn(names)],
                          "RecordTheResult"),
                statement(["s3:GetObject"], [artifact_objects("statistics.json")], "ReadTheBaseline"),
                statement(["sns:Publish"], [topic_arn(names)], "ReportFailures"),
                write_logs(names.smoke_test_log_group),
            ],
            "Smoke-tests the stage's API after each deployment and records the result on the model package",
        ),
        "SmokeTestFunction": checkov_skip(lambda_function(LambdaSpec(
            names.smoke_test_function, SMOKE_TEST_HANDLER, "calls the stage's API after each deployment and "
            "records the result on the model package", "SmokeTestRole", "SmokeTestLogGroup",
            {"STAGE": names.stage, "ENDPOINT_STACK": names.endpoint_stack, "API_STACK": names.api_stack,
             "TOPIC_ARN": topic_arn(names)},
            SMOKE_TEST_TIMEOUT_SECONDS, 128,
        )), *LAMBDA_SKIPS, ("CKV_AWS_115", "runs once per deployment of the stage")),
        "SmokeTestInvokeConfig": {
            # A smoke test that cannot even run (an AWS error) is said on the alarm topic, not lost.
            "Type": "AWS::Lambda::EventInvokeConfig",
            "Properties": {
                "FunctionName": ref("SmokeTestFunction"),
                "Qualifier": "$LATEST",
                "MaximumRetryAttempts": 2,
                "MaximumEventAgeInSeconds": MAX_EVENT_AGE_SECONDS,
                "DestinationConfig": {"OnFailure": {"Destination": topic_arn(names)}},
            },
        },
        "EndpointUpdatedRule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Name": names.endpoint_updated_rule_name,
                "Description": f"{names.endpoint_stack} finished a creation or an update: smoke-test {names.stage}",
                "State": "ENABLED",
                "EventPattern": {
                    "source": ["aws.cloudformation"],
                    "detail-type": [STACK_STATUS_CHANGE],
                    "resources": [{"prefix": arn("cloudformation", f"stack/{names.endpoint_stack}/")}],
                    "detail": {"status-details": {"status": FINISHED_STATUSES}},
                },
                "Targets": [{"Id": "smoke-test", "Arn": get_att("SmokeTestFunction", "Arn")}],
            },
        },
        "EndpointUpdatedRulePermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": ref("SmokeTestFunction"),
                "Principal": "events.amazonaws.com",
                "SourceArn": get_att("EndpointUpdatedRule", "Arn"),
            },
        },
    }


def automation_template(names: ResourceNames, settings: AwsSettings) -> dict:
    """The automation stack's template: the retraining schedule; in ``dev``, the redeployment and the smoke test
    too (their functions' parameters with them)."""
    parameters = {
        "ScheduleExpression": {"Type": "String", "Default": settings.schedule_expression,
                               "AllowedPattern": SCHEDULE_PATTERN,
                               "Description": "when the pipeline retrains (EventBridge Scheduler expression, UTC)"},
        "ScheduleState": {"Type": "String", "Default": "DISABLED", "AllowedValues": ["ENABLED", "DISABLED"],
                          "Description": "scheduled retraining is off until turned on"},
        "RetrainApprovalStatus": {"Type": "String", "Default": "PendingManualApproval",
                                  "AllowedValues": list(APPROVAL_STATUSES),
                                  "Description": "approval status a scheduled run registers its model with"},
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
    }
    outputs = {"ScheduleName": output(ref("RetrainSchedule"), "the retraining schedule (disabled by default)")}
    what = ["scheduled retraining"]
    if names.stage in APPROVAL_STAGES:
        resources.update(redeploy_resources(names))
        outputs.update({
            "ApprovalRuleName": output(ref("ApprovalRule"), "the rule redeploying on approval"),
            "RedeployFunctionName": output(ref("RedeployFunction"), "the redeploy function"),
            "RedeployQueueUrl": output(ref("RedeployQueue"), "the queue of approvals waiting to be redeployed"),
            "RedeployDeadLetterQueueUrl": output(ref("RedeployDeadLetterQueue"),
                                                 "approvals that could not be redeployed (see the alarm)"),
            "EndpointDeployRoleArn": output(get_att("EndpointDeployRole", "Arn"),
                                            "the endpoint stack's CloudFormation service role"),
        })
        what.append("approval-triggered redeployment")
    if names.stage in SMOKE_TESTED_STAGES:
        resources.update(smoke_test_resources(names))
        outputs["SmokeTestFunctionName"] = output(ref("SmokeTestFunction"), "the smoke-test function")
        what.append("smoke test")
    if names.stage in APPROVAL_STAGES or names.stage in SMOKE_TESTED_STAGES:  # the stage has functions
        parameters.update({
            "ArtifactBucket": {"Type": "String", "Default": settings.artifact_bucket,
                               "Description": "the bucket of the pipeline's artifacts (data schemas, statistics)"},
            "CodeBucket": {"Type": "String", "Description": "S3 bucket holding the automation functions' zip"},
            "CodeKey": {"Type": "String",
                        "Description": "S3 key of the automation functions' zip (automation-*.zip)"},
            "LogRetentionDays": retention_parameter(),
        })
    return template(f"CloudViz {names.stage}: {', '.join(what)}", parameters, resources, outputs)
