"""Staged promotion on AWS, end to end on moto, through the `cloudviz` command and the deployed functions.

An approval deploys dev only (the approval rule -> dev's SQS queue -> the redeploy function); after each update
of dev's endpoint stack the smoke-test function calls dev's API and records the result on the model package;
`cloudviz promote aws --from dev --to prod` deploys the package dev serves to prod only when that record says
passed, and records the promotion on the package. `deploy aws --stage prod` never picks a package itself.

The account (tests/promotion_account.py) closes moto's gaps; its docstring lists them.
"""

from __future__ import annotations

import json
import re

import boto3
import pytest
from aws_stage import Stage, scheduled_rules_take_no_events, validated_requests  # noqa: F401  (fixtures)
from moto.cloudformation.models import cloudformation_backends
from moto.sqs.models import sqs_backends
from moto_aws import aws_in_process  # noqa: F401  (a fixture)
from moto_sagemaker import approve_and_announce as approve
from promotion_account import ACCOUNT, BUCKET, DEV, PROD, REGION, account, register  # noqa: F401  (a fixture)

from cloudviz.cli import main
from deploy.aws.functions.smoke_test import recorded_smoke_test
from deploy.aws.names import PRODUCTION_VARIANT, ResourceNames

pytestmark = pytest.mark.filterwarnings("ignore:.*(not supported by moto|No Moto CloudFormation support).*")


def cli(capsys, *argv: str) -> tuple[int, dict | str]:
    """The command's exit code and its JSON document (or its error line)."""
    code = main([*argv, "--region", REGION, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else captured.err.strip()


def invoke(function_name: str, event: dict) -> dict:
    """Invoke a deployed function through moto's Lambda (which runs it in-process from its zip)."""
    answer = boto3.client("lambda").invoke(FunctionName=function_name, Payload=json.dumps(event).encode())
    payload = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, payload
    return payload


def redeploy_queue(names: ResourceNames) -> Stage:
    """dev's redeploy queue, polled as Lambda's event source mapping does (moto would hand each message to the
    function once and ignore its reported failures); the function runs as deployed, through moto's Lambda."""
    queue = sqs_backends[ACCOUNT][REGION].queues[names.redeploy_queue_name]
    queue.lambda_event_source_mappings.clear()
    sqs = boto3.client("sqs")
    sqs.set_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=names.redeploy_queue_name)["QueueUrl"],
                             Attributes={"VisibilityTimeout": "0"})  # a failed message comes back at once
    return Stage(names, lambda event, context: invoke(names.redeploy_function, event), "")


def endpoint_finished(names: ResourceNames) -> dict:
    """What EventBridge does when the endpoint stack finished an update: send CloudFormation's status change
    event to the rules matching it (dev's smoke test); the smoke test's record, read back."""
    stack = boto3.client("cloudformation").describe_stacks(StackName=names.endpoint_stack)["Stacks"][0]
    answer = boto3.client("events").put_events(Entries=[{
        "Source": "aws.cloudformation", "DetailType": "CloudFormation Stack Status Change",
        "Resources": [stack["StackId"]],
        "Detail": json.dumps({"stack-id": stack["StackId"], "status-details": {"status": stack["StackStatus"]}})}])
    assert answer["FailedEntryCount"] == 0
    return served(names)


def served(names: ResourceNames) -> dict:
    """The endpoint stack's package and version, the endpoint's variant names and the model packages its
    configuration's models serve, and the smoke test recorded on that package for the stage."""
    stack = boto3.client("cloudformation").describe_stacks(StackName=names.endpoint_stack)["Stacks"][0]
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    sagemaker = boto3.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=names.endpoint_name)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variants = [(variant["VariantName"],
                 sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]["ModelPackageName"])
                for variant in config["ProductionVariants"]]
    record = recorded_smoke_test(sagemaker, parameters["ModelPackageArn"], names.stage)
    return {"package": parameters["ModelPackageArn"], "version": parameters["ModelVersion"], "variants": variants,
            "smoke_test": None if record is None else ("passed" if record.passed else record.detail)}


