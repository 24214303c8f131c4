"""The automation stack: scheduled and drift-triggered retraining, approval-triggered redeployment and the smoke
test.

Every stage gets the retrain function (``deploy/aws/functions/retrain.py``): it starts the pipeline on the newest
version of a data set with the group's champion, or logs why not (no new data version since the trigger's last
successful run, a run still executing, the drift cool-down). Its triggers, each an input naming a schedule, its data
set and parameters, or the drift alarm's event:

- one EventBridge Scheduler schedule per definition of ``cloudviz.schedules.json`` whose ``stages`` include the
  stage and whose ``ModelPackageGroupName`` parameter is the stack's group (none: the default group), its cron
  converted to EventBridge's, ``paused`` -> DISABLED;
- the ``retrain_schedule`` stage setting (``--retrain-schedule``), kept working: the ``RetrainSchedule`` with the
  ``ScheduleExpression``/``ScheduleState`` parameters as before, now invoking the function on the group's data set
  (``iris`` for the default group, else the group's name in lower case) instead of starting the pipeline on fixed
  parameters (which re-trained the same data from the step cache and registered a duplicate each time);
- with ``retrain_on_drift = true``, an EventBridge rule on the feature-drift alarm going to ALARM (the same data set;
  ``retrain_cooldown_hours`` between drift-triggered runs).

``dev`` also gets the approval rule -> SQS queue -> redeploy function (``prod`` gets a package by promotion, as in
the official SageMaker MLOps template), the endpoint stack's CloudFormation service role (here, so no role can
rewrite its own policy) and the smoke-test function.
"""

from __future__ import annotations

import json
import math
import re

from deploy.aws.functions.retrain import ALARM_STATE_CHANGE
from deploy.aws.functions.smoke_test import longest_run_seconds
from deploy.aws.lambda_zip import REDEPLOY_HANDLER, RETRAIN_HANDLER, SMOKE_TEST_HANDLER
from deploy.aws.names import DEFAULT_GROUP, ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.templates.common import (
    LambdaSpec,
    arn,
    checkov_skip,
    function_runtime,
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
)
from deploy.aws.templates.endpoint import MAX_DEPLOYMENT_SECONDS, endpoint_rules, role_arn, topic_arn
from deploy.monitoring.alarm_rules import ALARM_RULES
from pipelines.errors import UserError
from pipelines.registry import APPROVAL_STATUSES
from pipelines.scheduling.cron import to_eventbridge
from pipelines.scheduling.definitions import ScheduleDefinition
from serving_lambdas.served_version import MAX_TTL_SECONDS

APPROVED = "Approved"
MODEL_PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
STACK_STATUS_CHANGE = "CloudFormation Stack Status Change"
FINISHED_STATUSES = ["CREATE_COMPLETE", "UPDATE_COMPLETE"]
APPROVAL_STAGES = ("dev",)  # where an approval deploys; the other stages get a package by promotion
SMOKE_TESTED_STAGES = ("dev",)  # where each deployment is smoke-tested (its record gates the promotion)
REDEPLOY_TIMEOUT_SECONDS = 60
RETRAIN_TIMEOUT_SECONDS = 60  # a few listings and reads, one StartPipelineExecution
FEATURE_DRIFT_RULE = next(rule for rule in ALARM_RULES if rule.metric_name == "FeatureDrift")
DEFAULT_DATASET = "iris"  # the bundled data set, the default group's
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
    ("CKV_AWS_117", "calls only AWS APIs and the stage's public API: no VPC resource to reach"),
    ("CKV_AWS_173", "its environment holds stack names and ARNs, no secret: the default AWS-managed key"),
)
# Failed asynchronous invocations go to the function's on-failure destination instead (its EventInvokeConfig).
DESTINATION_SKIP = ("CKV_AWS_116", "a failed asynchronous run goes to its on-failure destination, the alarm topic "
                                   "(EventInvokeConfig), which carries the error, unlike a dead-letter queue")


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
                *function_runtime(names.redeploy_log_group),
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
        )), *LAMBDA_SKIPS, ("CKV_AWS_115", "one message at a time by its event source mapping's own limit"),
            ("CKV_AWS_116", "read from SQS by an event source mapping (a synchronous invocation): a message that keeps "
                            "failing goes to the queue's own dead-letter queue, RedeployDeadLetterQueue")),
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
                *function_runtime(names.smoke_test_log_group),
            ],
            "Smoke-tests the stage's API after each deployment and records the result on the model package",
        ),
        "SmokeTestFunction": checkov_skip(lambda_function(LambdaSpec(
            names.smoke_test_function, SMOKE_TEST_HANDLER, "calls the stage's API after each deployment and "
            "records the result on the model package", "SmokeTestRole", "SmokeTestLogGroup",
            {"STAGE": names.stage, "ENDPOINT_STACK": names.endpoint_stack, "API_STACK": names.api_stack,
             "TOPIC_ARN": topic_arn(names)},
            SMOKE_TEST_TIMEOUT_SECONDS, 128,
        )), *LAMBDA_SKIPS, DESTINATION_SKIP, ("CKV_AWS_115", "runs once per deployment of the stage")),
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


