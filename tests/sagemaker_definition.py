"""The SageMaker Pipeline definition the tests check, built once per session offline: no credentials, and every
network connection refused."""

from __future__ import annotations

import copy
import functools
import os
import socket
import tempfile
from pathlib import Path

from pipelines.data.storage import LocalStorage
from pipelines.data.versions import DatasetStore
from pipelines.sagemaker import definition

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/CloudVizSageMakerExecution"
BUCKET = "cloudviz-artifacts-test"
INPUT = f"s3://{BUCKET}/cloudviz/data/0123456789abcdef/iris.csv"


@functools.cache
def _built(objective: str) -> dict:
    saved = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("AWS_")}
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.environ["AWS_CONFIG_FILE"] = "/nonexistent"
    connect = socket.socket.connect

    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"building the definition opened a connection to {address}")

    socket.socket.connect = refuse
    try:
        return definition(REGION, ROLE, BUCKET, input_data_uri=INPUT, objective=objective)
    finally:
        socket.socket.connect = connect
        for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
            os.environ.pop(name)
        os.environ.update(saved)


def offline_definition(objective: str = "") -> dict:
    """A copy of the definition (a test may change its copy), built for an objective (default: the default's)."""
    return copy.deepcopy(_built(objective))


def flattened(steps: list[dict], parent: str | None = None) -> dict[str, tuple[dict, str | None]]:
    """Every step of the definition by name (condition branches included), with the condition it hangs on."""
    found = {}
    for step in steps:
        found[step["Name"]] = (step, parent)
        if step["Type"] == "Condition":
            branches = step["Arguments"]["IfSteps"] + step["Arguments"]["ElseSteps"]
            found.update(flattened(branches, step["Name"]))
    return found


def iris_version_parameters(bucket: str = BUCKET) -> dict[str, str]:
    """What an execution started with no data sends: the data set iris's first version, the bundled data (its
    manifest in the bucket, named by the version's content) and the parameters that describe iris."""
    with tempfile.TemporaryDirectory() as folder:
        bundled = DatasetStore(LocalStorage(Path(folder))).resolve("iris@1").id  # made as in any store
    return {"DataSetVersion": "iris@1", "InputDataType": "ManifestFile",
            "InputData": f"s3://{bucket}/cloudviz/datasets/iris/versions/1-{bundled}.manifest",
            "LabelColumn": "species", "FeatureColumns": "x1,x2,x3,x4", "ClassNames": "setosa,virginica,versicolor",
            "ModelPackageGroupName": "CloudVizIris"}
