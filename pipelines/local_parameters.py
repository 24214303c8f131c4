"""A run's parameter values on the local target: typed, checked before the run starts, and its file parameters
as absolute local paths."""

from __future__ import annotations

from pathlib import Path

from pipelines.dag import Pipeline, TrainingStep
from pipelines.datasets import iris_csv
from pipelines.definition import data_parameters
from pipelines.errors import UserError
from pipelines.local_steps.training import check_hyperparameters


def resolve_parameters(pipeline: Pipeline, overrides: dict[str, str], data_folder: Path) -> dict:
    """The defaults with ``overrides`` (``NAME=VALUE`` texts) applied and checked; a UserError naming the
    parameter that is wrong."""
    values = pipeline.defaults()
    for name, text in overrides.items():
        parameter = pipeline.parameter(name)
        values[parameter.name] = parameter.parse(text, name)
    pipeline.validate(values)
    as_given = dict(values)
    for name in pipeline.file_parameters():
        values[name] = str(local_file(name, values[name], data_folder))
    for step in pipeline.steps:
        if isinstance(step, TrainingStep):
            check_hyperparameters(step, values)
    # The bundled iris data's label, features and classes; the user's own file needs its own group.
    values.update(data_parameters(as_given, {pipeline.parameter(name).name for name in overrides}))
    return values


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