def stage_schedules(names: ResourceNames, settings: AwsSettings) -> list[ScheduleDefinition]:
    """The schedule definitions this stack runs: those of its stage whose ``ModelPackageGroupName`` parameter is
    its group (none given: the default group), so that no two groups' stacks start the same schedule."""
    found = [schedule for schedule in settings.schedules if names.stage in schedule.stages
             and schedule.parameters.get("ModelPackageGroupName", DEFAULT_GROUP) == names.group]
    for schedule in found:
        if refusal := names.schedule_name_refusal(schedule.name):
            raise UserError(f"schedule {schedule.name!r}: {refusal}")
    return found


def schedule_logical_id(name: str) -> str:
    return "Schedule" + "".join(part.capitalize() for part in re.split(r"[^a-zA-Z0-9]+", name))


def group_dataset(group: str) -> str:
    """The data set the legacy ``retrain_schedule`` and drift retrain: ``iris`` for the default group, else the
    group's name in lower case (a group name in lower case is a data set name)."""
    return DEFAULT_DATASET if group == DEFAULT_GROUP else group.lower()


def retrain_schedule(name: str, description: str, expression: object, state: object, input_text: object) -> dict:
    """An EventBridge Scheduler schedule invoking the retrain function with ``input_text`` (UTC)."""
    return {
        "Type": "AWS::Scheduler::Schedule",
        "Properties": {
            "Name": name,
            "Description": description,
            "ScheduleExpression": expression,
            "ScheduleExpressionTimezone": "UTC",
            "State": state,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": get_att("RetrainFunction", "Arn"),
                "RoleArn": get_att("SchedulerRole", "Arn"),
                "Input": input_text,
                "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": MAX_EVENT_AGE_SECONDS},
            },
        },
    }


def definition_schedules(names: ResourceNames, settings: AwsSettings) -> dict[str, dict]:
    """One schedule per definition of the stage (``cloudviz.schedules.json``), paused as the definition says."""
    resources: dict[str, dict] = {}
    for schedule in stage_schedules(names, settings):
        logical_id = schedule_logical_id(schedule.name)
        if logical_id in resources:
            raise UserError(f"schedule {schedule.name!r}: its resource {logical_id} is another schedule's too: "
                            "rename one so that the names differ in more than '-' and '_'")
        resources[logical_id] = retrain_schedule(
            names.retrain_schedule_name(schedule.name),
            f"schedule {schedule.name} ({schedule.cron}, UTC): retrain {names.model_package_group} on the newest "
            f"version of {schedule.dataset}",
            to_eventbridge(schedule.cron), "DISABLED" if schedule.paused else "ENABLED",
            json.dumps({"schedule": schedule.name, "dataset": schedule.dataset,
                        "parameters": dict(schedule.parameters)}, sort_keys=True))
    return resources


