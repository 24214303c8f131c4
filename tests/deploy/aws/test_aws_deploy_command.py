"""The `cloudviz deploy aws` / `cloudviz destroy aws` commands against moto, on the real stacks: synth, dry run,
deploy, the drift function's baseline, destroy, the retraining schedule (the approval-triggered redeploy:
test_aws_redeploy.py)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from deployer_account import ACCOUNT, BASELINE_URI, BUCKET, NAMES, REGION, cli_error, cli_json, register, register_more
from moto_cloudformation import cloudformation_like_aws  # noqa: F401  (a fixture)

from cloudviz.cli import main
from deploy.aws.deployer import CREATED, UNCHANGED, describe_stack
from deploy.aws.lambda_zip import lambda_zips
from deploy.aws.names import ResourceNames

pytestmark = [
    pytest.mark.usefixtures("cloudformation_like_aws"),
    # moto's CloudFormation skips some resource types of the real stacks (alarms, SNS subscriptions, API keys,
    # schedules...) with this warning; the template tests (test_aws_*templates.py) check those resources.
    pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto"),
]


# The commands, on the real stacks -------------------------------------------


@pytest.fixture
def account(aws, home, monkeypatch):
    """An account whose registry group has version 1 Approved; the CLI's region and bucket in the environment."""
    monkeypatch.setenv("CLOUDVIZ_BUCKET", BUCKET)
    monkeypatch.delenv("CLOUDVIZ_ALARM_EMAIL", raising=False)
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    return register(sagemaker, NAMES.model_package_group, ["Approved"])


def test_synth_writes_templates_and_zips_without_calling_aws(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # any AWS call would fail at once
    document = cli_json(capsys, "deploy", "aws", "--stage", "prod", "--synth", str(tmp_path / "out"),
                        "--bucket", BUCKET, "--model-package-arn", SYNTH_PACKAGE)
    written = {Path(path).name for path in document["written"]}
    names = ResourceNames("prod")
    for stack in names.stacks:
        assert {f"{stack}.json", f"{stack}.parameters.json"} <= written
        assert json.loads((tmp_path / "out" / f"{stack}.json").read_text())["Resources"]
    assert {"serving_lambdas.zip", "automation.zip"} <= written
    assert "--bucket is required" in cli_error(capsys, "deploy", "aws", "--stage", "dev", "--synth", str(tmp_path),
                                               "--model-package-arn", SYNTH_PACKAGE)
    error = cli_error(capsys, "deploy", "aws", "--stage", "dev", "--synth", str(tmp_path), "--bucket", BUCKET)
    assert error.strip().endswith("--synth needs --model-package-arn ARN: the endpoint stack's ModelPackageArn "
                                  "parameter has no default (aws sagemaker list-model-packages "
                                  "--model-package-group-name GROUP)")
    error = cli_error(capsys, "deploy", "aws", "--stage", "dev", "--synth", str(tmp_path), "--bucket", BUCKET,
                      "--model-package-arn", "arn:aws:sagemaker:us-east-1:123456789012:model-package/cloudviziris")
    assert "expected the ARN of a model package version" in error and "Traceback" not in error


SYNTH_PACKAGE = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/cloudviziris/3"


def refusal(definition: dict, value: str) -> str:
    """Why CloudFormation refuses a parameter value, by its documented constraints (the whole value matches
    AllowedPattern; AllowedValues; MinValue/MaxValue of a Number)."""
    if "AllowedPattern" in definition and not re.fullmatch(definition["AllowedPattern"], value):
        return f"{value!r} does not match {definition['AllowedPattern']}"
    if "AllowedValues" in definition and value not in map(str, definition["AllowedValues"]):
        return f"{value!r} not in {definition['AllowedValues']}"
    if definition["Type"] == "Number" and not (float(definition.get("MinValue", "-inf")) <= float(value)
                                               <= float(definition.get("MaxValue", "inf"))):
        return f"{value} out of range"
    return ""


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_synth_parameter_files_deploy_their_templates_as_they_are(stage, tmp_path, monkeypatch, capsys):
    """`aws cloudformation create-stack --template-body file://X.json --parameters file://X.parameters.json`
    must work: every parameter without a Default has a value, every value meets the parameter's constraints and
    cfn-lint's resource schemas once resolved, and the request is valid for the CloudFormation service model."""
    from botocore.session import get_session
    from botocore.validate import ParamValidator

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # any AWS call would fail at once
    out = tmp_path / "out"
    cli_json(capsys, "deploy", "aws", "--stage", stage, "--synth", str(out), "--bucket", BUCKET,
             "--model-package-arn", SYNTH_PACKAGE)
    create_stack = get_session().get_service_model("cloudformation").operation_model("CreateStack")
    checked: set[str] = set()
    for stack in ResourceNames(stage).stacks:
        template = json.loads((out / f"{stack}.json").read_text())
        parameters = json.loads((out / f"{stack}.parameters.json").read_text())
        request = {"StackName": stack, "TemplateBody": json.dumps(template), "Parameters": parameters,
                   "Capabilities": ["CAPABILITY_NAMED_IAM"]}
        report = ParamValidator().validate(request, create_stack.input_shape)
        assert not report.has_errors(), report.generate_report()
        values = {item["ParameterKey"]: item["ParameterValue"] for item in parameters}
        assert set(values) <= set(template["Parameters"]), stack
        required = {name for name, definition in template["Parameters"].items() if "Default" not in definition}
        assert required <= set(values), f"{stack}: no value for {required - set(values)}"
        checked |= required
        assert {name: refusal(template["Parameters"][name], value) for name, value in values.items()} == {
            name: "" for name in values}
        lint = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(out / f"{stack}.json"),
                               "--parameter-files", str(out / f"{stack}.parameters.json")],
                              capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
    assert {"CodeBucket", "CodeKey"} <= checked  # the check saw parameters without a default
    endpoint = json.loads((out / f"{ResourceNames(stage).endpoint_stack}.parameters.json").read_text())
    assert {"ParameterKey": "ModelPackageArn", "ParameterValue": SYNTH_PACKAGE} in endpoint
    assert {"ParameterKey": "ModelVersion", "ParameterValue": "3"} in endpoint


