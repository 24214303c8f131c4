"""The account stack (``cloudviz deploy aws --create-apigw-logging-role``): the role API Gateway writes CloudWatch
logs through, set as the region's API Gateway account setting.

API Gateway writes a REST stage's access log (and execution logs) only through that one role, a setting of the
account in the region (``AWS::ApiGateway::Account``), shared by every API there, CloudViz's or not. So it is made
only on request, in a stack of its own (no stage owns it), and both resources are retained when the stack is
deleted: removing the role would silently stop every API's logs in the region.
"""

from __future__ import annotations

from deploy.aws.names import PROJECT
from deploy.aws.templates.common import get_att, output, sub, template

APIGW_LOGGING_STACK = f"{PROJECT}-apigw-logging"  # one per region (CloudFormation stacks are regional)
# AWS's managed policy for this role: the setting serves every API of the account, whose log groups
# (API-Gateway-Execution-Logs_<api id>/<stage> and any access log group) no narrower policy could list.
PUSH_TO_CLOUDWATCH_LOGS = "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
RETAINED = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}


def apigw_logging_template() -> dict:
    """The role (named per region: IAM is global, the setting regional) and the account setting naming it."""
    resources = {
        "ApiGatewayCloudWatchRole": {
            "Type": "AWS::IAM::Role",
            **RETAINED,
            "Properties": {
                "RoleName": sub(f"{PROJECT}-apigw-cloudwatch-${{AWS::Region}}"),
                "Description": "API Gateway (every API of the account, this region) writes CloudWatch logs",
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Principal": {"Service": "apigateway.amazonaws.com"},
                                   "Action": "sts:AssumeRole"}],
                },
                "ManagedPolicyArns": [sub(PUSH_TO_CLOUDWATCH_LOGS)],
            },
        },
        "ApiGatewayAccount": {
            "Type": "AWS::ApiGateway::Account",
            **RETAINED,
            "Properties": {"CloudWatchRoleArn": get_att("ApiGatewayCloudWatchRole", "Arn")},
        },
    }
    outputs = {"CloudWatchRoleArn": output(get_att("ApiGatewayCloudWatchRole", "Arn"),
                                           "the role API Gateway writes the region's API logs through")}
    return template("CloudViz: the API Gateway account setting's CloudWatch Logs role (account-wide, this region)",
                    {}, resources, outputs)