def metadata(arn: str) -> dict[str, str]:
    return boto3.client("sagemaker").describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]


# --- moto: end to end -------------------------------------------------------------------------------------------

def test_an_approved_version_reaches_prod_only_by_promotion_after_devs_smoke_test_passed(account, capsys):  # noqa: F811
    v1 = register("run1")
    approve(v1)
    code, document = cli(capsys, "deploy", "aws", "--stage", "dev")  # the stage's first deploy: its stacks
    assert code == 0, document
    assert document["smoke_test"]["passed"] and metadata(v1)["cloudviz:smoke-test:dev"] == "passed"
    queue = redeploy_queue(DEV)
    approve(v1)  # the approval event, as dev's queue holds it: v1 is what dev already serves
    assert queue.poll() == {"batchItemFailures": []}
    dev = endpoint_finished(DEV)
    assert (dev["package"], dev["version"], dev["smoke_test"]) == (v1, "1", "passed")
    assert dev["variants"] == [(PRODUCTION_VARIANT, v1)]
    sagemaker = boto3.client("sagemaker")
    assert metadata(v1)["cloudviz:smoke-test:dev"] == "passed"

    # prod has no endpoint: `deploy aws --stage prod` does not pick a package; promotion is the way in.
    code, error = cli(capsys, "deploy", "aws", "--stage", "prod")
    assert code == 2 and error == (
        f"cloudviz: error: prod has no endpoint stack ({PROD.endpoint_stack}) in {REGION}: a model reaches prod "
        "only by promotion, once dev's smoke test of it passed: cloudviz promote aws --from dev --to prod")
    assert boto3.client("cloudformation").list_stacks(StackStatusFilter=["CREATE_COMPLETE"])["StackSummaries"]
    assert not [s for s in boto3.client("cloudformation").describe_stacks()["Stacks"]
                if s["StackName"].startswith(PROD.prefix)]

    code, document = cli(capsys, "promote", "aws", "--from", "dev", "--to", "prod", "--dry-run")
    assert code == 0 and document["dry_run"] and document["promoted_at"] is None
    assert "cloudviz:promoted:prod" not in metadata(v1)
    code, document = cli(capsys, "promote", "aws", "--from", "dev", "--to", "prod")
    assert code == 0, document
    assert (document["model_package_arn"], document["model_version"], document["from"], document["to"]) == (
        v1, 1, "dev", "prod")
    assert [stack["status"] for stack in document["stacks"]] == ["created"] * 4
    assert metadata(v1)["cloudviz:promoted:prod"] == document["promoted_at"]
    prod = served(PROD)
    assert (prod["package"], prod["version"]) == (v1, "1")
    assert prod["variants"] == dev["variants"] == [(PRODUCTION_VARIANT, v1)]  # the same variant name as dev
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in boto3.client("cloudformation").describe_stacks(
        StackName=PROD.endpoint_stack)["Stacks"][0]["Parameters"]}
    assert (parameters["InstanceType"], parameters["InstanceCount"]) == ("ml.m5.large", "2")  # prod's settings
    # GET /model describes the served version from the schema it was registered with (the EndpointConfig's tag).
    assert parameters["DataSchemaUri"] == f"s3://{BUCKET}/cloudviz/executions/run1/Preprocess/schema/schema.json"

    # v2 approved: dev serves it; prod keeps v1, also through `deploy aws --stage prod`.
    v2 = register("run2")
    approve(v2)
    assert queue.poll() == {"batchItemFailures": []}
    dev = endpoint_finished(DEV)
    assert (dev["package"], dev["version"], dev["smoke_test"]) == (v2, "2", "passed")
    assert served(PROD)["package"] == v1
    code, document = cli(capsys, "deploy", "aws", "--stage", "prod")
    assert code == 0 and document["model_package_arn"] == v1
    assert served(PROD)["package"] == v1
    assert sagemaker.describe_model_package(ModelPackageName=v2)["ModelApprovalStatus"] == "Approved"


