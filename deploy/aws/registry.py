"""Which model package the endpoint serves: the newest Approved version of a SageMaker model package group."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pipelines.approved_version import newest_approved
from pipelines.errors import UserError
from serving_lambdas.config import TASKS


def latest_approved_package(sagemaker_client: object, group: str) -> tuple[str, int]:
    """The ARN and version of the highest-numbered Approved package of ``group`` (``newest_approved``); a UserError
    saying how to get one when there is none."""
    newest = newest_approved(sagemaker_client, group)
    if newest is None:
        raise UserError(
            f"no Approved model package in group {group!r}: run the pipeline (`cloudviz pipeline start --target aws`) "
            "and approve a version (aws sagemaker update-model-package --model-package-arn ARN "
            "--model-approval-status Approved)"
        )
    return newest


def baseline_statistics_uri(sagemaker_client: object, package_arn: str) -> str:
    """The S3 URI of the training data's baseline statistics the pipeline registered with the package (its
    ModelDataQuality statistics), which the drift function measures against; "" when it has none (a package
    registered before the pipeline attached them, or by hand)."""
    package = sagemaker_client.describe_model_package(ModelPackageName=package_arn)
    metrics = package.get("ModelMetrics", {})
    return metrics.get("ModelDataQuality", {}).get("Statistics", {}).get("S3Uri", "")


@dataclass(frozen=True)
class DataSchema:
    """What the API of a registered version serves: its task, features (model order) and classes (class-index
    order; none for regression); ``uri`` is where the schema is (GET /model reads it)."""

    task: str
    features: list[str]
    classes: list[str]
    uri: str


def data_schema(sagemaker_client: object, s3_client: object, package_arn: str) -> DataSchema | None:
    """The data schema the pipeline registered with the package (its CustomerMetadataProperties ``DataSchema``:
    the S3 URI of ``schema.json``); None when it has none. A schema without a task was registered before tasks
    were: multiclass. One whose classes do not fit its task is refused, naming both."""
    package = sagemaker_client.describe_model_package(ModelPackageName=package_arn)
    uri = (package.get("CustomerMetadataProperties") or {}).get("DataSchema", "")
    if not uri:
        return None
    if not uri.startswith("s3://"):
        raise UserError(f"model package {package_arn}: its DataSchema {uri!r} is not an s3:// URI")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    schema = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    try:
        features, classes = [str(name) for name in schema["feature_columns"]], [str(n) for n in schema["classes"]]
    except (KeyError, TypeError):
        raise UserError(f"{uri}: the data schema has no feature_columns and classes") from None
    task = schema.get("task", "multiclass")
    if task not in TASKS:
        raise UserError(f"{uri}: the data schema's task {task!r} is none of {', '.join(TASKS)}")
    wanted = {"regression": "no classes", "binary": "2 classes"}.get(task, "classes")
    if (task == "regression") == bool(classes) or (task == "binary" and len(classes) != 2):
        raise UserError(f"{uri}: the data schema's task {task} needs {wanted}, its classes are "
                        f"{','.join(classes) or '(none)'}")
    return DataSchema(task, features, classes, uri)
