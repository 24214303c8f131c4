"""``cloudviz serve``: the local endpoint and the prediction API of one model package group.

The endpoint serves the group's live deployment. A watcher then plays the part of the AWS
EventBridge rule on Model Package State Change: a version approved after the live one was
deployed goes live, blue/green (load, smoke-test, switch; a failure keeps the old model and says
why). It also follows ``cloudviz deploy local`` run from another terminal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from deploy.dashboard import Dashboard, DashboardSources
from deploy.deployments import Deployment, DeploymentStore
from deploy.endpoint import EndpointServer, ModelSlot, ServingModel, SwapRefused
from deploy.monitoring.alarm_history import AlarmHistory
from deploy.monitoring.alarm_rules import ALARM_RULES
from deploy.monitoring.alarms import AlarmEvaluator
from deploy.monitoring.drift import Baseline, DriftMonitor, load_baseline
from deploy.monitoring.metrics import ApiMetrics, EndpointMetrics
from deploy.monitoring.notifications import EventNotifier, Notifier
from deploy.monitoring.sampler import MetricSampler, sampling_period
from deploy.release import deploy_local, endpoint_name, load_checked
from pipelines.datasets import IRIS_FEATURE_DESCRIPTIONS
from pipelines.errors import UserError
from pipelines.registry import ModelPackage, ModelRegistry
from pipelines.runs import RunStore
from pipelines.state import StateHome
from serving_lambdas import metrics as lambda_metrics
from serving_lambdas.store import StoreSpec, open_store

LOCAL_REGION = "us-east-1"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Signature:
    """What API consumers depend on: a model with other features or classes needs a restart, not a swap."""

    features: tuple[str, ...]
    classes: tuple[str, ...]

    @classmethod
    def of(cls, package: ModelPackage) -> Signature:
        data = package.lineage.get("data", {})
        return cls(tuple(data.get("feature_columns", ())), tuple(data.get("classes", ())))


def lambda_environment(signature: Signature, endpoint: str, endpoint_url: str, home: StateHome) -> dict[str, str]:
    """The serving Lambdas' configuration, as the API stack sets it on AWS, pointed at the local parts."""
    environment = {
        "ENDPOINT_NAME": endpoint,
        "SAGEMAKER_RUNTIME_URL": endpoint_url,
        "PREDICTION_STORE": f"sqlite:{home.predictions_db}",
        "FEATURE_NAMES": ",".join(signature.features),
        "CLASS_NAMES": ",".join(signature.classes),
        "AWS_DEFAULT_REGION": LOCAL_REGION,
    }
    if set(signature.features) == set(IRIS_FEATURE_DESCRIPTIONS):
        aliases = IRIS_FEATURE_DESCRIPTIONS.items()
        environment["FEATURE_ALIASES"] = ",".join(f"{alias}={name}" for name, alias in aliases)
    return environment


