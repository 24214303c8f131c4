"""What the Python API returns: plain dataclasses, the same on both targets (``target`` says which made it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

LOCAL, AWS = "local", "aws"
TERMINAL_STATUSES = ("Succeeded", "Failed", "Stopped")


class Document:
    """``to_dict()``: the dataclass as JSON-ready values (what ``--json`` prints)."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Parameter(Document):
    """A pipeline parameter: ``targets`` is ``("local", "aws")``, or ``("aws",)`` for where SageMaker jobs run."""

    name: str
    type: str
    default: object
    description: str
    targets: tuple[str, ...] = (LOCAL, AWS)


@dataclass(frozen=True)
class StepRun(Document):
    """One step of a run, with SageMaker's step statuses (Executing, Succeeded, Failed, Skipped...)."""

    name: str
    status: str
    started_at: str | None = None
    ended_at: str | None = None
    failure_reason: str | None = None
    cached_from: str | None = None  # local: the run whose outputs a cache hit reused
    duration_seconds: float | None = None
    attempts: int = 0
    properties: dict = field(default_factory=dict)  # what the step recorded: the gate's outcome, the version...


@dataclass(frozen=True)
class ModelRef(Document):
    """A model package version: the group and version, its ARN (SageMaker's, or a local one shaped like it)."""

    group: str
    version: int
    arn: str


@dataclass
class Run:
    """A pipeline run (local) or execution (AWS). ``id`` is the run id locally, the execution ARN on AWS.
    ``wait()`` polls an unfinished one until it ends; a local run is finished when ``start`` returns."""

    id: str
    target: str
    status: str
    parameters: dict
    started_at: str | None
    ended_at: str | None = None
    failure_reason: str | None = None
    steps: list[StepRun] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)  # the evaluation's headline metrics, once Evaluate ran
    model: ModelRef | None = None  # the version Register registered, if it ran
    evaluation: dict = field(default_factory=dict)  # the Evaluate step's whole report (test_rows, gate...)
    folder: str | None = None  # local: the run's folder under the state home
    details: dict = field(default_factory=dict)  # local: the run record (run.json); AWS: the execution
    _reload: Callable[[], Run] | None = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "Succeeded"

    def wait(self, timeout_seconds: float | None = None, poll_seconds: float = 30.0) -> Run:
        """This run once it has ended (this object, updated in place). Raises TimeoutError after
        ``timeout_seconds`` (None: no limit)."""
        import time

        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        while not self.done and self._reload is not None:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {self.id} is still {self.status} after {timeout_seconds} s")
            time.sleep(poll_seconds if deadline is None else max(0.0, min(poll_seconds, deadline - time.monotonic())))
            fresh = self._reload()
            for name in ("status", "ended_at", "failure_reason", "steps", "metrics", "model", "evaluation",
                         "details"):
                setattr(self, name, getattr(fresh, name))
        return self

    def to_dict(self) -> dict:
        return {"id": self.id, "target": self.target, "status": self.status, "parameters": self.parameters,
                "started_at": self.started_at, "ended_at": self.ended_at, "failure_reason": self.failure_reason,
                "steps": [step.to_dict() for step in self.steps], "metrics": self.metrics,
                "model": self.model.to_dict() if self.model else None}


@dataclass(frozen=True)
class ModelVersion(Document):
    """A registered model version. ``evaluation`` is the Evaluate step's report (SageMaker's model quality
    format); ``artifacts`` names where the model, the evaluation and the baseline statistics are stored
    (``file://`` locally, ``s3://`` on AWS)."""

    group: str
    version: int
    arn: str
    target: str
    approval_status: str
    created_at: str
    description: str = ""
    status_reason: str = ""
    evaluation: dict = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None  # the run (local) or execution ARN (AWS) that registered it
    updated_at: str | None = None  # when its approval status last changed
    lineage: dict = field(default_factory=dict)  # the run, data (file, digest, rows, columns) and code it came from
    model_data_url: str = ""  # the model artifact
    details: dict = field(default_factory=dict)  # local: the registry row; AWS: the model package's description

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.group, self.version, self.arn)


@dataclass(frozen=True)
class Deployment(Document):
    """What a stage's endpoint serves: the version, the endpoint's name and, where it is known, the prediction
    API's URL (AWS: the stage's URL; local: the running ``serve``'s, else None)."""

    group: str
    stage: str
    version: int
    endpoint: str
    target: str
    deployed_at: str | None = None
    api_url: str | None = None
    details: dict = field(default_factory=dict)  # local: the deployment record; AWS: the stacks' results
    model_data_url: str = ""  # the model artifact it serves
    reason: str = ""  # local: why it was deployed (the command, a promotion, an approval)


@dataclass(frozen=True)
class Promotion:
    """The result of promoting a stage's version to another: ``promoted`` is False when the target stage served
    that version already; ``smoke_test`` is the gate that let it through."""

    source: str
    target_stage: str
    promoted: bool
    deployment: Deployment
    smoke_test: dict

    def to_dict(self) -> dict:
        return {**asdict(self), "deployment": self.deployment.to_dict()}


@dataclass(frozen=True)
class Alarm(Document):
    """An alarm rule of a local endpoint: ``condition`` as last evaluated (else the rule's), ``aws_metric`` the
    CloudWatch metric it watches on AWS, ``state`` what its serve last recorded (None: never evaluated)."""

    rule: str
    condition: str
    description: str
    aws_metric: str
    state: dict | None = None


@dataclass(frozen=True)
class Report(Document):
    """A run's HTML report and the PNG figures beside it."""

    html: str
    figures: list[str]
