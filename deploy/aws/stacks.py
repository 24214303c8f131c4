"""The unit of deployment (:class:`StackSpec`), the settings templates are generated from (:class:`AwsSettings`),
and the synthesis of a stage's four stacks (:func:`synthesize`, :func:`write_synth`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from deploy.aws.lambda_zip import LambdaZip, lambda_zips
from deploy.aws.names import ResourceNames
from deploy.aws.templates.api import api_template
from deploy.aws.templates.automation import automation_template
from deploy.aws.templates.common import stack_tags
from deploy.aws.templates.endpoint import endpoint_template
from deploy.aws.templates.monitoring import monitoring_template


@dataclass(frozen=True)
class AwsSettings:
    """Account-level settings a stage's templates are generated with.

    ``region`` and ``account_id`` only serve names that must be literal ARNs outside a template;
    templates use the ``AWS::Region``/``AWS::AccountId`` pseudo-parameters. ``model_package_arn``
    and ``model_version`` are the approved model package to serve (empty: the template defaults);
    ``baseline_statistics_uri`` its training data's statistics, which drift is measured against (empty:
    no drift function).
    """

    region: str = "us-east-1"
    account_id: str = "123456789012"
    artifact_bucket: str = ""
    alarm_email: str = ""
    model_package_arn: str = ""
    model_version: int = 1
    baseline_statistics_uri: str = ""
    schedule_expression: str = "cron(0 3 ? * MON *)"
    schedule_enabled: bool = False  # scheduled retraining is off until asked for


@dataclass(frozen=True)
class StackSpec:
    """One CloudFormation stack to deploy: its name, template, parameter values, capabilities and tags."""

    name: str
    template: dict
    parameters: dict[str, str] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ("CAPABILITY_NAMED_IAM",)
    tags: dict[str, str] = field(default_factory=dict)


def synthesize(stage: str, settings: AwsSettings, packages: tuple[LambdaZip, ...] | None = None) -> list[StackSpec]:
    """The stage's four stacks, in deployment order (endpoint, api, monitoring, automation), referring to the
    Lambda ``packages`` (default: built from the sources now)."""
    if not settings.artifact_bucket:
        raise ValueError("no artifact bucket: the stacks need the S3 bucket holding the Lambda zips and the models")
    names = ResourceNames(stage)
    tags = stack_tags(names)
    zips = {package.name: package for package in (packages or lambda_zips())}
    endpoint = endpoint_template(names, settings)
    endpoint_parameters = {
        "ModelVersion": str(settings.model_version),
        "ModelArtifactBucket": settings.artifact_bucket,
        "DataCaptureS3Uri": endpoint["Parameters"]["DataCaptureS3Uri"]["Default"],
    }
    if settings.model_package_arn:
        endpoint_parameters["ModelPackageArn"] = settings.model_package_arn
    return [
        StackSpec(names.endpoint_stack, endpoint, endpoint_parameters, tags=tags),
        StackSpec(names.api_stack, api_template(names),
                  {"CodeBucket": settings.artifact_bucket, "CodeKey": zips["serving_lambdas"].key}, tags=tags),
        StackSpec(names.monitoring_stack, monitoring_template(names, settings),
                  {"AlarmEmail": settings.alarm_email, "BaselineStatisticsUri": settings.baseline_statistics_uri,
                   "CodeBucket": settings.artifact_bucket, "CodeKey": zips["serving_lambdas"].key}, tags=tags),
        StackSpec(names.automation_stack, automation_template(names, settings),
                  {"ScheduleExpression": settings.schedule_expression,
                   "ScheduleState": "ENABLED" if settings.schedule_enabled else "DISABLED",
                   "CodeBucket": settings.artifact_bucket,
                   "CodeKey": zips["redeploy"].key}, tags=tags),
    ]


def write_synth(directory: str | Path, stage: str, settings: AwsSettings) -> list[Path]:
    """Write every template (``<stack>.json``), its parameter values (``<stack>.parameters.json``, in the form
    ``aws cloudformation create-stack --parameters file://...`` reads) and every Lambda zip to ``directory``."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    packages = lambda_zips()
    for spec in synthesize(stage, settings, packages):
        parameters = [{"ParameterKey": key, "ParameterValue": value} for key, value in spec.parameters.items()]
        for path, document in ((target / f"{spec.name}.json", spec.template),
                               (target / f"{spec.name}.parameters.json", parameters)):
            path.write_text(json.dumps(document, indent=2) + "\n")
            written.append(path)
    for package in packages:
        path = target / package.filename
        path.write_bytes(package.data)
        written.append(path)
    return written
