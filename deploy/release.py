"""Choosing, checking and recording the model version a local endpoint serves.

The rules are SageMaker's deployment practice: the latest Approved version by default; a version
that is not Approved only on request (``force``); and a version goes live only after it has
loaded and answered a smoke test, so a broken artifact never replaces a working one.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from deploy.deployments import Deployment, DeploymentStore, now
from deploy.endpoint import ModelLoadError, ServingModel, SwapRefused
from deploy.endpoint.slot import smoke_test
from pipelines.errors import UserError
from pipelines.registry import ModelPackage, ModelRegistry


def endpoint_name(group: str) -> str:
    """The endpoint serving a group's models; a valid SageMaker endpoint name."""
    return f"{group}-endpoint"


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


def tarball_of(package: ModelPackage) -> Path:
    """The local file behind a package's artifact URL."""
    url = urlparse(package.model_data_url)
    if url.scheme != "file":
        raise UserError(f"{package.group} version {package.version}: {package.model_data_url} is not a local file")
    path = Path(unquote(url.path))
    if not path.is_file():
        raise UserError(f"{package.group} version {package.version}: its artifact {path} no longer exists")
    return path


def load_checked(package: ModelPackage) -> ServingModel:
    """The package's model, loaded and smoke-tested; UserError saying why if it cannot serve."""
    try:
        model = ServingModel.load(tarball_of(package), version=package.version)
        smoke_test(model)
    except (ModelLoadError, SwapRefused) as error:
        raise UserError(f"{package.group} version {package.version} cannot be served: {error}") from None
    return model


def deploy_local(
    registry: ModelRegistry, store: DeploymentStore, group: str, version: int | None, force: bool, reason: str
) -> tuple[Deployment, ServingModel]:
    """Check the chosen version and record it as live; a refused version leaves the live one in place."""
    package = choose_version(registry, group, version, force)
    endpoint = endpoint_name(group)
    try:
        model = load_checked(package)
    except UserError as error:
        store.refused(endpoint, group, package.version, str(error))
        raise
    deployment = Deployment(endpoint, group, package.version, package.model_data_url, now(), reason)
    store.record(deployment)
    return deployment, model
