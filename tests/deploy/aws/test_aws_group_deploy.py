"""`cloudviz deploy|destroy aws --group` against moto, on the real stacks: a group's stage stands next to the
bundled iris data's, serves its own group's newest Approved package, is listed with it by ``deployments()`` and is
destroyed alone."""

from __future__ import annotations

import json

import boto3
import pytest
from deployer_account import BUCKET, REGION, cli_error, cli_json, register
from moto_cloudformation import cloudformation_like_aws  # noqa: F401  (a fixture)

import cloudviz
from deploy.aws.deployer import describe_stack
from deploy.aws.names import ResourceNames
from pipelines.definition import DEFAULT_GROUP

pytestmark = [
    pytest.mark.usefixtures("cloudformation_like_aws"),
    pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto"),  # as test_aws_deploy_command.py
]
GROUP = "Churn"
IRIS, CHURN = ResourceNames("dev"), ResourceNames("dev", GROUP)


@pytest.fixture
def account(aws, home, monkeypatch) -> tuple[list[str], list[str]]:
    """Iris's group with version 1 Approved; Churn's with versions 1 and 2 Approved and 3 pending."""
    monkeypatch.setenv("CLOUDVIZ_BUCKET", BUCKET)
    monkeypatch.delenv("CLOUDVIZ_ALARM_EMAIL", raising=False)
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    return (register(sagemaker, DEFAULT_GROUP, ["Approved"]),
            register(sagemaker, GROUP, ["Approved", "Approved", "PendingManualApproval"]))


def served_package(names: ResourceNames) -> str:
    stack = describe_stack(boto3.client("cloudformation", region_name=REGION), names.endpoint_stack)
    return {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}["ModelPackageArn"]


def test_a_groups_stage_stands_next_to_iris_serving_its_own_package_and_is_destroyed_alone(account, capsys):
    iris, churn = account
    cli_json(capsys, "deploy", "aws", "--stage", "dev")
    document = cli_json(capsys, "deploy", "aws", "--stage", "dev", "--group", GROUP)
    assert [(s["stack_name"], s["status"]) for s in document["stacks"]] == [(n, "created") for n in CHURN.stacks]
    assert (document["group"], document["model_package_arn"], document["model_version"]) == (GROUP, churn[1], 2)
    assert (served_package(IRIS), served_package(CHURN)) == (iris[0], churn[1])
    rule = boto3.client("events", region_name=REGION).describe_rule(Name=CHURN.approval_rule_name)
    assert json.loads(rule["EventPattern"])["detail"]["ModelPackageGroupName"] == [GROUP]

    project = cloudviz.aws(region=REGION, bucket=BUCKET)
    listed = project.deployments()
    assert [(d.group, d.stage, d.version, d.endpoint) for d in listed] == [
        (DEFAULT_GROUP, "dev", 1, IRIS.endpoint_name), (GROUP, "dev", 2, "cloudviz-churn-dev")]
    assert listed[1].api_url == document["api_url"] != listed[0].api_url
    assert [(d.group, d.version) for d in project.deployments(group=GROUP)] == [(GROUP, 2)]
    assert project.deployments(group=GROUP, stage="prod") == []

    removed = cli_json(capsys, "destroy", "aws", "--stage", "dev", "--group", GROUP, "--yes")
    assert removed["removed_stacks"] == list(CHURN.destroy_order)
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    assert all(describe_stack(cloudformation, name) is not None for name in IRIS.stacks)
    assert [(d.group, d.stage) for d in project.deployments()] == [(DEFAULT_GROUP, "dev")]
    again = cli_json(capsys, "destroy", "aws", "--stage", "dev", "--group", GROUP, "--yes")
    assert again["removed_stacks"] == []


def test_the_api_deploys_a_group_and_a_group_with_no_approved_package_is_refused(account, capsys):
    project = cloudviz.aws(region=REGION, bucket=BUCKET)
    deployment = project.deploy(GROUP)
    assert (deployment.group, deployment.stage, deployment.version, deployment.endpoint) == (
        GROUP, "dev", 2, CHURN.endpoint_name)
    assert served_package(CHURN) == account[1][1]
    assert describe_stack(boto3.client("cloudformation", region_name=REGION), IRIS.endpoint_stack) is None
    with pytest.raises(cloudviz.UserError, match="no Approved model package in group 'Penguins'"):
        project.deploy("Penguins")


def test_a_group_whose_names_are_too_long_is_refused_before_any_aws_call(aws, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # any AWS call would fail at once
    group = "A" * 40
    for argv in (("deploy", "aws", "--stage", "dev", "--bucket", BUCKET), ("destroy", "aws", "--stage", "prod"),
                 ("promote", "aws", "--from", "dev", "--to", "prod", "--bucket", BUCKET)):
        error = cli_error(capsys, *argv, "--group", group)
        assert f"group '{group}': its " in error and "over AWS's limit of 64" in error
        assert "Traceback" not in error


def test_synth_writes_a_groups_stacks_for_a_package_of_that_group(tmp_path, capsys):
    package = f"arn:aws:sagemaker:{REGION}:123456789012:model-package/churn/2"
    document = cli_json(capsys, "deploy", "aws", "--stage", "dev", "--group", GROUP, "--synth", str(tmp_path),
                        "--bucket", BUCKET, "--model-package-arn", package)
    assert {f"{stack}.json" for stack in CHURN.stacks} <= {path.rsplit("/", 1)[-1] for path in document["written"]}
    endpoint = json.loads((tmp_path / f"{CHURN.endpoint_stack}.json").read_text())
    assert endpoint["Resources"]["Endpoint"]["Properties"]["EndpointName"] == CHURN.endpoint_name
    error = cli_error(capsys, "deploy", "aws", "--stage", "dev", "--group", GROUP, "--synth", str(tmp_path),
                      "--bucket", BUCKET, "--model-package-arn", package.replace("/churn/", "/cloudviziris/"))
    assert "a package of another group than --group Churn" in error
