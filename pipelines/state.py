"""Where local state lives: the state home (``CLOUDVIZ_HOME``, default ``./.cloudviz``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import overload


class _Below:
    """A file or folder of the state home, read as an attribute: ``home.runs`` is ``home.root / "runs"``."""

    def __init__(self, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, home: None, owner: type) -> _Below: ...
    @overload
    def __get__(self, home: StateHome, owner: type) -> Path: ...
    def __get__(self, home: StateHome | None, owner: type) -> Path | _Below:
        return self if home is None else home.root / self.name


@dataclass(frozen=True)
class StateHome:
    """Runs, the step cache, the model registry, bundled data and serving state, all below one folder."""

    root: Path

    @classmethod
    def from_env(cls) -> StateHome:
        return cls(Path(os.environ.get("CLOUDVIZ_HOME", ".cloudviz")).resolve())

    runs = _Below("runs")
    cache = _Below("cache")
    data = _Below("data")
    registry_db = _Below("registry.db")
    schedules_db = _Below("schedules.db")  # the schedules' history: pipelines.scheduling.history
    deployments = _Below("deployments")
    api_key_file = _Below("api-key")
    logs = _Below("logs")
    endpoints = _Below("endpoints")  # each local endpoint's serving state: deploy.endpoint_state
    datasets = _Below("datasets")  # data sets and their versions: pipelines.data.versions


def write_json_atomic(path: Path, document: dict) -> None:
    """Readers never see a half-written file: write beside it, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, path)