def test_deploy_needs_an_approved_model_and_the_options(aws, home, monkeypatch, capsys):
    monkeypatch.delenv("CLOUDVIZ_BUCKET", raising=False)
    assert "--bucket is required" in cli_error(capsys, "deploy", "aws", "--stage", "dev")
    error = cli_error(capsys, "deploy", "aws", "--stage", "dev", "--bucket", BUCKET)
    assert f"no Approved model package in group '{NAMES.model_package_group}'" in error
    assert "Traceback" not in error
    assert all(describe_stack(boto3.client("cloudformation", region_name=REGION), n) is None for n in NAMES.stacks)


def test_dry_run_prints_every_change_set_and_changes_nothing(account, capsys):
    code = main(["deploy", "aws", "--stage", "dev", "--region", REGION, "--dry-run"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert [line for line in captured.out.splitlines() if line.startswith("cloudviz-dev-")] == [
        f"{stack}: dry-run" for stack in NAMES.stacks]
    assert "nothing was changed" in captured.out
    for stack in NAMES.stacks:
        assert f"{stack}: creating a change set (CREATE)" in captured.err
    assert re.search(r"^  Add +AWS::SageMaker::Endpoint +\w+$", captured.err, re.MULTILINE)
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    assert all(describe_stack(cloudformation, stack) is None for stack in NAMES.stacks)
    assert boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_deploy_creates_the_four_stacks_then_finds_nothing_to_change(account, capsys):
    first = cli_json(capsys, "deploy", "aws", "--stage", "dev", "--alarm-email", "ops@example.com")
    assert [(s["stack_name"], s["status"]) for s in first["stacks"]] == [(n, CREATED) for n in NAMES.stacks]
    assert first["model_package_arn"] == account[0] and first["model_version"] == 1
    assert first["api_url"].startswith("https://") and first["api_url"].endswith(".amazonaws.com/dev")
    s3 = boto3.client("s3", region_name=REGION)
    uploaded = {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert uploaded == {package.key for package in lambda_zips()}
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    endpoint = describe_stack(cloudformation, NAMES.endpoint_stack)
    assert {p["ParameterKey"]: p["ParameterValue"] for p in endpoint["Parameters"]}["ModelPackageArn"] == account[0]
    # Deploying again, without --alarm-email, keeps the subscription and changes nothing.
    again = cli_json(capsys, "deploy", "aws", "--stage", "dev")
    assert [(s["stack_name"], s["status"]) for s in again["stacks"]] == [(n, UNCHANGED) for n in NAMES.stacks]
    assert again["api_url"] == first["api_url"]


def stack_parameters(stack_name: str) -> dict[str, str]:
    stack = describe_stack(boto3.client("cloudformation", region_name=REGION), stack_name)
    return {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}


def test_the_served_packages_baseline_statistics_go_to_the_drift_function(account, capsys):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    register_more(sagemaker, ["Approved"], baseline=BASELINE_URI)
    boto3.client("s3", region_name=REGION).put_object(  # what dev's smoke test reads (as the drift function)
        Bucket=BUCKET, Key=BASELINE_URI.removeprefix(f"s3://{BUCKET}/"), Body=b'{"features": {}}')
    document = cli_json(capsys, "deploy", "aws", "--stage", "dev")
    assert (document["model_version"], document["baseline_statistics_uri"]) == (2, BASELINE_URI)
    parameters = stack_parameters(NAMES.monitoring_stack)
    assert parameters["BaselineStatisticsUri"] == BASELINE_URI
    (serving,) = [package for package in lambda_zips() if package.name == "serving_lambdas"]
    assert (parameters["CodeBucket"], parameters["CodeKey"]) == (BUCKET, serving.key)
    functions = boto3.client("lambda", region_name=REGION)
    function = functions.get_function_configuration(FunctionName=NAMES.drift_function)
    assert function["Handler"] == "serving_lambdas.drift_monitor.handler"
    assert function["Environment"]["Variables"] == {"ENDPOINT_NAME": NAMES.endpoint_name,
                                                    "PREDICTION_STORE": f"dynamodb:{NAMES.table_name}",
                                                    "BASELINE_STATISTICS_URI": BASELINE_URI}
    events = boto3.client("events", region_name=REGION)
    assert events.describe_rule(Name=NAMES.drift_schedule_name)["ScheduleExpression"] == "rate(1 minute)"
    (target,) = events.list_targets_by_rule(Rule=NAMES.drift_schedule_name)["Targets"]
    assert target["Arn"] == function["FunctionArn"]


def test_a_package_without_baseline_statistics_deploys_without_the_drift_function(account, capsys):
    """A version registered before the pipeline attached its baseline statistics, or by hand. (A fresh stack:
    moto's stack updates do not add and remove the resources whose condition changes as CloudFormation does.)"""
    assert main(["deploy", "aws", "--stage", "dev", "--region", REGION, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["baseline_statistics_uri"] == ""
    assert ("drift: version 1 was registered without baseline statistics (ModelDataQuality), so drift is not "
            "measured on AWS") in captured.err
    assert stack_parameters(NAMES.monitoring_stack)["BaselineStatisticsUri"] == ""
    functions = boto3.client("lambda", region_name=REGION).list_functions()["Functions"]
    assert NAMES.drift_function not in {function["FunctionName"] for function in functions}
    rules = boto3.client("events", region_name=REGION).list_rules()["Rules"]
    assert NAMES.drift_schedule_name not in {rule["Name"] for rule in rules}


def test_destroy_removes_the_stacks_and_asks_first(account, capsys, monkeypatch):
    cli_json(capsys, "deploy", "aws", "--stage", "dev")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal to ask on
    assert "add --yes" in cli_error(capsys, "destroy", "aws", "--stage", "dev")
    assert describe_stack(boto3.client("cloudformation", region_name=REGION), NAMES.endpoint_stack) is not None
    document = cli_json(capsys, "destroy", "aws", "--stage", "dev", "--yes")
    # The automation stack last: it holds the role CloudFormation deletes the endpoint stack through.
    assert document["removed_stacks"] == [NAMES.monitoring_stack, NAMES.api_stack, NAMES.endpoint_stack,
                                          NAMES.automation_stack]
    assert "retained_table" not in document, "dev's table goes with its stack"
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    assert all(describe_stack(cloudformation, stack) is None for stack in NAMES.stacks)
    roles = boto3.client("iam", region_name=REGION).list_roles()["Roles"]
    assert not [role["RoleName"] for role in roles if role["RoleName"].startswith(NAMES.prefix)]
    main(["destroy", "aws", "--stage", "dev", "--yes", "--region", REGION])
    assert "Nothing to remove: no dev stack exists in us-east-1." in capsys.readouterr().out
    assert [result["status"] for result in cli_json(capsys, "deploy", "aws", "--stage", "dev")["stacks"]] == [
        "created"] * len(NAMES.stacks)


def test_destroying_prod_says_its_prediction_table_was_kept(account, capsys):
    prod = ResourceNames("prod")
    table = {"PredictionTable": {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Retain", "Properties": {
        "TableName": prod.table_name, "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}]}}}
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=prod.api_stack, TemplateBody=json.dumps({"Resources": table}))
    document = cli_json(capsys, "destroy", "aws", "--stage", "prod", "--yes")
    assert (document["removed_stacks"], document["retained_table"]) == ([prod.api_stack], prod.table_name)
    assert prod.table_name in boto3.client("dynamodb", region_name=REGION).list_tables()["TableNames"]
    main(["destroy", "aws", "--stage", "prod", "--yes", "--region", REGION])
    assert "Nothing to remove" in capsys.readouterr().out


def test_the_retraining_schedule_is_off_until_asked_for_and_kept_across_deploys(account, capsys):
    cloudformation = boto3.client("cloudformation", region_name=REGION)

    def schedule() -> tuple[str, str]:
        parameters = {p["ParameterKey"]: p["ParameterValue"]
                      for p in describe_stack(cloudformation, NAMES.automation_stack)["Parameters"]}
        return parameters["ScheduleState"], parameters["ScheduleExpression"]

    cli_json(capsys, "deploy", "aws", "--stage", "dev")
    assert schedule()[0] == "DISABLED"
    assert main(["deploy", "aws", "--stage", "dev", "--region", REGION, "--retrain-schedule", "weekly"]) == 2
    assert "--retrain-schedule 'weekly': expected cron(...), rate(...) or at(...)" in capsys.readouterr().err
    cli_json(capsys, "deploy", "aws", "--stage", "dev", "--retrain-schedule", "rate(7 days)")
    assert schedule() == ("ENABLED", "rate(7 days)")
    cli_json(capsys, "deploy", "aws", "--stage", "dev")  # not given: as the previous deploy left it
    assert schedule() == ("ENABLED", "rate(7 days)")
    cli_json(capsys, "deploy", "aws", "--stage", "dev", "--retrain-schedule", "")
    assert schedule()[0] == "DISABLED"
