"""The SageMaker side of the pipeline: the definition compiled from the one DAG declaration, built offline."""

from __future__ import annotations

import json

from pipelines.definition import build_pipeline
from pipelines.sagemaker.compiler import AWS_PARAMETERS, AwsTarget, Compiler
from pipelines.sagemaker.sdk import load_sdk, offline, pipeline_session


def get_pipeline(
    region: str, role: str, bucket: str, prefix: str = "cloudviz", input_data_uri: str = "", objective: str = ""
) -> object:
    """The SageMaker Pipeline (an SDK ``Pipeline``) of the CloudViz DAG; no AWS call is made. ``objective``
    (default: the Objective parameter's) decides whether Train sends num_class: the definition runs the
    multi:* objectives, or the others (see ``pipelines.definition``)."""
    target = AwsTarget(region, role, bucket, prefix, input_data_uri)
    fixed = {"Objective": objective} if objective else {}
    with offline():
        sdk = load_sdk(region)
        return Compiler(sdk, pipeline_session(sdk, region, bucket), target).compile(build_pipeline(), fixed)


def definition(
    region: str, role: str, bucket: str, prefix: str = "cloudviz", input_data_uri: str = "", objective: str = ""
) -> dict:
    """The pipeline definition document (what CreatePipeline takes), built offline."""
    pipeline = get_pipeline(region, role, bucket, prefix, input_data_uri, objective)
    with offline():
        return json.loads(pipeline.definition())


__all__ = ["AWS_PARAMETERS", "AwsTarget", "definition", "get_pipeline"]
