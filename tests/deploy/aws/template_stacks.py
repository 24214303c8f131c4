"""The stacks the template tests synthesize offline: one stage's four stacks with settings naming a model
package, its baseline and its schema."""

from __future__ import annotations

from deploy.aws.names import ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.stacks import StackSpec, synthesize

PACKAGE_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/cloudviziris/7"
BASELINE_URI = "s3://cloudviz-artifacts/cloudviz/executions/abc123/Preprocess/baseline/statistics.json"
SCHEMA_URI = "s3://cloudviz-artifacts/cloudviz/executions/abc123/Preprocess/schema/schema.json"
SETTINGS = AwsSettings(region="eu-west-1", account_id="123456789012", artifact_bucket="cloudviz-artifacts",
                       alarm_email="ops@example.com", model_package_arn=PACKAGE_ARN, model_version=7,
                       baseline_statistics_uri=BASELINE_URI, data_schema_uri=SCHEMA_URI,
                       cors_origins=("https://app.example.com",))  # CORS on: the preflights are checked too
STAGES = ("dev", "prod")


def stacks(stage: str, settings: AwsSettings = SETTINGS) -> dict[str, StackSpec]:
    names = ResourceNames(stage)
    specs = {spec.name: spec for spec in synthesize(stage, settings)}
    return {kind: specs[getattr(names, f"{kind}_stack")] for kind in ("endpoint", "api", "monitoring", "automation")}


def resources_of(template: dict, resource_type: str) -> dict[str, dict]:
    return {key: body for key, body in template["Resources"].items() if body["Type"] == resource_type}
