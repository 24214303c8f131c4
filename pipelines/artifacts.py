"""Where a registered version's artifacts are: the URIs its registry row records, or, for a version registered
before rows recorded them, the files of the run that trained it (its lineage's ``run_id``)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

from pipelines.errors import UserError
from pipelines.registry import ModelPackage
from pipelines.runs import RunStore

# Each artifact as the training run wrote it: (step output, file name).
RUN_FILES = {
    "model": ("model", "model.tar.gz"),
    "evaluation": ("evaluation", "evaluation.json"),
    "baseline_statistics": ("baseline", "statistics.json"),
    "schema": ("schema", "schema.json"),
}


def artifact_path(package: ModelPackage, name: str, runs: RunStore | None = None) -> Path:
    """The local file of one of ``package``'s artifacts (a key of ``RUN_FILES``); a UserError saying why when it
    has none (a NotFoundError when the run that trained a version registered before artifacts is gone)."""
    label = f"{package.group} version {package.version}"
    uri = package.artifacts.get(name) or _uri_in_training_run(package, name, runs)
    url = urlparse(uri)
    if url.scheme != "file":
        raise UserError(f"{label}: {uri} is not a local file")
    path = Path(unquote(url.path))
    if not path.is_file():
        raise UserError(f"{label}: its {name.replace('_', ' ')} {path} no longer exists")
    return path


def artifact_json(package: ModelPackage, name: str, runs: RunStore | None = None) -> dict:
    """The JSON document of one of ``package``'s artifacts (``evaluation``, ``baseline_statistics``, ``schema``)."""
    return json.loads(artifact_path(package, name, runs).read_text(encoding="utf-8"))


def _uri_in_training_run(package: ModelPackage, name: str, runs: RunStore | None) -> str:
    """For a version registered before the registry recorded artifacts: its model URL, or the file of its run."""
    if name == "model":
        return package.model_data_url
    label, what = f"{package.group} version {package.version}", name.replace("_", " ")
    run_id = package.lineage.get("run_id")
    if not run_id:
        raise UserError(f"{label} names no training run in its lineage, so it has no {what}")
    if runs is None:
        raise UserError(f"{label} records no {what}; it is in the files of run {run_id}")
    output, filename = RUN_FILES[name]
    path = runs.load(run_id).output_file(output, filename)
    if path is None:
        raise UserError(f"run {run_id}, which trained {label}, holds no {output}/{filename}")
    return path.as_uri()
