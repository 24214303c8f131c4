"""Staged promotion on AWS, end to end on moto, through the `cloudviz` command and the deployed functions, and the
per-stage config file.

An approval deploys dev only (the approval rule -> dev's SQS queue -> the redeploy function); after each update
of dev's endpoint stack the smoke-test function calls dev's API and records the result on the model package;
`cloudviz promote aws --from dev --to prod` deploys the package dev serves to prod only when that record says
passed, and records the promotion on the package. `deploy aws --stage prod` never picks a package itself.

moto's gaps are closed by the fixtures of tests/moto_aws.py (Lambda code runs in-process from the deployed zips,
API Gateway stages are routed to them, the endpoint answers with the registered model), tests/moto_sagemaker.py
(UpdateModelPackage changes only what it names, as SageMaker's does) and the queue poller of
tests/test_aws_redeploy.py (Lambda's SQS event source mapping). Two more, here: the smoke-test function calls the
API with urllib, which moto's HTTP interception (``responses``, for ``requests``) does not see, so urllib's
``urlopen`` is routed through ``requests`` (tests/moto_aws.py's :func:`urllib_through_requests`); and moto's
CloudFormation leaves a
``Ref`` to a resource type it skips (the api stack's ``ApiKey``) empty, so when an api stack is created its skipped
resources are created from the template by ``complete_skipped_resources`` and that output is filled with the key
(:func:`api_stacks_completed_when_created`). The api stacks are deployed with ``ModelVersionTtlSeconds`` 0
(:func:`versions_read_on_every_request`): the inference function then reads the served version on every request,
so a smoke test right after an update sees the new one at once (the smoke test's wait for a longer TTL is tested
on its own, in tests/test_aws_redeploy.py).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_stage import Stage, scheduled_rules_take_no_events, validated_requests  # noqa: F401  (fixtures)
from moto import mock_aws
from moto.awslambda.models import lambda_backends
from moto.cloudformation.models import CloudFormationBackend, cloudformation_backends
from moto.events.models import Rule
from moto.sagemaker.models import sagemaker_backends
from moto.sqs.models import sqs_backends
from moto.utilities.arns import parse_arn
from moto_aws import aws_in_process, complete_skipped_resources, urllib_through_requests  # noqa: F401
from moto_sagemaker import approve_and_announce as approve
from moto_sagemaker import patch_update_model_package

import deploy.aws.stacks
from cloudviz.cli import main
from deploy.aws.functions.smoke_test import recorded_smoke_test
from deploy.aws.names import PRODUCTION_VARIANT, ResourceNames
from deploy.aws.stage_config import StageConfig, load_stage_configs

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "cloudviz-artifacts-promotion"
DEV, PROD = ResourceNames("dev"), ResourceNames("prod")
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
FEATURES = ["x1", "x2", "x3", "x4"]
CLASSES = ["setosa", "virginica", "versicolor"]
EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "cloudviz.example.toml"
SYNTH_PACKAGE = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/cloudviziris/1"

pytestmark = pytest.mark.filterwarnings("ignore:.*(not supported by moto|No Moto CloudFormation support).*")


# --- the per-stage config file ------------------------------------------------------------------------------------

def test_the_defaults_and_the_example_file_are_todays_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no cloudviz.toml here: the defaults
    today = {"dev": StageConfig("ml.t2.medium", 1), "prod": StageConfig("ml.m5.large", 2)}
    assert load_stage_configs() == today
    assert load_stage_configs(EXAMPLE_CONFIG) == today
    (tmp_path / "cloudviz.toml").write_text('[stages.prod]\ninstance_count = 3\n')
    assert load_stage_configs()["prod"] == StageConfig("ml.m5.large", 3)  # found in the working directory


def synth(capsys, tmp_path: Path, stage: str, *extra: str) -> tuple[int, str]:
    code = main(["deploy", "aws", "--stage", stage, "--synth", str(tmp_path / "out"), "--bucket", BUCKET,
                 "--model-package-arn", SYNTH_PACKAGE, "--region", REGION, *extra])
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize(("text", "error"), [
    ('[stages.staging]\ninstance_count = 1\n', "[stages.staging]: unknown stage; the stages are dev, prod"),
    ('[stages.prod]\ninstance_size = "big"\n', "[stages.prod] instance_size: unknown key; the keys are "
                                                "instance_type, instance_count, retrain_schedule, alarm_email, "
                                                "allowed_origin"),
    ('[stages.prod]\ninstance_count = "2"\n', "[stages.prod] instance_count: expected an integer, got str '2'"),
    ('[stages.prod]\ninstance_count = true\n', "[stages.prod] instance_count: expected an integer, got bool True"),
    ('[stages.prod]\ninstance_count = 0\n', "[stages.prod] instance_count: 0 must be at least 1 (the "
                                            "endpoint.InstanceCount stack parameter)"),
    ('[stages.dev]\ninstance_type = "ml.inf1.xlarge"\n', "[stages.dev] instance_type: 'ml.inf1.xlarge' must match"),
    ('[stages.dev]\nalarm_email = "oncall"\n', "[stages.dev] alarm_email: 'oncall' must match"),
    ('[stages.dev]\nretrain_schedule = "weekly"\n', "[stages.dev] retrain_schedule: 'weekly' must match"),
    ('[stages.dev]\nallowed_origin = "https://example.com/app"\n',
     "[stages.dev] allowed_origin: 'https://example.com/app' must be * or scheme://host[:port]"),
    ('[stages.dev]\ninstance_count = 1\n[prod]\n', "unknown key or table 'prod'"),
    ('[stages.dev\n', "not valid TOML: "),
])
def test_a_bad_config_is_one_line_naming_the_file_table_and_key(text, error, tmp_path, capsys):
    path = tmp_path / "settings.toml"
    path.write_text(text)
    code, stderr = synth(capsys, tmp_path, "dev", "--config", str(path))
    assert code == 2
    assert stderr.startswith(f"cloudviz: error: {path}: {error}"), stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_missing_config_file_is_named(tmp_path, capsys):
    code, stderr = synth(capsys, tmp_path, "dev", "--config", str(tmp_path / "nowhere.toml"))
    assert (code, stderr.strip()) == (2, f"cloudviz: error: --config {tmp_path / 'nowhere.toml'}: no such file")


def written_parameters(tmp_path: Path, stack: str) -> dict[str, str]:
    items = json.loads((tmp_path / "out" / f"{stack}.parameters.json").read_text())
    return {item["ParameterKey"]: item["ParameterValue"] for item in items}


def test_the_config_reaches_the_stacks_and_flags_win(tmp_path, capsys):
    path = tmp_path / "cloudviz.toml"
    path.write_text('[stages.prod]\ninstance_type = "ml.c5.xlarge"\ninstance_count = 3\n'
                    'retrain_schedule = "rate(7 days)"\nalarm_email = "team@example.com"\n'
                    'allowed_origin = "https://dashboard.example.com"\n')
    assert synth(capsys, tmp_path, "prod", "--config", str(path), "--alarm-email", "oncall@example.com")[0] == 0
    endpoint = written_parameters(tmp_path, PROD.endpoint_stack)
    assert (endpoint["InstanceType"], endpoint["InstanceCount"]) == ("ml.c5.xlarge", "3")
    automation = written_parameters(tmp_path, PROD.automation_stack)
    assert (automation["ScheduleState"], automation["ScheduleExpression"]) == ("ENABLED", "rate(7 days)")
    assert written_parameters(tmp_path, PROD.monitoring_stack)["AlarmEmail"] == "oncall@example.com"  # the flag
    api = (tmp_path / "out" / f"{PROD.api_stack}.json").read_text()
    assert "'https://dashboard.example.com'" in api and "'*'" not in api
    # dev is not in the file: today's dev settings.
    assert synth(capsys, tmp_path, "dev", "--config", str(path), "--retrain-schedule", "")[0] == 0
    endpoint = written_parameters(tmp_path, DEV.endpoint_stack)
    assert (endpoint["InstanceType"], endpoint["InstanceCount"]) == ("ml.t2.medium", "1")
    assert written_parameters(tmp_path, DEV.automation_stack)["ScheduleState"] == "DISABLED"


# --- moto: the account, the registry, the API -------------------------------------------------------------------

def rules_invoke_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    """An EventBridge rule whose pattern matches an event invokes its Lambda targets with the event (moto's rules
    deliver to logs, SQS and event buses only, and raise NotImplementedError for a function)."""
    original = Rule.send_to_targets

    def send(self: Rule, event: dict, *args: object, **kwargs: object) -> None:
        functions = [t for t in self.targets if parse_arn(t["Arn"]).service == "lambda"]
        if functions and self.event_pattern.matches_event(event):
            for target in functions:
                lambda_backends[ACCOUNT][REGION].invoke(target["Arn"], None, json.dumps(event), {}, {})
        others = [t for t in self.targets if t not in functions]
        if others:
            with_others = copy.copy(self)
            with_others.targets = others
            original(with_others, event, *args, **kwargs)

    monkeypatch.setattr(Rule, "send_to_targets", send)


def endpoints_follow_their_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a stack update (a change set's or UpdateStack's) replaced an endpoint configuration, the stack's
    endpoint uses the new one, as CloudFormation's UpdateEndpoint does (moto re-resolves no property of a resource
    whose template text is unchanged, so its endpoint kept naming the deleted configuration)."""

    def follow(stack: Any) -> None:
        for logical_id, resource in stack.template_dict.get("Resources", {}).items():
            if resource["Type"] != "AWS::SageMaker::Endpoint" or logical_id not in stack.resource_map:
                continue
            config_id = resource["Properties"]["EndpointConfigName"]["Fn::GetAtt"][0]
            endpoint = stack.resource_map[logical_id]
            config = sagemaker_backends[ACCOUNT][REGION].endpoint_configs[
                stack.resource_map[config_id].endpoint_config_name]
            endpoint.endpoint_config_name = config.endpoint_config_name
            endpoint.production_variants = endpoint._process_production_variants(config.production_variants)

    execute, update = CloudFormationBackend.execute_change_set, CloudFormationBackend.update_stack

    def execute_and_follow(self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None) -> None:
        stack = self.describe_change_set(change_set_name).stack
        execute(self, change_set_name, stack_name)
        follow(stack)

    def update_and_follow(self: CloudFormationBackend, *args: Any, **kwargs: Any) -> Any:
        stack = update(self, *args, **kwargs)
        follow(stack)
        return stack

    monkeypatch.setattr(CloudFormationBackend, "execute_change_set", execute_and_follow)
    monkeypatch.setattr(CloudFormationBackend, "update_stack", update_and_follow)


