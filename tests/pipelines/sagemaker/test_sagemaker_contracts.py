"""The SageMaker Pipeline definition checked against AWS's own contracts, not against our own output:

- every job a step starts (CreateProcessingJob, CreateTrainingJob, CreateModelPackage), its request resolved as
  SageMaker resolves it at run time, is valid for botocore's SageMaker service model;
- Preprocess and Evaluate run in the container layout the definition mounts (inputs and code where its
  ProcessingInputs say, below a temp dir standing for /opt/ml/processing), with the definition's own entrypoint
  and arguments, fed from and writing to S3 (moto) at the definition's URIs; Train between them is the local
  emulation of the built-in algorithm, given the definition's resolved hyperparameters and channels;
- the registered container's environment makes the built-in XGBoost container serve in algorithm mode.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath

import boto3
import botocore.session
import pytest
from botocore.validate import ParamValidator
from generated_data import five_classes, regression, two_classes
from moto import mock_aws
from sagemaker_definition import BUCKET, INPUT, REGION, ROLE, flattened, offline_definition

from cloudviz.cli import main
from pipelines.builtin_xgboost.hyperparameters import validate
from pipelines.datasets import iris_csv
from pipelines.definition import MULTICLASS_OBJECTIVES, TASKS, build_pipeline
from pipelines.local_steps.training import TRAINER
from pipelines.sagemaker import AwsTarget
from pipelines.sagemaker.deployment import staged_files, upload_missing
from pipelines.sagemaker.staging import REPOSITORY

SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")
# The API each job step calls, and the name field SageMaker Pipelines fills in itself (the definition has none).
OPERATIONS = {
    "Processing": ("CreateProcessingJob", "ProcessingJobName"),
    "Training": ("CreateTrainingJob", "TrainingJobName"),
    "RegisterModel": ("CreateModelPackage", None),
}
EXECUTION_ID = "0a1b2c3d4e5f"
PROCESSING = PurePosixPath("/opt/ml/processing")
OUTPUT = re.compile(r"Steps\.(\w+)\.ProcessingOutputConfig\.Outputs\['(\w+)'\]\.S3Output\.S3Uri")
MODEL = re.compile(r"Steps\.(\w+)\.ModelArtifacts\.S3ModelArtifacts")
PROPERTY_FILE = re.compile(r"Steps\.(\w+)\.PropertyFiles\.(\w+)")
# What a JsonGet reads before the jobs ran: a value of the type the file holds (the schema's num_class is a number).
STAND_INS = {"num_class": 3}
FAMILIES = ("multi:softprob", "binary:logistic", "reg:squarederror")


class Resolver:
    """Pipeline expressions replaced by what SageMaker puts there at run time: parameters by their defaults,
    ``Std:Join`` by the joined text, the execution id and step properties by realistic values (an output's
    property is that output's own S3 URI; a model's, ``<S3OutputPath>/<job name>/output/model.tar.gz``), and
    ``Std:JsonGet`` by the value in the property file the step wrote to S3 (when given an S3 client; without one,
    by a value of the type the file holds there). ``parameters`` are an execution's PipelineParameters."""

    def __init__(self, definition: dict, s3: object | None = None, parameters: dict | None = None) -> None:
        self.parameters = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]} | (parameters or {})
        self.steps = {name: step for name, (step, _) in flattened(definition["Steps"]).items()}
        self.s3 = s3

    def __call__(self, value: object) -> object:
        if isinstance(value, list):
            return [self(item) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Get"}:
            return self.get(value["Get"])
        if set(value) == {"Std:Join"}:
            join = value["Std:Join"]
            return join["On"].join(str(self(item)) for item in join["Values"])
        if set(value) == {"Std:JsonGet"}:
            return self.json_get(value["Std:JsonGet"])
        return {key: self(item) for key, item in value.items()}

    def get(self, path: str) -> object:
        if path.startswith("Parameters."):
            return self.parameters[path.removeprefix("Parameters.")]
        if path == "Execution.PipelineExecutionId":
            return EXECUTION_ID
        if match := OUTPUT.fullmatch(path):
            return self.output_uri(*match.groups())
        if match := MODEL.fullmatch(path):
            return self.model_uri(match.group(1))
        raise AssertionError(f"no run-time value for {path}")

    def output_uri(self, step: str, output: str) -> str:
        outputs = self.steps[step]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
        return self(next(o for o in outputs if o["OutputName"] == output)["S3Output"]["S3Uri"])

    def model_uri(self, step: str) -> str:
        root = self(self.steps[step]["Arguments"]["OutputDataConfig"]["S3OutputPath"])
        return f"{root}/{job_name(step)}/output/model.tar.gz"

    def json_get(self, json_get: dict) -> object:
        if self.s3 is None:
            return STAND_INS[json_get["Path"]]
        step, name = PROPERTY_FILE.fullmatch(json_get["PropertyFile"]["Get"]).groups()
        file = next(f for f in self.steps[step]["PropertyFiles"] if f["PropertyFileName"] == name)
        bucket, key = split_uri(f"{self.output_uri(step, file['OutputName'])}/{file['FilePath']}")
        value = json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        for part in json_get["Path"].split("."):
            value = value[part]
        return value


def job_name(step: str) -> str:
    return f"pipelines-{EXECUTION_ID}-{step}"


def request(
    definition: dict, step_name: str, s3: object | None = None, parameters: dict | None = None
) -> tuple[str, dict]:
    """The API operation a job step calls and its request, resolved and completed as SageMaker sends it."""
    step = flattened(definition["Steps"])[step_name][0]
    operation, name_field = OPERATIONS[step["Type"]]
    arguments = Resolver(definition, s3, parameters)(step["Arguments"])
    if name_field:
        arguments[name_field] = job_name(step_name)
    return operation, arguments


def invalid(operation: str, arguments: dict) -> str:
    """botocore's report of what the service model rejects in the request ("" when valid)."""
    report = ParamValidator().validate(arguments, SAGEMAKER.operation_model(operation).input_shape)
    return report.generate_report() if report.has_errors() else ""


def job_steps(definition: dict) -> list[str]:
    return [name for name, (step, _) in flattened(definition["Steps"]).items() if step["Type"] in OPERATIONS]


@pytest.mark.parametrize("objective", FAMILIES)
def test_every_job_request_is_valid_for_the_sagemaker_api(objective: str):
    definition = offline_definition(objective)
    assert sorted(job_steps(definition)) == ["Evaluate", "Preprocess", "Register", "Train"]
    reports = {name: invalid(*request(definition, name)) for name in job_steps(definition)}
    assert reports == dict.fromkeys(reports, "")


@pytest.mark.parametrize("objective", FAMILIES)
def test_the_cli_builds_each_familys_definition_valid_for_the_sagemaker_api(home, capsys, objective: str):
    """`cloudviz pipeline definition --objective`: the family's definition, its jobs valid for botocore's model."""
    argv = ["pipeline", "definition", "--region", REGION, "--role", ROLE, "--bucket", BUCKET, "--objective", objective]
    assert main(argv) == 0, capsys.readouterr().err
    definition = json.loads(capsys.readouterr().out)
    (declared,) = [p for p in definition["Parameters"] if p["Name"] == "Objective"]
    assert declared["DefaultValue"] == objective
    reports = {name: invalid(*request(definition, name)) for name in job_steps(definition)}
    assert reports == dict.fromkeys(reports, "") and len(reports) == 4
    _, training = request(definition, "Train")
    assert ("num_class" in training["HyperParameters"]) is (objective in MULTICLASS_OBJECTIVES)


def test_the_validator_rejects_typed_hyperparameters_and_empty_container_arguments():
    """The oracle knows the defects it guards against: a number where the API takes a string, an empty list
    where it takes at least one argument."""
    definition = offline_definition()
    operation, training = request(definition, "Train")
    training["HyperParameters"]["max_depth"] = 5  # what {"Get": "Parameters.MaxDepth"} resolves to
    assert "Invalid type for parameter HyperParameters.max_depth" in invalid(operation, training)
    training["HyperParameters"]["max_depth"] = "5"
    training["HyperParameters"]["num_class"] = 3  # what the num_class JsonGet resolves to, without its Std:Join
    assert "Invalid type for parameter HyperParameters.num_class" in invalid(operation, training)
    operation, evaluate = request(definition, "Evaluate")
    evaluate["AppSpecification"]["ContainerArguments"] = []
    assert "Invalid length for parameter AppSpecification.ContainerArguments" in invalid(operation, evaluate)


def test_training_shards_the_train_split_and_processing_runs_on_one_instance():
    definition = offline_definition()
    local = build_pipeline().step("Train")
    operation, training = request(definition, "Train")
    assert invalid(operation, training) == ""
    distribution = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3DataDistributionType"]
                    for c in training["InputDataConfig"]}
    assert distribution == {"train": "ShardedByS3Key", "validation": "FullyReplicated"}
    assert set(local.sharded_channels) == {"train"}
    parameters = Resolver(definition).parameters
    assert training["ResourceConfig"]["VolumeSizeInGB"] == parameters["TrainingVolumeSizeInGB"] == 30
    assert training["ResourceConfig"]["InstanceCount"] == parameters["TrainingInstanceCount"]
    assert "ProcessingInstanceCount" not in parameters
    for name in ("Preprocess", "Evaluate"):
        assert request(definition, name)[1]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1, name


