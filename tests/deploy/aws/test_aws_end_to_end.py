"""End to end on moto (in-process ``mock_aws``): a model the local pipeline trained is registered in SageMaker's
model registry, the endpoint and api stacks synthesized for ``dev`` are deployed through the deployer's change
sets, and HTTP requests go to the API Gateway stage URL with the stack's API key, into the handlers imported from
the Lambda zip the stack was deployed with, which store in and read from the stack's DynamoDB table and invoke
the stack's endpoint, answered by the registered model itself.

moto's gaps (Lambda code never runs, AWS_PROXY is not routed, invoke_endpoint answers canned bodies, some resource
types are skipped by its CloudFormation) are closed by the ``aws_in_process`` fixture: tests/moto_aws.py documents
each one. The resources moto skips are checked against the template itself (``test_skipped_resources_...``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
import numpy as np
import pytest
import requests
from aws_stage import validated_requests  # noqa: F401 (a fixture)
from moto import mock_aws
from moto_aws import (
    DeploymentPackages,
    aws_in_process,  # noqa: F401  (a fixture)
    complete_skipped_resources,
)

import serving_lambdas
from deploy.aws.deployer import CREATED, deploy_stack
from deploy.aws.lambda_zip import INFERENCE_HANDLER, RETRIEVE_HANDLER, serving_zip
from deploy.aws.names import PRODUCTION_VARIANT, ResourceNames
from deploy.aws.registry import latest_approved_package
from deploy.aws.settings import AwsSettings
from deploy.aws.stacks import StackSpec, synthesize
from deploy.aws.templates.api import CLASS_NAMES
from deploy.endpoint import ServingModel
from serving_lambdas.model_description import forget_schemas
from serving_lambdas.store.dynamodb import partition_of

REGION = "us-east-1"
BUCKET = "cloudviz-artifacts-e2e"
NAMES = ResourceNames("dev")
ORIGIN = "https://app.example.com"  # the stage's one CORS origin
SEED = {"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5}
SETOSA = [5.1, 3.5, 1.4, 0.2]
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
MODEL_KEY = "cloudviz/pipeline/Train/output/model.tar.gz"
SCHEMA_KEY = "cloudviz/executions/e2e-run/Preprocess/schema/schema.json"  # where the pipeline's Preprocess writes it
RANGES = {"x1": (4.3, 7.9), "x2": (2.0, 4.4), "x3": (1.0, 6.9), "x4": (0.1, 2.5)}

pytestmark = pytest.mark.filterwarnings("ignore:.*(not supported by moto|No Moto CloudFormation support).*")


@dataclass(frozen=True)
class Deployment:
    """What the test reads back from the deployed stacks."""

    endpoint: StackSpec
    api: StackSpec
    endpoint_outputs: dict[str, str]
    api_outputs: dict[str, str]
    completed: dict[str, str]  # the resources moto skipped, created from the template: logical id -> physical id
    key: str  # the value of the stack's API key
    package_arn: str
    model_version: int
    packages: DeploymentPackages  # the Lambda deployment packages the functions ran from

    @property
    def url(self) -> str:
        return self.api_outputs["ApiUrl"] + "/predictions"


@pytest.fixture
def deployed(aws_in_process, model_tarball: Path, monkeypatch: pytest.MonkeyPatch) -> Deployment:  # noqa: F811
    """The registered model's endpoint and the api stack, deployed into moto as `cloudviz deploy aws` does."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=MODEL_KEY, Body=model_tarball.read_bytes())
        schema = {"task": "multiclass", "feature_columns": list(RANGES), "classes": CLASS_NAMES.split(","),
                  "features": [{"name": name, "type": "number", "min": low, "max": high}
                               for name, (low, high) in RANGES.items()]}
        s3.put_object(Bucket=BUCKET, Key=SCHEMA_KEY, Body=json.dumps(schema).encode())
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        sagemaker.create_model_package_group(ModelPackageGroupName=NAMES.model_package_group)
        for status in ("Rejected", "Approved", "PendingManualApproval"):  # the registry picks version 2
            sagemaker.create_model_package(
                ModelPackageGroupName=NAMES.model_package_group, ModelApprovalStatus=status,
                InferenceSpecification={
                    "Containers": [{"Image": XGBOOST_IMAGE, "ModelDataUrl": f"s3://{BUCKET}/{MODEL_KEY}"}],
                    "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["application/json"],
                })
        package_arn, version = latest_approved_package(sagemaker, NAMES.model_package_group)
        package = serving_zip()
        s3.put_object(Bucket=BUCKET, Key=package.key, Body=package.data)
        settings = AwsSettings(region=REGION, artifact_bucket=BUCKET, model_package_arn=package_arn,
                               model_version=version, data_schema_uri=f"s3://{BUCKET}/{SCHEMA_KEY}",
                               cors_origins=(ORIGIN,))
        endpoint, api = synthesize(NAMES.stage, settings)[:2]
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        results = [deploy_stack(cloudformation, s3, spec, BUCKET, False, poll_seconds=0) for spec in (endpoint, api)]
        assert [result.status for result in results] == [CREATED, CREATED]
        apigateway = boto3.client("apigateway", region_name=REGION)
        completed = complete_skipped_resources(cloudformation, apigateway, api.name, api.template)
        key = apigateway.get_api_key(apiKey=completed["ApiKey"], includeValue=True)["value"]
        yield Deployment(endpoint, api, results[0].outputs, results[1].outputs, completed, key, package_arn, version,
                         aws_in_process)
    forget_schemas()  # this session's S3 objects are gone


