"""Register, run in-process as SageMaker runs it: the trained model as the next version of its group, with its
metrics, lineage and artifact URIs (those the AWS model package records)."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.dag import RegisterModelStep, StepOutput
from pipelines.lineage import lineage
from pipelines.registry import ModelRegistry
from pipelines.run_values import resolve
from pipelines.runs import RunRecord


def register(record: RunRecord, step: RegisterModelStep, registry: ModelRegistry, repo_root: Path) -> dict:
    """Register the run's model; the step's properties (the new version, its ARN and artifact URL)."""
    metrics = resolve(step.metrics, record)
    schema_file = Path(resolve(step.data, record)) / "schema.json"
    evaluation_file = Path(resolve(StepOutput(step.metrics.step, step.metrics.output), record)) / step.metrics.file
    model_url = (Path(resolve(step.model, record)) / "model.tar.gz").as_uri()
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    package = registry.register(
        str(resolve(step.model_package_group, record)),
        model_url,
        str(resolve(step.approval_status, record)),
        metrics=metrics,
        lineage=lineage(record, schema, repo_root),
        description=f"trained by {record.pipeline} run {record.run_id}",
        artifacts={  # the AWS model package's: ModelMetrics' two statistics, the DataSchema
            "model": model_url,
            "evaluation": evaluation_file.as_uri(),
            "baseline_statistics": (Path(resolve(step.baseline, record)) / "statistics.json").as_uri(),
            "schema": schema_file.as_uri(),
        },
    )
    return {
        "model_package_group": package.group,
        "version": package.version,
        "arn": package.arn,
        "approval_status": package.approval_status,
        "model_data_url": package.model_data_url,
    }
