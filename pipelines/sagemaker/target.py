"""The pipeline in an AWS account: its target (region, role, bucket, the staged iris data), its definition for an
objective family, and the parameters an execution is started with. Shared by ``cloudviz pipeline ... --target
aws`` and ``cloudviz.aws``."""

from __future__ import annotations

from pipelines.approved_version import live_champion
from pipelines.champion import CHAMPION_PARAMETER, CHAMPION_SCHEMA_PARAMETER
from pipelines.data.versions import IRIS, DatasetStore
from pipelines.definition import (
    DEFAULT_GROUP,
    MULTICLASS_OBJECTIVES,
    build_pipeline,
    data_parameters,
    dataset_version,
    version_parameters,
)
from pipelines.errors import UserError
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


def execution_overrides(overrides: dict[str, str], datasets: DatasetStore | None = None) -> dict[str, str]:
    """The parameters an execution is started with. The definition's data parameters are the staged iris data's:
    with the user's own InputData, those not given are sent with their declared (empty: from the data) values, and
    the ModelPackageGroupName must be given. No InputData means the data set iris (its newest version) when
    ``datasets`` is given; an empty one, the definition's InputData (the staged iris file). A DataSetVersion is
    resolved in ``datasets`` (the bucket's data sets) to ``NAME@N``, its manifest as InputData (InputDataType
    ManifestFile) and the parameters describing its data that are not given."""
    if datasets is not None and "InputData" not in overrides:  # the bundled data: the data set iris
        overrides = {**overrides, "DataSetVersion": overrides.get("DataSetVersion", "").strip() or IRIS}
    if overrides.get("DataSetVersion", "").strip():
        overrides = with_dataset_version(overrides, datasets)
    if "InputData" in overrides and not overrides["InputData"].strip():
        overrides = {name: value for name, value in overrides.items() if name != "InputData"}
    if "InputData" not in overrides:
        return overrides
    dag = build_pipeline()
    given = {p.name for p in dag.parameters for name in overrides if name in (p.name, *p.aliases)}
    values = {**dag.defaults(), "InputData": overrides["InputData"]}
    return {**{name: str(value) for name, value in data_parameters(values, given).items()}, **overrides}


def with_dataset_version(overrides: dict[str, str], datasets: DatasetStore | None) -> dict[str, str]:
    if datasets is None:
        raise UserError("parameter DataSetVersion: data sets live in the artifact bucket; name it (--bucket)")
    dag = build_pipeline()
    given = {p.name for p in dag.parameters for name in overrides if name in (p.name, *p.aliases)}
    version = dataset_version(datasets, overrides["DataSetVersion"].strip())
    set_by_version = version_parameters(version, given, version.manifest_uri)
    return {**overrides, **{name: str(value) for name, value in set_by_version.items()}}


def with_champion(sagemaker: object, overrides: dict[str, str]) -> dict[str, str]:
    """``overrides`` with ChampionModelData and ChampionDataSchema resolved when the execution starts, unless
    ChampionModelData is given: the newest Approved version's artifact of the run's group and the data schema it
    registered; left out when there is none, so the definition's defaults, the no-champion object, apply."""
    if overrides.get(CHAMPION_PARAMETER, "").strip():
        return overrides
    others = {name: value for name, value in overrides.items()
              if name not in (CHAMPION_PARAMETER, CHAMPION_SCHEMA_PARAMETER)}
    champion = live_champion(sagemaker, overrides.get("ModelPackageGroupName", DEFAULT_GROUP))
    if champion is None:
        return others
    schema = {CHAMPION_SCHEMA_PARAMETER: champion.data_schema} if champion.data_schema else {}
    return {**others, CHAMPION_PARAMETER: champion.model_data, **schema}
