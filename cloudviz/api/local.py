"""``cloudviz.local()``: the Python API over a state home on this machine (runs, the SQLite model registry, the
local endpoints and their prediction APIs), through the same modules the ``cloudviz`` command uses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cloudviz.api.base import Models, Pipeline, Project, Runs
from cloudviz.api.data import LocalDatasets
from cloudviz.api.local_serve import LocalServing, serve_of, start_serve
from cloudviz.api.prediction_api import PredictionApi
from cloudviz.api.schedules import LocalSchedules
from cloudviz.api.types import (
    LOCAL,
    Alarm,
    Deployment,
    ModelRef,
    ModelVersion,
    Parameter,
    Promotion,
    Report,
    Run,
    StepRun,
)
from pipelines.definition import build_pipeline
from pipelines.errors import NotFoundError, UserError
from pipelines.json_logs import log_to_file
from pipelines.model_quality import scalar_metrics
from pipelines.registry import ModelPackage, ModelRegistry, approval_status
from pipelines.runner import LocalRunner
from pipelines.runs import LATEST, RunRecord, RunStore
from pipelines.state import StateHome

if TYPE_CHECKING:
    from deploy import deployments
    from deploy.dashboard.serve_file import ServeRecord
    from deploy.endpoint_state import EndpointFiles
    from deploy.monitoring.alarm_history import Transition
    from deploy.monitoring.notifications import Notifier
    from pipelines.runner import RunObserver


def run_of(record: RunRecord, store: RunStore) -> Run:
    """The API's view of a run record; ``wait()`` rereads it while another process still executes it."""
    registered = record.registered()
    evaluation = record.output_json("evaluation", "evaluation.json") or {}
    return Run(
        id=record.run_id, target=LOCAL, status=record.status, parameters=record.parameters,
        started_at=record.created_at, ended_at=record.ended_at, failure_reason=record.failure_reason,
        steps=[StepRun(step.name, step.status, step.started_at, step.ended_at, step.failure_reason, step.cached_from,
                       step.duration_seconds, step.attempts, step.properties) for step in record.steps.values()],
        metrics=scalar_metrics(evaluation),
        evaluation=evaluation,
        folder=str(record.folder),
        details=record.to_dict(),
        model=ModelRef(registered["model_package_group"], registered["version"], registered["arn"])
        if registered else None,
        _reload=lambda: run_of(store.load(record.run_id), store),
    )


def version_of(package: ModelPackage) -> ModelVersion:
    return ModelVersion(
        group=package.group, version=package.version, arn=package.arn, target=LOCAL,
        approval_status=package.approval_status, created_at=package.created_at, description=package.description,
        status_reason=package.status_reason, evaluation=package.metrics,
        artifacts=package.artifacts or {"model": package.model_data_url},  # a version registered before they were
        run_id=package.lineage.get("run_id"), updated_at=package.updated_at, lineage=package.lineage,
        model_data_url=package.model_data_url, details=package.to_dict(),
    )


def with_data(overrides: dict[str, str], data: str | Path | None, dataset: str | None) -> dict[str, str]:
    """``overrides`` with ``data`` as InputData and ``dataset`` as DataSetVersion, when given."""
    given = {"InputData": data, "DataSetVersion": dataset}
    return {**overrides, **{name: str(value) for name, value in given.items() if value is not None}}


class LocalPipeline(Pipeline):
    def __init__(self, home: StateHome) -> None:
        self.home = home

    def parameters(self) -> list[Parameter]:
        """The parameters of the pipeline ``cloudviz pipeline run`` runs, with their defaults."""
        return [Parameter(p.name, p.type, p.default, p.description) for p in build_pipeline().parameters]

    def start(self, parameters: dict[str, object] | None = None, data: str | Path | None = None,
              use_cache: bool = True, dataset: str | None = None, *, observer: RunObserver | None = None) -> Run:
        """Run the pipeline here, in this process, and return the run finished (Succeeded or Failed). Values are
        checked as ``--param NAME=VALUE`` is; ``data`` is a CSV path (the InputData parameter), ``dataset`` a data
        set version of the state home (the DataSetVersion parameter); ``observer`` is told of each step as it starts
        and ends (``cloudviz``'s progress display)."""
        overrides = with_data({name: str(value) for name, value in (parameters or {}).items()}, data, dataset)
        return run_of(self._runner(observer).start(overrides, use_cache=use_cache), RunStore(self.home.runs))

    def resume(self, run_id: str = LATEST, use_cache: bool | None = None, *,
               observer: RunObserver | None = None) -> Run:
        """Run a failed run again from the step that failed (its id, a unique prefix of one, or ``latest``), with
        the options it was started with (``use_cache`` None: as recorded; True or False: that, from now on)."""
        store = RunStore(self.home.runs)
        return run_of(self._runner(observer).resume(store.find(run_id).run_id, use_cache=use_cache), store)

    def _runner(self, observer: RunObserver | None) -> LocalRunner:
        log_to_file(self.home.logs / "runner.log", "pipelines")
        return LocalRunner(self.home, build_pipeline(), observer)


