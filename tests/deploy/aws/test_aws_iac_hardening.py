"""What checkov asked of the stacks and was fixed rather than skipped (issue 12, item 7): X-Ray tracing on every
function and on the stage, the stage's access log, the account's API Gateway logging role made only on request
(`--create-apigw-logging-role`), each API function's reserved concurrency and the predictions' retention as stage
settings. cfn-lint's schemas, moto's account and the real command are the oracles."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from cfnlint.api import lint
from deployer_account import ACCOUNT, BUCKET, NAMES, REGION, cli_error, cli_json, register
from moto_cloudformation import cloudformation_like_aws  # noqa: F401  (a fixture)
from template_stacks import SETTINGS, STAGES, resources_of, stacks

from deploy.aws.deployer import CREATED, describe_stack
from deploy.aws.names import ResourceNames
from deploy.aws.stacks import apigw_logging_stack
from deploy.aws.stage_config import default_config
from deploy.aws.templates.account import APIGW_LOGGING_STACK
from deploy.aws.templates.api import access_log_group

SYNTH_PACKAGE = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/cloudviziris/3"
TRACE_ACTIONS = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
# What an on-call engineer needs of each request, and the $context variable API Gateway fills it from (REST API).
ACCESS_LOG_FIELDS = {"requestId": "$context.requestId", "ip": "$context.identity.sourceIp",
                     "caller": "$context.identity.caller", "requestTime": "$context.requestTime",
                     "httpMethod": "$context.httpMethod", "resourcePath": "$context.resourcePath",
                     "status": "$context.status", "protocol": "$context.protocol",
                     "responseLength": "$context.responseLength"}


def stage_templates(stage: str) -> dict[str, dict]:
    """The stage's four templates with its default settings, as `deploy aws` makes them."""
    settings = replace(SETTINGS, **default_config(stage).api_settings())
    return {kind: spec.template for kind, spec in stacks(stage, settings).items()}


def skipped_checks(resource: dict) -> set[str]:
    return {skip["id"] for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])}


# --- X-Ray ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", STAGES)
def test_every_function_is_traced_and_its_role_may_send_the_traces(stage):
    functions = 0
    for template in stage_templates(stage).values():
        for key, function in resources_of(template, "AWS::Lambda::Function").items():
            functions += 1
            assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}, key
            role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
            statements = [statement for policy in template["Resources"][role_id]["Properties"]["Policies"]
                          for statement in policy["PolicyDocument"]["Statement"]]
            # X-Ray's write actions have no resource type: "*" is the only resource IAM takes for them.
            assert {"Sid": "Tracing", "Effect": "Allow", "Action": TRACE_ACTIONS, "Resource": ["*"]} in statements
    assert functions == (6 if stage == "dev" else 4)  # dev's redeploy and smoke-test functions too
    assert stage_templates(stage)["api"]["Resources"]["ApiStage"]["Properties"]["TracingEnabled"] is True


# --- the stage's access log ------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", STAGES)
def test_the_stage_writes_a_json_access_log_to_a_log_group_of_its_own(stage):
    names = ResourceNames(stage)
    resources = stage_templates(stage)["api"]["Resources"]
    stage_resource = resources["ApiStage"]
    setting = stage_resource["Properties"]["AccessLogSetting"]
    # The group's ARN without the ":*" of its Arn attribute (API Gateway refuses that form), created first.
    assert setting["DestinationArn"] == {
        "Fn::Sub": f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:"
                   f"{access_log_group(names)}"}
    assert "ApiAccessLogGroup" in stage_resource["DependsOn"]
    group = resources["ApiAccessLogGroup"]["Properties"]
    assert group == {"LogGroupName": access_log_group(names), "RetentionInDays": {"Ref": "LogRetentionDays"}}
    fields = json.loads(setting["Format"])  # one JSON object per line: CloudWatch Logs Insights reads its fields
    assert ACCESS_LOG_FIELDS.items() <= fields.items()
    assert all(value.startswith("$context.") for value in fields.values())
    assert "CKV_AWS_76" not in skipped_checks(stage_resource)


# --- reserved concurrency and retention, per stage -------------------------------------------------------------

def api_functions(template: dict) -> dict[str, dict]:
    return {key: template["Resources"][key] for key in ("InferenceFunction", "RetrieveFunction")}


def test_each_api_function_reserves_the_stages_concurrency_and_dev_says_why_none():
    for function in api_functions(stage_templates("prod")["api"]).values():
        assert function["Properties"]["ReservedConcurrentExecutions"] == 20
        assert "CKV_AWS_115" not in skipped_checks(function)
    for function in api_functions(stage_templates("dev")["api"]).values():
        assert "ReservedConcurrentExecutions" not in function["Properties"]
        assert "CKV_AWS_115" in skipped_checks(function)


def synth(capsys, out: Path, stage: str, *extra: str) -> dict:
    return cli_json(capsys, "deploy", "aws", "--stage", stage, "--synth", str(out), "--bucket", BUCKET,
                    "--model-package-arn", SYNTH_PACKAGE, *extra)