def drift_retrain_resources(names: ResourceNames) -> dict[str, dict]:
    """The rule retraining when the stage's feature-drift alarm goes to ALARM, and its right to invoke."""
    alarm = names.alarm_name(FEATURE_DRIFT_RULE.name)
    return {
        "DriftRetrainRule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Name": names.drift_retrain_rule_name,
                "Description": f"{alarm} went to ALARM: retrain {names.model_package_group} if its data grew",
                "State": "ENABLED",
                "EventPattern": {
                    "source": ["aws.cloudwatch"],
                    "detail-type": [ALARM_STATE_CHANGE],
                    "resources": [arn("cloudwatch", f"alarm:{alarm}")],
                    "detail": {"state": {"value": ["ALARM"]}},
                },
                "Targets": [{"Id": "retrain", "Arn": get_att("RetrainFunction", "Arn")}],
            },
        },
        "DriftRetrainRulePermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": ref("RetrainFunction"),
                "Principal": "events.amazonaws.com",
                "SourceArn": get_att("DriftRetrainRule", "Arn"),
            },
        },
    }


def retrain_role(names: ResourceNames, settings: AwsSettings) -> dict:
    """What the retrain function calls, on this pipeline, this group's packages and the data sets only."""
    datasets = f"{settings.artifact_prefix}/datasets/"
    return role(
        names.retrain_role_name, "lambda.amazonaws.com", "start-retraining",
        [
            statement(["sagemaker:ListPipelineExecutions", "sagemaker:StartPipelineExecution"],
                      [pipeline_arn(names)], "ReadAndStartThePipeline"),
            statement(["sagemaker:ListPipelineParametersForExecution"],
                      [arn("sagemaker", f"pipeline/{names.pipeline_name.lower()}/execution/*")],
                      "ReadWhatARunTrainedOn"),
            # IAM authorizes listing a group's versions against the group (as a group's resource policy grants it).
            statement(["sagemaker:ListModelPackages"],
                      [arn("sagemaker", f"model-package-group/{names.model_package_group.lower()}")], "ListPackages"),
            statement(["sagemaker:DescribeModelPackage"], [packages_arn(names)], "ReadTheChampion"),
            {**statement(["s3:ListBucket"], [sub("arn:${AWS::Partition}:s3:::${ArtifactBucket}")], "ListDataSets"),
             "Condition": {"StringLike": {"s3:prefix": [f"{datasets}*"]}}},
            statement(["s3:GetObject"], [sub(f"arn:${{AWS::Partition}}:s3:::${{ArtifactBucket}}/{datasets}*")],
                      "ReadDataSets"),
            statement(["sns:Publish"], [topic_arn(names)], "ReportFailures"),  # the on-failure destination
            *function_runtime(names.retrain_log_group),
        ],
        "Starts a retraining run on the newest data version (schedules, drift)",
    )


