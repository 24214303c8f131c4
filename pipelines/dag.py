"""The vocabulary a pipeline is declared in: parameters, references and steps, as plain data.

It mirrors SageMaker Pipelines' own (ParameterString/Integer/Float, ProcessingStep,
TrainingStep, ConditionStep with JsonGet, ModelStep registering a model, FailStep), so that
one declaration feeds both the local runner and the SageMaker compiler. Dependencies are not
written down: like SageMaker, they follow from the references a step makes to other steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pipelines.errors import UserError

ParameterType = Literal["String", "Integer", "Float"]
PYTHON_TYPES = {"String": str, "Integer": int, "Float": float}


@dataclass(frozen=True)
class Parameter:
    """A pipeline parameter with a default, overridable per run (``--param NAME=VALUE``)."""

    name: str
    type: ParameterType
    default: str | int | float
    description: str = ""
    choices: tuple[str, ...] = ()
    minimum: int | float | None = None  # checked on every override, on both targets
    aliases: tuple[str, ...] = ()  # former names still accepted for overrides (recorded under ``name``)

    def parse(self, text: str, given_as: str = "") -> str | int | float:
        """The typed value of a ``NAME=VALUE`` override, or a UserError naming the parameter as it was given."""
        name = given_as or self.name
        try:
            if self.type == "Integer":
                value: str | int | float = int(text)
            elif self.type == "Float":
                value = float(text)
                if not math.isfinite(value):
                    raise ValueError(text)
            else:
                value = text
        except ValueError:
            raise UserError(f"parameter {name}: expected {self.type.lower()}, got {text!r}") from None
        if self.choices and value not in self.choices:
            raise UserError(f"parameter {name}: {text!r} is not one of {', '.join(self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise UserError(f"parameter {name}: {text} is less than the minimum {self.minimum}")
        return value


@dataclass(frozen=True)
class Param:
    """A reference to a pipeline parameter's value."""

    name: str


@dataclass(frozen=True)
class StepOutput:
    """A reference to a named output of another step (an S3 prefix on AWS, a folder locally)."""

    step: str
    output: str


@dataclass(frozen=True)
class JsonGet:
    """A value read from a JSON file that a step outputs (SageMaker's PropertyFile + JsonGet)."""

    step: str
    output: str
    file: str
    json_path: str


Value = str | int | float | Param | StepOutput | JsonGet


@dataclass(frozen=True)
class RetryPolicy:
    """Re-run a step that failed for a reason other than its input (a crash, a kill, an OOM)."""

    max_attempts: int = 1
    interval_seconds: float = 1.0
    backoff_rate: float = 2.0


@dataclass(frozen=True)
class ProcessingInput:
    """``source`` copied to ``destination``: a prefix (``S3Prefix``: every object below it, a local file or folder)
    or a ``ManifestFile`` (each object it lists, at its key relative to the manifest's prefix), per ``data_type``."""

    name: str
    source: Param | StepOutput
    destination: str
    data_type: Value = "S3Prefix"


@dataclass(frozen=True)
class ProcessingOutput:
    name: str
    source: str


@dataclass(frozen=True)
class ProcessingStep:
    """A script run in a processing container; paths live below ``/opt/ml/processing``."""

    name: str
    code: str  # the script, as a path relative to the repository root
    inputs: tuple[ProcessingInput, ...]
    outputs: tuple[ProcessingOutput, ...]
    arguments: tuple[Value, ...] = ()
    retry: RetryPolicy = RetryPolicy()
    cache: bool = True


@dataclass(frozen=True)
class TrainingStep:
    """The built-in XGBoost algorithm, trained on named channels; its output is ``model``.

    On ``instance_count`` instances the channels in ``sharded_channels`` are dealt out by file
    (SageMaker's ShardedByS3Key: each instance trains on its share); every other channel is copied
    whole to each instance (FullyReplicated).
    """

    name: str
    hyperparameters: dict[str, Value]
    channels: dict[str, StepOutput]
    instance_count: Value = 1
    sharded_channels: tuple[str, ...] = ()
    # A hyperparameter sent only while a parameter has one of some values, e.g. num_class only with a multi:*
    # Objective: {"num_class": ("Objective", ("multi:softprob", "multi:softmax"))}. The local runner decides per
    # run; a SageMaker definition cannot drop a hyperparameter at run time, so the compiler decides when it
    # builds the definition and restricts the parameter to the values that agree (see the compiler).
    sent_when: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    content_type: str = "text/csv"
    retry: RetryPolicy = RetryPolicy()
    cache: bool = True
    outputs: tuple[str, ...] = ("model",)


