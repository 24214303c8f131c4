"""The unit of deployment (:class:`StackSpec`) and the synthesis of a stage's four stacks from their templates
(:func:`synthesize`, :func:`write_synth`, which also writes the API's OpenAPI document when the served model's
schema is known). The settings they are generated with live in :mod:`deploy.aws.settings`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from deploy.aws.lambda_zip import LambdaZip, lambda_zips
from deploy.aws.names import ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.templates.account import APIGW_LOGGING_STACK, apigw_logging_template
from deploy.aws.templates.api import api_template
from deploy.aws.templates.automation import automation_template
from deploy.aws.templates.common import stack_tags
from deploy.aws.templates.endpoint import INSTANCE_COUNTS, INSTANCE_TYPES, endpoint_template
from deploy.aws.templates.monitoring import monitoring_template
from deploy.openapi import openapi_document
from pipelines.datasets import IRIS_FEATURE_DESCRIPTIONS
from pipelines.definition import DEFAULT_GROUP
from serving_lambdas.config import DEFAULT_MAX_BATCH_ROWS, inference_settings
from serving_lambdas.model_description import describe


@dataclass(frozen=True)
class StackSpec:
    """One CloudFormation stack to deploy: its name, template, parameter values, capabilities and tags."""

    name: str
    template: dict
    parameters: dict[str, str] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ("CAPABILITY_NAMED_IAM",)
    tags: dict[str, str] = field(default_factory=dict)


def synthesize(stage: str, settings: AwsSettings, packages: tuple[LambdaZip, ...] | None = None,
               group: str = DEFAULT_GROUP) -> list[StackSpec]:
    """The stage's four stacks of the model package ``group``, in deployment order (endpoint, api, monitoring,
    automation), referring to the Lambda ``packages`` (default: built from the sources now)."""
    if not settings.artifact_bucket:
        raise ValueError("no artifact bucket: the stacks need the S3 bucket holding the Lambda zips and the models")
    names = ResourceNames(stage, group)
    tags = stack_tags(names)
    zips = {package.name: package for package in (packages or lambda_zips())}
    endpoint = endpoint_template(names, settings)
    endpoint_parameters = {
        "ModelVersion": str(settings.model_version),
        "DataSchemaUri": settings.data_schema_uri,
        "ModelArtifactBucket": settings.artifact_bucket,
        "DataCaptureS3Uri": endpoint["Parameters"]["DataCaptureS3Uri"]["Default"],
        "InstanceType": settings.instance_type or INSTANCE_TYPES[stage],
        "InstanceCount": str(settings.instance_count or INSTANCE_COUNTS[stage]),
    }
    if settings.model_package_arn:
        endpoint_parameters["ModelPackageArn"] = settings.model_package_arn
    automation = automation_template(names, settings)
    automation_parameters = {  # those the stage's template declares (prod's has no function, so no code)
        "ScheduleExpression": settings.schedule_expression,
        "ScheduleState": "ENABLED" if settings.schedule_enabled else "DISABLED",
        "CodeBucket": settings.artifact_bucket,
        "ArtifactBucket": settings.artifact_bucket,
        "CodeKey": zips["automation"].key,
    }
    return [
        StackSpec(names.endpoint_stack, endpoint, endpoint_parameters, tags=tags),
        StackSpec(names.api_stack, api_template(names, settings.cors_origins, settings.api_reserved_concurrency),
                  {"CodeBucket": settings.artifact_bucket, "CodeKey": zips["serving_lambdas"].key,
                   "ArtifactBucket": settings.artifact_bucket,
                   **({"PredictionRetentionDays": str(settings.prediction_retention_days)}
                      if settings.prediction_retention_days else {}),
                   **({"ModelTask": settings.model_task, "FeatureNames": settings.feature_names,
                       "ClassNames": settings.class_names} if settings.model_task else {})}, tags=tags),
        StackSpec(names.monitoring_stack, monitoring_template(names, settings),
                  {"AlarmEmail": settings.alarm_email, "BaselineStatisticsUri": settings.baseline_statistics_uri,
                   "CodeBucket": settings.artifact_bucket, "CodeKey": zips["serving_lambdas"].key}, tags=tags),
        StackSpec(names.automation_stack, automation, {key: value for key, value in automation_parameters.items()
                                                       if key in automation["Parameters"]}, tags=tags),
    ]


def apigw_logging_stack() -> StackSpec:
    """The region's API Gateway logging role and account setting (``--create-apigw-logging-role``): a stack of no
    stage, since the setting is the whole account's in the region."""
    return StackSpec(APIGW_LOGGING_STACK, apigw_logging_template(), tags={"project": "cloudviz"})