def retrain_resources(names: ResourceNames, settings: AwsSettings) -> dict[str, dict]:
    """The retrain function (its role, log group and on-failure destination), the role EventBridge Scheduler
    invokes it with, the legacy schedule (``retrain_schedule``), one schedule per definition and, where the stage
    enables it, the drift rule."""
    legacy_input = json.dumps({"schedule": names.schedule_name, "dataset": group_dataset(names.group),
                               "parameters": {"ModelApprovalStatus": "${RetrainApprovalStatus}"}}, sort_keys=True)
    resources = {
        "RetrainLogGroup": log_group(names.retrain_log_group, ref("LogRetentionDays")),
        "RetrainRole": retrain_role(names, settings),
        "RetrainFunction": checkov_skip(lambda_function(LambdaSpec(
            names.retrain_function, RETRAIN_HANDLER, "starts a retraining run on the newest data version, or logs "
            "why not", "RetrainRole", "RetrainLogGroup",
            {
                "PIPELINE_NAME": names.pipeline_name,
                "MODEL_PACKAGE_GROUP": names.model_package_group,
                "ARTIFACT_BUCKET": ref("ArtifactBucket"),
                "ARTIFACT_PREFIX": settings.artifact_prefix,
                "STAGE": names.stage,
                "DRIFT_DATASET": group_dataset(names.group),
                "RETRAIN_COOLDOWN_HOURS": str(settings.retrain_cooldown_hours),
            },
            RETRAIN_TIMEOUT_SECONDS, 128,
        )), *LAMBDA_SKIPS, DESTINATION_SKIP,
            ("CKV_AWS_115", "runs once per schedule or drift alarm; a run it starts is skipped by the next while it "
                            "executes")),
        "RetrainInvokeConfig": {
            # A retraining that cannot even be decided (an AWS error) is said on the alarm topic, not lost.
            "Type": "AWS::Lambda::EventInvokeConfig",
            "Properties": {
                "FunctionName": ref("RetrainFunction"),
                "Qualifier": "$LATEST",
                "MaximumRetryAttempts": 2,
                "MaximumEventAgeInSeconds": MAX_EVENT_AGE_SECONDS,
                "DestinationConfig": {"OnFailure": {"Destination": topic_arn(names)}},
            },
        },
        "SchedulerRole": role(
            names.scheduler_role_name, "scheduler.amazonaws.com", "invoke-retraining",
            [statement(["lambda:InvokeFunction"], [get_att("RetrainFunction", "Arn")], "InvokeTheRetrainFunction")],
            "EventBridge Scheduler: invokes the CloudViz retrain function",
        ),
        "RetrainSchedule": retrain_schedule(
            names.schedule_name, f"retrain_schedule: retrain {names.model_package_group} on the newest version of "
            f"{group_dataset(names.group)}", ref("ScheduleExpression"), ref("ScheduleState"), sub(legacy_input)),
        **definition_schedules(names, settings),
    }
    if settings.retrain_on_drift:
        resources.update(drift_retrain_resources(names))
    return resources


def automation_template(names: ResourceNames, settings: AwsSettings) -> dict:
    """The automation stack's template: retraining (see the module's docstring); in ``dev``, the redeployment and
    the smoke test too."""
    parameters = {
        "ScheduleExpression": {"Type": "String", "Default": settings.schedule_expression,
                               "AllowedPattern": SCHEDULE_PATTERN,
                               "Description": "when the legacy retrain_schedule retrains (EventBridge Scheduler "
                                              "expression, UTC)"},
        "ScheduleState": {"Type": "String", "Default": "DISABLED", "AllowedValues": ["ENABLED", "DISABLED"],
                          "Description": "the legacy retrain_schedule is off until turned on"},
        "RetrainApprovalStatus": {"Type": "String", "Default": "PendingManualApproval",
                                  "AllowedValues": list(APPROVAL_STATUSES),
                                  "Description": "approval status a retrain_schedule run registers its model with"},
        "ArtifactBucket": {"Type": "String", "Default": settings.artifact_bucket,
                           "Description": "the bucket of the pipeline's artifacts (data sets, schemas, statistics)"},
        "CodeBucket": {"Type": "String", "Description": "S3 bucket holding the automation functions' zip"},
        "CodeKey": {"Type": "String", "Description": "S3 key of the automation functions' zip (automation-*.zip)"},
        "LogRetentionDays": retention_parameter(),
    }
    resources = retrain_resources(names, settings)
    outputs = {"ScheduleName": output(ref("RetrainSchedule"), "the retrain_schedule schedule (disabled by default)"),
               "RetrainFunctionName": output(ref("RetrainFunction"), "the retrain function (its logs say why a "
                                                                     "trigger started no run)")}
    what = ["scheduled retraining"]
    if settings.retrain_on_drift:
        outputs["DriftRetrainRuleName"] = output(ref("DriftRetrainRule"), "the rule retraining on feature drift")
        what.append("drift-triggered retraining")
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
    return template(f"CloudViz {names.stage}: {', '.join(what)}", parameters, resources, outputs)
