"""The model version the inference handler records comes from the endpoint's configuration, not from the variant
name (which stays ``AllTraffic`` on every version, as a blue/green update requires).

On moto: every request the handler sends is valid against SageMaker's service model (botocore's ParamValidator)
and allowed by the inference role of the API stack; the version follows the endpoint to a new configuration; a
lookup is cached; a failed lookup costs no prediction. With botocore's Stubber (which validates requests and
answers against the service model): during a blue/green update the baking fleet's configuration is the served one.
"""

from __future__ import annotations

import fnmatch
import json
import logging

import boto3
import pytest
from botocore.stub import Stubber
from botocore.validate import validate_parameters
from moto import mock_aws

from deploy.aws.names import MODEL_VERSION_TAG, PRODUCTION_VARIANT, ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.stacks import synthesize
from serving_lambdas import served_version as served_version_module
from serving_lambdas.config import inference_settings
from serving_lambdas.endpoint import client
from serving_lambdas.model_description import describe, forget_schemas, read_schema
from serving_lambdas.served_version import DATA_SCHEMA_TAG, Served, forget_served_versions, served_model, served_version

REGION, ACCOUNT = "us-east-1", "123456789012"  # moto's default account
NAMES = ResourceNames("dev")
ENDPOINT = NAMES.endpoint_name
BUCKET = "cloudviz-artifacts"  # the api stack's ArtifactBucket


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    forget_served_versions()
    forget_schemas()
    yield
    forget_served_versions()
    forget_schemas()


class Recorder:
    """The requests a client sends, each checked against the operation's input shape as it is made."""

    def __init__(self, client) -> None:
        self.calls: list[tuple[str, dict]] = []
        client.meta.events.register("provide-client-params.sagemaker.*", self.record)

    def record(self, params: dict, model, **_) -> None:
        validate_parameters(params, model.input_shape)  # raises ParamValidationError naming the field
        self.calls.append((model.name, dict(params)))

    @property
    def operations(self) -> list[str]:
        return [operation for operation, _ in self.calls]