def test_a_promotion_is_refused_until_devs_smoke_test_passed(account, capsys, validated_requests):  # noqa: F811
    code, error = cli(capsys, "promote", "aws", "--from", "dev", "--to", "prod")
    assert code == 2 and error == (f"cloudviz: error: dev is not deployed: no endpoint stack {DEV.endpoint_stack} "
                                   f"in {REGION} (cloudviz deploy aws --stage dev)")
    v1 = register("run1", model="broken")
    approve(v1)
    code, document = cli(capsys, "deploy", "aws", "--stage", "dev")  # smoke-tested by the command itself
    assert code == 0 and not document["smoke_test"]["passed"]
    what = f"dev serves version 1 ({v1})"
    before = len(validated_requests)
    dev = endpoint_finished(DEV)  # and after each update: the endpoint cannot load the model, the API answers errors
    assert dev["smoke_test"].startswith("POST /predictions answered 5"), dev
    # the smoke-test function's requests (read the key, record the result, say it failed) were validated
    assert {"GetApiKey", "UpdateModelPackage", "Publish"} <= set(validated_requests[before:])
    code, error = cli(capsys, "promote", "aws", "--from", "dev", "--to", "prod")
    assert code == 2 and error.startswith(f"cloudviz: error: {what}, whose smoke test failed at ")
    assert error.endswith(dev["smoke_test"]) and len(error.splitlines()) == 1
    assert not [s for s in boto3.client("cloudformation").describe_stacks()["Stacks"]
                if s["StackName"].startswith(PROD.prefix)]
    assert "cloudviz:promoted:prod" not in metadata(v1)
    code, error = cli(capsys, "promote", "aws", "--from", "prod", "--to", "dev")
    assert code == 2 and error.endswith("a promotion goes to a later stage (dev -> prod)")


def test_an_approval_while_devs_stack_is_busy_is_retried_not_lost(account, capsys):  # noqa: F811
    v1 = register("run1")
    approve(v1)
    assert cli(capsys, "deploy", "aws", "--stage", "dev")[0] == 0
    queue = redeploy_queue(DEV)
    v2 = register("run2")
    approve(v2)
    stack = next(s for s in cloudformation_backends[ACCOUNT][REGION].stacks.values()
                 if s.name == DEV.endpoint_stack and s.status != "DELETE_COMPLETE")
    stack.status = "UPDATE_IN_PROGRESS"  # moto finishes at once; CloudFormation takes minutes
    for _ in range(3):
        assert len(queue.poll()["batchItemFailures"]) == 1
        assert queue.waiting(DEV.redeploy_queue_name) == 1
    code, error = cli(capsys, "promote", "aws", "--from", "dev", "--to", "prod")
    assert code == 2 and error.endswith("dev's endpoint stack is busy (UPDATE_IN_PROGRESS): promote once it is "
                                        "done and its smoke test has run")
    stack.status = "UPDATE_COMPLETE"
    assert queue.poll() == {"batchItemFailures": []}
    assert queue.waiting(DEV.redeploy_queue_name) == 0
    assert queue.waiting(DEV.redeploy_dead_letter_queue_name) == 0
    dev = endpoint_finished(DEV)
    assert (dev["package"], dev["version"], dev["smoke_test"]) == (v2, "2", "passed")


def test_the_first_deploy_of_dev_is_smoke_tested_by_the_command_so_it_can_be_promoted(account, capsys):  # noqa: F811
    """No rule sees dev's first deployment (the automation stack holding it comes after the endpoint stack): the
    command runs the smoke test itself, says so in one line and records it; the promotion then goes through."""
    v1 = register("run1")
    approve(v1)
    assert main(["deploy", "aws", "--stage", "dev", "--region", REGION]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Smoke test")]
    assert len(lines) == 1 and re.fullmatch(r"Smoke test of dev: version 1 passed: version 1 predicted virginica for "
                                            r"the example; GET /predictions/\S+ read it back", lines[0]), lines
    assert metadata(v1)["cloudviz:smoke-test:dev"] == "passed"
    code, document = cli(capsys, "promote", "aws", "--from", "dev", "--to", "prod", "--dry-run")
    assert code == 0 and document["smoke_test"]["passed"] and document["model_package_arn"] == v1
