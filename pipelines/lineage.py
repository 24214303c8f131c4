"""What a registered version records about how it was made: its run, data, parameters, code and step keys."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

from pipelines.runs import RunRecord


def code_version(repo_root: Path) -> dict:
    """The installed cloudviz version and the repository's commit (None outside a git checkout)."""
    try:
        version = metadata.version("cloudviz")
    except metadata.PackageNotFoundError:
        version = "unknown"
    commit = subprocess.run(
        ["git", "-C", str(repo_root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {"cloudviz": version, "git_commit": commit or None}


def lineage(record: RunRecord, schema: dict, repo_root: Path) -> dict:
    """The lineage of the model ``record`` trained on the data ``schema`` (Preprocess's schema.json) describes."""
    return {
        "pipeline": record.pipeline,
        "run_id": record.run_id,
        "data": {**schema["source"], "rows": schema["rows"], "classes": schema["classes"],
                 "feature_columns": schema["feature_columns"]},
        "schema": schema,  # the model's contract (task, features and their ranges, classes or target)
        "parameters": record.parameters,
        "code_version": code_version(repo_root),
        "step_cache_keys": {n: s.cache_key for n, s in record.steps.items() if s.cache_key},
    }