def post(deployment: Deployment, body: object, key: str | None = None, raw: str | None = None) -> requests.Response:
    headers = {"x-api-key": deployment.key if key is None else key, "Content-Type": "application/json",
               "Origin": ORIGIN}
    return requests.post(deployment.url, data=raw if raw is not None else json.dumps(body), headers=headers,
                         timeout=10)


def get(deployment: Deployment, suffix: str = "", **params: str) -> requests.Response:
    return requests.get(deployment.url + suffix, params=params, headers={"x-api-key": deployment.key}, timeout=10)


def stored_item(prediction_id: str) -> dict | None:
    """The table's item for a prediction, read with the raw DynamoDB client (not through our store)."""
    client = boto3.client("dynamodb", region_name=REGION)
    key = {"pk": {"S": partition_of(prediction_id)}, "sk": {"S": prediction_id}}
    return client.get_item(TableName=NAMES.table_name, Key=key, ConsistentRead=True).get("Item")


def prediction_items() -> list[dict]:
    """Every prediction item of the table (the hour index items left out)."""
    items = boto3.client("dynamodb", region_name=REGION).scan(TableName=NAMES.table_name)["Items"]
    return [item for item in items if item["pk"]["S"] != "hours"]


def test_predictions_through_the_stage_url_reach_the_handlers_the_table_and_the_model(deployed, model_tarball):
    assert deployed.api_outputs["ApiUrl"] == (
        f"https://{deployed.api_outputs['ApiId']}.execute-api.{REGION}.amazonaws.com/{NAMES.api_stage_name}")
    assert deployed.api_outputs["TableName"] == NAMES.table_name
    assert deployed.endpoint_outputs["EndpointName"] == NAMES.endpoint_name
    assert (deployed.package_arn.endswith("/2"), deployed.model_version) == (True, 2)

    answer = post(deployed, SEED)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN  # the stage's cors_origins, by the handler
    assert answer.headers["Vary"] == "Origin"
    document = answer.json()
    classes = CLASS_NAMES.split(",")
    assert (document["prediction"], document["label"]) == (1, classes[1])
    assert document["model_version"] == deployed.model_version  # from the serving configuration's version tag
    # The endpoint answered with the registered model itself: the same probabilities as loading it here.
    expected = ServingModel.load(model_tarball).predict(np.array([list(SEED.values())], dtype=np.float32))[0]
    assert [document["probabilities"][name] for name in classes] == pytest.approx(expected.tolist(), abs=1e-6)

    item = stored_item(document["id"])
    assert item is not None, "POST /predictions stored nothing in the stack's table"
    assert item["prediction"] == {"N": "1"} and item["label"] == {"S": classes[1]}
    assert {name: float(value["N"]) for name, value in item["features"]["M"].items()} == SEED

    one = get(deployed, f"/{document['id']}")
    assert one.status_code == 200, one.text
    assert one.json()["features"] == SEED
    assert {k: one.json()[k] for k in ("id", "prediction", "label", "model_version")} == {
        k: document[k] for k in ("id", "prediction", "label", "model_version")}

    batch = post(deployed, {"input_data": [SETOSA, list(SEED.values())]})
    assert batch.status_code == 200, batch.text
    predictions = batch.json()["predictions"]
    assert [p["prediction"] for p in predictions] == [0, 1]
    assert all(stored_item(p["id"]) is not None for p in predictions)
    assert len(prediction_items()) == 3

    newest = [p["id"] for p in reversed(predictions)] + [document["id"]]
    first = get(deployed, limit="2")
    assert first.status_code == 200, first.text
    assert [record["id"] for record in first.json()] == newest[:2]
    rest = get(deployed, limit="2", next_token=first.headers["X-Next-Token"])
    assert [record["id"] for record in rest.json()] == newest[2:]
    assert "X-Next-Token" not in rest.headers


