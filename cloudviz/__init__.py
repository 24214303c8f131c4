"""CloudViz: a SageMaker Pipelines MLOps project that also runs on one machine.

The Python API: ``project = cloudviz.local()`` (or ``cloudviz.aws(...)``), then
``project.pipeline.run(...)``, ``project.models.approve(...)``, ``project.deploy(...)``, ``project.predict(...)``.
Importing the package is cheap: the heavy modules load when a call needs them."""

from __future__ import annotations

from cloudviz.api.base import Project
from cloudviz.api.targets import aws, local
from cloudviz.api.types import Deployment, ModelRef, ModelVersion, Parameter, Promotion, Run, StepRun
from pipelines.errors import AwsError, CloudVizError, NotFoundError, UserError

__all__ = ["AwsError", "CloudVizError", "Deployment", "ModelRef", "ModelVersion", "NotFoundError", "Parameter",
           "PredictionApi", "PredictionPage", "Project", "Promotion", "Run", "Serving", "StepRun", "UserError",
           "aws", "local"]


def __getattr__(name: str) -> object:
    """The prediction API client, imported when first asked for (urllib.request: the command line rarely needs it)."""
    if name in ("PredictionApi", "PredictionPage", "Serving"):
        from cloudviz.api import prediction_api

        return getattr(prediction_api, name)
    raise AttributeError(f"module 'cloudviz' has no attribute {name!r}")
