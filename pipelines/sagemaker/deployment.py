"""Putting the pipeline into an AWS account and starting it (these need credentials; the definition does not).

``upsert`` uploads the step scripts (and the bundled iris CSV, when the pipeline's input is the default) to
their content-addressed S3 keys, then creates the pipeline or updates it to the new definition.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipelines.dag import Pipeline as Dag
from pipelines.dag import ProcessingStep
from pipelines.errors import UserError
from pipelines.sagemaker.compiler import AWS_PARAMETERS, AwsTarget
from pipelines.sagemaker.staging import StagedFile, no_champion, staged, staged_code, upload_if_missing


@dataclass(frozen=True)
class Upserted:
    pipeline_arn: str
    created: bool
    uploaded: list[str]

    def to_dict(self) -> dict:
        return {"pipeline_arn": self.pipeline_arn, "created": self.created, "uploaded": self.uploaded}


def staged_files(dag: Dag, target: AwsTarget, iris: Path | None) -> list[StagedFile]:
    """The scripts of the Processing steps, the no-champion object (ChampionModelData's default), and the iris CSV
    when the default input is to be staged."""
    files = [staged_code(s.code, target.bucket, target.prefix) for s in dag.steps if isinstance(s, ProcessingStep)]
    files.append(no_champion(target.bucket, target.prefix))
    if iris is not None:
        files.append(staged(iris, target.bucket, target.prefix, "data"))
    return files


def upload_missing(s3: object, files: list[StagedFile]) -> list[str]:
    """Upload the files whose key is not in S3 yet (a key names its content, so a present one is current)."""
    return [file.uri for file in files if upload_if_missing(s3, file.bucket, file.key, file.path.read_bytes())]


def upsert(sagemaker: object, s3: object, dag: Dag, definition: dict, target: AwsTarget, files: list[StagedFile],
           description: str) -> Upserted:
    """Create the pipeline, or update it when it exists."""
    uploaded = upload_missing(s3, files)
    arguments = {
        "PipelineName": dag.name,
        "PipelineDefinition": json.dumps(definition),
        "PipelineDescription": description,
        "RoleArn": target.role_arn,
    }
    if exists(sagemaker, dag.name):
        return Upserted(sagemaker.update_pipeline(**arguments)["PipelineArn"], False, uploaded)
    arn = sagemaker.create_pipeline(**arguments, Tags=[{"Key": "project", "Value": "cloudviz"}])["PipelineArn"]
    return Upserted(arn, True, uploaded)


def exists(sagemaker: object, name: str) -> bool:
    """By listing, not describing: a missing pipeline's error code differs between SageMaker and its fakes."""
    pages = sagemaker.get_paginator("list_pipelines").paginate(PipelineNamePrefix=name)
    return any(item["PipelineName"] == name for page in pages for item in page["PipelineSummaries"])


def start(sagemaker: object, dag: Dag, overrides: Mapping[str, str]) -> str:
    """Start an execution with parameter overrides (checked against the declaration); its ARN."""
    declared = {name: p for p in (*dag.parameters, *AWS_PARAMETERS) for name in (p.name, *p.aliases)}
    values = dag.defaults()
    for name, text in overrides.items():
        if name not in declared:
            known = ", ".join(p.name for p in (*dag.parameters, *AWS_PARAMETERS))
            raise UserError(f"unknown parameter {name!r} (known: {known})")
        values[declared[name].name] = declared[name].parse(text, name)
    dag.validate(values)
    parameters = [{"Name": name, "Value": str(values[name])} for name in
                  dict.fromkeys(declared[name].name for name in overrides)]
    if not exists(sagemaker, dag.name):
        raise UserError(f"pipeline {dag.name} does not exist in this account yet: run `cloudviz pipeline upsert`")
    response = sagemaker.start_pipeline_execution(
        PipelineName=dag.name, PipelineParameters=parameters, PipelineExecutionDescription="cloudviz pipeline start"
    )
    return response["PipelineExecutionArn"]