def test_the_handlers_ran_from_the_deployed_zip_and_logged_to_their_log_groups(deployed):
    assert post(deployed, SEED).status_code == 200
    assert get(deployed).status_code == 200
    package = serving_zip()
    assert package.key == deployed.api.parameters["CodeKey"]
    functions = boto3.client("lambda", region_name=REGION)
    for name, handler in ((NAMES.inference_function, INFERENCE_HANDLER), (NAMES.retrieve_function, RETRIEVE_HANDLER)):
        assert functions.get_function_configuration(FunctionName=name)["Handler"] == handler
    # Both functions ran the package CloudFormation read from the bucket, not the working tree's modules.
    (digest,) = deployed.packages.modules
    assert digest == package.sha256[:16]
    zipped = deployed.packages.modules[digest]
    working_tree = Path(serving_lambdas.__file__).resolve().parent
    for module_name in (INFERENCE_HANDLER, RETRIEVE_HANDLER):
        origin = Path(zipped[module_name.rpartition(".")[0]].__file__).resolve()
        assert origin.is_relative_to(deployed.packages.root.resolve() / digest)
        assert not origin.is_relative_to(working_tree)
    assert sys.modules["serving_lambdas"] is serving_lambdas  # the test process's own copy is back in place
    # What the inference handler printed (its EMF metrics) is in the stack's log group of the function.
    logs = boto3.client("logs", region_name=REGION)
    events = logs.filter_log_events(logGroupName=NAMES.inference_log_group)["events"]
    emf = [json.loads(event["message"]) for event in events if event["message"].startswith("{")]
    assert any("ModelLatency" in line and line.get("Endpoint") == NAMES.endpoint_name for line in emf), events
    assert deployed.api.template["Resources"]["InferenceFunction"]["Properties"]["LoggingConfig"]["LogGroup"] == {
        "Ref": "InferenceLogGroup"}
    assert deployed.api.template["Resources"]["InferenceLogGroup"]["Properties"]["LogGroupName"] == (
        NAMES.inference_log_group)


def test_bad_input_and_missing_keys_are_refused_at_the_stage_url(deployed):
    missing = post(deployed, {"x1": 6.7, "x2": 3.3, "x3": 5.7})
    assert missing.status_code == 400 and "x4" in missing.json()["message"]
    wrong_type = post(deployed, {**SEED, "x2": "wide"})
    assert wrong_type.status_code == 400 and "x2" in wrong_type.json()["message"]
    extra = post(deployed, {**SEED, "x9": 1})
    assert extra.status_code == 400 and "x9" in extra.json()["message"]
    assert post(deployed, None, raw="{not json").status_code == 400
    bad_limit = get(deployed, limit="0")
    assert bad_limit.status_code == 400 and "limit" in bad_limit.json()["message"]
    unknown = get(deployed, "/20260101T000000000000Z-0123456789abcdef")
    assert unknown.status_code == 404

    for key in ("", "not-the-key"):
        refused = post(deployed, SEED, key=key)
        assert (refused.status_code, refused.json()) == (403, {"message": "Forbidden"})
        # API Gateway's own errors carry the DEFAULT_4XX gateway response's CORS header.
        assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN
    anonymous = requests.get(deployed.url, timeout=10)
    assert anonymous.status_code == 403
    no_route = requests.delete(deployed.url, headers={"x-api-key": deployed.key}, timeout=10)
    assert (no_route.status_code, no_route.json()) == (403, {"message": "Missing Authentication Token"})
    assert prediction_items() == []  # nothing refused was stored