def xgboost_serving_mode(environment: dict[str, str]) -> str:
    """How the built-in XGBoost container chooses its server, after its public source:
    aws/sagemaker-xgboost-container src/sagemaker_xgboost_container/serving.py, ``main()``: the algorithm-mode
    handler only when ``env.ServingEnv().module_name is None``, else the user module's; and
    aws/sagemaker-containers src/sagemaker_containers/_env.py, ``_Env.__init__``/``module_name``: the module name
    is ``os.environ.get("SAGEMAKER_PROGRAM", None)`` (a trailing ``.py`` dropped), so any value, even "",
    names a user module."""
    return "algorithm" if environment.get("SAGEMAKER_PROGRAM") is None else "script"


def test_the_registered_model_is_served_by_the_algorithm_mode_server():
    definition = offline_definition()
    operation, package = request(definition, "Register")
    (container,) = package["InferenceSpecification"]["Containers"]
    assert xgboost_serving_mode(container.get("Environment", {})) == "algorithm"
    assert not [name for name in container.get("Environment", {}) if name.startswith("SAGEMAKER_")]
    _, training = request(definition, "Train")
    assert container["Image"] == training["AlgorithmSpecification"]["TrainingImage"]
    assert container["ModelDataUrl"] == Resolver(definition).model_uri("Train")
    # The rule as encoded tells the broken environment ModelBuilder used to add from the right one.
    assert xgboost_serving_mode({"SAGEMAKER_PROGRAM": "", "SAGEMAKER_SUBMIT_DIRECTORY": ""}) == "script"