def test_the_config_file_sets_reserved_concurrency_and_retention_and_bad_values_are_named(tmp_path, capsys):
    config = tmp_path / "cloudviz.toml"
    config.write_text("[stages.dev]\napi_reserved_concurrency = 5\nprediction_retention_days = 30\n")
    synth(capsys, tmp_path / "out", "dev", "--config", str(config))
    api = json.loads((tmp_path / "out" / f"{NAMES.api_stack}.json").read_text())
    assert {f["Properties"]["ReservedConcurrentExecutions"] for f in api_functions(api).values()} == {5}
    parameters = json.loads((tmp_path / "out" / f"{NAMES.api_stack}.parameters.json").read_text())
    assert {"ParameterKey": "PredictionRetentionDays", "ParameterValue": "30"} in parameters
    # The function stamps each item's expiry from it; the table's TTL deletes on that attribute.
    inference = api["Resources"]["InferenceFunction"]["Properties"]["Environment"]["Variables"]
    assert inference["PREDICTION_RETENTION_DAYS"] == {"Ref": "PredictionRetentionDays"}
    ttl = api["Resources"]["PredictionTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "expires_at", "Enabled": True}
    for line, message in (("api_reserved_concurrency = -1", "api_reserved_concurrency: -1 must be 0"),
                          ("prediction_retention_days = 0", "prediction_retention_days: 0 must be at least 1 (the "
                                                            "api.PredictionRetentionDays stack parameter)"),
                          ('prediction_retention_days = "30"', "prediction_retention_days: expected an integer")):
        config.write_text(f"[stages.prod]\n{line}\n")
        error = cli_error(capsys, "deploy", "aws", "--stage", "prod", "--synth", str(tmp_path / "bad"), "--bucket",
                          BUCKET, "--model-package-arn", SYNTH_PACKAGE, "--config", str(config))
        assert f"[stages.prod] {message}" in error and "Traceback" not in error


def test_prods_table_outlives_its_stack():
    table = stage_templates("prod")["api"]["Resources"]["PredictionTable"]
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")


# --- the account's API Gateway logging role, on request only --------------------------------------------------

def test_the_account_stack_passes_cfn_lint_and_keeps_its_role():
    spec = apigw_logging_stack()
    assert [str(match) for match in lint(json.dumps(spec.template), regions=["us-east-1", "eu-west-1"])] == []
    role, account = spec.template["Resources"]["ApiGatewayCloudWatchRole"], spec.template["Resources"][
        "ApiGatewayAccount"]
    assert account["Properties"] == {"CloudWatchRoleArn": {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]}}
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "apigateway.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    assert role["Properties"]["ManagedPolicyArns"] == [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/"
                                                                   "service-role/AmazonAPIGatewayPushToCloudWatchLogs"}]
    for resource in (role, account):  # every API of the account logs through it: deleting the stack keeps both
        assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_synth_writes_the_account_stack_only_with_the_flag(tmp_path, capsys):
    written = {Path(path).name for path in synth(capsys, tmp_path / "plain", "dev")["written"]}
    assert f"{APIGW_LOGGING_STACK}.json" not in written
    for name in written - {f"{APIGW_LOGGING_STACK}.json"}:
        if name.endswith(".json") and not name.endswith(".parameters.json") and name != "openapi.json":
            template = json.loads((tmp_path / "plain" / name).read_text())
            assert not resources_of(template, "AWS::ApiGateway::Account"), name
    synth(capsys, tmp_path / "flag", "dev", "--create-apigw-logging-role")
    template = json.loads((tmp_path / "flag" / f"{APIGW_LOGGING_STACK}.json").read_text())
    assert set(resources_of(template, "AWS::ApiGateway::Account")) == {"ApiGatewayAccount"}
    assert json.loads((tmp_path / "flag" / f"{APIGW_LOGGING_STACK}.parameters.json").read_text()) == []


@pytest.fixture
def no_logging_role(aws, home, monkeypatch):
    """moto's account with an Approved version 1 and no CloudWatch role in API Gateway's account setting."""
    monkeypatch.setenv("CLOUDVIZ_BUCKET", BUCKET)
    monkeypatch.delenv("CLOUDVIZ_ALARM_EMAIL", raising=False)
    register(boto3.client("sagemaker", region_name=REGION), NAMES.model_package_group, ["Approved"])
    boto3.client("apigateway", region_name=REGION).update_account(patchOperations=[
        {"op": "replace", "path": "/cloudwatchRoleArn", "value": ""}])


@pytest.mark.usefixtures("cloudformation_like_aws", "no_logging_role")
@pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto")
def test_deploy_stops_before_any_stack_without_a_logging_role_and_the_flag_creates_one(capsys):
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    for command in (("deploy", "aws", "--stage", "dev"), ("promote", "aws", "--from", "dev", "--to", "prod")):
        error = cli_error(capsys, *command)
        assert "no CloudWatch Logs role" in error and "--create-apigw-logging-role" in error
        assert "Traceback" not in error
    assert [stack["StackName"] for stack in cloudformation.list_stacks()["StackSummaries"]] == []
    document = cli_json(capsys, "deploy", "aws", "--stage", "dev", "--create-apigw-logging-role")
    assert [(s["stack_name"], s["status"]) for s in document["stacks"]] == [
        (APIGW_LOGGING_STACK, CREATED), *((name, CREATED) for name in NAMES.stacks)]
    changes = {change["logical_id"]: change["resource_type"] for change in document["stacks"][0]["changes"]}
    assert changes == {"ApiGatewayCloudWatchRole": "AWS::IAM::Role", "ApiGatewayAccount": "AWS::ApiGateway::Account"}
    role_arn = describe_stack(cloudformation, APIGW_LOGGING_STACK)["Outputs"][0]["OutputValue"]
    role = boto3.client("iam").get_role(RoleName=role_arn.rsplit("/", 1)[1])["Role"]  # named per region: IAM is global
    assert role["RoleName"] == f"cloudviz-apigw-cloudwatch-{REGION}"
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "apigateway.amazonaws.com"}
