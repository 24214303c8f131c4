"""``cloudviz serve``: the local endpoint and the prediction API of one model package group on one stage.

It follows the stage's deployment record and, on ``dev``, deploys newly approved versions as the AWS approval rule does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Sequence

from deploy.api_smoke_test import SmokeTest, example_row, smoke_test_api
from deploy.dashboard import Dashboard, DashboardSources
from deploy.deployments import Deployment, DeploymentStore
from deploy.endpoint import ServingModel, SwapRefused
from deploy.endpoint.hosting import EndpointProcess, InProcessEndpoint
from deploy.endpoint_state import EndpointFiles
from deploy.gateway.events import LOCAL_REGION
from deploy.http11 import Limits
from deploy.model_signature import Signature, registered_schema
from deploy.monitoring.alarm_history import AlarmHistory
from deploy.monitoring.alarm_rules import ALARM_RULES
from deploy.monitoring.alarms import AlarmEvaluator
from deploy.monitoring.drift import Baseline, DriftMonitor, load_baseline
from deploy.monitoring.live_accuracy import LiveAccuracyMonitor
from deploy.monitoring.metrics import ApiMetrics
from deploy.monitoring.notifications import EventNotifier, Notifier
from deploy.monitoring.sampler import MetricSampler, sampling_period
from deploy.release import APPROVED_STAGE, deploy_local, load_checked, local_endpoint_name, stage_before
from pipelines.datasets import IRIS_FEATURE_DESCRIPTIONS
from pipelines.errors import UserError
from pipelines.registry import ModelPackage, ModelRegistry
from pipelines.runs import RunStore
from pipelines.state import StateHome, write_json_atomic
from serving_lambdas import metrics as lambda_metrics
from serving_lambdas import model_description
from serving_lambdas.served_version import forget_served_versions
from serving_lambdas.store import StoreSpec, open_store

logger = logging.getLogger(__name__)


def lambda_environment(signature: Signature, endpoint: str, endpoint_url: str, home: StateHome) -> dict[str, str]:
    """The serving Lambdas' configuration, as the API stack sets it on AWS, pointed at the local parts."""
    environment = {
        "ENDPOINT_NAME": endpoint,
        "SAGEMAKER_RUNTIME_URL": endpoint_url,
        "PREDICTION_STORE": f"sqlite:{EndpointFiles.named(home, endpoint).predictions_db}",
        "FEATURE_NAMES": ",".join(signature.features),
        "MODEL_TASK": signature.task,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        # The served version is looked up on the endpoint (a loopback call): a swap shows within a second.
        "MODEL_VERSION_TTL_SECONDS": "1",
    }
    if signature.classes:
        environment["CLASS_NAMES"] = ",".join(signature.classes)
    if set(signature.features) == set(IRIS_FEATURE_DESCRIPTIONS):
        aliases = IRIS_FEATURE_DESCRIPTIONS.items()
        environment["FEATURE_ALIASES"] = ",".join(f"{alias}={name}" for name, alias in aliases)
    return environment