# -- the jobs run in SageMaker's layout ------------------------------------------------------------------------

def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def download(s3: object, uri: str, folder: Path) -> None:
    """An S3Prefix input as SageMaker copies it: an object named by the URI lands in the folder under its own
    name, objects below the URI under their path relative to it."""
    bucket, prefix = split_uri(uri)
    keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])]
    keys = [key for key in keys if key == prefix or key.startswith(prefix.rstrip("/") + "/")]
    assert keys, f"nothing in S3 at {uri}"
    for key in keys:
        target = folder / (PurePosixPath(key).name if key == prefix else key[len(prefix):].lstrip("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))


def upload(s3: object, folder: Path, uri: str) -> None:
    """A job's output folder as SageMaker uploads it at the end of the job: every file below the URI."""
    bucket, prefix = split_uri(uri)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}")


def in_layout(root: Path, local_path: str) -> Path:
    return root / PurePosixPath(local_path).relative_to(PROCESSING)


def run_processing(definition: dict, name: str, s3: object, root: Path, parameters: dict | None = None) -> None:
    """The job as SageMaker runs it: inputs (the code among them) copied to their LocalPath, the container's
    entrypoint with the definition's arguments (``--base-dir`` roots the layout in ``root``), outputs uploaded.
    The script runs alone, with no project module importable, as in the image."""
    _, job = request(definition, name, s3, parameters)
    for item in job["ProcessingInputs"]:
        download(s3, item["S3Input"]["S3Uri"], in_layout(root, item["S3Input"]["LocalPath"]))
    specification = job["AppSpecification"]
    interpreter, script, *rest = specification["ContainerEntrypoint"]
    assert interpreter == "python3", "the image's Python runs the script"
    command = [sys.executable, str(in_layout(root, script)), *rest, *specification.get("ContainerArguments", []),
               "--base-dir", str(root)]
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{name} failed in the SageMaker layout: {result.stderr.strip()}"
    for output in job["ProcessingOutputConfig"]["Outputs"]:
        upload(s3, in_layout(root, output["S3Output"]["LocalPath"]), output["S3Output"]["S3Uri"])


def run_training(definition: dict, name: str, s3: object, ml: Path, parameters: dict | None = None) -> None:
    """The local emulation of the built-in algorithm in the /opt/ml layout SageMaker builds from the request:
    its hyperparameters and channels as the container reads them; the model archive uploaded where the step's
    ModelArtifacts property points."""
    _, job = request(definition, name, s3, parameters)
    assert job["ResourceConfig"]["InstanceCount"] == 1, "one instance: a sharded channel holds every file"
    config = ml / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(job["HyperParameters"]), encoding="utf-8")
    channels = {
        channel["ChannelName"]: {
            "ContentType": channel["ContentType"],
            "TrainingInputMode": channel.get("InputMode", job["AlgorithmSpecification"]["TrainingInputMode"]),
            "S3DistributionType": channel["DataSource"]["S3DataSource"]["S3DataDistributionType"],
        }
        for channel in job["InputDataConfig"]
    }
    (config / "inputdataconfig.json").write_text(json.dumps(channels), encoding="utf-8")
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    for channel in job["InputDataConfig"]:
        download(s3, channel["DataSource"]["S3DataSource"]["S3Uri"], ml / "input" / "data" / channel["ChannelName"])
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    result = subprocess.run([sys.executable, str(TRAINER), "--ml-root", str(ml)], env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{name} failed: {result.stderr.strip()}"
    archive = ml / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted((ml / "model").iterdir()):
            tar.add(path, arcname=path.name)
    s3.upload_file(str(archive), *split_uri(Resolver(definition).model_uri(name)))


@pytest.fixture
def s3(monkeypatch, tmp_path):
    """A moto S3 holding what ``cloudviz pipeline upsert`` stages (the step scripts) and the iris CSV at the
    definition's InputData default."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        upload_missing(client, staged_files(build_pipeline(), AwsTarget(REGION, ROLE, BUCKET), None))
        client.upload_file(str(iris_csv(tmp_path / "data")), *split_uri(INPUT))
        yield client


DATA_SETS = {"iris": None, "two_classes": two_classes, "five_classes": five_classes, "regression": regression}
SECTIONS = {"multiclass": "multiclass_classification_metrics", "binary": "binary_classification_metrics",
            "regression": "regression_metrics"}


@pytest.mark.parametrize("data_set", DATA_SETS)
def test_the_jobs_run_in_the_sagemaker_layout_from_the_definitions_own_arguments(s3, tmp_path, data_set):
    """Each objective family on its own definition, from an execution's parameters: Train gets the hyperparameters
    the container accepts (num_class, from Preprocess's schema, with multi:* only), the gate passes, and every
    object the model package points at is in S3."""
    if DATA_SETS[data_set] is None:
        objective, parameters, classes = "", {}, 3
    else:
        data = DATA_SETS[data_set](tmp_path / "data")
        uri = f"s3://{BUCKET}/cloudviz/data/generated/{data.path.name}"
        s3.upload_file(str(data.path), *split_uri(uri))
        objective, parameters, classes = data.objective, data.parameters(InputData=uri), len(data.classes)
    definition = offline_definition(objective)
    task = TASKS[objective or "multi:softprob"]
    (declared,) = [p for p in definition["Parameters"] if p["Name"] == "Objective"]
    assert declared["EnumValues"] == (list(MULTICLASS_OBJECTIVES) if task == "multiclass"
                                      else ["binary:logistic", "reg:squarederror"])
    run_processing(definition, "Preprocess", s3, tmp_path / "preprocess", parameters)
    _, training = request(definition, "Train", s3, parameters)
    assert validate(training["HyperParameters"])["objective"] == (objective or "multi:softprob")
    assert training["HyperParameters"].get("num_class") == (str(classes) if task == "multiclass" else None)
    run_training(definition, "Train", s3, tmp_path / "train", parameters)
    run_processing(definition, "Evaluate", s3, tmp_path / "evaluate", parameters)
    resolver = Resolver(definition, s3, parameters)
    condition = flattened(definition["Steps"])["CheckAccuracy"][0]["Arguments"]
    (check,) = condition["Conditions"]
    assert check["Type"] == "Equals"
    assert resolver(check["LeftValue"]) is True is check["RightValue"], "the generated data passes the gate"
    # Everything the model package points at is in S3, written by the jobs.
    _, package = request(definition, "Register", s3, parameters)
    metrics = package["ModelMetrics"]
    uris = [package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"],
            package["CustomerMetadataProperties"]["DataSchema"],
            metrics["ModelQuality"]["Statistics"]["S3Uri"], metrics["ModelDataQuality"]["Statistics"]["S3Uri"]]
    for uri in uris:
        s3.head_object(Bucket=split_uri(uri)[0], Key=split_uri(uri)[1])
    schema = json.loads(s3.get_object(Bucket=split_uri(uris[1])[0], Key=split_uri(uris[1])[1])["Body"].read())
    evaluation = json.loads(s3.get_object(Bucket=split_uri(uris[2])[0], Key=split_uri(uris[2])[1])["Body"].read())
    assert schema["task"] == task and SECTIONS[task] in evaluation


def test_the_raw_input_is_a_manifest_when_input_data_type_says_so():
    """InputDataType is the raw ProcessingInput's S3DataType: a data set version's manifest is read as one, and the
    requests stay valid; the registered version names the data set version (a run without one still registers)."""
    definition = offline_definition()
    preprocess = flattened(definition["Steps"])["Preprocess"][0]
    raw = next(item for item in preprocess["Arguments"]["ProcessingInputs"] if item["InputName"] == "raw")
    assert raw["S3Input"]["S3DataType"] == {"Get": "Parameters.InputDataType"}
    declared = {p["Name"]: p for p in definition["Parameters"]}
    assert (declared["InputDataType"]["DefaultValue"], declared["DataSetVersion"]["DefaultValue"]) == ("S3Prefix", "")
    manifest = f"s3://{BUCKET}/cloudviz/datasets/iris/versions/2.manifest"
    execution = {"InputData": manifest, "InputDataType": "ManifestFile", "DataSetVersion": "iris@2"}
    for step in job_steps(definition):
        for parameters in (execution, {}):
            assert invalid(*request(definition, step, parameters=parameters)) == "", (step, parameters)
    _, job = request(definition, "Preprocess", parameters=execution)
    raw = next(item for item in job["ProcessingInputs"] if item["InputName"] == "raw")
    assert raw["S3Input"] == {"S3Uri": manifest, "LocalPath": "/opt/ml/processing/raw", "S3DataType": "ManifestFile",
                              "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated",
                              "S3CompressionType": "None"}
    steps = flattened(definition["Steps"])
    (register,) = [name for name in job_steps(definition) if steps[name][0]["Type"] == "RegisterModel"]
    for parameters, expected in ((execution, "iris@2"), ({}, "")):
        metadata = request(definition, register, parameters=parameters)[1]["CustomerMetadataProperties"]
        assert metadata["DataSetVersion"].strip() == expected
