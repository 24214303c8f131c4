"""The serving stacks' smaller AWS contracts: what the model's role may read (checked against the pipeline's own
output path), when API Gateway takes a new deployment, and how the prod prediction table survives."""

from __future__ import annotations

import fnmatch
import json

import pytest
from sagemaker_definition import BUCKET, flattened, offline_definition

from deploy.aws.names import ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.stacks import synthesize
from serving_lambdas.store.dynamodb import TTL_ATTRIBUTE

SETTINGS = AwsSettings(region="eu-west-1", account_id="123456789012", artifact_bucket=BUCKET,
                       model_package_arn="arn:aws:sagemaker:eu-west-1:123456789012:model-package/cloudviziris/3",
                       model_version=3)


def stack(stage: str, kind: str, settings: AwsSettings = SETTINGS) -> dict:
    name = getattr(ResourceNames(stage), f"{kind}_stack")
    return next(spec.template for spec in synthesize(stage, settings) if spec.name == name)


def joined(value: object, execution_id: str) -> str:
    """A definition value (a string, an execution variable, or a Std:Join of them) for one execution."""
    if isinstance(value, str):
        return value
    if value == {"Get": "Execution.PipelineExecutionId"}:
        return execution_id
    join = value["Std:Join"]
    return join["On"].join(joined(part, execution_id) for part in join["Values"])


def model_role_reads(stage: str) -> list[str]:
    """The s3:GetObject resources of the model's role, as ARNs with the stack's bucket."""
    template = stack(stage, "endpoint")
    statements = template["Resources"]["ModelExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"]
    (reads,) = [s for s in statements if "s3:GetObject" in s["Action"]]
    bucket = template["Parameters"]["ModelArtifactBucket"]["Default"]
    return [r["Fn::Sub"].replace("${AWS::Partition}", "aws").replace("${ModelArtifactBucket}", bucket)
            for r in reads["Resource"]]


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_model_role_reads_the_models_the_pipeline_trains_and_nothing_else(stage):
    """The Train step's output path, from the SageMaker Pipeline definition itself, plus SageMaker's documented
    layout below it (<job name>/output/model.tar.gz), is what the model's role may read."""
    (train,) = [step for step, _ in flattened(offline_definition()["Steps"]).values() if step["Type"] == "Training"]
    output = joined(train["Arguments"]["OutputDataConfig"]["S3OutputPath"], "hx7a1b2c3d4e5")
    artifact = f"{output}/pipelines-hx7a1b2c3d4e5-Train-AbCdE12345/output/model.tar.gz"
    bucket, _, key = artifact.removeprefix("s3://").partition("/")
    readable = model_role_reads(stage)

    def reads(object_key: str) -> bool:
        return any(fnmatch.fnmatchcase(f"arn:aws:s3:::{bucket}/{object_key}", pattern) for pattern in readable)

    assert reads(key), f"the model role cannot read the trained model {artifact}: {readable}"
    other_objects = [
        f"cloudviz/data-capture/{stage}/cloudviz-{stage}/AllTraffic/2026/12/04/10/capture.jsonl",
        key.replace("/Train/", "/Preprocess/").replace("output/model.tar.gz", "train/train.csv"),
        "cloudviz/code/0123abcd/preprocess.py",
        "cloudviz/data/0123abcd/iris.csv",
        "lambda/serving_lambdas-0123abcd.zip",
    ]
    assert [k for k in other_objects if reads(k)] == [], "the model role reads more than trained models"


def deployment_id(template: dict) -> str:
    (key,) = [k for k, body in template["Resources"].items() if body["Type"] == "AWS::ApiGateway::Deployment"]
    return key


def with_origins(*origins: str) -> dict:
    return stack("dev", "api", AwsSettings(**{**SETTINGS.__dict__, "cors_origins": origins}))


def test_changed_cors_origins_reach_the_stage_through_a_new_deployment():
    """A Deployment is a snapshot; CloudFormation makes a new one only for a new logical id, so everything in the
    snapshot (here the CORS origins of the preflights and gateway responses) must change that id."""
    default = stack("dev", "api")
    other = with_origins("https://app.example.com")
    assert deployment_id(default) != deployment_id(other)
    integration = other["Resources"]["PredictionsOptionsMethod"]["Properties"]["Integration"]
    template = integration["IntegrationResponses"][0]["ResponseTemplates"]["application/json"]
    assert '$origin == "https://app.example.com"' in template
    assert "#set($context.responseOverride.header.Access-Control-Allow-Origin = $origin)" in template
    assert "#set($context.responseOverride.status = 403)" in template  # any other origin
    assert other["Resources"]["InferenceFunction"]["Properties"]["Environment"]["Variables"][
        "CORS_ALLOW_ORIGINS"] == "https://app.example.com"
    assert other["Resources"]["Default4xxResponse"]["Properties"]["ResponseParameters"][
        "gatewayresponse.header.Access-Control-Allow-Origin"] == "'https://app.example.com'"
    assert deployment_id(stack("dev", "api")) == deployment_id(default), "the same template, the same deployment"
    with pytest.raises(ValueError, match="CORS origin '\\*' must be scheme://host"):
        with_origins("*")


def test_without_origins_the_api_answers_no_cors_at_all():
    """The default: no preflight methods, no CORS on API Gateway's errors, none from the functions."""
    resources = stack("dev", "api")["Resources"]
    assert not [name for name, body in resources.items() if body["Type"] == "AWS::ApiGateway::Method"
                and body["Properties"]["HttpMethod"] == "OPTIONS"]
    assert "Access-Control" not in json.dumps({name: resources[name] for name in (
        "Default4xxResponse", "Default5xxResponse", "InferenceFunction", "RetrieveFunction")})
    assert resources["InferenceFunction"]["Properties"]["Environment"]["Variables"]["CORS_ALLOW_ORIGINS"] == ""
    several = with_origins("https://a.example", "https://b.example")
    template = json.dumps(several["Resources"]["ModelOptionsMethod"])
    assert '$origin == \\"https://a.example\\" || $origin == \\"https://b.example\\"' in template
    assert "ResponseParameters" not in several["Resources"]["Default4xxResponse"]["Properties"]  # cannot choose


def test_the_prod_table_outlives_its_stack_and_every_item_expires():
    for stage, policy in (("dev", "Delete"), ("prod", "Retain")):
        table = stack(stage, "api")["Resources"]["PredictionTable"]
        assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == (policy, policy), stage
        assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
        variables = stack(stage, "api")["Resources"]["InferenceFunction"]["Properties"]["Environment"]["Variables"]
        assert variables["PREDICTION_RETENTION_DAYS"] == {"Ref": "PredictionRetentionDays"}
