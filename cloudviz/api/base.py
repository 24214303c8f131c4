"""``cloudviz.Project``: the Python API's calls, the same on both targets (``cloudviz.api.local`` and
``cloudviz.api.aws`` implement them)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.runs import LATEST

if TYPE_CHECKING:
    from cloudviz.api.prediction_api import PredictionApi, Serving
    from cloudviz.api.types import Deployment, ModelVersion, Parameter, Promotion, Run
    from pipelines.data.versions import DatasetVersion
    from pipelines.scheduling.definitions import ScheduleDefinition
    from pipelines.scheduling.history import HistoryEntry


class Pipeline(ABC):
    """``project.pipeline``: the pipeline's parameters, and runs of it."""

    @abstractmethod
    def parameters(self) -> list[Parameter]:
        """The parameters a run accepts (on AWS also those that say where the SageMaker jobs run)."""

    @abstractmethod
    def start(self, parameters: dict[str, object] | None = None, data: str | Path | None = None,
              use_cache: bool = True, dataset: str | None = None) -> Run:
        """Start a run with these parameter values (checked before anything runs) and, with ``data``, the user's
        own CSV (local: a path; AWS: an s3:// URI), or with ``dataset`` a data set version (``NAME``: its newest,
        or ``NAME@N``; the DataSetVersion parameter), all of its parts. Local: runs it here and returns it
        finished. AWS: upserts the pipeline (stages the scripts in S3, creates or updates the definition), starts
        an execution and returns it executing: ``.wait()`` for the end."""

    def run(self, parameters: dict[str, object] | None = None, data: str | Path | None = None,
            use_cache: bool = True, dataset: str | None = None) -> Run:
        """``start(...)``, then wait for the end; the run, whatever its status (``run.succeeded``)."""
        return self.start(parameters, data, use_cache, dataset).wait()


class Runs(ABC):
    """``project.runs``: past and current runs, newest first."""

    @abstractmethod
    def list(self, limit: int = 20) -> list[Run]: ...

    @abstractmethod
    def get(self, run_id: str = LATEST) -> Run:
        """A run by id (local: a unique prefix works too; AWS: the execution ARN), or the newest."""


class Models(ABC):
    """``project.models``: the model registry (local: SQLite; AWS: the SageMaker Model Registry)."""

    @abstractmethod
    def list(self, group: str | None = None, status: str | None = None) -> list[ModelVersion]: ...

    @abstractmethod
    def get(self, group: str, version: int | str = LATEST) -> ModelVersion: ...

    @abstractmethod
    def set_approval(self, group: str, version: int | str, status: str, reason: str = "") -> ModelVersion: ...

    def approve(self, group: str, version: int | str = LATEST, reason: str = "") -> ModelVersion:
        """Approve a version. On AWS this also redeploys the dev stage, once its stacks exist."""
        return self.set_approval(group, version, "Approved", reason)

    def reject(self, group: str, version: int | str = LATEST, reason: str = "") -> ModelVersion:
        return self.set_approval(group, version, "Rejected", reason)


class Datasets(ABC):
    """``project.data``: data sets and their immutable versions (local: below the state home; AWS: below the
    artifact bucket's prefix), which pipeline runs train on."""

    @abstractmethod
    def add(self, path: str | Path, dataset: str = "iris", label_column: str | None = None, task: str | None = None,
            group: str | None = None, *, feature_columns: Sequence[str] | None = None) -> DatasetVersion:
        """Check a CSV file against the data set's schema and make a new version holding it (the newest version
        unchanged when it holds this content already). A new data set needs ``label_column``; ``task``
        classification (default) or regression; ``group`` the model package group (default from the name);
        ``feature_columns`` the columns its models read, in order (default every column but the label; the others,
        an id or a text column, are kept unchecked)."""

    @abstractmethod
    def list(self, dataset: str | None = None) -> list[DatasetVersion]:
        """The versions of one data set, or of every data set, oldest first."""

    @abstractmethod
    def show(self, ref: str = "iris") -> DatasetVersion:
        """``NAME`` (its newest version) or ``NAME@N``."""

    @abstractmethod
    def export_feedback(self, dataset: str = "iris", group: str | None = None) -> DatasetVersion | None:
        """A new version with the labelled predictions of ``group`` (default the data set's) that no version holds
        yet; None when there are none."""


class Schedules(ABC):
    """``project.schedules``: retraining schedules, kept in ``cloudviz.schedules.json`` (committed with the code):
    the local scheduler (``cloudviz serve``, ``cloudviz scheduler``) runs them here, and ``cloudviz deploy aws`` makes
    them EventBridge Scheduler schedules of the stages they name."""

    @abstractmethod
    def add(self, name: str, cron: str, dataset: str = "iris", parameters: dict[str, object] | None = None,
            stages: tuple[str, ...] | list[str] = ("dev",)) -> ScheduleDefinition:
        """A schedule training on ``dataset``'s newest version at the times of ``cron`` (5 fields, UTC)."""

    @abstractmethod
    def list(self) -> list[ScheduleDefinition]: ...

    @abstractmethod
    def remove(self, name: str) -> ScheduleDefinition: ...

    @abstractmethod
    def pause(self, name: str) -> ScheduleDefinition: ...

    @abstractmethod
    def resume(self, name: str) -> ScheduleDefinition:
        """Due times count from now on: those missed while paused start nothing."""

    @abstractmethod
    def history(self, name: str | None = None, limit: int = 50) -> list[HistoryEntry]:
        """Each due time handled, newest first: the run it started and how it ended, or why it skipped."""

    @abstractmethod
    def tick(self, wait: bool = True) -> list[HistoryEntry]:
        """Start the runs of the schedules due now (what ``cloudviz scheduler --once`` does)."""


class Project(ABC):
    """A CloudViz project on one target: ``cloudviz.local()`` or ``cloudviz.aws()`` makes one."""

    target: str
    pipeline: Pipeline
    runs: Runs
    models: Models
    data: Datasets
    schedules: Schedules

    @abstractmethod
    def deployments(self, group: str | None = None, stage: str | None = None) -> list[Deployment]:
        """What each stage serves."""

    @abstractmethod
    def deploy(self, group: str, version: int | None = None, stage: str = "dev", force: bool = False) -> Deployment:
        """Serve an Approved version on a stage. Local: checks and records it (``version``: default the newest
        Approved; ``force``: a version that is not Approved, dev only). AWS: deploys the stage's stacks; dev
        serves the newest Approved version, prod keeps the version promoted to it."""

    @abstractmethod
    def promote(self, group: str, source: str = "dev", target: str = "prod") -> Promotion:
        """Serve on ``target`` the version ``source`` serves, once its smoke test on ``source`` passed."""

    @abstractmethod
    def serve(self, group: str, stage: str = "dev") -> Serving:
        """The prediction API of a stage, ready to call. Local: starts the endpoint and the API in this process,
        on free ports, until ``close()`` (or the end of a ``with`` block). AWS: the deployed stage's API (nothing
        to start; ``close()`` does nothing)."""

    @abstractmethod
    def api(self, group: str, stage: str = "dev") -> PredictionApi:
        """The prediction API of a stage that is being served already (local: by ``cloudviz serve`` or
        :meth:`serve`; AWS: the deployed stage), with its key."""

    def predict(self, rows: dict | list[dict], group: str, stage: str = "dev") -> dict | list[dict]:
        """``api(group, stage).predict(rows)``: one row (a dict of feature values) or a list of them."""
        return self.api(group, stage).predict(rows)
