"""The deployer's change sets against moto: create, update, no change, dry run, failure, a busy stack, the template
body limit, and destroy.

moto's change sets are made to behave as CloudFormation's by the ``cloudformation_like_aws`` fixture
(tests/moto_cloudformation.py documents each difference); nothing of ours is mocked.
"""

from __future__ import annotations

import json

import boto3
import pytest
from deployer_account import ACCOUNT, BUCKET, REGION
from moto.cloudformation.models import cloudformation_backends
from moto_cloudformation import cloudformation_like_aws  # noqa: F401  (a fixture)

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
from deploy.aws.stacks import StackSpec
from pipelines.errors import UserError

pytestmark = [
    pytest.mark.usefixtures("cloudformation_like_aws"),
    # moto's CloudFormation skips some resource types of the real stacks (alarms, SNS subscriptions, API keys,
    # schedules...) with this warning; the template tests (test_aws_*templates.py) check those resources.
    pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto"),
]


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
