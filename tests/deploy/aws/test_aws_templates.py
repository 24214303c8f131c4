"""The generated CloudFormation templates, checked offline: cfn-lint (AWS's resource schemas), synthesis, and
one source of names and key design across the stacks (least privilege: test_aws_iam_policies.py; the Lambda
zips: test_aws_lambda_zips.py; alarms and dashboard: test_aws_monitoring_templates.py)."""

from __future__ import annotations

import json
import re

import pytest
from cfnlint.api import lint
from openapi_spec_validator import validate as validate_openapi
from template_stacks import BASELINE_URI, PACKAGE_ARN, SCHEMA_URI, SETTINGS, STAGES, resources_of, stacks

from deploy.aws.lambda_zip import lambda_zips, serving_zip
from deploy.aws.names import MODEL_VERSION_TAG, PRODUCTION_VARIANT, ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.stacks import synthesize, write_synth
from deploy.aws.templates.api import access_log_group
from pipelines.definition import DEFAULT_GROUP, PIPELINE_NAME
from serving_lambdas.config import inference_settings
from serving_lambdas.served_version import DATA_SCHEMA_TAG
from serving_lambdas.store.dynamodb import ATTRIBUTE_DEFINITIONS, BILLING_MODE, KEY_SCHEMA

LINT_REGIONS = ["us-east-1", "eu-west-1"]
# cfn-lint findings accepted, each with its reason (rule id -> why). None today: every template lints clean.
JUSTIFIED_WARNINGS: dict[str, str] = {}


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
    assert automation.get("CodeKey") == zips["automation"]  # every stage runs the retrain function
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
    assert groups == {names.inference_log_group, names.retrieve_log_group, access_log_group(names)}
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
    if stage == "dev":  # an approval deploys dev only (test_aws_redeploy.py)
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
    else:  # prod is updated by `cloudviz promote aws`/`deploy aws` only: its automation is retraining
        assert set(automation["Resources"]) == {"RetrainSchedule", "SchedulerRole", "RetrainFunction", "RetrainRole",
                                                "RetrainLogGroup", "RetrainInvokeConfig"}
        assert set(automation["Outputs"]) == {"ScheduleName", "RetrainFunctionName"}
    schedule = automation["Resources"]["RetrainSchedule"]["Properties"]
    assert (schedule["Name"], automation["Parameters"]["ScheduleState"]["Default"]) == (names.schedule_name,
                                                                                      "DISABLED")
    assert automation["Resources"]["RetrainFunction"]["Properties"]["Environment"]["Variables"][
        "MODEL_PACKAGE_GROUP"] == DEFAULT_GROUP  # the schedule's target


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
                            ("PredictionIdResource", "OPTIONS"), ("ModelResource", "GET"), ("ModelResource", "OPTIONS"),
                            ("FeedbackResource", "POST"), ("FeedbackResource", "OPTIONS")}
    assert "InferenceFunction" in methods["ModelResource", "GET"]["Integration"]["Uri"]["Fn::Sub"]
    assert "InferenceFunction" in methods["FeedbackResource", "POST"]["Integration"]["Uri"]["Fn::Sub"]
    assert methods["FeedbackResource", "POST"]["RequestParameters"] == {"method.request.path.id": True}
    assert api["Resources"]["PostFeedbackMethodPermission"]["Properties"]["SourceArn"]["Fn::Sub"].endswith(
        "/*/POST/predictions/*/feedback")
    for (_, verb), method in methods.items():
        assert method["ApiKeyRequired"] is (verb != "OPTIONS")
        assert method["Integration"]["Type"] == ("MOCK" if verb == "OPTIONS" else "AWS_PROXY")
    plan = api["Resources"]["UsagePlan"]["Properties"]
    assert plan["Throttle"] == {"RateLimit": {"Ref": "ThrottleRateLimit"}, "BurstLimit": {"Ref": "ThrottleBurstLimit"}}
    assert set(api["Outputs"]) >= {"ApiUrl", "ApiKeyId", "TableName"}
    assert len(resources_of(api, "AWS::ApiGateway::Deployment")) == 1
