"""What a registered version records about how it was made: its run, data, parameters, code and step keys."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

from pipelines.champion import CHAMPION_PARAMETER, champion_of
from pipelines.data.versions import Part, version_id
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


def dataset_of(ref: str, schema: dict) -> dict | None:
    """The data set version a run trained on (its DataSetVersion, ``NAME@N``): name, version and the id of the parts
    Preprocess read (``schema``), which is the version's id when the run read the version's manifest."""
    if not ref:
        return None
    name, _, number = ref.partition("@")
    source = schema["source"]
    files = source.get("files") or [{**source, "rows": schema["rows"]["input"]}]
    parts = tuple(Part(f["sha256"], f["rows"], f["bytes"], f["file"]) for f in files)
    return {"name": name, "version": int(number), "id": version_id(parts)}


def lineage(record: RunRecord, schema: dict, repo_root: Path) -> dict:
    """The lineage of the model ``record`` trained on the data ``schema`` (Preprocess's schema.json) describes,
    with the data set version it was (when the run named one)."""
    dataset = dataset_of(str(record.parameters.get("DataSetVersion") or ""), schema)
    return {
        "pipeline": record.pipeline,
        "run_id": record.run_id,
        "data": {**schema["source"], "rows": schema["rows"], "classes": schema["classes"],
                 "feature_columns": schema["feature_columns"], **({"dataset": dataset} if dataset else {})},
        "schema": schema,  # the model's contract (task, features and their ranges, classes or target)
        "parameters": record.parameters,
        "champion": champion_of(record.parameters.get(CHAMPION_PARAMETER, "")),  # None: the group had none
        "code_version": code_version(repo_root),
        "step_cache_keys": {n: s.cache_key for n, s in record.steps.items() if s.cache_key},
    }
