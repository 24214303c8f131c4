"""The generated CloudFormation templates, checked offline: cfn-lint (AWS's resource schemas), least-privilege
IAM, one source of names, the Lambda zips, and the correspondence with the local alarms and dashboard."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cfnlint.api import lint
from openapi_spec_validator import validate as validate_openapi

from deploy.aws.functions.smoke_test import REQUEST_TIMEOUT_SECONDS, longest_run_seconds
from deploy.aws.lambda_zip import automation_zip, lambda_zips, serving_zip
from deploy.aws.names import MODEL_VERSION_TAG, PRODUCTION_VARIANT, ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.stacks import StackSpec, referenced_packages, synthesize, write_synth
from deploy.aws.templates.monitoring import DRIFT_METRICS, LOCAL_ONLY_PANELS, dashboard_panels, drift_schedule
from deploy.monitoring.alarm_rules import ALARM_RULES, AWS_ONLY_RULES
from pipelines.definition import DEFAULT_GROUP, PIPELINE_NAME
from serving_lambdas.config import inference_settings
from serving_lambdas.served_version import DATA_SCHEMA_TAG
from serving_lambdas.store.dynamodb import ATTRIBUTE_DEFINITIONS, BILLING_MODE, KEY_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_HTML = ROOT / "deploy" / "dashboard" / "assets" / "dashboard.html"
PACKAGE_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/cloudviziris/7"
BASELINE_URI = "s3://cloudviz-artifacts/cloudviz/executions/abc123/Preprocess/baseline/statistics.json"
SCHEMA_URI = "s3://cloudviz-artifacts/cloudviz/executions/abc123/Preprocess/schema/schema.json"
SETTINGS = AwsSettings(region="eu-west-1", account_id="123456789012", artifact_bucket="cloudviz-artifacts",
                       alarm_email="ops@example.com", model_package_arn=PACKAGE_ARN, model_version=7,
                       baseline_statistics_uri=BASELINE_URI, data_schema_uri=SCHEMA_URI)
STAGES = ("dev", "prod")
LINT_REGIONS = ["us-east-1", "eu-west-1"]
# cfn-lint findings accepted, each with its reason (rule id -> why). None today: every template lints clean.
JUSTIFIED_WARNINGS: dict[str, str] = {}
# Actions IAM offers no resource type for: "*" is the only resource they accept.
RESOURCE_STAR_ACTIONS = {"ecr:GetAuthorizationToken"}
# What a Lambda zip may import besides its own files: the standard library and the runtime's boto3.
# (certifi: botocore imports it when present, and falls back to its own CA bundle when not)
BOTO3_DISTRIBUTION = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six", "certifi")


def stacks(stage: str, settings: AwsSettings = SETTINGS) -> dict[str, StackSpec]:
    names = ResourceNames(stage)
    specs = {spec.name: spec for spec in synthesize(stage, settings)}
    return {kind: specs[getattr(names, f"{kind}_stack")] for kind in ("endpoint", "api", "monitoring", "automation")}


def resources_of(template: dict, resource_type: str) -> dict[str, dict]:
    return {key: body for key, body in template["Resources"].items() if body["Type"] == resource_type}


# --- names ---------------------------------------------------------------------------------------------------

def test_resource_names_of_a_stage():
    names = ResourceNames("prod")
    assert names.stacks == ("cloudviz-prod-endpoint", "cloudviz-prod-api", "cloudviz-prod-monitoring",
                            "cloudviz-prod-automation")
    assert (names.endpoint_name, names.table_name, names.api_name) == (
        "cloudviz-prod", "cloudviz-prod-predictions", "cloudviz-prod-api")
    assert names.inference_log_group == f"/aws/lambda/{names.inference_function}"
    assert (names.model_package_group, names.pipeline_name) == (DEFAULT_GROUP, PIPELINE_NAME)
    assert names.alarm_name("cloudviz-api-5xx-rate") == "cloudviz-prod-api-5xx-rate"
    with pytest.raises(ValueError, match="unknown stage 'staging'"):
        ResourceNames("staging")


# --- cfn-lint --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", STAGES)
def test_every_template_passes_cfn_lint(stage):
    for spec in synthesize(stage, SETTINGS):
        findings = [match for match in lint(json.dumps(spec.template), regions=LINT_REGIONS)
                    if match.rule.id not in JUSTIFIED_WARNINGS]
        assert findings == [], f"{spec.name}: " + "\n".join(str(match) for match in findings)


def test_cfn_lint_is_a_real_oracle():
    """A property the schema does not know is an error: the clean results above mean something."""
    template = stacks("dev")["endpoint"].template
    template["Resources"]["EndpointConfig"]["Properties"]["DataCaptureConfig"]["SamplingPercent"] = 100
    assert any(match.rule.id == "E3002" for match in lint(json.dumps(template), regions=LINT_REGIONS))


# --- synthesis -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", STAGES)
def test_synthesize_gives_four_stacks_with_their_parameters(stage):
    specs = synthesize(stage, SETTINGS)
    names = ResourceNames(stage)
    assert [spec.name for spec in specs] == list(names.stacks)
    zips = {package.name: package.key for package in lambda_zips()}
    for spec in specs:
        declared = spec.template["Parameters"]
        assert set(spec.parameters) <= set(declared), spec.name
        required = {name for name, body in declared.items() if "Default" not in body}
        assert required <= set(spec.parameters), spec.name
        assert all(isinstance(value, str) for value in spec.parameters.values())
        assert spec.capabilities == ("CAPABILITY_NAMED_IAM",)
        assert spec.tags == {"project": "cloudviz", "stage": stage}
    by_name = {spec.name: spec for spec in specs}
    assert by_name[names.endpoint_stack].parameters["ModelPackageArn"] == PACKAGE_ARN
    assert by_name[names.endpoint_stack].parameters["ModelVersion"] == "7"
    assert by_name[names.endpoint_stack].parameters["DataSchemaUri"] == SCHEMA_URI
    assert by_name[names.api_stack].parameters == {"CodeBucket": "cloudviz-artifacts", "ArtifactBucket":
                                                   "cloudviz-artifacts", "CodeKey": zips["serving_lambdas"]}
    automation = by_name[names.automation_stack].parameters
    assert automation.get("CodeKey") == (zips["automation"] if stage == "dev" else None)  # prod runs no function
    assert by_name[names.monitoring_stack].parameters == {
        "AlarmEmail": "ops@example.com", "BaselineStatisticsUri": BASELINE_URI, "CodeBucket": "cloudviz-artifacts",
        "CodeKey": zips["serving_lambdas"]}


def test_synthesize_needs_a_bucket_and_write_synth_writes_everything(tmp_path):
    with pytest.raises(ValueError, match="no artifact bucket"):
        synthesize("dev", AwsSettings())
    written = write_synth(tmp_path / "synth", "dev", SETTINGS)
    names = ResourceNames("dev")
    expected = {f"{stack}.json" for stack in names.stacks} | {f"{stack}.parameters.json" for stack in names.stacks}
    assert {path.name for path in written} == expected | {"serving_lambdas.zip", "automation.zip"}
    endpoint = json.loads((tmp_path / "synth" / f"{names.endpoint_stack}.json").read_text())
    assert endpoint == synthesize("dev", SETTINGS)[0].template
    parameters = json.loads((tmp_path / "synth" / f"{names.api_stack}.parameters.json").read_text())
    assert {item["ParameterKey"] for item in parameters} == {"CodeBucket", "CodeKey", "ArtifactBucket"}
    assert (tmp_path / "synth" / "serving_lambdas.zip").read_bytes() == serving_zip().data


def test_write_synth_writes_the_openapi_document_of_the_served_packages_schema(tmp_path):
    settings = AwsSettings(**{**SETTINGS.__dict__, "model_task": "multiclass", "class_names": "alder,birch,cedar",
                              "feature_names": "leaf_mm,bark_mm"})
    written = write_synth(tmp_path, "dev", settings)
    assert tmp_path / "openapi.json" in written
    document = json.loads((tmp_path / "openapi.json").read_text())
    validate_openapi(document)
    schemas = document["components"]["schemas"]
    assert (schemas["SingleInput"]["required"], schemas["Label"]["enum"]) == (["leaf_mm", "bark_mm"],
                                                                            ["alder", "birch", "cedar"])
    model = document["paths"]["/model"]["get"]["responses"]["200"]["content"]["application/json"]["example"]
    assert (model["endpoint"], model["model_version"]) == (ResourceNames("dev").endpoint_name, 7)


def test_unset_model_package_leaves_the_parameter_to_the_deployer():
    spec = synthesize("dev", AwsSettings(artifact_bucket="b"))[0]
    assert "ModelPackageArn" not in spec.parameters
    assert "Default" not in spec.template["Parameters"]["ModelPackageArn"]


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
        "ReadDataSchemas": ["s3:GetObject"], "OwnLogGroup": ["logs:CreateLogStream", "logs:PutLogEvents"]}
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
    assert names.inference_log_group in inference["OwnLogGroup"]["Resource"][0]["Fn::Sub"]
    retrieve = statements_by_sid(api, "RetrieveRole")
    assert {sid: statement["Action"] for sid, statement in retrieve.items()} == {
        "ReadPredictions": ["dynamodb:GetItem", "dynamodb:Query"],
        "OwnLogGroup": ["logs:CreateLogStream", "logs:PutLogEvents"]}
    assert names.retrieve_log_group in retrieve["OwnLogGroup"]["Resource"][0]["Fn::Sub"]
    drift = statements_by_sid(stacks("dev")["monitoring"].template, "DriftRole")
    assert {sid: statement["Action"] for sid, statement in drift.items()} == {
        "ReadPredictions": ["dynamodb:Query"], "ReadTheBaseline": ["s3:GetObject"],
        "OwnLogGroup": ["logs:CreateLogStream", "logs:PutLogEvents"]}
    assert drift["ReadPredictions"]["Resource"][0]["Fn::Sub"].endswith(f":table/{names.table_name}")
    baseline_arn = drift["ReadTheBaseline"]["Resource"][0]["Fn::Sub"]
    # The statistics of the baseline's bucket: a new baseline changes the function's environment, not this policy.
    assert baseline_arn[0] == "arn:${AWS::Partition}:s3:::${BaselineBucket}/*/statistics.json"
    assert baseline_arn[1]["BaselineBucket"] == {"Fn::Select": [0, {"Fn::Split": ["/", {"Fn::Select": [1, {
        "Fn::Split": ["://", {"Fn::Join": ["", [{"Ref": "BaselineStatisticsUri"}, "://"]]}]}]}]}]}
    assert names.drift_log_group in drift["OwnLogGroup"]["Resource"][0]["Fn::Sub"]

    automation = stacks("dev")["automation"].template
    scheduler = statements_by_sid(automation, "SchedulerRole")
    assert [statement["Action"] for statement in scheduler.values()] == [["sagemaker:StartPipelineExecution"]]
    assert scheduler["StartThePipeline"]["Resource"][0]["Fn::Sub"].endswith(f":pipeline/{PIPELINE_NAME.lower()}")
    redeploy_role = statements_by_sid(automation, "RedeployRole")
    assert redeploy_role["UpdateTheStacks"]["Action"] == ["cloudformation:UpdateStack"]
    assert [r["Fn::Sub"].rsplit(":", 1)[1] for r in redeploy_role["UpdateTheStacks"]["Resource"]] == [
        f"stack/{names.endpoint_stack}/*", f"stack/{names.monitoring_stack}/*"]
    assert redeploy_role["PassItsServiceRole"]["Resource"][0]["Fn::Sub"].endswith(
        f":role/{names.endpoint_deploy_role_name}")
    assert redeploy_role["PassItsServiceRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}


# --- names and key design, consistent across stacks ------------------------------------------------------------

@pytest.mark.parametrize("stage", STAGES)
def test_names_are_consistent_across_stacks(stage):
    names = ResourceNames(stage)
    specs = stacks(stage)
    endpoint, api = specs["endpoint"].template, specs["api"].template
    monitoring, automation = specs["monitoring"].template, specs["automation"].template
    assert endpoint["Resources"]["Endpoint"]["Properties"]["EndpointName"] == names.endpoint_name
    assert not resources_of(endpoint, "AWS::IAM::Role").keys() - {"ModelExecutionRole"}  # never its own manager
    functions = resources_of(api, "AWS::Lambda::Function")
    inference = functions["InferenceFunction"]["Properties"]
    assert inference["FunctionName"] == names.inference_function
    assert inference["Environment"]["Variables"]["ENDPOINT_NAME"] == names.endpoint_name
    assert inference["Environment"]["Variables"]["PREDICTION_STORE"] == {"Fn::Sub": "dynamodb:${PredictionTable}"}
    assert functions["RetrieveFunction"]["Properties"]["FunctionName"] == names.retrieve_function
    groups = {body["Properties"]["LogGroupName"] for body in resources_of(api, "AWS::Logs::LogGroup").values()}
    assert groups == {names.inference_log_group, names.retrieve_log_group}
    table = api["Resources"]["PredictionTable"]["Properties"]
    assert (table["TableName"], table["KeySchema"], table["AttributeDefinitions"], table["BillingMode"]) == (
        names.table_name, KEY_SCHEMA, ATTRIBUTE_DEFINITIONS, BILLING_MODE)
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert api["Resources"]["RestApi"]["Properties"]["Name"] == names.api_name
    assert monitoring["Resources"]["AlarmTopic"]["Properties"]["TopicName"] == names.topic_name
    assert monitoring["Resources"]["Dashboard"]["Properties"]["DashboardName"] == names.dashboard_name
    drift = monitoring["Resources"]["DriftFunction"]["Properties"]
    assert drift["FunctionName"] == names.drift_function
    assert drift["Environment"]["Variables"] == {"ENDPOINT_NAME": names.endpoint_name,
                                                 "PREDICTION_STORE": f"dynamodb:{names.table_name}",
                                                 "BASELINE_STATISTICS_URI": {"Ref": "BaselineStatisticsUri"}}
    assert monitoring["Resources"]["DriftLogGroup"]["Properties"]["LogGroupName"] == names.drift_log_group
    topic = {"Fn::Sub": f"arn:${{AWS::Partition}}:sns:${{AWS::Region}}:${{AWS::AccountId}}:{names.topic_name}"}
    for alarm in resources_of(endpoint, "AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [topic]
    if stage == "dev":  # an approval deploys dev only (tests/test_aws_redeploy.py)
        assert automation["Resources"]["EndpointDeployRole"]["Properties"]["RoleName"] == (
            names.endpoint_deploy_role_name)
        redeploy_function = automation["Resources"]["RedeployFunction"]["Properties"]
        assert redeploy_function["Environment"]["Variables"]["ENDPOINT_STACK"] == names.endpoint_stack
        assert redeploy_function["Environment"]["Variables"]["MODEL_PACKAGE_GROUP"] == names.model_package_group
        assert redeploy_function["Environment"]["Variables"]["CLOUDFORMATION_ROLE_ARN"] == {
            "Fn::GetAtt": ["EndpointDeployRole", "Arn"]}
        pattern = automation["Resources"]["ApprovalRule"]["Properties"]["EventPattern"]
        assert pattern["detail"] == {"ModelPackageGroupName": [DEFAULT_GROUP], "ModelApprovalStatus": ["Approved"]}
        assert pattern["detail-type"] == ["SageMaker Model Package State Change"]
    else:  # prod is updated by `cloudviz promote aws`/`deploy aws` only: its automation is the retraining schedule
        assert set(automation["Resources"]) == {"RetrainSchedule", "SchedulerRole"}
        assert set(automation["Outputs"]) == {"ScheduleName"}
    schedule = automation["Resources"]["RetrainSchedule"]["Properties"]
    assert (schedule["Name"], automation["Parameters"]["ScheduleState"]["Default"]) == (names.schedule_name,
                                                                                      "DISABLED")
    assert {"Name": "ModelPackageGroupName", "Value": DEFAULT_GROUP} in (
        schedule["Target"]["SageMakerPipelineParameters"]["PipelineParameterList"])


def test_endpoint_stack_serves_the_package_with_data_capture_and_prod_rolls_back():
    for stage in STAGES:
        endpoint = stacks(stage)["endpoint"].template
        config = endpoint["Resources"]["EndpointConfig"]["Properties"]
        assert config["ProductionVariants"][0]["VariantName"] == PRODUCTION_VARIANT
        assert {"Key": MODEL_VERSION_TAG, "Value": {"Ref": "ModelVersion"}} in config["Tags"]
        assert {"Key": DATA_SCHEMA_TAG, "Value": {"Ref": "DataSchemaUri"}} in config["Tags"]
        capture = config["DataCaptureConfig"]
        assert (capture["EnableCapture"], capture["InitialSamplingPercentage"]) == (True, 100)
        assert capture["CaptureOptions"] == [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]
        model = endpoint["Resources"]["Model"]["Properties"]
        assert model["PrimaryContainer"] == {"ModelPackageName": {"Ref": "ModelPackageArn"}}
        deployment = endpoint["Resources"]["Endpoint"]["Properties"].get("DeploymentConfig")
        if stage == "dev":
            assert deployment is None
            continue
        alarms = resources_of(endpoint, "AWS::CloudWatch::Alarm")
        assert deployment["AutoRollbackConfiguration"]["Alarms"] == [{"AlarmName": {"Ref": key}} for key in alarms]
        assert "BlueGreenUpdatePolicy" in deployment
        for alarm in alarms.values():
            variant = {"Name": "VariantName", "Value": PRODUCTION_VARIANT}
            assert variant in alarm["Properties"]["Dimensions"]


def rule_holds(condition: object, parameters: dict[str, str]) -> bool:
    """A template Rules assertion evaluated as CloudFormation does, for the functions the api stack's rule uses."""
    (name, arguments), = condition.items()
    if name == "Ref":
        return parameters[arguments]
    values = [rule_holds(argument, parameters) if isinstance(argument, dict) else argument for argument in arguments]
    return {"Fn::Equals": lambda: values[0] == values[1], "Fn::Not": lambda: not values[0],
            "Fn::And": lambda: all(values), "Fn::Or": lambda: any(values)}[name]()


