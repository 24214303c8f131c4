"""Least privilege in the generated templates' IAM policies: no wildcard beyond what IAM requires, and each
function's role grants only what its function does."""

from __future__ import annotations

import fnmatch
import json

import pytest
from template_stacks import BASELINE_URI, SCHEMA_URI, SETTINGS, STAGES, stacks

from deploy.aws.names import ResourceNames
from deploy.aws.stacks import synthesize
from pipelines.definition import PIPELINE_NAME

# Actions IAM offers no resource type for: "*" is the only resource they accept.
RESOURCE_STAR_ACTIONS = {"ecr:GetAuthorizationToken", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}
RUNTIME = {"OwnLogGroup": ["logs:CreateLogStream", "logs:PutLogEvents"],  # every function's: logs and traces
           "Tracing": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]}


# --- least privilege -------------------------------------------------------------------------------------------

def policy_statements(template: dict) -> list[tuple[str, dict]]:
    found = []
    for key, body in template["Resources"].items():
        properties = body["Properties"]
        if body["Type"] == "AWS::IAM::Role":
            assert "ManagedPolicyArns" not in properties, f"{key}: managed policies are not least privilege"
            for policy in properties["Policies"]:
                found += [(key, statement) for statement in policy["PolicyDocument"]["Statement"]]
        assert body["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::User"), key
    return found


def as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("stage", STAGES)
def test_every_policy_is_least_privilege(stage):
    text = json.dumps([spec.template for spec in synthesize(stage, SETTINGS)])
    assert "FullAccess" not in text
    for spec in synthesize(stage, SETTINGS):
        for role, statement in policy_statements(spec.template):
            assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
            actions = as_list(statement["Action"])
            assert all(":" in action and not action.endswith("*") for action in actions), (role, actions)
            if "*" in as_list(statement["Resource"]):
                assert set(actions) <= RESOURCE_STAR_ACTIONS, (role, actions)
            for resource in as_list(statement["Resource"]):
                if isinstance(resource, dict) and "Fn::Sub" in resource:  # an ARN names at least a resource type
                    text = resource["Fn::Sub"] if isinstance(resource["Fn::Sub"], str) else resource["Fn::Sub"][0]
                    assert text.split(":", 5)[5] not in ("", "*"), (role, text)


def statements_by_sid(template: dict, role: str) -> dict[str, dict]:
    policies = template["Resources"][role]["Properties"]["Policies"]
    return {statement["Sid"]: statement for policy in policies for statement in policy["PolicyDocument"]["Statement"]}


def test_each_function_role_grants_only_what_its_function_does():
    names = ResourceNames("dev")
    api = stacks("dev")["api"].template
    inference = statements_by_sid(api, "InferenceRole")
    assert {sid: statement["Action"] for sid, statement in inference.items()} == {
        "InvokeTheEndpoint": ["sagemaker:InvokeEndpoint"], "StorePredictions": ["dynamodb:PutItem"],
        "DescribeTheEndpoint": ["sagemaker:DescribeEndpoint"],
        "ReadServedModelVersion": ["sagemaker:DescribeEndpointConfig", "sagemaker:ListTags"],
        "ReadDataSchemas": ["s3:GetObject"], "RecordFeedback": ["dynamodb:UpdateItem"], **RUNTIME}
    # The schemas the pipeline registers (any version's: a new version changes a tag, not this policy), and no
    # other object: the registered SCHEMA_URI matches the pattern, its baseline statistics beside it do not.
    (schemas,) = inference["ReadDataSchemas"]["Resource"]
    pattern = schemas["Fn::Sub"].replace("${AWS::Partition}", "aws").replace("${ArtifactBucket}", "cloudviz-artifacts")
    assert fnmatch.fnmatchcase("arn:aws:s3:::" + SCHEMA_URI.removeprefix("s3://"), pattern)
    assert not fnmatch.fnmatchcase("arn:aws:s3:::" + BASELINE_URI.removeprefix("s3://"), pattern)
    assert inference["DescribeTheEndpoint"]["Resource"] == inference["InvokeTheEndpoint"]["Resource"]
    assert inference["InvokeTheEndpoint"]["Resource"] == [
        {"Fn::Sub": f"arn:${{AWS::Partition}}:sagemaker:${{AWS::Region}}:${{AWS::AccountId}}:endpoint/"
                    f"{names.endpoint_name}"}]
    assert inference["StorePredictions"]["Resource"] == [{"Fn::GetAtt": ["PredictionTable", "Arn"]}]
    assert inference["RecordFeedback"]["Resource"] == [{"Fn::GetAtt": ["PredictionTable", "Arn"]}]
    assert names.inference_log_group in inference["OwnLogGroup"]["Resource"][0]["Fn::Sub"]
    retrieve = statements_by_sid(api, "RetrieveRole")
    assert {sid: statement["Action"] for sid, statement in retrieve.items()} == {
        "ReadPredictions": ["dynamodb:GetItem", "dynamodb:Query"], **RUNTIME}
    assert names.retrieve_log_group in retrieve["OwnLogGroup"]["Resource"][0]["Fn::Sub"]
    drift = statements_by_sid(stacks("dev")["monitoring"].template, "DriftRole")
    assert {sid: statement["Action"] for sid, statement in drift.items()} == {
        "ReadPredictions": ["dynamodb:Query"], "ReadTheBaseline": ["s3:GetObject"], **RUNTIME}
    assert drift["ReadPredictions"]["Resource"][0]["Fn::Sub"].endswith(f":table/{names.table_name}")
    baseline_arn = drift["ReadTheBaseline"]["Resource"][0]["Fn::Sub"]
    # The statistics of the baseline's bucket: a new baseline changes the function's environment, not this policy.
    assert baseline_arn[0] == "arn:${AWS::Partition}:s3:::${BaselineBucket}/*/statistics.json"
    assert baseline_arn[1]["BaselineBucket"] == {"Fn::Select": [0, {"Fn::Split": ["/", {"Fn::Select": [1, {
        "Fn::Split": ["://", {"Fn::Join": ["", [{"Ref": "BaselineStatisticsUri"}, "://"]]}]}]}]}]}
    assert names.drift_log_group in drift["OwnLogGroup"]["Resource"][0]["Fn::Sub"]

    automation = stacks("dev")["automation"].template
    scheduler = statements_by_sid(automation, "SchedulerRole")
    assert [statement["Action"] for statement in scheduler.values()] == [["lambda:InvokeFunction"]]
    assert scheduler["InvokeTheRetrainFunction"]["Resource"] == [{"Fn::GetAtt": ["RetrainFunction", "Arn"]}]
    retrain_role = statements_by_sid(automation, "RetrainRole")  # exactly its calls: test_aws_retraining.py
    assert retrain_role["ReadAndStartThePipeline"]["Resource"][0]["Fn::Sub"].endswith(
        f":pipeline/{PIPELINE_NAME.lower()}")
    redeploy_role = statements_by_sid(automation, "RedeployRole")
    assert redeploy_role["UpdateTheStacks"]["Action"] == ["cloudformation:UpdateStack"]
    assert [r["Fn::Sub"].rsplit(":", 1)[1] for r in redeploy_role["UpdateTheStacks"]["Resource"]] == [
        f"stack/{names.endpoint_stack}/*", f"stack/{names.monitoring_stack}/*"]
    assert redeploy_role["PassItsServiceRole"]["Resource"][0]["Fn::Sub"].endswith(
        f":role/{names.endpoint_deploy_role_name}")
    assert redeploy_role["PassItsServiceRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}
