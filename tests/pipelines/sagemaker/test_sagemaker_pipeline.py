"""The SageMaker Pipeline: built offline by the official SDK from the one DAG declaration, checked step by step
against that declaration, snapshotted, and put into an account (moto) by `cloudviz pipeline upsert | start`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from project_root import ROOT
from sagemaker_definition import BUCKET, INPUT, REGION, ROLE, flattened, iris_version_parameters, offline_definition

from cloudviz.cli import main
from pipelines import dag
from pipelines.datasets import IRIS_PARAMETERS
from pipelines.definition import GATE_PASSED_PATH, build_pipeline
from pipelines.sagemaker import AWS_PARAMETERS
from pipelines.sagemaker.staging import REPOSITORY, no_champion, staged_code

SNAPSHOT = ROOT / "tests" / "snapshots" / "sagemaker_pipeline_definition.json"
STEP_TYPES = {
    "Processing": dag.ProcessingStep,
    "Training": dag.TrainingStep,
    "RegisterModel": dag.RegisterModelStep,
    "Condition": dag.ConditionStep,
    "Fail": dag.FailStep,
}


@pytest.fixture(scope="module")
def offline() -> dict:
    """The definition, built with no credentials and every network connection refused."""
    return offline_definition()


def referenced_steps(arguments: object) -> set[str]:
    """Steps whose properties a step's arguments read (``{"Get": "Steps.NAME...."}``)."""
    return set(re.findall(r'"Get": "Steps\.(\w+)', json.dumps(arguments)))


def test_the_step_graph_is_the_local_dag(offline):
    local = build_pipeline()
    steps = flattened(offline["Steps"])
    assert set(steps) == {step.name for step in local.steps}
    for name, (step, parent) in steps.items():
        assert isinstance(local.step(name), STEP_TYPES[step["Type"]]), name
        arguments = {k: v for k, v in step["Arguments"].items() if k not in ("IfSteps", "ElseSteps")}
        dependencies = referenced_steps(arguments) | set(step.get("DependsOn", [])) | ({parent} - {None})
        assert dependencies == set(local.dependencies(name)), name


def test_the_condition_and_its_branches_are_the_local_ones(offline):
    local = build_pipeline().step("CheckAccuracy")
    condition = flattened(offline["Steps"])["CheckAccuracy"][0]["Arguments"]
    assert [s["Name"] for s in condition["IfSteps"]] == list(local.if_steps)
    assert [s["Name"] for s in condition["ElseSteps"]] == list(local.else_steps)
    (check,) = condition["Conditions"]
    assert check["Type"] == "Equals" and local.comparison == "=="
    json_get = check["LeftValue"]["Std:JsonGet"]
    assert json_get["Path"] == GATE_PASSED_PATH == local.left.json_path
    assert json_get["PropertyFile"] == {"Get": f"Steps.{local.left.step}.PropertyFiles.EvaluateEvaluation"}
    assert check["RightValue"] is True is local.right
    evaluate = flattened(offline["Steps"])["Evaluate"][0]
    assert evaluate["PropertyFiles"] == [
        {"PropertyFileName": "EvaluateEvaluation", "OutputName": "evaluation", "FilePath": "evaluation.json"}
    ]


def test_the_parameters_are_the_local_ones_plus_where_jobs_run(offline):
    declared = {p["Name"]: p for p in offline["Parameters"]}
    for parameter in (*build_pipeline().parameters, *AWS_PARAMETERS):
        assert declared[parameter.name]["Type"] == parameter.type
        # The InputData default is the staged iris CSV, so the data parameters' defaults are iris's.
        expected = INPUT if parameter.name == "InputData" else IRIS_PARAMETERS.get(parameter.name, parameter.default)
        if parameter.name in ("ChampionModelData", "ChampionDataSchema"):  # no-champion object, until a start
            expected = no_champion(BUCKET, "cloudviz").uri
        assert declared[parameter.name]["DefaultValue"] == expected, parameter.name
    assert len(declared) == len(build_pipeline().parameters) + len(AWS_PARAMETERS)