class LocalRuns(Runs):
    def __init__(self, home: StateHome) -> None:
        self.store = RunStore(home.runs)

    def list(self, limit: int = 20) -> list[Run]:
        """The runs of the state home, newest first."""
        return [run_of(record, self.store) for record in self.store.list()[:limit]]

    def get(self, run_id: str = LATEST) -> Run:
        """A run by id, a unique prefix of one, or ``latest``; NotFoundError when none matches."""
        return run_of(self.store.find(run_id), self.store)


class LocalModels(Models):
    def __init__(self, home: StateHome) -> None:
        self.registry = ModelRegistry(home.registry_db)

    def list(self, group: str | None = None, status: str | None = None) -> list[ModelVersion]:
        """Versions in the SQLite registry, newest first; ``status`` in any letter case."""
        packages = self.registry.list_packages(group, approval_status(status) if status else None)
        return [version_of(package) for package in packages]

    def get(self, group: str, version: int | str = LATEST) -> ModelVersion:
        return version_of(self.registry.get(group, self.registry.version_number(group, version)))

    def set_approval(self, group: str, version: int | str, status: str, reason: str = "") -> ModelVersion:
        """Set a version's approval status (any letter case). A running ``cloudviz serve`` (or ``serve()``) of dev
        puts a newly Approved version live within a second."""
        number = self.registry.version_number(group, version)
        return version_of(self.registry.update_approval(group, number, approval_status(status), reason))


