"""Step cache: a finished step's outputs, found again by a key over everything that made them.

The key covers the step's declaration with its parameter values, a digest of its code, the keys
of its inputs (a file parameter by its content hash; another step's output by that step's key), and
the versions of Python and of the libraries the steps compute with. Steps are deterministic for a
given seed, so equal keys mean equal outputs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections.abc import Collection
from importlib import metadata
from pathlib import Path

from pipelines.dag import JsonGet, Param, ProcessingStep, RegisterModelStep, Step, StepOutput, TrainingStep, references
from pipelines.local_steps.training import TRAINER
from pipelines.registry import ModelRegistry
from pipelines.runs import RunRecord
from pipelines.state import write_json_atomic

PIPELINES_CODE = Path(__file__).resolve().parent  # what runs the in-process steps (Register)
# The distributions whose code computes the steps' outputs (xgboost installs as xgboost-cpu here): an upgrade of
# any of them may change an output, so it changes every key. tests/pipelines/test_cache_versions.py checks that
# every library the steps' code imports is here.
SHAPING_DISTRIBUTIONS = ("numpy", "pandas", "pyarrow", "scikit-learn", "xgboost", "xgboost-cpu")


def digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def code_digest(folder: Path) -> str:
    """Digest of every Python file of a step's code folder (scripts import only their own folder)."""
    hasher = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        hasher.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return hasher.hexdigest()


def cache_key(step: Step, record: RunRecord, file_parameters: Collection[str], repo_root: Path) -> str:
    """The step's key in ``record``: ``file_parameters`` are keyed by their files' content, not their paths."""
    inputs = {}
    for ref in references(step):
        match ref:
            case StepOutput(name, output) | JsonGet(name, output, _, _):
                inputs[f"{name}.{output}"] = record.steps[name].cache_key
            case Param(name) if name in file_parameters:
                inputs[name] = file_key(Path(record.parameters[name]))
            case Param(name):
                inputs[name] = record.parameters[name]
    return digest(type(step).__name__, repr(step), code_of(step, repo_root), inputs, library_versions())


@functools.cache
def library_versions() -> dict[str, str]:
    """Python's version and the installed ``SHAPING_DISTRIBUTIONS``' (those absent left out), read from the
    packages' metadata: importing numpy or xgboost here would slow every ``cloudviz`` command down."""
    versions = {"python": "{}.{}.{}".format(*sys.version_info[:3])}
    for distribution in SHAPING_DISTRIBUTIONS:
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return versions


def file_key(path: Path) -> str:
    """A file's content hash; a folder's, over its files' relative paths and hashes."""
    if path.is_file():
        return file_sha256(path)
    return digest(sorted((str(p.relative_to(path)), file_sha256(p)) for p in path.rglob("*") if p.is_file()))


def code_of(step: Step, repo_root: Path) -> str:
    if isinstance(step, ProcessingStep):
        return code_digest((repo_root / step.code).parent)
    if isinstance(step, TrainingStep):
        return code_digest(TRAINER.parent)
    return code_digest(PIPELINES_CODE)


def still_valid(step: Step, entry: dict, registry: ModelRegistry) -> bool:
    """A cached registration counts only while the registry still holds that version."""
    if not isinstance(step, RegisterModelStep):
        return True
    properties = entry["properties"]
    return any(
        p.version == properties["version"] and p.model_data_url == properties["model_data_url"]
        for p in registry.list_packages(properties["model_package_group"])
    )


class StepCache:
    """``<state home>/cache/<key>.json`` -> the run, outputs and properties of the step that made them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def lookup(self, key: str) -> dict | None:
        """The cached entry, or None when absent or when its outputs are gone."""
        path = self.folder / f"{key}.json"
        if not path.exists():
            return None
        entry = json.loads(path.read_text(encoding="utf-8"))
        if not all(Path(output).exists() for output in entry["outputs"].values()):
            return None
        return entry

    def store(self, key: str, entry: dict) -> None:
        write_json_atomic(self.folder / f"{key}.json", entry)
