"""Choosing, checking and recording the model version a local endpoint serves, on each stage.

SageMaker's practice: the latest Approved version (else ``force``), live once smoke-tested; ``prod`` only by promotion.
"""

from __future__ import annotations

from deploy.aws.names import STAGES
from deploy.deployments import Deployment, DeploymentStore, now
from deploy.endpoint import ModelLoadError, ServingModel, SwapRefused
from deploy.endpoint.slot import smoke_test
from pipelines.artifacts import artifact_path
from pipelines.errors import UserError
from pipelines.registry import ModelPackage, ModelRegistry

APPROVED_STAGE = STAGES[0]  # where an approval deploys


def check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r}: expected one of {', '.join(STAGES)}")


def local_endpoint_name(group: str, stage: str = APPROVED_STAGE) -> str:
    """The local endpoint serving a group's models on ``stage`` (on AWS a stage has one endpoint,
    ``ResourceNames.endpoint_name``); a valid SageMaker endpoint name. The first stage keeps the name the endpoint
    had before stages existed."""
    check_stage(stage)
    return f"{group}-endpoint" if stage == APPROVED_STAGE else f"{group}-{stage}-endpoint"


def stage_before(stage: str) -> str:
    """The stage ``stage`` is promoted from."""
    check_stage(stage)
    if stage == APPROVED_STAGE:
        raise UserError(f"{stage} takes approved versions, not promotions: promotion goes {' -> '.join(STAGES)}")
    return STAGES[STAGES.index(stage) - 1]


def choose_version(registry: ModelRegistry, group: str, version: int | None, force: bool) -> ModelPackage:
    if version is None:
        package = registry.latest_approved(group)
        if package is None:
            raise UserError(
                f"{group} has no Approved version to deploy: approve one with `cloudviz models approve {group} N`"
            )
        return package
    package = registry.get(group, version)
    if package.approval_status != "Approved" and not force:
        raise UserError(
            f"{group} version {version} is {package.approval_status}, not Approved: "
            f"approve it with `cloudviz models approve {group} {version}`, or deploy it anyway with --force"
        )
    return package


def load_checked(package: ModelPackage) -> ServingModel:
    """The package's model, loaded and smoke-tested; UserError saying why if it cannot serve."""
    try:
        model = ServingModel.load(artifact_path(package, "model"), version=package.version)
        smoke_test(model)
    except (ModelLoadError, SwapRefused) as error:
        raise UserError(f"{package.group} version {package.version} cannot be served: {error}") from None
    return model


def deploy_local(
    registry: ModelRegistry, store: DeploymentStore, group: str, version: int | None, force: bool, reason: str,
    stage: str = APPROVED_STAGE,
) -> tuple[Deployment, ServingModel]:
    """Check the chosen version and record it as live on ``stage``; a refused version leaves the live one in place.
    A later stage takes only a version promoted to it before, unless ``force``."""
    package = choose_version(registry, group, version, force)
    endpoint = local_endpoint_name(group, stage)
    if stage != APPROVED_STAGE and not force and package.version not in store.promoted_versions(endpoint):
        source = stage_before(stage)
        raise UserError(
            f"{group} version {package.version} was never promoted to {stage}: promote {source}'s live version with"
            f" `cloudviz promote local --from {source} --to {stage}` (it must pass its smoke test on {source} first),"
            " or deploy it anyway with --force"
        )
    return release(store, package, stage, reason)


def promote_local(
    registry: ModelRegistry, store: DeploymentStore, group: str, source: str, target: str
) -> tuple[Deployment, dict, bool]:
    """Deploy ``source``'s live version to ``target`` when its newest smoke test on ``source`` passed.

    Returns the target's deployment, that smoke test, and whether anything changed (False: ``target`` serves
    that version already). UserError, recording nothing, when the version may not be promoted."""
    if stage_before(target) != source:
        raise UserError(f"--from {source} --to {target}: versions are promoted one stage at a time,"
                        f" {' -> '.join(STAGES)}")
    live = store.current(local_endpoint_name(group, source))
    if live is None:
        raise UserError(f"{source} serves no version of {group}: deploy one with `cloudviz deploy local --stage"
                        f" {source}`, then smoke-test it with `cloudviz serve --stage {source}`")
    name = f"{group} version {live.version}"
    smoke = store.latest_smoke_test(live.endpoint, live.version)
    if smoke is None:
        raise UserError(f"{name}, live on {source}, was never smoke-tested: start `cloudviz serve --stage {source}`,"
                        " which smoke-tests it through its API, then promote again")
    if not smoke["passed"]:
        raise UserError(f"{name} failed its smoke test on {source} at {smoke['at']}: {smoke['detail']}")
    package = registry.get(group, live.version)
    if package.approval_status != "Approved":
        raise UserError(f"{name} is {package.approval_status} since {package.updated_at}, not Approved:"
                        " only an Approved version is promoted")
    current = store.current(local_endpoint_name(group, target))
    if current is not None and current.version == live.version:
        return current, smoke, False
    deployment, _ = release(store, package, target, f"promoted from {source}", promoted_from=source)
    return deployment, smoke, True


def release(
    store: DeploymentStore, package: ModelPackage, stage: str, reason: str, promoted_from: str | None = None
) -> tuple[Deployment, ServingModel]:
    """Load and check ``package``, then record it as live on ``stage``; a refusal is recorded and raised."""
    endpoint = local_endpoint_name(package.group, stage)
    try:
        model = load_checked(package)
    except UserError as error:
        store.refused(endpoint, package.group, package.version, str(error))
        raise
    deployment = Deployment(endpoint, package.group, package.version, package.model_data_url, now(), reason, stage,
                            promoted_from)
    store.record(deployment)
    return deployment, model
