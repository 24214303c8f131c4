"""A run's parameter values on the local target: typed, checked before the run starts, a data set version resolved
to its manifest, and its file parameters as absolute local paths."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from pipelines.champion import CHAMPION_PARAMETER, CHAMPION_SCHEMA_PARAMETER, local_champion, no_champion_folder
from pipelines.dag import Pipeline, TrainingStep
from pipelines.data.versions import IRIS, local_dataset_store
from pipelines.datasets import iris_csv
from pipelines.definition import data_parameters, dataset_version, version_parameters
from pipelines.errors import UserError
from pipelines.local_steps.training import check_hyperparameters
from pipelines.state import StateHome


def resolve_parameters(pipeline: Pipeline, overrides: dict[str, str], home: StateHome) -> dict:
    """The defaults with ``overrides`` (``NAME=VALUE`` texts) applied and checked; a UserError naming the
    parameter that is wrong. An empty ChampionModelData becomes the group's live model (``pipelines.champion``), whose
    folder holds its schema too: an empty ChampionDataSchema adds none."""
    values = pipeline.defaults()
    for name, text in overrides.items():
        parameter = pipeline.parameter(name)
        values[parameter.name] = parameter.parse(text, name)
    given = {pipeline.parameter(name).name for name in overrides}
    if "DataSetVersion" in values and not str(values["InputData"]).strip() and "InputData" not in given:
        values["DataSetVersion"] = str(values["DataSetVersion"]).strip() or IRIS  # the bundled data: data set iris
    if str(values.get("DataSetVersion", "")).strip():
        version = dataset_version(local_dataset_store(home), str(values["DataSetVersion"]).strip())
        values.update(version_parameters(version, given, str(local_path(version.manifest_uri))))
        given |= set(version.parameters)
    pipeline.validate(values)
    as_given = dict(values)
    for name in pipeline.file_parameters():
        if name in (CHAMPION_PARAMETER, CHAMPION_SCHEMA_PARAMETER) and not str(values[name]).strip():
            continue  # the group's live model, once the group is known (below)
        values[name] = str(local_file(name, values[name], home.data))
    for step in pipeline.steps:
        if isinstance(step, TrainingStep):
            check_hyperparameters(step, values)
    # The bundled iris data's label, features and classes; the user's own file needs its own group.
    values.update(data_parameters(as_given, given))
    if CHAMPION_PARAMETER in values and not str(values[CHAMPION_PARAMETER]).strip():
        values[CHAMPION_PARAMETER] = str(local_champion(home, str(values["ModelPackageGroupName"])))
    if CHAMPION_SCHEMA_PARAMETER in values and not str(values[CHAMPION_SCHEMA_PARAMETER]).strip():
        values[CHAMPION_SCHEMA_PARAMETER] = str(no_champion_folder(home))
    return values


def local_path(uri: str) -> Path:
    """A ``file://`` URI as a path."""
    return Path(unquote(urlparse(uri).path))


def local_file(name: str, value: object, data_folder: Path) -> Path:
    """A file parameter as an absolute local path; empty means the bundled iris data (in ``data_folder``)."""
    text = str(value).strip()
    if not text:
        return iris_csv(data_folder)
    if "://" in text:
        raise UserError(f"parameter {name}: {text!r} is a URI; the local target reads local files")
    path = Path(text).expanduser().resolve()
    if not path.exists():
        raise UserError(f"parameter {name}: no such file {text!r}")
    return path