def resolved(value: object, parameters: dict[str, str]) -> str:
    """An environment value of the template with the stack's parameter values (other references: a name)."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return parameters[value["Ref"]]
    return "dynamodb:cloudviz-dev-predictions" if "Fn::Sub" in value else ""  # the table; no iris aliases


@pytest.mark.parametrize(("task", "features", "classes", "accepted"), [
    ("multiclass", "x1,x2,x3,x4", "setosa,virginica,versicolor", True),
    ("binary", "age,income", "no,yes", True),
    ("regression", "rooms,age", "", True),
    ("regression", "rooms,age", "low,high", False),
    ("multiclass", "a,b", "", False),
])
def test_the_api_stack_takes_each_tasks_schema_and_its_function_serves_it(task, features, classes, accepted):
    """What `deploy aws` passes for a package's schema fits the api stack's parameters (their allowed values and
    patterns), its rule refuses classes that do not fit the task, and the inference function's environment
    built from them is one the serving handlers accept (their own configuration parser)."""
    settings = AwsSettings(**{**SETTINGS.__dict__, "model_task": task, "feature_names": features,
                              "class_names": classes})
    api = stacks("dev", settings)["api"]
    declared = api.template["Parameters"]
    given = {key: api.parameters[key] for key in ("ModelTask", "FeatureNames", "ClassNames")}
    assert given == {"ModelTask": task, "FeatureNames": features, "ClassNames": classes}
    assert given["ModelTask"] in declared["ModelTask"]["AllowedValues"]
    assert all(re.fullmatch(declared[key]["AllowedPattern"], given[key]) for key in ("FeatureNames", "ClassNames"))
    (rule,) = api.template["Rules"].values()
    assert [rule_holds(a["Assert"], given) for a in rule["Assertions"]] == [accepted]
    if accepted:
        variables = api.template["Resources"]["InferenceFunction"]["Properties"]["Environment"]["Variables"]
        values = {**{key: str(body["Default"]) for key, body in declared.items() if "Default" in body}, **given}
        served = inference_settings({key: resolved(value, values) for key, value in variables.items()})
        assert (served.task, ",".join(served.feature_names), ",".join(served.class_names)) == (task, features, classes)
    assert not re.fullmatch(declared["ClassNames"]["AllowedPattern"], "a,,b")


def test_a_package_without_a_schema_leaves_the_api_stacks_defaults():
    """A version registered before schemas: the template's defaults, the pipeline's iris contract, multiclass."""
    api = stacks("dev")["api"]
    assert not {"ModelTask", "FeatureNames", "ClassNames"} & set(api.parameters)
    defaults = {key: body["Default"] for key, body in api.template["Parameters"].items() if "Default" in body}
    assert (defaults["ModelTask"], defaults["ClassNames"]) == ("multiclass", "setosa,virginica,versicolor")
    (rule,) = api.template["Rules"].values()
    assert rule_holds(rule["Assertions"][0]["Assert"], defaults)


def test_api_routes_require_the_key_and_preflight_does_not():
    api = stacks("dev")["api"].template
    methods = {(body["Properties"]["ResourceId"]["Ref"], body["Properties"]["HttpMethod"]): body["Properties"]
               for body in resources_of(api, "AWS::ApiGateway::Method").values()}
    assert set(methods) == {("PredictionsResource", "POST"), ("PredictionsResource", "GET"),
                            ("PredictionIdResource", "GET"), ("PredictionsResource", "OPTIONS"),
                            ("PredictionIdResource", "OPTIONS"), ("ModelResource", "GET"), ("ModelResource", "OPTIONS")}
    assert "InferenceFunction" in methods["ModelResource", "GET"]["Integration"]["Uri"]["Fn::Sub"]
    for (_, verb), method in methods.items():
        assert method["ApiKeyRequired"] is (verb != "OPTIONS")
        assert method["Integration"]["Type"] == ("MOCK" if verb == "OPTIONS" else "AWS_PROXY")
    plan = api["Resources"]["UsagePlan"]["Properties"]
    assert plan["Throttle"] == {"RateLimit": {"Ref": "ThrottleRateLimit"}, "BurstLimit": {"Ref": "ThrottleBurstLimit"}}
    assert set(api["Outputs"]) >= {"ApiUrl", "ApiKeyId", "TableName"}
    assert len(resources_of(api, "AWS::ApiGateway::Deployment")) == 1


# --- alarms and dashboard, from the local rules and panels -----------------------------------------------------

@pytest.mark.parametrize("stage", STAGES)
def test_alarms_are_the_shared_rules(stage):
    names = ResourceNames(stage)
    specs = stacks(stage)
    alarms = {body["Properties"]["AlarmName"]: body["Properties"]
              for kind in ("endpoint", "monitoring")
              for body in resources_of(specs[kind].template, "AWS::CloudWatch::Alarm").values()}
    expected = {names.alarm_name(rule.name): rule for rule in ALARM_RULES}
    expected |= {f"{names.alarm_name(rule.name)}-{function}": rule
                 for rule in AWS_ONLY_RULES for function in ("inference", "retrieve")}
    assert set(alarms) == set(expected)
    for name, rule in expected.items():
        alarm = alarms[name]
        assert (alarm["Namespace"], alarm["MetricName"], alarm["ComparisonOperator"]) == (
            rule.namespace, rule.metric_name, rule.comparison)
        assert [dimension["Name"] for dimension in alarm["Dimensions"]] == list(rule.dimensions)
    latency = alarms[names.alarm_name("cloudviz-endpoint-model-latency-p99")]
    assert (latency["Unit"], latency["Threshold"], latency["ExtendedStatistic"]) == ("Microseconds", 500_000.0, "p99")
    functions = {alarms[f"{names.alarm_name('cloudviz-lambda-errors')}-{suffix}"]["Dimensions"][0]["Value"]
                 for suffix in ("inference", "retrieve")}
    assert functions == {names.inference_function, names.retrieve_function}


def test_the_drift_function_runs_once_per_drift_alarm_period_when_there_is_a_baseline():
    monitoring = stacks("dev")["monitoring"].template
    drift = {key: body for key, body in monitoring["Resources"].items() if key.startswith("Drift")}
    assert {key: body["Type"] for key, body in drift.items()} == {
        "DriftLogGroup": "AWS::Logs::LogGroup", "DriftRole": "AWS::IAM::Role", "DriftFunction": "AWS::Lambda::Function",
        "DriftSchedule": "AWS::Events::Rule", "DriftSchedulePermission": "AWS::Lambda::Permission"}
    # Without baseline statistics (a package registered without them) none of it is created.
    assert all(body["Condition"] == "MeasuresDrift" for body in drift.values())
    assert monitoring["Conditions"]["MeasuresDrift"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "BaselineStatisticsUri"}, ""]}]}
    assert monitoring["Outputs"]["DriftFunctionName"]["Condition"] == "MeasuresDrift"
    assert drift["DriftFunction"]["Properties"]["Handler"] == "serving_lambdas.drift_monitor.handler"
    assert drift["DriftFunction"]["Properties"]["Code"] == {"S3Bucket": {"Ref": "CodeBucket"},
                                                            "S3Key": {"Ref": "CodeKey"}}
    schedule = drift["DriftSchedule"]["Properties"]
    assert schedule["Targets"] == [{"Id": "drift", "Arn": {"Fn::GetAtt": ["DriftFunction", "Arn"]}}]
    assert drift["DriftSchedulePermission"]["Properties"]["SourceArn"] == {"Fn::GetAtt": ["DriftSchedule", "Arn"]}
    # Each period of the drift alarms gets a datapoint: the schedule is their period.
    periods = {rule.period_seconds for rule in ALARM_RULES if rule.metric_name in DRIFT_METRICS}
    assert periods == {60.0} and schedule["ScheduleExpression"] == drift_schedule() == "rate(1 minute)"
    parameter = monitoring["Parameters"]["BaselineStatisticsUri"]
    assert parameter["Default"] == BASELINE_URI
    assert synthesize("dev", AwsSettings(artifact_bucket="b"))[2].template["Parameters"]["BaselineStatisticsUri"][
        "Default"] == ""


class _Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.titles: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._inside = tag == "h3"
        if self._inside:
            self.titles.append("")

    def handle_endtag(self, tag: str) -> None:
        self._inside = self._inside and tag != "h3"

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.titles[-1] += data


def test_dashboard_has_the_local_dashboards_metric_panels():
    parser = _Headings()
    parser.feed(DASHBOARD_HTML.read_text(encoding="utf-8"))
    local = [title.strip() for title in parser.titles]
    assert set(LOCAL_ONLY_PANELS) <= set(local)
    metric_panels = [title for title in local if title not in LOCAL_ONLY_PANELS]
    names = ResourceNames("dev")
    assert list(dashboard_panels(names)) == metric_panels
    body = stacks("dev")["monitoring"].template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(body)["widgets"]
    assert [widget["properties"]["title"] for widget in widgets] == metric_panels
    alarm_widget = next(widget for widget in widgets if widget["type"] == "alarm")
    listed = {arn.rsplit(":alarm:", 1)[1] for arn in alarm_widget["properties"]["alarms"]}
    declared = {body["Properties"]["AlarmName"] for kind in ("endpoint", "monitoring")
                for body in resources_of(stacks("dev")[kind].template, "AWS::CloudWatch::Alarm").values()}
    assert listed == declared


# --- Lambda zips -----------------------------------------------------------------------------------------------

ISOLATED_IMPORT = """
import importlib, json, os, sys, sysconfig
preloaded = set(sys.modules)  # the interpreter's own start-up (site hooks), not the package's imports
root = sys.argv[1]
# The project is out of sight: its editable install's finder goes, and so does its root on the path.
sys.meta_path[:] = [finder for finder in sys.meta_path if "__editable__" not in getattr(finder, "__module__", "")]
sys.path[:] = [root] + [p for p in sys.path if p and os.path.realpath(p) != {project!r}]
for module in sys.argv[2:]:
    importlib.import_module(module.rpartition(".")[0]).__dict__[module.rpartition(".")[2]]
