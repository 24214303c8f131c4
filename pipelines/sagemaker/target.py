"""The pipeline in an AWS account: its target (region, role, bucket, the staged iris data), its definition for an
objective family, and the parameters an execution is started with. Shared by ``cloudviz pipeline ... --target
aws`` and ``cloudviz.aws``."""

from __future__ import annotations

from pipelines.definition import MULTICLASS_OBJECTIVES, build_pipeline, data_parameters
from pipelines.sagemaker import AwsTarget, definition
from pipelines.sagemaker.deployment import Upserted, staged_files, upsert
from pipelines.sagemaker.staging import StagedFile, staged
from pipelines.state import StateHome

ROLE_ENV = "CLOUDVIZ_SAGEMAKER_ROLE_ARN"
BUCKET_ENV = "CLOUDVIZ_BUCKET"
DEFAULT_OBJECTIVE = MULTICLASS_OBJECTIVES[0]
DESCRIPTION = "CloudViz: preprocess, train, evaluate, gate, register"


def aws_target(region: str, role_arn: str, bucket: str, prefix: str) -> tuple[AwsTarget, list[StagedFile]]:
    """The target (its InputData default the bundled iris CSV, staged in the bucket) and the files upsert stages."""
    from pipelines.datasets import iris_csv

    iris = iris_csv(StateHome.from_env().data)
    target = AwsTarget(region, role_arn, bucket, prefix, staged(iris, bucket, prefix, "data").uri)
    return target, staged_files(build_pipeline(), target, iris)


def build_definition(target: AwsTarget, objective: str = DEFAULT_OBJECTIVE) -> dict:
    return definition(target.region, target.role_arn, target.bucket, target.prefix, target.input_data_uri,
                      objective)


def upsert_pipeline(sagemaker: object, s3: object, target: AwsTarget, files: list[StagedFile],
                    objective: str = DEFAULT_OBJECTIVE) -> Upserted:
    """Stage the files, then create or update the pipeline to the definition of ``objective``'s family."""
    return upsert(sagemaker, s3, build_pipeline(), build_definition(target, objective), target, files, DESCRIPTION)


def execution_overrides(overrides: dict[str, str]) -> dict[str, str]:
    """The parameters an execution is started with. The definition's data parameters are the staged iris data's:
    with the user's own InputData, those not given are sent with their declared (empty: from the data) values, and
    the ModelPackageGroupName must be given. An empty InputData is left out: the definition's, iris."""
    if "InputData" in overrides and not overrides["InputData"].strip():
        overrides = {name: value for name, value in overrides.items() if name != "InputData"}
    if "InputData" not in overrides:
        return overrides
    dag = build_pipeline()
    given = {p.name for p in dag.parameters for name in overrides if name in (p.name, *p.aliases)}
    values = {**dag.defaults(), "InputData": overrides["InputData"]}
    return {**{name: str(value) for name, value in data_parameters(values, given).items()}, **overrides}
