"""The SageMaker Python SDK v3, contained: everything it needs to build a pipeline definition offline.

The traps of SDK 3.27 (network calls at import and while building steps, a region read at import, an IAM role
check, telemetry, a mistyped ``Compute``) are handled here and nowhere else. It uploads local code files while
building a definition, so steps are given ``s3://`` URIs only (``pipelines.sagemaker.staging``).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import warnings
from collections.abc import Iterator
from types import SimpleNamespace

from pipelines.errors import UserError

NO_METADATA_SERVICE = "AWS_EC2_METADATA_DISABLED"
INSTALL_HINT = "pip install 'cloudviz[aws]'"
MODULES = {
    "parameters": "sagemaker.core.workflow.parameters",
    "properties": "sagemaker.core.workflow.properties",
    "functions": "sagemaker.core.workflow.functions",
    "conditions": "sagemaker.core.workflow.conditions",
    "execution_variables": "sagemaker.core.workflow.execution_variables",
    "context": "sagemaker.core.workflow.pipeline_context",
    "processing": "sagemaker.core.processing",
    "shapes": "sagemaker.core.shapes",
    "image_uris": "sagemaker.core.image_uris",
    "metrics": "sagemaker.core.model_metrics",
    "pipeline": "sagemaker.mlops.workflow.pipeline",
    "steps": "sagemaker.mlops.workflow.steps",
    "condition_step": "sagemaker.mlops.workflow.condition_step",
    "fail_step": "sagemaker.mlops.workflow.fail_step",
    "model_step": "sagemaker.mlops.workflow.model_step",
    "retry": "sagemaker.mlops.workflow.retry",
    "train": "sagemaker.train",
    "train_configs": "sagemaker.train.configs",
    "model_builder": "sagemaker.serve.model_builder",
}
# The SDK's defaults document: no telemetry; and none of the user's config files, so the definition is the same
# on every machine.
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def load_sdk(region: str) -> SimpleNamespace:
    """The SDK's modules, imported for ``region`` (the SDK reads it when imported) with role validation off (else
    it checks the execution role with an IAM call); a UserError when not installed."""
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    os.environ.setdefault("SAGEMAKER_VALIDATE_ROLE", "false")
    try:
        sdk = SimpleNamespace(**{name: importlib.import_module(path) for name, path in MODULES.items()})
    except ImportError as error:
        raise UserError(f"the SageMaker SDK is needed for this ({error.name} is missing): {INSTALL_HINT}") from None
    sdk.Compute = compute_with_parameters(sdk)
    return sdk


def compute_with_parameters(sdk: SimpleNamespace) -> type:
    """``Compute`` with the volume size typed as the API shape types it (an int or a pipeline parameter): the SDK's
    types it ``int`` although the ``ResourceConfig`` it becomes takes a pipeline parameter."""
    import pydantic

    volume = sdk.shapes.ResourceConfig.model_fields["volume_size_in_gb"]
    return pydantic.create_model(
        "Compute", __base__=sdk.train_configs.Compute, volume_size_in_gb=(volume.annotation, 30)
    )


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """While the SDK imports and builds: no instance metadata service, and errors only. The SDK logs every
    default it applies and every field it leaves out of a definition (some of it from loggers it configures on
    the fly), and warns that a PipelineSession starts no job, which is the point."""
    previous = os.environ.get(NO_METADATA_SERVICE)
    os.environ[NO_METADATA_SERVICE] = "true"
    root = logging.getLogger()
    root_level, root_handlers = root.level, list(root.handlers)
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Running within a PipelineSession")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="sagemaker")
            yield
    finally:
        logging.disable(logging.NOTSET)
        root.setLevel(root_level)  # importing the SDK sets the root logger to INFO with a stderr handler
        root.handlers[:] = root_handlers
        if previous is None:
            os.environ.pop(NO_METADATA_SERVICE)
        else:
            os.environ[NO_METADATA_SERVICE] = previous

def pipeline_session(sdk: SimpleNamespace, region: str, bucket: str) -> object:
    """A PipelineSession that never calls AWS while a definition is built. Its boto3 session holds placeholder
    credentials: the SDK creates clients up front, which would otherwise look credentials up (the instance
    metadata service among them), and any call it did make could not act on a real account."""
    import boto3

    offline = boto3.Session(region_name=region, aws_access_key_id="offline", aws_secret_access_key="offline")
    session = sdk.context.PipelineSession(boto_session=offline, default_bucket=bucket, sagemaker_config=SDK_CONFIG)
    session._default_bucket = bucket  # noqa: SLF001 - or default_bucket() looks the named bucket up in S3
    return session