def test_jobs_run_the_same_scripts_arguments_and_hyperparameters(offline):
    local = build_pipeline()
    steps = flattened(offline["Steps"])
    for name in ("Preprocess", "Evaluate"):
        declared = local.step(name)
        specification = steps[name][0]["Arguments"]["AppSpecification"]
        assert specification["ImageUri"].endswith("/sagemaker-xgboost:3.0-5")
        assert specification["ContainerEntrypoint"][-1].endswith("/" + Path(declared.code).name)
        arguments = [a if isinstance(a, str) else re.sub(r".*Parameters\.(\w+).*", r"\1", json.dumps(a))
                     for a in specification.get("ContainerArguments", [])]
        assert arguments == [a.name if isinstance(a, dag.Param) else a for a in declared.arguments]
        code = next(i for i in steps[name][0]["Arguments"]["ProcessingInputs"] if i["InputName"] == "code")
        assert code["S3Input"]["S3Uri"] == staged_code(declared.code, BUCKET, "cloudviz").uri
    training = steps["Train"][0]["Arguments"]
    assert training["AlgorithmSpecification"]["TrainingImage"].endswith("/sagemaker-xgboost:3.0-5")
    # Strings only, as CreateTrainingJob takes them: a number parameter goes through a Std:Join.
    types = {p.name: p.type for p in local.parameters}
    declared = local.step("Train").hyperparameters
    assert training["HyperParameters"] == {
        name: {"Get": f"Parameters.{value.name}"} if types[value.name] == "String"
        else {"Std:Join": {"On": "", "Values": [{"Get": f"Parameters.{value.name}"}]}}
        for name, value in declared.items() if isinstance(value, dag.Param)
    } | {  # decided by the data: the schema's number, as text
        "num_class": {"Std:Join": {"On": "", "Values": [{"Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.Preprocess.PropertyFiles.PreprocessSchema"},
            "Path": declared["num_class"].json_path}}]}}
    }
    assert [c["ChannelName"] for c in training["InputDataConfig"]] == list(local.step("Train").channels)


