"""Champion vs challenger on AWS: Evaluate's champion input, ChampionModelData resolved to the newest Approved
package's ModelDataUrl when an execution starts, and the no-champion object the upsert stages (moto)."""

from __future__ import annotations

import json

import boto3
from sagemaker_definition import BUCKET, REGION, flattened, iris_version_parameters, offline_definition

from cloudviz.cli import main

IMAGE = "685385470294.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.0-5"
NO_CHAMPION = f"s3://{BUCKET}/cloudviz/cloudviz/no-champion/README.json"


def test_evaluate_reads_the_champion_input_and_max_regression():
    document = offline_definition()
    step, _ = flattened(document["Steps"])["Evaluate"]
    inputs = {item["InputName"]: item["S3Input"] for item in step["Arguments"]["ProcessingInputs"]}
    assert inputs["champion"]["S3Uri"] == {"Get": "Parameters.ChampionModelData"}
    assert (inputs["champion"]["LocalPath"], inputs["champion"]["S3DataType"]) == (
        "/opt/ml/processing/champion", "S3Prefix")
    assert inputs["champion_schema"]["S3Uri"] == {"Get": "Parameters.ChampionDataSchema"}
    assert inputs["champion_schema"]["LocalPath"] == "/opt/ml/processing/champion_schema"
    arguments = step["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--max-regression") + 1] == {"Std:Join": {
        "On": "", "Values": [{"Get": "Parameters.MaxRegression"}]}}
    parameters = {p["Name"]: p for p in document["Parameters"]}
    assert parameters["ChampionModelData"]["DefaultValue"] == parameters["ChampionDataSchema"]["DefaultValue"] == (
        NO_CHAMPION)
    assert (parameters["MaxRegression"]["Type"], parameters["MaxRegression"]["DefaultValue"]) == ("Float", 0.01)
    register, _ = flattened(document["Steps"])["Register"]
    assert register["Arguments"]["CustomerMetadataProperties"]["ChampionModelData"] == {
        "Get": "Parameters.ChampionModelData"}


def cli_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--region", REGION, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def started_parameters(capsys, sagemaker, *params: str) -> dict[str, str]:
    argv = [item for param in params for item in ("--param", param)]
    arn = cli_json(capsys, "pipeline", "start", "--target", "aws", *argv)["pipeline_execution_arn"]
    recorded = sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
    return {p["Name"]: p["Value"] for p in recorded}


IRIS = iris_version_parameters()  # no data given: the data set iris's newest version


def register(sagemaker, group: str, status: str, model_data_url: str) -> None:
    """A version as the pipeline's Register step files it: its DataSchema beside the model artifact."""
    schema = model_data_url.replace("Train/job/output/model.tar.gz", "Preprocess/schema/schema.json")
    sagemaker.create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus=status,
        CustomerMetadataProperties={"DataSchema": schema},
        InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": model_data_url}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]})


def test_an_execution_compares_with_the_newest_approved_version(account, capsys):
    sagemaker = account
    upserted = cli_json(capsys, "pipeline", "upsert")
    assert NO_CHAMPION in upserted["uploaded"]
    marker = boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=NO_CHAMPION.split("/", 3)[3])
    assert json.loads(marker["Body"].read())["cloudviz"] == "no champion"
    # no group yet: no ChampionModelData sent, so the definition's default (the no-champion object) applies
    assert started_parameters(capsys, sagemaker, "NumRound=5") == {"NumRound": "5", **IRIS}

    sagemaker.create_model_package_group(ModelPackageGroupName="CloudVizIris")
    models = [f"s3://{BUCKET}/cloudviz/executions/{n}/Train/job/output/model.tar.gz" for n in range(3)]
    register(sagemaker, "CloudVizIris", "Approved", models[0])
    register(sagemaker, "CloudVizIris", "Approved", models[1])
    register(sagemaker, "CloudVizIris", "PendingManualApproval", models[2])
    assert started_parameters(capsys, sagemaker) == {
        "ChampionModelData": models[1], "ChampionDataSchema": models[1].replace(
            "Train/job/output/model.tar.gz", "Preprocess/schema/schema.json"), **IRIS}
    given = f"s3://{BUCKET}/elsewhere/model.tar.gz"
    assert started_parameters(capsys, sagemaker, f"ChampionModelData={given}") == {"ChampionModelData": given, **IRIS}
    sagemaker.create_model_package_group(ModelPackageGroupName="Penguins")
    register(sagemaker, "Penguins", "Rejected", models[2])
    assert started_parameters(capsys, sagemaker, "ModelPackageGroupName=Penguins", "ChampionModelData=") == {
        **IRIS, "ModelPackageGroupName": "Penguins"}