stdlib = sysconfig.get_paths(vars={{"base": sys.base_prefix, "platbase": sys.base_prefix}})["stdlib"]
allowed = {allowed!r}
outside = sorted(
    name for name, module in list(sys.modules.items())
    if name not in preloaded and getattr(module, "__file__", None)
    and not module.__file__.startswith(root)
    and not (module.__file__.startswith(stdlib) and "site-packages" not in module.__file__)
    and name.partition(".")[0] not in allowed
)
print(json.dumps(outside))
"""


def import_from_zip(archive: bytes, directory: Path, handlers: list[str]) -> list[str]:
    """Unpack the zip and import its handlers in a fresh interpreter that cannot see the project: the modules
    loaded from anywhere but the zip, the standard library and boto3's distribution."""
    directory.mkdir()
    (directory / "package.zip").write_bytes(archive)
    with zipfile.ZipFile(directory / "package.zip") as opened:
        opened.extractall(directory / "unpacked")
    script = ISOLATED_IMPORT.format(project=str(ROOT), allowed=BOTO3_DISTRIBUTION)
    result = subprocess.run([sys.executable, "-I", "-c", script, str(directory / "unpacked"), *handlers],
                            capture_output=True, text=True, cwd=directory, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_serving_zip_holds_serving_lambdas_and_imports_nothing_else(tmp_path):
    package = serving_zip()
    with zipfile.ZipFile(__import__("io").BytesIO(package.data)) as archive:
        entries = archive.namelist()
    assert all(entry.startswith("serving_lambdas/") and entry.endswith(".py") for entry in entries)
    assert {"serving_lambdas/inference.py", "serving_lambdas/retrieve.py", "serving_lambdas/drift_monitor.py",
            "serving_lambdas/drift.py", "serving_lambdas/store/dynamodb.py"} <= set(entries)
    assert serving_zip().data == package.data and package.key.endswith(f"-{package.sha256[:16]}.zip")
    assert import_from_zip(package.data, tmp_path / "serving", [
        "serving_lambdas.inference.handler", "serving_lambdas.retrieve.handler",
        "serving_lambdas.drift_monitor.handler", "serving_lambdas.store.dynamodb.DynamoDbStore"]) == []


def test_automation_zip_holds_its_functions_on_boto3(tmp_path):
    package = automation_zip()
    with zipfile.ZipFile(__import__("io").BytesIO(package.data)) as archive:
        assert archive.namelist() == ["redeploy.py", "smoke_test.py"]
    assert automation_zip().data == package.data
    assert import_from_zip(package.data, tmp_path / "automation", ["redeploy.handler", "smoke_test.handler"]) == []


@pytest.mark.parametrize("expression", ["cron(0 3 ? * MON *)", "rate(7 days)", "at(2026-12-01T03:00:00)"])
def test_the_automation_stack_takes_every_schedule_the_cli_takes(expression):
    from deploy.aws.stage_release import schedule_settings

    settings = AwsSettings(artifact_bucket="b", **schedule_settings(expression))
    automation = synthesize("dev", settings)[3]
    pattern = automation.template["Parameters"]["ScheduleExpression"]["AllowedPattern"]
    assert re.fullmatch(pattern, automation.parameters["ScheduleExpression"])


def test_the_smoke_test_outlasts_the_longest_version_cache_the_api_takes():
    """After an update dev's smoke test waits until the inference function's version cache expired (the api
    stack's ModelVersionTtlSeconds): its function's timeout covers the longest TTL the api stack accepts, the wait's
    margin and the two API calls, within Lambda's 900 s."""
    specs = stacks("dev")
    longest_ttl = specs["api"].template["Parameters"]["ModelVersionTtlSeconds"]["MaxValue"]
    timeout = specs["automation"].template["Resources"]["SmokeTestFunction"]["Properties"]["Timeout"]
    assert longest_ttl + 2 * REQUEST_TIMEOUT_SECONDS <= longest_run_seconds(longest_ttl) <= timeout <= 900


def test_only_the_zips_a_stage_runs_are_uploaded():
    packages = lambda_zips()
    for stage, expected in (("dev", {"serving_lambdas", "automation"}), ("prod", {"serving_lambdas"})):
        used = referenced_packages(synthesize(stage, SETTINGS, packages), packages)
        assert {package.name for package in used} == expected, stage  # prod's automation stack runs no function