def test_the_processing_scripts_run_on_the_images_python():
    """The SageMaker XGBoost 3.0-5 image runs Python 3.10; vermin finds the oldest Python each script needs."""
    scripts = [REPOSITORY / step.code for step in build_pipeline().steps if isinstance(step, dag.ProcessingStep)]
    vermin = Path(sys.executable).with_name("vermin")
    result = subprocess.run([vermin, "--no-tips", "--violations", "-t=3.10-", *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def normalized(document: dict) -> dict:
    """The definition with the content hashes of staged files masked: a script edit is not a pipeline change."""
    return json.loads(re.sub(r"/[0-9a-f]{16}/", "/<sha256>/", json.dumps(document)))


def test_the_definition_matches_its_snapshot(offline):
    """Review a change of the SageMaker definition: rerun with CLOUDVIZ_UPDATE_SNAPSHOTS=1 and read the diff."""
    if os.environ.get("CLOUDVIZ_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(normalized(offline), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    assert normalized(offline) == json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_definition_names_a_missing_option(home, monkeypatch, capsys):
    for name in ("CLOUDVIZ_SAGEMAKER_ROLE_ARN", "CLOUDVIZ_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    assert main(["pipeline", "definition", "--region", REGION, "--bucket", BUCKET]) == 2
    assert "--role is required" in capsys.readouterr().err
    assert main(["pipeline", "definition", "--region", REGION, "--bucket", BUCKET, "--role", "admin"]) == 2
    assert "--role must be an IAM role ARN" in capsys.readouterr().err


def run_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--region", REGION, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_upsert_stages_the_files_then_creates_and_updates_the_pipeline(account, capsys):
    first = run_json(capsys, "pipeline", "upsert")
    assert first["created"] is True
    assert {uri.rsplit("/", 1)[1] for uri in first["uploaded"]} == {"preprocess.py", "evaluate.py", "iris.csv",
                                                                    "README.json"}
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    stored = sagemaker.describe_pipeline(PipelineName="CloudVizPipeline")
    document = json.loads(stored["PipelineDefinition"])
    assert stored["RoleArn"] == ROLE
    s3 = boto3.client("s3", region_name=REGION)
    data = next(p["DefaultValue"] for p in document["Parameters"] if p["Name"] == "InputData")
    body = s3.get_object(Bucket=BUCKET, Key=data.split("/", 3)[3])["Body"].read().decode()
    assert body.splitlines()[0] == "x1,x2,x3,x4,species" and len(body.splitlines()) == 151
    again = run_json(capsys, "pipeline", "upsert")
    assert again == {"pipeline_arn": first["pipeline_arn"], "created": False, "uploaded": []}


def test_start_on_aws_checks_parameters_and_starts_an_execution(account, capsys):
    assert main(["pipeline", "start", "--target", "aws", "--region", REGION]) == 2
    assert "run `cloudviz pipeline upsert`" in capsys.readouterr().err
    run_json(capsys, "pipeline", "upsert")
    assert main(["pipeline", "start", "--target", "aws", "--region", REGION, "--param", "Sed=1"]) == 2
    assert "unknown parameter 'Sed'" in capsys.readouterr().err
    assert main(["pipeline", "start", "--target", "aws", "--region", REGION, "--param", "AccuracyThreshold=high"]) == 2
    assert "parameter AccuracyThreshold: expected float" in capsys.readouterr().err
    started = run_json(capsys, "pipeline", "start", "--target", "aws", "--param", "AccuracyThreshold=0.95",
                       "--param", "TrainingInstanceType=ml.m5.xlarge")
    arn = started["pipeline_execution_arn"]
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    parameters = sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
    assert {p["Name"]: p["Value"] for p in parameters} == {  # the former name starts the renamed parameter
        "GateThreshold": "0.95", "TrainingInstanceType": "ml.m5.xlarge", **iris_version_parameters()
    }


def started_parameters(capsys, *params: str) -> dict[str, str]:
    """The PipelineParameters SageMaker recorded for an execution ``cloudviz pipeline start --target aws`` started."""
    argv = [item for param in params for item in ("--param", param)]
    arn = run_json(capsys, "pipeline", "start", "--target", "aws", *argv)["pipeline_execution_arn"]
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    parameters = sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
    return {p["Name"]: p["Value"] for p in parameters}


def test_start_on_aws_with_own_data_sends_the_data_parameters_from_the_data(account, capsys):
    """The definition's data parameters default to iris's (its InputData default is the staged iris CSV): an
    execution on the user's file sends the empty values (from the data) of those not given, and names its group."""
    run_json(capsys, "pipeline", "upsert")
    own = f"s3://{BUCKET}/data/penguins.csv"
    argv = ["pipeline", "start", "--target", "aws", "--region", REGION, "--param", f"InputData={own}"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"cloudviz: error: parameter ModelPackageGroupName: name the model registry group for {own} (the default, "
        "CloudVizIris, is the bundled iris data's), e.g. --param ModelPackageGroupName=Penguins\n")
    assert started_parameters(capsys, f"InputData={own}", "LabelColumn=species", "ModelPackageGroupName=Penguins") == {
        "InputData": own, "LabelColumn": "species", "FeatureColumns": "", "ClassNames": "",
        "ModelPackageGroupName": "Penguins"}
    assert started_parameters(capsys, f"InputData={own}", "LabelColumn=kind", "FeatureColumns=a,b",
                              "ModelPackageGroupName=CloudVizIris") == {
        "InputData": own, "LabelColumn": "kind", "FeatureColumns": "a,b", "ClassNames": "",
        "ModelPackageGroupName": "CloudVizIris"}
    assert started_parameters(capsys, "InputData=", "NumRound=5") == {"NumRound": "5"}  # empty: the staged iris


def test_upsert_builds_the_definition_of_the_objective_family_asked_for(account, capsys):
    run_json(capsys, "pipeline", "upsert", "--objective", "reg:squarederror")
    stored = boto3.client("sagemaker", region_name=REGION).describe_pipeline(PipelineName="CloudVizPipeline")
    (objective,) = [p for p in json.loads(stored["PipelineDefinition"])["Parameters"] if p["Name"] == "Objective"]
    assert (objective["DefaultValue"], objective["EnumValues"]) == (
        "reg:squarederror", ["binary:logistic", "reg:squarederror"])


def test_start_on_aws_with_a_data_set_version_sends_its_manifest_and_its_parameters(account, capsys):
    """--dataset is resolved in the bucket before the execution starts: NAME@N, its manifest as InputData read as a
    ManifestFile, and the parameters describing its data; an unknown one starts nothing."""
    from pipelines.data.manifest import parse_manifest
    from pipelines.data.versions import s3_dataset_store

    run_json(capsys, "pipeline", "upsert")
    s3 = boto3.client("s3", region_name=REGION)
    argv = ["pipeline", "start", "--target", "aws", "--region", REGION]
    assert main([*argv, "--dataset", "churn"]) == 2
    assert "parameter DataSetVersion: data set 'churn': no such data set" in capsys.readouterr().err
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert sagemaker.list_pipeline_executions(PipelineName="CloudVizPipeline")["PipelineExecutionSummaries"] == []

    version = s3_dataset_store(s3, BUCKET, "cloudviz").resolve("iris")  # the bundled data's version 1, in S3
    arn = run_json(capsys, *argv[:-2], "--dataset", "iris")["pipeline_execution_arn"]
    parameters = sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
    manifest = f"s3://{BUCKET}/cloudviz/datasets/iris/versions/1-{version.id}.manifest"
    assert {p["Name"]: p["Value"] for p in parameters} == {
        "DataSetVersion": "iris@1", "InputData": manifest, "InputDataType": "ManifestFile",
        **IRIS_PARAMETERS, "ModelPackageGroupName": "CloudVizIris"}
    assert version.manifest_uri == manifest
    listed = parse_manifest(s3.get_object(Bucket=BUCKET, Key=manifest.split("/", 3)[3])["Body"].read(), manifest)
    assert listed.prefix == f"s3://{BUCKET}/cloudviz/datasets/iris/"
    for uri in listed.uris():  # what SageMaker downloads into /opt/ml/processing/raw
        s3.head_object(Bucket=BUCKET, Key=uri.split("/", 3)[3])
