"""The concrete values a step reads in a local run: parameter values, upstream output folders, JSON properties."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.dag import JsonGet, Param, Step, StepOutput, Value, references
from pipelines.runs import RunRecord


def resolve(value: Value, record: RunRecord) -> object:
    """The concrete value of a parameter, step output (a path) or JSON property."""
    match value:
        case Param(name):
            return record.parameters[name]
        case StepOutput(step, output):
            return record.steps[step].outputs[output]
        case JsonGet(step, output, file, json_path):
            document = json.loads((Path(record.steps[step].outputs[output]) / file).read_text("utf-8"))
            for key in filter(None, json_path.split(".")):
                document = document[key]
            return document
    return value


def inputs_of(step: Step, record: RunRecord) -> dict:
    """What the step reads, for the run record: parameter values and upstream paths."""
    inputs: dict = {}
    for ref in references(step):
        match ref:
            case Param(name):
                inputs[name] = record.parameters[name]
            case StepOutput(name, output):
                inputs[f"{name}.{output}"] = record.steps[name].outputs[output]
            case JsonGet(name, output, file, json_path):
                source = str(Path(record.steps[name].outputs[output]) / file)
                inputs[f"{name}.{output}/{file}"] = f"{source}#{json_path}" if json_path else source
    return inputs


def format_value(value: object) -> str:
    """A value as a script argument or hyperparameter string: exact, as SageMaker passes it."""
    return str(value)