def new_config(sagemaker, name: str, version: str | None, schema_uri: str | None = None) -> None:
    tags = [{"Key": "project", "Value": "cloudviz"}]
    if version is not None:
        tags.append({"Key": MODEL_VERSION_TAG, "Value": version})
    if schema_uri is not None:
        tags.append({"Key": DATA_SCHEMA_TAG, "Value": schema_uri})
    sagemaker.create_model(ModelName=f"{name}-model", ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/model",
                           PrimaryContainer={"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/x:1"})
    sagemaker.create_endpoint_config(EndpointConfigName=name, Tags=tags, ProductionVariants=[{
        "VariantName": PRODUCTION_VARIANT, "ModelName": f"{name}-model", "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1}])


def inference_policy() -> list[dict]:
    """The inference role's statements, with the stack's pseudo-parameters and this endpoint's name resolved."""
    settings = AwsSettings(region=REGION, account_id=ACCOUNT, artifact_bucket=BUCKET)
    api = next(spec for spec in synthesize("dev", settings) if spec.name == NAMES.api_stack).template
    statements = api["Resources"]["InferenceRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    pseudo = {"${AWS::Partition}": "aws", "${AWS::Region}": REGION, "${AWS::AccountId}": ACCOUNT}

    def resolved(resource) -> str:
        text = resource["Fn::Sub"] if isinstance(resource, dict) else resource
        for name, value in pseudo.items():
            text = text.replace(name, value)
        return text

    return [{"actions": statement["Action"], "resources": [resolved(r) for r in statement["Resource"]
                                                           if isinstance(r, str) or isinstance(r.get("Fn::Sub"), str)]}
            for statement in statements]


def allowed(policy: list[dict], action: str, arn: str, bucket: str = BUCKET) -> bool:
    """Whether ``policy`` allows ``action`` on ``arn`` (the api stack's ArtifactBucket being ``bucket``)."""
    return any(action in statement["actions"] and any(
        fnmatch.fnmatchcase(arn, pattern.replace("${ArtifactBucket}", bucket)) for pattern in statement["resources"])
               for statement in policy)


def move(sagemaker, config: str) -> None:
    """The endpoint now uses ``config`` (moto has no UpdateEndpoint: the endpoint is made again)."""
    sagemaker.delete_endpoint(EndpointName=ENDPOINT)
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=config)


@mock_aws
def test_the_version_is_the_serving_configurations_tag_read_with_valid_allowed_requests():
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    new_config(sagemaker, "config-a", "7")
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-a")
    recorder = Recorder(sagemaker)

    assert served_version(sagemaker, None, ENDPOINT, ttl_seconds=30) == 7
    assert recorder.operations == ["DescribeEndpoint", "DescribeEndpointConfig", "ListTags"]
    assert served_version(sagemaker, None, ENDPOINT, ttl_seconds=30) == 7
    assert len(recorder.calls) == 3, "a lookup is trusted for its time to live"

    policy = inference_policy()
    arns = {"DescribeEndpoint": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}",
            "DescribeEndpointConfig": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/config-a"}
    for operation, params in recorder.calls:
        arn = params.get("ResourceArn") or arns[operation]
        assert allowed(policy, f"sagemaker:{operation}", arn), f"the inference role may not {operation} on {arn}"
    assert not allowed(policy, "sagemaker:DescribeEndpoint",
                       f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/another"), "least privilege"

    # The endpoint moves to a new configuration (the next version): seen once the lookup expires, and a
    # configuration's version is read once (configurations are immutable).
    new_config(sagemaker, "config-b", "8")
    move(sagemaker, "config-b")
    assert served_version(sagemaker, None, ENDPOINT, ttl_seconds=0) == 8
    move(sagemaker, "config-a")
    del recorder.calls[:]
    assert served_version(sagemaker, None, ENDPOINT, ttl_seconds=0) == 7
    assert recorder.operations == ["DescribeEndpoint"]
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"][0]["VariantName"] == (
        PRODUCTION_VARIANT)


@mock_aws
def test_a_request_with_a_stale_answer_does_not_wait_for_another_requests_lookup():
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    new_config(sagemaker, "config-a", "7")
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-a")
    assert served_version(sagemaker, None, ENDPOINT, ttl_seconds=30) == 7
    new_config(sagemaker, "config-b", "8")
    move(sagemaker, "config-b")
    recorder = Recorder(sagemaker)
    with served_version_module._lock:  # another request is looking the version up
        assert served_version(sagemaker, None, ENDPOINT, ttl_seconds=0) == 7, "the last answer, without waiting"
    assert recorder.calls == []
    assert served_version(sagemaker, None, ENDPOINT, ttl_seconds=0) == 8, "the next request looks up afresh"


@mock_aws
def test_an_untagged_configuration_or_a_failed_lookup_gives_null_and_says_why(caplog):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    new_config(sagemaker, "untagged", None)
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="untagged")
    with caplog.at_level(logging.WARNING):
        assert served_version(sagemaker, None, ENDPOINT, ttl_seconds=0) is None
        assert served_version(sagemaker, None, "no-such-endpoint", ttl_seconds=0) is None
    assert f"endpoint configuration untagged has no {MODEL_VERSION_TAG} tag" in caplog.text
    assert "cannot tell which model version endpoint no-such-endpoint serves" in caplog.text


def described(config: str, pending: dict | None = None) -> dict:
    answer = {"EndpointName": ENDPOINT, "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}",
              "EndpointConfigName": config, "EndpointStatus": "Updating" if pending else "InService",
              "CreationTime": 0, "LastModifiedTime": 0}
    if pending:
        answer["PendingDeploymentSummary"] = pending
    return answer


@pytest.mark.parametrize(("status", "expected"), [("Creating", 7), ("ActivatingTraffic", 7), ("Baking", 8)])
def test_during_a_blue_green_update_the_baking_fleet_is_the_one_served(status, expected):
    """ALL_AT_ONCE moves all the traffic to the new fleet, which then bakes under the rollback alarms."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    pending = {"EndpointConfigName": "config-b", "ProductionVariants": [{
        "VariantName": PRODUCTION_VARIANT, "VariantStatus": [{"Status": status}]}]}
    served = "config-b" if expected == 8 else "config-a"
    with Stubber(sagemaker) as stubber:
        stubber.add_response("describe_endpoint", described("config-a", pending), {"EndpointName": ENDPOINT})
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/{served}"
        stubber.add_response("describe_endpoint_config", {
            "EndpointConfigName": served, "EndpointConfigArn": arn, "CreationTime": 0,
            "ProductionVariants": [{"VariantName": PRODUCTION_VARIANT, "ModelName": "m"}]},
            {"EndpointConfigName": served})
        stubber.add_response("list_tags", {"Tags": [{"Key": MODEL_VERSION_TAG, "Value": str(expected)}]},
                             {"ResourceArn": arn})
        assert served_version(sagemaker, None, ENDPOINT, ttl_seconds=0) == expected
        stubber.assert_no_pending_responses()


@mock_aws
def test_the_data_schema_is_the_configurations_other_tag_read_from_s3_by_an_allowed_valid_request():
    """GET /model's lookup: the same ListTags gives the schema URI, whose object the role may read (a registered
    schema's key, and no other object of the bucket); without the tag the model is described without ranges."""
    key = "cloudviz/executions/run7/Preprocess/schema/schema.json"
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    schema = {"task": "binary", "features": [{"name": "tenure", "type": "number", "min": 0, "max": 72}]}
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(schema).encode())
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    new_config(sagemaker, "config-a", "7", f"s3://{BUCKET}/{key}")
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-a")
    assert served_model(sagemaker, None, ENDPOINT, ttl_seconds=30) == Served(7, f"s3://{BUCKET}/{key}")

    reads: list[dict] = []

    def record(params: dict, model, **_) -> None:
        validate_parameters(params, model.input_shape)
        reads.append(dict(params))

    client("s3", None).meta.events.register("provide-client-params.s3.GetObject", record)
    assert read_schema(f"s3://{BUCKET}/{key}") == schema
    assert read_schema(f"s3://{BUCKET}/{key}") == schema and len(reads) == 1, "a schema is read once"
    policy = inference_policy()
    assert allowed(policy, "s3:GetObject", f"arn:aws:s3:::{reads[0]['Bucket']}/{reads[0]['Key']}")
    assert not allowed(policy, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/cloudviz/executions/run7/Preprocess/baseline/"
                                               "statistics.json"), "least privilege"
    assert read_schema(f"s3://{BUCKET}/no/such/schema.json") is None  # logged; the model is described without it

    settings = inference_settings({"ENDPOINT_NAME": ENDPOINT, "PREDICTION_STORE": "dynamodb:t",
                                   "FEATURE_NAMES": "tenure", "CLASS_NAMES": "stays,churns", "MODEL_TASK": "binary"})
    assert describe(settings, 7, schema)["features"] == [{"name": "tenure", "type": "number", "min": 0, "max": 72}]
    assert describe(settings, 7, schema)["example"] == {"tenure": 36.0}
    new_config(sagemaker, "config-b", "8")  # a version deployed before the tag existed
    move(sagemaker, "config-b")
    assert served_model(sagemaker, None, ENDPOINT, ttl_seconds=0) == Served(8, None)
    bare = describe(settings, 8, None)
    assert (bare["features"][0]["min"], bare["example"], bare["classes"][1]) == (None, None, {"index": 1,
                                                                                              "name": "churns"})