@dataclass(frozen=True)
class RegisterModelStep:
    """Registers the trained model as a new version of a model package group."""

    name: str
    model: StepOutput
    model_package_group: Value
    approval_status: Value
    metrics: JsonGet  # the whole evaluation report: json_path "" means the document
    data: StepOutput  # the preprocessing schema (its data hash goes into the lineage)
    baseline: StepOutput  # the preprocessing baseline statistics (statistics.json): drift's reference on AWS
    outputs: tuple[str, ...] = ()
    retry: RetryPolicy = RetryPolicy()
    cache: bool = True


@dataclass(frozen=True)
class FailStep:
    """Ends the run as failed with a message built from parts (SageMaker's Join)."""

    name: str
    message: tuple[Value, ...]


Comparison = Literal[">=", ">", "<=", "<", "==", "!="]


@dataclass(frozen=True)
class ConditionStep:
    """``left <comparison> right`` picks which steps run next; the others are skipped."""

    name: str
    left: Value
    comparison: Comparison
    right: Value
    if_steps: tuple[str, ...]
    else_steps: tuple[str, ...]


Step = ProcessingStep | TrainingStep | RegisterModelStep | FailStep | ConditionStep


@dataclass(frozen=True)
class Pipeline:
    name: str
    parameters: tuple[Parameter, ...]
    steps: tuple[Step, ...]
    description: str = ""
    # Rules between parameter values (e.g. a gate metric that fits the objective), checked with the values of
    # every run before it starts, on both targets; raises UserError.
    check: Callable[[dict], None] | None = field(default=None, compare=False, repr=False)
    _index: dict[str, Step] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        names = [step.name for step in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"pipeline {self.name}: duplicate step names")
        self._index.update({step.name: step for step in self.steps})
        for step in self.steps:
            for dependency in self.dependencies(step.name):
                if dependency not in self._index:
                    raise ValueError(f"step {step.name} refers to unknown step {dependency}")

    def step(self, name: str) -> Step:
        return self._index[name]

    def parameter(self, name: str) -> Parameter:
        """The parameter of that name (or former name)."""
        for parameter in self.parameters:
            if name == parameter.name or name in parameter.aliases:
                return parameter
        known = ", ".join(p.name for p in self.parameters)
        raise UserError(f"unknown parameter {name!r} (known: {known})")

    def dependencies(self, name: str) -> list[str]:
        """Steps whose outputs this step reads, plus the condition that branches to it."""
        step = self._index[name]
        found = [ref.step for ref in references(step) if isinstance(ref, StepOutput | JsonGet)]
        found += [
            other.name
            for other in self.steps
            if isinstance(other, ConditionStep) and name in (*other.if_steps, *other.else_steps)
        ]
        return list(dict.fromkeys(found))

    def order(self) -> list[str]:
        """Step names in dependency order (stable: declaration order among equals)."""
        done: list[str] = []
        pending = [step.name for step in self.steps]
        while pending:
            ready = [n for n in pending if all(d in done for d in self.dependencies(n))]
            if not ready:
                raise ValueError(f"pipeline {self.name}: dependency cycle among {', '.join(pending)}")
            done.append(ready[0])
            pending.remove(ready[0])
        return done

    def file_parameters(self) -> list[str]:
        """The parameters that name a file: those a processing step takes as an input (a local path on this
        machine, an S3 URI on AWS), as SageMaker's ProcessingInput takes its source."""
        return list(dict.fromkeys(
            item.source.name for step in self.steps if isinstance(step, ProcessingStep)
            for item in step.inputs if isinstance(item.source, Param)
        ))

    def defaults(self) -> dict[str, str | int | float]:
        return {p.name: p.default for p in self.parameters}

    def validate(self, values: dict) -> None:
        """Apply the declaration's rules between parameter values (a UserError when one is broken)."""
        if self.check is not None:
            self.check(values)


def sent(step: TrainingStep, hyperparameter: str, values: dict) -> bool:
    """Whether the step sends this hyperparameter, given the run's parameter values."""
    if hyperparameter not in step.sent_when:
        return True
    parameter, accepted = step.sent_when[hyperparameter]
    return values[parameter] in accepted


def references(step: Step) -> list[Value]:
    """Every value a step reads, in declaration order."""
    match step:
        case ProcessingStep():
            return [i.source for i in step.inputs] + [i.data_type for i in step.inputs] + list(step.arguments)
        case TrainingStep():
            return [*step.hyperparameters.values(), *step.channels.values(), step.instance_count]
        case RegisterModelStep():
            return [step.model, step.model_package_group, step.approval_status, step.metrics, step.data,
                    step.baseline]
        case FailStep():
            return list(step.message)
        case ConditionStep():
            return [step.left, step.right]
    raise TypeError(f"not a step: {step!r}")