def referenced_packages(specs: list[StackSpec], packages: tuple[LambdaZip, ...]) -> list[LambdaZip]:
    """The ``packages`` a stack of ``specs`` takes as its ``CodeKey`` (prod's automation stack runs no function,
    so its zip is not uploaded for prod)."""
    keys = {spec.parameters.get("CodeKey") for spec in specs}
    return [package for package in packages if package.key in keys]


def unset_parameters(spec: StackSpec) -> list[str]:
    """The template's parameters with neither a default nor a value in the spec (CloudFormation refuses the
    stack without them)."""
    return [name for name, definition in spec.template.get("Parameters", {}).items()
            if "Default" not in definition and name not in spec.parameters]


def model_description(stage: str, settings: AwsSettings, group: str = DEFAULT_GROUP) -> dict:
    """What GET /model of the stage answers for the package ``settings`` serve, as far as it is known without
    reading its schema (the features' ranges and the example are null): the inference function's configuration."""
    names = ResourceNames(stage, group)
    environment = {"ENDPOINT_NAME": names.endpoint_name, "PREDICTION_STORE": f"dynamodb:{names.table_name}",
                   "FEATURE_NAMES": settings.feature_names, "CLASS_NAMES": settings.class_names,
                   "MODEL_TASK": settings.model_task}
    if settings.feature_names.split(",") == list(IRIS_FEATURE_DESCRIPTIONS):  # as the api stack's IrisFeatures
        environment["FEATURE_ALIASES"] = ",".join(f"{alias}={name}" for name, alias in
                                                  IRIS_FEATURE_DESCRIPTIONS.items())
    return describe(inference_settings(environment), settings.model_version, None)


def write_synth(directory: str | Path, stage: str, settings: AwsSettings, group: str = DEFAULT_GROUP,
                apigw_logging_role: bool = False) -> list[Path]:
    """Write every template (``<stack>.json``; with ``apigw_logging_role``, the account stack's too), its parameter
    values (``<stack>.parameters.json``, in the form ``aws cloudformation create-stack --parameters file://...``
    reads: complete, so each file deploys its template as it is) and every Lambda zip to ``directory``; and, when
    ``settings`` carry the served package's schema (its task, features and classes), the API's OpenAPI document
    (``openapi.json``)."""
    packages = lambda_zips()
    specs = [*([apigw_logging_stack()] if apigw_logging_role else []), *synthesize(stage, settings, packages, group)]
    for spec in specs:
        if unset := unset_parameters(spec):
            raise ValueError(f"stack {spec.name}: no value for the parameter(s) {', '.join(unset)}")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for spec in specs:
        parameters = [{"ParameterKey": key, "ParameterValue": value} for key, value in spec.parameters.items()]
        for path, document in ((target / f"{spec.name}.json", spec.template),
                               (target / f"{spec.name}.parameters.json", parameters)):
            path.write_text(json.dumps(document, indent=2) + "\n")
            written.append(path)
    for package in packages:
        path = target / package.filename
        path.write_bytes(package.data)
        written.append(path)
    if settings.model_task:
        path = target / "openapi.json"
        document = openapi_document(model_description(stage, settings, group), DEFAULT_MAX_BATCH_ROWS)
        path.write_text(json.dumps(document, indent=2) + "\n")
        written.append(path)
    return written
