"""The AWS deployer against moto: registry selection, change sets (create, update, no change, dry run, failure),
destroy, and the `cloudviz deploy aws` / `cloudviz destroy aws` commands (the approval-triggered redeploy:
tests/test_aws_redeploy.py).

moto's change sets are made to behave as CloudFormation's by the ``cloudformation_like_aws`` fixture
(tests/moto_cloudformation.py documents each difference); nothing of ours is mocked.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.cloudformation.models import cloudformation_backends
from moto_aws import urllib_through_requests
from moto_cloudformation import cloudformation_like_aws  # noqa: F401  (a fixture)
from moto_sagemaker import patch_update_model_package

from cloudviz.cli import main
from deploy.aws.deployer import (
    CREATED,
    DRY_RUN,
    TEMPLATE_BODY_LIMIT,
    TEMPLATE_PREFIX,
    UNCHANGED,
    UPDATED,
    ResourceChange,
    deploy_stack,
    describe_stack,
    destroy_stacks,
    format_changes,
)
from deploy.aws.lambda_zip import lambda_zips
from deploy.aws.names import ResourceNames
from deploy.aws.registry import baseline_statistics_uri, latest_approved_package
from deploy.aws.stacks import StackSpec
from pipelines.errors import UserError

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "cloudviz-artifacts-test"
BASELINE_URI = f"s3://{BUCKET}/cloudviz/executions/abc123/Preprocess/baseline/statistics.json"

pytestmark = [
    pytest.mark.usefixtures("cloudformation_like_aws"),
    # moto's CloudFormation skips some resource types of the real stacks (alarms, SNS subscriptions, API keys,
    # schedules...) with this warning; tests/test_aws_templates.py checks those resources in the templates.
    pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto"),
]


@pytest.fixture
def aws(monkeypatch):
    """moto's in-process AWS with dummy credentials and an artifact bucket: nothing leaves the process (dev's
    smoke test, which `deploy aws` runs, calls the API with urllib: routed to moto too). UpdateModelPackage, which
    records the smoke test, changes only what it names, as SageMaker's does."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    urllib_through_requests(monkeypatch)
    patch_update_model_package(monkeypatch)
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture
def cloudformation(aws):
    return boto3.client("cloudformation", region_name=REGION)


@pytest.fixture
def s3(aws):
    return boto3.client("s3", region_name=REGION)