class LocalService:
    """The endpoint and the API of one stage on 127.0.0.1, following the stage's deployments until closed."""

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
        stage: str = APPROVED_STAGE,
        smoke_test: bool = False,
        cors_origins: Sequence[str] = (),
        max_connections: int | None = None,
        lambda_workers: int = 0,
        endpoint_process: bool = False,
    ) -> None:
        """``alarm_period_seconds`` replaces the alarm rules' own period (60 s) locally; ``notifiers`` receive the
        alarms' changes into and out of ALARM (``on_event`` too), and are closed with the service. Only the first
        ``stage`` follows approvals; a later one serves what promotions put in its deployment record.
        ``smoke_test``: smoke-test each version as it goes live (what a promotion requires). ``cloudviz serve``
        always does; it is a client's request, stored and counted like any, so an embedder that measures its own
        traffic (a test, a notebook) may leave it out, and its versions then cannot be promoted. ``cors_origins``:
        the web origins the API answers CORS to (none: no CORS). ``max_connections``: the connections each of the
        endpoint and the API holds at once (None: the server's default). ``lambda_workers``: the processes the
        serving Lambdas run in (0: in this one; ``deploy.gateway.lambda_pool``). ``endpoint_process``: the endpoint
        runs in a process of its own (``deploy.endpoint.hosting``), restarted if it ends; else in this one."""
        self.home = home
        self.group = group
        self.stage = stage
        self.endpoint = local_endpoint_name(group, stage)
        self.files = EndpointFiles.of(home, group, stage)
        self.registry = ModelRegistry(home.registry_db)
        self.store = DeploymentStore(home.deployments)
        self.api_key = api_key
        self.api_port = api_port
        self.on_event = on_event  # and every event is logged
        self.refused: set[int] = set()
        self.api_metrics = ApiMetrics()
        self.limits = Limits() if max_connections is None else Limits(max_connections=max_connections)
        hosting = EndpointProcess if endpoint_process else InProcessEndpoint
        self.endpoint_server = hosting(self.endpoint, endpoint_port, self.limits)
        self.sampler = MetricSampler(self.api_metrics, self.endpoint_server.metrics,
                                     sampling_period(alarm_period_seconds))
        self.alarm_history = AlarmHistory(self.files.alarms_db)
        self.alarm_period_seconds = alarm_period_seconds
        self.notifiers = [*notifiers, EventNotifier(on_event)]
        self.evaluator: AlarmEvaluator | None = None
        self.smoke_tests = smoke_test
        self.cors_origins = tuple(cors_origins)
        self.lambda_workers = lambda_workers
        self.last_smoke_test: SmokeTest | None = None
        self._examples: dict[int, dict[str, float] | str] = {}  # example rows (or why none) by version: fixed
        self._schemas: dict[int, dict] = {}  # the schema GET /model describes each version from, once it went live
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self, poll_seconds: float = 1.0) -> LocalService:
        live = self.store.current(self.endpoint)
        if live is None and self.stage != APPROVED_STAGE:
            source = stage_before(self.stage)
            raise UserError(f"{self.stage} serves no version of {self.group} yet: promote {source}'s with"
                            f" `cloudviz promote local --from {source} --to {self.stage}`")
        if live is None:
            live, model = deploy_local(self.registry, self.store, self.group, None, False, "first cloudviz serve")
        else:
            model = load_checked(self.registry.get(self.group, live.version))
        self.live = live
        self.signature = Signature.of(self.registry.get(self.group, live.version), RunStore(self.home.runs))
        self._publish_schema(model, live.version)
        try:
            self.endpoint_server.start(model)
            self._start_api(live.version)
        except BaseException:  # nothing is left serving: the endpoint may be a process of its own
            self.endpoint_server.close()
            raise
        if self.smoke_tests:
            self.smoke_test()
        self._watcher = threading.Thread(target=self._watch, args=(poll_seconds,), name="deploy-watcher", daemon=True)
        self._watcher.start()
        return self

    def _start_api(self, version: int) -> None:
        """The API in front of the started endpoint, with its monitors and the alarm evaluator."""
        from deploy.prediction_api import build_prediction_api

        environment = lambda_environment(self.signature, self.endpoint, self.endpoint_server.url, self.home)
        lambda_metrics.set_sink(self.api_metrics.observe_lambda)  # the handlers' EMF documents, in-process
        store = open_store(StoreSpec.parse(environment["PREDICTION_STORE"]))  # the handlers' store, shared
        baseline, why = self._drift_baseline(version)
        self.drift = DriftMonitor(baseline, metrics=self.api_metrics, store=store, unavailable_because=why)
        self.live_accuracy = LiveAccuracyMonitor(store, self.api_metrics)
        dashboard = Dashboard(DashboardSources(
            self.home, self.group, self.endpoint, live=lambda: self.live, store=store,
            example_body=self.example_body, sampler=self.sampler,
            alarm_states=lambda: self.evaluator.states() if self.evaluator is not None else [], drift=self.drift,
            live_accuracy=self.live_accuracy, api_url=lambda: self.api.url,
        ))
        self.api = build_prediction_api(
            environment, self.api_key, port=self.api_port, access_log=self.files.access_log,
            extra_routes=[self.api_metrics.route(), *dashboard.routes()], observers=[self.api_metrics.observe_request],
            cors_origins=self.cors_origins, lambda_workers=self.lambda_workers,
        )
        self.api.limits = self.limits
        self.api.start()
        self.evaluator = AlarmEvaluator(ALARM_RULES, self.sampler, self.alarm_history, self.notifiers,
                                        self.alarm_period_seconds,
                                        before_sample=[self.drift.refresh, self.live_accuracy.refresh]).start()

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
                self._revive_endpoint()
                self.poll()
            except Exception as error:  # the watcher must outlive a bad poll: the endpoint keeps serving
                self._event(f"deployment watcher: {error}")

    def _revive_endpoint(self) -> None:
        """Start the endpoint's process again, on its port with the live model, if it ended unasked (killed,
        crashed), as SageMaker replaces a failed instance; until then its callers get 503s."""
        status = self.endpoint_server.exit_status
        if status is not None:
            self._event(f"{self.endpoint}: the endpoint's process ended (exit status {status}); starting it again")
            self.endpoint_server.start()

    def poll(self) -> None:
        """Deploy a newly approved version (first stage only), or follow a deployment recorded by another process."""
        approved = self.registry.latest_approved(self.group) if self.stage == APPROVED_STAGE else None
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
            incoming = Signature.of(package, RunStore(self.home.runs))
            if incoming != self.signature:
                switch = "restart `cloudviz serve`"
                if record:  # a restart serves the recorded deployment: record this version first
                    deploy = f"cloudviz deploy local --group {package.group} --version {package.version}"
                    switch = f"`{deploy}`, then {switch}"
                raise UserError(
                    f"{package.group} version {package.version} is a {incoming.task} model of features"
                    f" {list(incoming.features)} and classes {list(incoming.classes)}, the API serves a"
                    f" {self.signature.task} model of {list(self.signature.features)} and"
                    f" {list(self.signature.classes)}: to switch, {switch}"
                )
            if record:
                deployment, model = deploy_local(self.registry, self.store, self.group, package.version, False, reason,
                                                 self.stage)
            else:
                model, deployment = load_checked(package), self.store.current(self.endpoint)
            self._swap(model, deployment)
        except (UserError, SwapRefused) as error:
            self.refused.add(package.version)
            self.store.refused(self.endpoint, self.group, package.version, str(error))
            self._event(f"kept version {self.live.version} live: {error}", version=package.version)
        else:
            if self.smoke_tests:
                self.smoke_test()

    def _swap(self, model: ServingModel, deployment: Deployment) -> None:
        previous = self.live.version
        baseline = self._drift_baseline(deployment.version)  # read first: readers never see new live, old baseline
        self._publish_schema(model, deployment.version)
        self.endpoint_server.swap(model)
        forget_served_versions()  # the handlers' cached "which version is served" is stale from this moment
        if self.api.lambda_pool is not None:
            self.api.lambda_pool.forget_cached_state()
        self.drift.set_baseline(*baseline)
        self.live = deployment
        self._event(f"{self.endpoint}: version {previous} -> {deployment.version} ({deployment.reason})",
                    version=deployment.version)

    def smoke_test(self) -> SmokeTest:
        """Smoke-test the live version through this stage's API and record the result; a failure is reported, and
        the version stays live (it passed the model-level check) but cannot be promoted."""
        version = self.live.version
        try:
            example = self.example_row(version)
        except UserError as error:
            result = SmokeTest(version, False, str(error))
        else:
            result = smoke_test_api(self.api.url, self.api_key, example, self.signature.classes, version)
        self.store.smoke_tested(self.endpoint, self.group, version, result.passed, result.detail)
        self.last_smoke_test = result
        if result.passed:
            logger.info("smoke test of version %s passed: %s", version, result.detail,
                        extra={"endpoint": self.endpoint, "model_version": version})
        else:
            self._event(f"{self.endpoint}: version {version} failed its smoke test (it stays live, it cannot be"
                        f" promoted): {result.detail}", version=version)
        return result

    def example_row(self, version: int) -> dict[str, float]:
        """The example row of ``version`` (the smoke test's, and the one the Try line and the dashboard show): the
        seed example for iris's features, else the training medians; read (or found missing) once per version."""
        if version not in self._examples:  # a failure too: the dashboard asks on every refresh
            package = self.registry.get(self.group, version)
            try:
                self._examples[version] = example_row(package, self.signature.features, RunStore(self.home.runs))
            except UserError as error:
                self._examples[version] = str(error)
        cached = self._examples[version]
        if isinstance(cached, str):
            raise UserError(cached)
        return cached

    def example_body(self) -> str:
        """The live version's example request body, the ``example`` GET /model answers (the seed example, the
        training medians, else the midpoints of the features' ranges); when there is none, the features it takes,
        each with a ``<number>`` placeholder (not JSON: a hint a person fills in)."""
        example = model_description.example_row(self.signature.features, self._schemas[self.live.version])
        if example is None:
            return "{" + ",".join(f'"{name}":<number>' for name in self.signature.features) + "}"
        return json.dumps(example, separators=(",", ":"))

    def _publish_schema(self, model: ServingModel, version: int) -> None:
        """Write the schema GET /model describes ``version`` from (the registered one, with the example row when it
        is known) in the endpoint's folder, and tag ``model`` with its URI, as the AWS endpoint stack tags the
        configuration of each version (``cloudviz:data-schema``)."""
        document = dict(registered_schema(self.registry.get(self.group, version), RunStore(self.home.runs)))
        with contextlib.suppress(UserError):
            document["example"] = self.example_row(version)
        path = self.files.folder / f"schema-v{version}.json"
        write_json_atomic(path, document)
        self._schemas[version] = document
        model.schema_uri = path.as_uri()

    def _drift_baseline(self, version: int) -> tuple[Baseline | None, str]:
        """The training statistics of ``version``, which drift is measured against (and no reason); or None and
        the reason, logged, when they cannot be had (its training run is gone): the model serves, drift goes
        unmeasured. Statistics that cannot measure the predictions still measure the features (logged too)."""
        extra = {"endpoint": self.endpoint, "model_version": version}
        try:
            baseline = load_baseline(RunStore(self.home.runs), self.registry.get(self.group, version))
        except UserError as error:
            logger.warning("drift not measured for version %s: %s", version, error, extra=extra)
            return None, str(error)
        if baseline.prediction_unavailable_because:
            logger.warning("prediction drift not measured for version %s: %s", version,
                           baseline.prediction_unavailable_because, extra=extra)
        return baseline, ""

    def _event(self, message: str, version: int | None = None) -> None:
        logger.info(message, extra={"endpoint": self.endpoint, "model_version": version})
        self.on_event(message)