def test_skipped_resources_are_checked_in_the_template_and_completed_from_it(deployed):
    """moto's CloudFormation creates none of these; the fixture created the API Gateway ones from the template
    (so the requests above went through them), and here the template itself is checked."""
    resources = deployed.api.template["Resources"]
    by_type: dict[str, list[str]] = {}
    for logical_id, resource in resources.items():
        by_type.setdefault(resource["Type"], []).append(logical_id)
    (deployment_id,) = by_type["AWS::ApiGateway::Deployment"]

    stage = resources["ApiStage"]["Properties"]
    assert stage["StageName"] == NAMES.api_stage_name and stage["DeploymentId"] == {"Ref": deployment_id}
    assert stage["RestApiId"] == {"Ref": "RestApi"}
    plan = resources["UsagePlan"]
    assert plan["DependsOn"] == ["ApiStage"]
    assert plan["Properties"]["ApiStages"] == [{"ApiId": {"Ref": "RestApi"}, "Stage": NAMES.api_stage_name}]
    assert plan["Properties"]["Throttle"] == {"RateLimit": {"Ref": "ThrottleRateLimit"},
                                              "BurstLimit": {"Ref": "ThrottleBurstLimit"}}
    assert resources["UsagePlanKey"]["Properties"] == {"KeyId": {"Ref": "ApiKey"}, "KeyType": "API_KEY",
                                                       "UsagePlanId": {"Ref": "UsagePlan"}}
    assert resources["ApiKey"]["Properties"]["Enabled"] is True
    assert deployed.api.template["Outputs"]["ApiKeyId"]["Value"] == {"Ref": "ApiKey"}
    assert sorted(by_type["AWS::ApiGateway::GatewayResponse"]) == ["Default4xxResponse", "Default5xxResponse"]
    assert set(deployed.completed) == {"ApiStage", "ApiKey", "UsagePlan", "UsagePlanKey", "Default4xxResponse",
                                       "Default5xxResponse"}

    apigateway = boto3.client("apigateway", region_name=REGION)
    api_id = deployed.api_outputs["ApiId"]
    plans = apigateway.get_usage_plans(keyId=deployed.completed["ApiKey"])["items"]
    assert [(p["name"], p["throttle"]) for p in plans] == [(NAMES.usage_plan_name, {"rateLimit": 10.0,
                                                                                    "burstLimit": 20})]
    # The CORS preflight: MOCK integrations, no key (moto keeps none of a MOCK's responses: template only).
    paths = {r["path"]: r["id"] for r in apigateway.get_resources(restApiId=api_id)["items"]}
    for path in ("/predictions", "/predictions/{id}", "/model", "/predictions/{id}/feedback"):
        options = apigateway.get_method(restApiId=api_id, resourceId=paths[path], httpMethod="OPTIONS")
        assert options["apiKeyRequired"] is False and options["methodIntegration"]["type"] == "MOCK"
    preflights = [resources[i]["Properties"] for i in by_type["AWS::ApiGateway::Method"]
                  if resources[i]["Properties"]["HttpMethod"] == "OPTIONS"]
    assert len(preflights) == 4
    for preflight in preflights:
        (response,) = preflight["Integration"]["IntegrationResponses"]
        headers = response["ResponseParameters"]
        assert "method.response.header.Access-Control-Allow-Origin" not in headers  # echoed by the template:
        assert f'#if($origin == "{ORIGIN}")' in response["ResponseTemplates"]["application/json"]
        assert "x-api-key" in headers["method.response.header.Access-Control-Allow-Headers"].lower()
    allowed = [p["Integration"]["IntegrationResponses"][0]["ResponseParameters"][
        "method.response.header.Access-Control-Allow-Methods"] for p in preflights]
    assert sorted(allowed) == ["'GET,OPTIONS'", "'GET,OPTIONS'", "'GET,OPTIONS,POST'", "'OPTIONS,POST'"]

    # The endpoint's alarms (skipped by moto: none exists in its CloudWatch) watch the deployed endpoint and variant.
    assert boto3.client("cloudwatch", region_name=REGION).describe_alarms()["MetricAlarms"] == []
    alarms = [r["Properties"] for r in deployed.endpoint.template["Resources"].values()
              if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert alarms
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=sagemaker.describe_endpoint(EndpointName=NAMES.endpoint_name)["EndpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert variant["VariantName"] == PRODUCTION_VARIANT == deployed.endpoint_outputs["VariantName"]
    for alarm in alarms:
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert dimensions == {"EndpointName": NAMES.endpoint_name, "VariantName": PRODUCTION_VARIANT}
        assert alarm["AlarmName"].startswith(f"{NAMES.prefix}-")


def test_get_model_through_the_stage_url_describes_the_served_version_from_its_schema(deployed):
    """The inference function answers GET /model from the endpoint configuration's tags: the version, and the ranges
    of the data schema the cloudviz:data-schema tag names, read from S3."""
    answer = requests.get(deployed.api_outputs["ApiUrl"] + "/model", headers={"x-api-key": deployed.key,
                          "Origin": ORIGIN}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    model = answer.json()
    assert (model["endpoint"], model["model_version"], model["task"]) == (NAMES.endpoint_name, 2, "multiclass")
    assert {f["name"]: (f["min"], f["max"]) for f in model["features"]} == RANGES
    assert [c["name"] for c in model["classes"]] == CLASS_NAMES.split(",")
    assert model["example"] == {name: round((low + high) / 2, 6) for name, (low, high) in RANGES.items()}
    assert post(deployed, model["example"]).status_code == 200  # the example is a body that works
    refused = requests.get(deployed.api_outputs["ApiUrl"] + "/model", timeout=10)
    assert refused.status_code == 403


def feedback(deployment: Deployment, prediction_id: str, body: object, key: str | None = None) -> requests.Response:
    return requests.post(f"{deployment.url}/{prediction_id}/feedback", data=json.dumps(body), timeout=10,
                         headers={"x-api-key": deployment.key if key is None else key,
                                  "Content-Type": "application/json"})


def test_feedback_through_the_stage_url_updates_the_tables_item(validated_requests, deployed):  # noqa: F811
    """POST /predictions/{id}/feedback routed to the inference function of the deployed zip, whose role allows the
    one UpdateItem (every request botocore-validated): recorded (a class index, stored as the class's name), shown
    by GET, the same label again a no-op, another label a 409, an unknown id a 404, an unknown label a 400, no key
    a 403."""
    classes = CLASS_NAMES.split(",")
    prediction = post(deployed, SEED).json()
    before = len(validated_requests)
    assert feedback(deployed, prediction["id"], {"label": 1}, key="not-the-key").status_code == 403
    recorded = feedback(deployed, prediction["id"], {"label": 1})
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["feedback"]["label"] == classes[1]
    item = stored_item(prediction["id"])
    assert item["feedback"]["M"]["label"] == {"S": classes[1]}
    assert item["label"] == {"S": classes[1]} and item["prediction"] == {"N": "1"}  # the prediction itself unchanged
    assert get(deployed, f"/{prediction['id']}").json() == recorded.json()
    assert get(deployed).json() == [recorded.json()]

    again = feedback(deployed, prediction["id"], {"label": classes[1]})
    assert (again.status_code, again.json()) == (200, recorded.json())
    conflict = feedback(deployed, prediction["id"], {"label": classes[0]})
    assert conflict.status_code == 409 and classes[1] in conflict.json()["message"]
    unknown_label = feedback(deployed, prediction["id"], {"label": "daisy"})
    assert unknown_label.status_code == 400
    assert all(name in unknown_label.json()["message"] for name in ["label", *classes])
    unknown_id = feedback(deployed, "20260101T000000000000Z-0123456789abcdef", {"label": 1})
    assert unknown_id.status_code == 404
    assert stored_item("20260101T000000000000Z-0123456789abcdef") is None
    assert stored_item(prediction["id"])["feedback"] == item["feedback"]
    sent = validated_requests[before:]
    assert sent.count("UpdateItem") == 4 and "Scan" not in sent  # recorded, again, conflict, unknown id