def complete_api_stack(names: ResourceNames) -> None:
    """Create the api stack's resources moto skipped and give its ``ApiKeyId`` output the key created."""
    cloudformation, apigateway = boto3.client("cloudformation"), boto3.client("apigateway")
    stack = next(s for s in cloudformation_backends[ACCOUNT][REGION].stacks.values()
                 if s.name == names.api_stack and s.status != "DELETE_COMPLETE")
    created = complete_skipped_resources(cloudformation, apigateway, names.api_stack, stack.template_dict)
    stack.resource_map._parsed_resources["ApiKey"] = created["ApiKey"]  # what a Ref to it resolves to
    stack.output_map = stack._create_output_map()


def api_stacks_completed_when_created(monkeypatch: pytest.MonkeyPatch) -> None:
    """An api stack's creation also creates the resources moto skipped (:func:`complete_api_stack`), before the
    deployer reads the stack's outputs and `deploy aws` smoke-tests its API."""
    execute = CloudFormationBackend.execute_change_set

    def execute_and_complete(self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None) -> None:
        change_set = self.describe_change_set(change_set_name)
        execute(self, change_set_name, stack_name)
        for names in (DEV, PROD):
            if change_set.stack.name == names.api_stack and change_set.change_set_type == "CREATE":
                complete_api_stack(names)

    monkeypatch.setattr(CloudFormationBackend, "execute_change_set", execute_and_complete)