def topic_template(*topics: str, bucket: str | None = None) -> dict:
    """A small hand-written template: SNS topics (a parameter names the first) and optionally a bucket."""
    resources = {}
    outputs = {}
    for index, topic in enumerate(topics):
        logical = f"Topic{index}"
        name = {"Ref": "TopicName"} if index == 0 else topic
        resources[logical] = {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": name}}
        outputs[f"{logical}Arn"] = {"Value": {"Ref": logical}}
    if bucket:
        resources["Bucket"] = {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": bucket}}
        outputs["BucketName"] = {"Value": {"Ref": "Bucket"}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": {"TopicName": {"Type": "String", "Default": topics[0]}},
        "Resources": resources,
        "Outputs": outputs,
    }


def spec(template: dict, name: str = "cloudviz-dev-test", **parameters: str) -> StackSpec:
    return StackSpec(name, template, parameters, tags={"project": "cloudviz", "stage": "dev"})


def deploy(cloudformation, s3, stack: StackSpec, dry_run: bool = False, bucket: str | None = BUCKET,
           lines: list[str] | None = None):
    return deploy_stack(cloudformation, s3, stack, bucket, dry_run,
                        progress=(lines.append if lines is not None else print), poll_seconds=0)


def change_sets(cloudformation) -> list[dict]:
    return cloudformation.list_change_sets(StackName="cloudviz-dev-test")["Summaries"]


def topic_names() -> set[str]:
    topics = boto3.client("sns", region_name=REGION).list_topics()["Topics"]
    return {topic["TopicArn"].rsplit(":", 1)[1] for topic in topics}


# Registry selection -------------------------------------------------------------------------------------------


def register(sagemaker, group: str, statuses: list[str]) -> list[str]:
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    arns = []
    for status in statuses:
        arns.append(sagemaker.create_model_package(
            ModelPackageGroupName=group, ModelApprovalStatus=status,
            InferenceSpecification={"Containers": [{"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/xgb:1"}],
                                    "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        )["ModelPackageArn"])
    return arns


def test_registry_picks_the_highest_approved_version(aws):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    arns = register(sagemaker, "CloudVizIris", ["Approved", "Rejected", "Approved", "PendingManualApproval",
                                                 "Rejected"])
    register(sagemaker, "OtherGroup", ["Approved"] * 5)
    assert latest_approved_package(sagemaker, "CloudVizIris") == (arns[2], 3)
    # Approving an older version later does not make it the newest: the version number decides.
    sagemaker.update_model_package(ModelPackageArn=arns[3], ModelApprovalStatus="Approved")
    sagemaker.update_model_package(ModelPackageArn=arns[0], ModelApprovalStatus="Approved")
    assert latest_approved_package(sagemaker, "CloudVizIris") == (arns[3], 4)


def test_registry_reads_every_page(aws):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    statuses = ["Rejected"] * 130
    statuses[4] = statuses[117] = "Approved"  # the newest Approved version is beyond the first page of 100
    arns = register(sagemaker, "CloudVizIris", statuses)
    first_page = sagemaker.list_model_packages(ModelPackageGroupName="CloudVizIris")
    assert "NextToken" in first_page
    assert latest_approved_package(sagemaker, "CloudVizIris") == (arns[117], 118)


@pytest.mark.parametrize("statuses", [[], ["PendingManualApproval", "Rejected"]])
def test_registry_without_an_approved_version_names_the_group(aws, statuses):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    register(sagemaker, "CloudVizIris", statuses)
    with pytest.raises(UserError, match="no Approved model package in group 'CloudVizIris'"):
        latest_approved_package(sagemaker, "CloudVizIris")


def test_registry_reads_the_baseline_statistics_the_pipeline_registered(aws):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    (without,) = register(sagemaker, "CloudVizIris", ["Approved"])
    (with_baseline,) = register_more(sagemaker, ["Approved"], baseline=BASELINE_URI)
    assert baseline_statistics_uri(sagemaker, with_baseline) == BASELINE_URI
    assert baseline_statistics_uri(sagemaker, without) == ""


def test_registry_with_no_such_group_names_it(aws):
    with pytest.raises(UserError, match="'Missing'"):
        latest_approved_package(boto3.client("sagemaker", region_name=REGION), "Missing")


# Change sets ----------------------------------------------------------------------------------------------------


def test_create_then_update_through_change_sets(cloudformation, s3):
    lines: list[str] = []
    created = deploy(cloudformation, s3, spec(topic_template("alpha", bucket="cloudviz-dev-test-bucket"),
                                              TopicName="first"), lines=lines)
    assert created.status == CREATED
    assert set(created.changes) == {ResourceChange("Add", "Topic0", "AWS::SNS::Topic"),
                                    ResourceChange("Add", "Bucket", "AWS::S3::Bucket")}
    assert created.outputs["Topic0Arn"] == f"arn:aws:sns:{REGION}:{ACCOUNT}:first"
    assert created.outputs["BucketName"] == "cloudviz-dev-test-bucket"
    stack = describe_stack(cloudformation, "cloudviz-dev-test")
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert {t["Key"]: t["Value"] for t in stack["Tags"]} == {"project": "cloudviz", "stage": "dev"}
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]} == {"TopicName": "first"}
    assert topic_names() == {"first"}
    assert "cloudviz-dev-test: creating a change set (CREATE)" in lines
    assert any(line.startswith("cloudviz-dev-test: 2 change(s)") for line in lines)
    assert any("CREATE_COMPLETE" in line for line in lines[lines.index("cloudviz-dev-test: executing the change set"):])

    updated = deploy(cloudformation, s3, spec(topic_template("alpha", "beta", bucket="cloudviz-dev-test-bucket"),
                                              TopicName="first"))
    assert updated.status == UPDATED
    assert ResourceChange("Add", "Topic1", "AWS::SNS::Topic") in updated.changes
    assert updated.outputs["Topic1Arn"] == f"arn:aws:sns:{REGION}:{ACCOUNT}:beta"
    assert describe_stack(cloudformation, "cloudviz-dev-test")["StackStatus"] == "UPDATE_COMPLETE"
    assert topic_names() == {"first", "beta"}


def test_no_changes_deletes_the_change_set_and_reports_unchanged(cloudformation, s3):
    stack = spec(topic_template("alpha"), TopicName="first")
    deploy(cloudformation, s3, stack)
    lines: list[str] = []
    again = deploy(cloudformation, s3, stack, lines=lines)
    assert again.status == UNCHANGED and again.changes == ()
    assert again.outputs == {"Topic0Arn": f"arn:aws:sns:{REGION}:{ACCOUNT}:first"}
    assert lines[-1] == "cloudviz-dev-test: no changes"
    assert all(summary["Status"] != "FAILED" for summary in change_sets(cloudformation))
    # A changed parameter alone is a change.
    assert deploy(cloudformation, s3, spec(topic_template("alpha"), TopicName="second")).status == UPDATED


def test_dry_run_of_a_new_stack_shows_the_changes_and_leaves_nothing(cloudformation, s3):
    lines: list[str] = []
    result = deploy(cloudformation, s3, spec(topic_template("alpha"), TopicName="first"), dry_run=True, lines=lines)
    assert result.status == DRY_RUN and result.outputs == {}
    assert result.changes == (ResourceChange("Add", "Topic0", "AWS::SNS::Topic"),)
    assert "Add  AWS::SNS::Topic  Topic0" in "\n".join(lines)
    assert describe_stack(cloudformation, "cloudviz-dev-test") is None  # the review-only stack is removed too
    assert topic_names() == set()


def test_dry_run_of_an_update_executes_nothing(cloudformation, s3):
    deploy(cloudformation, s3, spec(topic_template("alpha"), TopicName="first"))
    result = deploy(cloudformation, s3, spec(topic_template("alpha", "beta"), TopicName="first"), dry_run=True)
    assert result.status == DRY_RUN
    assert result.changes == (ResourceChange("Add", "Topic1", "AWS::SNS::Topic"),)
    assert result.outputs == {"Topic0Arn": f"arn:aws:sns:{REGION}:{ACCOUNT}:first"}
    assert describe_stack(cloudformation, "cloudviz-dev-test")["StackStatus"] == "CREATE_COMPLETE"
    assert topic_names() == {"first"}
    assert all(summary["ExecutionStatus"] == "EXECUTE_COMPLETE" for summary in change_sets(cloudformation))


def role_template(role_name: str) -> dict:
    return {
        "Resources": {
            "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "fine"}},
            "Role": {"Type": "AWS::IAM::Role", "DependsOn": "Topic", "Properties": {
                "RoleName": role_name,
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
            }},
        },
    }


def test_a_failed_creation_names_the_resource_and_reason_then_is_recreated(cloudformation, s3):
    boto3.client("iam", region_name=REGION).create_role(RoleName="taken", AssumeRolePolicyDocument="{}")
    with pytest.raises(UserError) as failure:
        deploy(cloudformation, s3, spec(role_template("taken")))
    message = str(failure.value)
    assert message.startswith("stack cloudviz-dev-test failed (ROLLBACK_COMPLETE): Role (AWS::IAM::Role): ")
    assert "taken already exists" in message
    assert describe_stack(cloudformation, "cloudviz-dev-test")["StackStatus"] == "ROLLBACK_COMPLETE"
    with pytest.raises(UserError, match="ROLLBACK_COMPLETE.*without --dry-run deletes and recreates it"):
        deploy(cloudformation, s3, spec(role_template("free")), dry_run=True)
    lines: list[str] = []
    assert deploy(cloudformation, s3, spec(role_template("free")), lines=lines).status == CREATED
    assert lines[0] == "cloudviz-dev-test: deleting the stack its failed creation left in ROLLBACK_COMPLETE"
    assert describe_stack(cloudformation, "cloudviz-dev-test")["StackStatus"] == "CREATE_COMPLETE"


# moto warns that it cannot remove the role its failed update never created (CloudFormation's rollback would).
@pytest.mark.filterwarnings("ignore:Unable to delete Role, as it was never created")
def test_a_failed_update_rolls_back_and_the_next_deploy_updates(cloudformation, s3):
    boto3.client("iam", region_name=REGION).create_role(RoleName="taken", AssumeRolePolicyDocument="{}")
    deploy(cloudformation, s3, spec(topic_template("alpha"), TopicName="first"))
    broken = topic_template("alpha")
    broken["Resources"].update(role_template("taken")["Resources"])
    with pytest.raises(UserError, match=r"failed \(UPDATE_ROLLBACK_COMPLETE\): Role \(AWS::IAM::Role\): .*taken"):
        deploy(cloudformation, s3, spec(broken, TopicName="first"))
    assert deploy(cloudformation, s3, spec(topic_template("alpha", "beta"), TopicName="first")).status == UPDATED


def test_a_busy_stack_is_not_touched(cloudformation, s3):
    deploy(cloudformation, s3, spec(topic_template("alpha"), TopicName="first"))
    # moto finishes every operation at once; put the stack mid-update as CloudFormation shows it for minutes.
    stack = next(s for s in cloudformation_backends[ACCOUNT][REGION].stacks.values() if s.name == "cloudviz-dev-test")
    stack.status = "UPDATE_IN_PROGRESS"
    with pytest.raises(UserError, match=r"cloudviz-dev-test is busy \(UPDATE_IN_PROGRESS\)"):
        deploy(cloudformation, s3, spec(topic_template("alpha", "beta"), TopicName="first"))


def big_template() -> dict:
    template = topic_template("alpha")
    template["Metadata"] = {"Padding": "x" * TEMPLATE_BODY_LIMIT}
    return template


def test_a_template_over_the_body_limit_goes_through_s3(cloudformation, s3):
    result = deploy(cloudformation, s3, spec(big_template(), TopicName="first"))
    assert result.status == CREATED and topic_names() == {"first"}
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=TEMPLATE_PREFIX)["Contents"]]
    assert len(keys) == 1 and keys[0].startswith(f"{TEMPLATE_PREFIX}/cloudviz-dev-test/")
    uploaded = json.loads(s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read())
    assert uploaded == big_template()


def test_a_template_over_the_body_limit_without_a_bucket_is_refused(cloudformation, s3):
    with pytest.raises(UserError, match=r"over CloudFormation's 51,200-byte TemplateBody limit: give a bucket"):
        deploy(cloudformation, s3, spec(big_template()), bucket=None)
    assert describe_stack(cloudformation, "cloudviz-dev-test") is None


def test_format_changes_aligns_columns_and_flags_replacements():
    text = format_changes("s", [ResourceChange("Add", "Topic", "AWS::SNS::Topic"),
                                ResourceChange("Modify", "Fn", "AWS::Lambda::Function", "True")])
    assert text.splitlines() == [
        "s: 2 change(s)",
        "  Add     AWS::SNS::Topic        Topic",
        "  Modify  AWS::Lambda::Function  Fn     (replacement: True)",
    ]
    assert format_changes("s", []) == "s: no resource changes (parameters or outputs only)"


# Destroy --------------------------------------------------------------------------------------------------------


def test_destroy_deletes_the_stacks_in_the_order_given_and_skips_missing_ones(cloudformation, s3):
    names = ["cloudviz-dev-three", "cloudviz-dev-two", "cloudviz-dev-one"]
    deploy(cloudformation, s3, spec(topic_template("one"), "cloudviz-dev-one", TopicName="one"))
    deploy(cloudformation, s3, spec(topic_template("three"), "cloudviz-dev-three", TopicName="three"))
    lines: list[str] = []
    removed = destroy_stacks(cloudformation, names, progress=lines.append, poll_seconds=0)
    assert removed == ["cloudviz-dev-three", "cloudviz-dev-one"]
    assert [line for line in lines if ": deleting" in line or "not found" in line] == [
        "cloudviz-dev-three: deleting", "cloudviz-dev-two: not found, nothing to delete", "cloudviz-dev-one: deleting"]
    assert all(describe_stack(cloudformation, name) is None for name in names)
    assert topic_names() == set()
    assert destroy_stacks(cloudformation, names, poll_seconds=0) == []


# The commands, on the real stacks -------------------------------------------


@pytest.fixture
def account(aws, home, monkeypatch):
    """An account whose registry group has version 1 Approved; the CLI's region and bucket in the environment."""
    monkeypatch.setenv("CLOUDVIZ_BUCKET", BUCKET)
    monkeypatch.delenv("CLOUDVIZ_ALARM_EMAIL", raising=False)
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    return register(sagemaker, NAMES.model_package_group, ["Approved"])


NAMES = ResourceNames("dev")


def cli_json(capsys, *argv: str) -> dict:
    code = main([*argv, "--region", REGION, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def cli_error(capsys, *argv: str) -> str:
    assert main([*argv, "--region", REGION]) == 2
    return capsys.readouterr().err


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


def register_more(sagemaker, statuses: list[str], baseline: str = "") -> list[str]:
    """More versions of the group; with ``baseline``, registered as the pipeline does: the training data's
    statistics as the package's ModelDataQuality statistics."""
    metrics = {"ModelMetrics": {"ModelDataQuality": {"Statistics": {"ContentType": "application/json",
                                                                    "S3Uri": baseline}}}} if baseline else {}
    return [sagemaker.create_model_package(
        ModelPackageGroupName=NAMES.model_package_group, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/xgb:1"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        **metrics,
    )["ModelPackageArn"] for status in statuses]


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