class LocalService:
    """The endpoint and the API on 127.0.0.1, following the group's deployments until closed."""

    def __init__(
        self,
        home: StateHome,
        group: str,
        api_key: str,
        api_port: int = 0,
        endpoint_port: int = 0,
        on_event: Callable[[str], None] = lambda message: None,
        alarm_period_seconds: float | None = None,
        notifiers: Sequence[Notifier] = (),
    ) -> None:
        """``alarm_period_seconds`` replaces the alarm rules' own period (60 s) locally; ``notifiers`` receive the
        alarms' changes into and out of ALARM (``on_event`` too), and are closed with the service."""
        self.home = home
        self.group = group
        self.endpoint = endpoint_name(group)
        self.registry = ModelRegistry(home.registry_db)
        self.store = DeploymentStore(home.deployments)
        self.api_key = api_key
        self.ports = (api_port, endpoint_port)
        self.on_event = on_event  # and every event is logged
        self.refused: set[int] = set()
        self.api_metrics = ApiMetrics()
        self.endpoint_metrics = EndpointMetrics(self.endpoint)
        self.sampler = MetricSampler(self.api_metrics, self.endpoint_metrics, sampling_period(alarm_period_seconds))
        self.alarm_history = AlarmHistory(home.alarms_db)
        self.alarm_period_seconds = alarm_period_seconds
        self.notifiers = [*notifiers, EventNotifier(on_event)]
        self.evaluator: AlarmEvaluator | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self, poll_seconds: float = 1.0) -> LocalService:
        from deploy.prediction_api import build_prediction_api

        live = self.store.current(self.endpoint)
        if live is None:
            live, model = deploy_local(self.registry, self.store, self.group, None, False, "first cloudviz serve")
        else:
            model = load_checked(self.registry.get(self.group, live.version))
        self.live = live
        self.signature = Signature.of(self.registry.get(self.group, live.version))
        self.slot = ModelSlot(model)
        self.endpoint_metrics.set_live_version(live.version)
        api_port, endpoint_port = self.ports
        self.endpoint_server = EndpointServer(
            self.slot, name=self.endpoint, port=endpoint_port, metrics=self.endpoint_metrics
        ).start()
        environment = lambda_environment(self.signature, self.endpoint, self.endpoint_server.url, self.home)
        lambda_metrics.set_sink(self.api_metrics.observe_lambda)  # the handlers' EMF documents, in-process
        store = open_store(StoreSpec.parse(environment["PREDICTION_STORE"]))  # the handlers' store, shared
        self.drift = DriftMonitor(self._drift_baseline(live.version), metrics=self.api_metrics, store=store)
        dashboard = Dashboard(DashboardSources(
            self.home, self.group, self.endpoint, live=lambda: self.live, store=store, sampler=self.sampler,
            alarm_states=lambda: self.evaluator.states() if self.evaluator is not None else [], drift=self.drift,
        ))
        self.api = build_prediction_api(
            environment, self.api_key, port=api_port, access_log=self.home.logs / "api-access.log",
            extra_routes=[self.api_metrics.route(), *dashboard.routes()], observers=[self.api_metrics.observe_request],
        ).start()
        self.evaluator = AlarmEvaluator(ALARM_RULES, self.sampler, self.alarm_history, self.notifiers,
                                        self.alarm_period_seconds, before_sample=[self.drift.refresh]).start()
        self._watcher = threading.Thread(target=self._watch, args=(poll_seconds,), name="deploy-watcher", daemon=True)
        self._watcher.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        if self.evaluator is not None:
            self.evaluator.close()
        self.api.close()
        self.endpoint_server.close()
        lambda_metrics.set_sink(None)

    def __enter__(self) -> LocalService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _watch(self, poll_seconds: float) -> None:
        while not self._stop.wait(poll_seconds):
            try:
                self.poll()
            except Exception as error:  # the watcher must outlive a bad poll: the endpoint keeps serving
                self._event(f"deployment watcher: {error}")

    def poll(self) -> None:
        """Deploy a newly approved version, or follow a deployment recorded by another process."""
        approved = self.registry.latest_approved(self.group)
        wanted = self.store.current(self.endpoint) or self.live
        if (
            approved is not None
            and approved.version not in self.refused
            and approved.version != wanted.version
            and approved.updated_at > wanted.deployed_at
        ):
            self._go_live(approved, f"approved at {approved.updated_at}", record=True)
        elif wanted.version != self.live.version and wanted.version not in self.refused:
            self._go_live(self.registry.get(self.group, wanted.version), wanted.reason, record=False)

    def _go_live(self, package: ModelPackage, reason: str, record: bool) -> None:
        try:
            incoming = Signature.of(package)
            if incoming != self.signature:
                raise UserError(
                    f"{package.group} version {package.version} takes features {list(incoming.features)} and classes"
                    f" {list(incoming.classes)}, the API serves {list(self.signature.features)} and"
                    f" {list(self.signature.classes)}: restart `cloudviz serve` to switch"
                )
            if record:
                deployment, model = deploy_local(self.registry, self.store, self.group, package.version, False, reason)
            else:
                model, deployment = load_checked(package), self.store.current(self.endpoint)
            self._swap(model, deployment)
        except (UserError, SwapRefused) as error:
            self.refused.add(package.version)
            self.store.refused(self.endpoint, self.group, package.version, str(error))
            self._event(f"kept version {self.live.version} live: {error}", version=package.version)

    def _swap(self, model: ServingModel, deployment: Deployment) -> None:
        previous = self.live.version
        baseline = self._drift_baseline(deployment.version)  # read first: readers never see new live, old baseline
        self.slot.swap(model)
        self.drift.set_baseline(baseline)
        self.live = deployment
        self.endpoint_metrics.set_live_version(deployment.version)
        self._event(f"{self.endpoint}: version {previous} -> {deployment.version} ({deployment.reason})",
                    version=deployment.version)

    def _drift_baseline(self, version: int) -> Baseline | None:
        """The training statistics of ``version``, which drift is measured against; None, with the reason logged,
        when its training run is gone (a copied state home, deleted runs): the model serves, drift goes unmeasured."""
        try:
            return load_baseline(RunStore(self.home.runs), self.registry.get(self.group, version))
        except UserError as error:
            logger.warning("drift not measured for version %s: %s", version, error,
                           extra={"endpoint": self.endpoint, "model_version": version})
            return None

    def _event(self, message: str, version: int | None = None) -> None:
        logger.info(message, extra={"endpoint": self.endpoint, "model_version": version})
        self.on_event(message)