def versions_read_on_every_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """The api stacks `cloudviz deploy aws` synthesizes get ``ModelVersionTtlSeconds`` 0."""
    synthesize = deploy.aws.stacks.synthesize

    def with_no_ttl(stage: str, *args: Any, **kwargs: Any) -> list:
        return [dataclasses.replace(spec, parameters={**spec.parameters, "ModelVersionTtlSeconds": "0"})
                if spec.name == ResourceNames(stage).api_stack else spec
                for spec in synthesize(stage, *args, **kwargs)]

    monkeypatch.setattr(deploy.aws.stacks, "synthesize", with_no_ttl)


@pytest.fixture
def account(validated_requests, scheduled_rules_take_no_events, aws_in_process, home, monkeypatch,  # noqa: F811
            model_tarball: Path) -> Iterator[None]:
    """moto's account with the artifact bucket, the trained model in it, and the CLI's region and bucket; every
    request through boto3 validated."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", REGION),
                        ("CLOUDVIZ_BUCKET", BUCKET)):
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "CLOUDVIZ_ALARM_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(home.root.parent)  # no cloudviz.toml: the default settings
    patch_update_model_package(monkeypatch)
    urllib_through_requests(monkeypatch)
    rules_invoke_functions(monkeypatch)
    endpoints_follow_their_configuration(monkeypatch)
    api_stacks_completed_when_created(monkeypatch)
    versions_read_on_every_request(monkeypatch)
    with mock_aws():
        boto3.setup_default_session(region_name=REGION)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="models/good/model.tar.gz", Body=model_tarball.read_bytes())
        s3.put_object(Bucket=BUCKET, Key="models/broken/model.tar.gz", Body=broken_tarball())
        boto3.client("sagemaker").create_model_package_group(ModelPackageGroupName=DEV.model_package_group)
        yield


def broken_tarball() -> bytes:
    """A model.tar.gz whose xgboost-model is not a model: the endpoint answers every invocation with an error."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = b"not a model"
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def register(run: str, model: str = "good") -> str:
    """A version registered as the pipeline registers it (pending approval): its model artifact, data schema and
    baseline statistics in S3."""
    s3 = boto3.client("s3")
    prefix = f"cloudviz/executions/{run}/Preprocess"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/schema/schema.json",
                  Body=json.dumps({"feature_columns": FEATURES, "classes": CLASSES}).encode())
    statistics = {"features": {name: {"quantiles": {"p50": 1.0}} for name in FEATURES}}
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/baseline/statistics.json", Body=json.dumps(statistics).encode())
    return boto3.client("sagemaker").create_model_package(
        ModelPackageGroupName=DEV.model_package_group, ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={"Containers": [{"Image": IMAGE,
                                                "ModelDataUrl": f"s3://{BUCKET}/models/{model}/model.tar.gz"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        ModelMetrics={"ModelDataQuality": {"Statistics": {
            "ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{prefix}/baseline/statistics.json"}}},
        CustomerMetadataProperties={"DataSchema": f"s3://{BUCKET}/{prefix}/schema/schema.json"},
    )["ModelPackageArn"]


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

def test_an_approved_version_reaches_prod_only_by_promotion_after_devs_smoke_test_passed(account, capsys):
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


def test_an_approval_while_devs_stack_is_busy_is_retried_not_lost(account, capsys):
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


def test_the_first_deploy_of_dev_is_smoke_tested_by_the_command_so_it_can_be_promoted(account, capsys):
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