class LocalProject(Project):
    """The project on a state home: ``home``, else $CLOUDVIZ_HOME, else ./.cloudviz."""

    target = LOCAL

    def __init__(self, home: str | Path | None = None) -> None:
        self.home = StateHome(Path(home).resolve()) if home is not None else StateHome.from_env()
        self.pipeline = LocalPipeline(self.home)
        self.runs = LocalRuns(self.home)
        self.models = LocalModels(self.home)
        self.data = LocalDatasets(self.home)
        self.schedules = LocalSchedules(self.home)
        self._served: dict[tuple[str, str], LocalServing] = {}  # what serve() started, until closed

    def __repr__(self) -> str:
        return f"cloudviz.local({str(self.home.root)!r})"

    def deployments(self, group: str | None = None, stage: str | None = None) -> list[Deployment]:
        """Each local endpoint's deployment record, with the API URL of the serve running it, if any."""
        from deploy.deployments import DeploymentStore

        return [self._deployment(record) for record in DeploymentStore(self.home.deployments).live()
                if group in (None, record.group) and stage in (None, record.stage)]

    def deploy(self, group: str, version: int | None = None, stage: str = "dev", force: bool = False, *,
               reason: str | None = None) -> Deployment:
        """Load and smoke-test the version (default the newest Approved), then record it as the stage's live one;
        a running serve of the stage switches to it with no failed request. As ``cloudviz deploy local``.
        ``reason``: what the deployment record says it was for (default the call)."""
        from deploy.deployments import DeploymentStore
        from deploy.release import deploy_local

        reason = reason or ("Project.deploy(force=True)" if force else "Project.deploy")
        record, _ = deploy_local(self.models.registry, DeploymentStore(self.home.deployments), group, version, force,
                                 reason=reason, stage=stage)
        return self._deployment(record)

    def promote(self, group: str, source: str = "dev", target: str = "prod") -> Promotion:
        """Deploy ``source``'s live version to ``target`` if its newest smoke test on ``source`` passed (``serve``
        smoke-tests each version it puts live). As ``cloudviz promote local``."""
        from deploy.deployments import DeploymentStore
        from deploy.release import promote_local

        record, smoke_test, changed = promote_local(self.models.registry, DeploymentStore(self.home.deployments),
                                                    group, source, target)
        return Promotion(source, target, changed, self._deployment(record), smoke_test)

    def serve(self, group: str, stage: str = "dev", *, api_port: int = 0, endpoint_port: int = 0,
              alarm_period_seconds: float | None = None, notifiers: Sequence[Notifier] = (),
              on_event: Callable[[str], None] | None = None, cors_origins: Sequence[str] = (),
              max_connections: int | None = None, lambda_workers: int = 0,
              endpoint_process: bool = False) -> LocalServing:
        """Start the stage's endpoint and prediction API in this process on 127.0.0.1 (ports 0: free ones; dev
        deploys the newest Approved version when nothing is live), smoke-test the live version through the API, and
        record the serve where ``cloudviz dashboard`` and ``api()`` find it, until ``close()``. ``notifiers``
        (:func:`cloudviz.api.local_serve.alarm_notifiers`) receive the alarms' changes, evaluated over periods of
        ``alarm_period_seconds`` (default each rule's own); ``on_event`` each thing the service reports;
        ``cors_origins`` the web origins (``https://app.example.com``) allowed to call the API (none: no CORS);
        ``max_connections`` the connections each server holds at once (None: 512, within the open-file limit);
        ``lambda_workers`` the processes the serving Lambdas run in (0: in this process, one request at a time on
        its interpreter lock; ``cloudviz serve`` uses one more than the CPUs); ``endpoint_process`` runs the endpoint in
        a process of its own (``cloudviz serve`` does), restarted if it ends. Refused
        (AlreadyServed, PortTaken: UserErrors) when the endpoint is served already or a port is taken."""
        serving = start_serve(self.home, self._files(group, stage), group, stage, api_port=api_port,
                              endpoint_port=endpoint_port, alarm_period_seconds=alarm_period_seconds,
                              notifiers=notifiers, on_event=on_event,
                              forget=lambda: self._served.pop((group, stage), None), cors_origins=cors_origins,
                              max_connections=max_connections, lambda_workers=lambda_workers,
                              endpoint_process=endpoint_process)
        self._served[group, stage] = serving
        return serving

    def running_serve(self, group: str, stage: str = "dev") -> ServeRecord | None:
        """The serve (``cloudviz serve`` or :meth:`serve`) running the stage's endpoint on this state home, if any."""
        return serve_of(self._files(group, stage))

    def dashboard(self, group: str, stage: str = "dev") -> ServeRecord:
        """The serve of the stage, once its dashboard (``.dashboard_url``) answers; a UserError saying how to start
        one when none runs, or naming the serve that does not answer."""
        from cloudviz.render import serve_command
        from deploy.dashboard.serve_file import check_answers, running_serve

        record = running_serve(self._files(group, stage).serve_file, serve_command(group, stage))
        check_answers(record)
        return record

    def alarms(self, group: str, stage: str = "dev") -> list[Alarm]:
        """Each alarm rule of the stage's endpoint with the state its serve last recorded (None: never evaluated)."""
        from deploy.monitoring.alarm_history import AlarmHistory
        from deploy.monitoring.alarm_rules import ALARM_RULES

        alarms_db = self._files(group, stage).alarms_db
        states = AlarmHistory(alarms_db).states() if alarms_db.exists() else {}
        return [Alarm(rule.name, state.condition if (state := states.get(rule.name)) else rule.condition,
                      rule.description, f"{rule.namespace} {rule.metric_name}", state.to_dict() if state else None)
                for rule in ALARM_RULES]

    def alarm_history(self, group: str, stage: str = "dev", alarm: str | None = None,
                      limit: int = 50) -> list[Transition]:
        """The alarms' state changes, newest first (``alarm``: only that one's; UserError if it is no alarm)."""
        from deploy.monitoring.alarm_history import AlarmHistory
        from deploy.monitoring.alarm_rules import ALARM_RULES

        names = [rule.name for rule in ALARM_RULES]
        if alarm is not None and alarm not in names:
            raise UserError(f"--alarm {alarm!r}: no such alarm; the alarms are {', '.join(names)}")
        alarms_db = self._files(group, stage).alarms_db
        return AlarmHistory(alarms_db).transitions(alarm, limit) if alarms_db.exists() else []

    def report(self, run_id: str = LATEST, folder: str | Path | None = None) -> Report:
        """Write a self-contained HTML report of a run (and its figures as PNG files) into ``folder`` (default the
        run's folder/report): data summary, metrics, confusion matrix, feature importance, step timings, and a
        comparison with the live model."""
        from deploy.deployments import DeploymentStore
        from deploy.run_report import write_report

        record = self.runs.store.find(run_id)
        written = write_report(record, self.models.registry, DeploymentStore(self.home.deployments),
                               Path(folder) if folder else record.folder / "report")
        return Report(str(written.html), [str(path) for path in written.figures])

    def api(self, group: str, stage: str = "dev") -> PredictionApi:
        """The API of the stage as ``serve()`` or a ``cloudviz serve`` on this state home serves it, with the state
        home's key; NotFoundError when nothing serves it."""
        from deploy.api_key import api_key

        if (group, stage) in self._served:
            return self._served[group, stage].api
        running = self.running_serve(group, stage)
        if running is None:
            raise NotFoundError(f"nothing serves {group} on {stage} on the state home {self.home.root}: start it with"
                                f" project.serve({group!r}, {stage!r}) or `cloudviz serve --group {group} --stage"
                                f" {stage}`")
        return PredictionApi(running.api_url, api_key(self.home.api_key_file))

    def _files(self, group: str, stage: str) -> EndpointFiles:
        from deploy.endpoint_state import EndpointFiles

        return EndpointFiles.of(self.home, group, stage)

    def _deployment(self, record: deployments.Deployment) -> Deployment:
        running = self.running_serve(record.group, record.stage)
        return Deployment(record.group, record.stage, record.version, record.endpoint, LOCAL, record.deployed_at,
                          running.api_url if running else None, record.to_dict(), record.model_data_url,
                          record.reason)
