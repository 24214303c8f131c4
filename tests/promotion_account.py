"""moto's account for staged promotion on AWS, shared by tests/deploy/aws/test_aws_promotion.py and
tests/cloudviz/test_api_aws.py: the artifact bucket with a trained model, the pipeline's registration.

moto's gaps are closed by the fixtures of tests/moto_aws.py (Lambda code runs in-process from the deployed zips, API
Gateway stages are routed to them, the endpoint answers with the registered model), tests/moto_sagemaker.py
(UpdateModelPackage changes only what it names, as SageMaker's does) and the queue poller of
tests/deploy/aws/test_aws_redeploy.py (Lambda's SQS event source mapping). Two more, here: the smoke-test function
calls the API with urllib, which moto's HTTP interception (``responses``, for ``requests``) does not see, so
urllib's ``urlopen`` is routed through ``requests`` (tests/moto_aws.py's :func:`urllib_through_requests`); and
moto's CloudFormation leaves a ``Ref`` to a resource type it skips (the api stack's ``ApiKey``) empty, so when an
api stack is created its skipped resources are created from the template by ``complete_skipped_resources`` and that
output is filled with the key (:func:`api_stacks_completed_when_created`). The api stacks are deployed with
``ModelVersionTtlSeconds`` 0 (:func:`versions_read_on_every_request`): the inference function then reads the served
version on every request, so a smoke test right after an update sees the new one at once (the smoke test's wait for
a longer TTL is tested on its own, in tests/deploy/aws/test_aws_smoke_test.py).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.awslambda.models import lambda_backends
from moto.cloudformation.models import CloudFormationBackend, cloudformation_backends
from moto.events.models import Rule
from moto.sagemaker.models import sagemaker_backends
from moto.utilities.arns import parse_arn
from moto_aws import complete_skipped_resources, urllib_through_requests
from moto_sagemaker import patch_update_model_package

import deploy.aws.stacks
from deploy.aws.names import ResourceNames

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "cloudviz-artifacts-promotion"
DEV, PROD = ResourceNames("dev"), ResourceNames("prod")
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
FEATURES = ["x1", "x2", "x3", "x4"]
CLASSES = ["setosa", "virginica", "versicolor"]


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
def account(validated_requests, scheduled_rules_take_no_events, aws_in_process, home, monkeypatch,
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
        boto3.client("apigateway").update_account(patchOperations=[  # the role the stages' access logs need
            {"op": "replace", "path": "/cloudwatchRoleArn", "value": f"arn:aws:iam::{ACCOUNT}:role/apigw-logs"}])
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
