"""Where local state lives: the state home (``CLOUDVIZ_HOME``, default ``./.cloudviz``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StateHome:
    """Runs, the step cache, the model registry, bundled data and serving state, all below one folder."""

    root: Path

    @classmethod
    def from_env(cls) -> StateHome:
        return cls(Path(os.environ.get("CLOUDVIZ_HOME", ".cloudviz")).resolve())

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def registry_db(self) -> Path:
        return self.root / "registry.db"

    @property
    def deployments(self) -> Path:
        return self.root / "deployments"

    @property
    def predictions_db(self) -> Path:
        return self.root / "predictions.db"

    @property
    def api_key_file(self) -> Path:
        return self.root / "api-key"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def alarms_db(self) -> Path:
        return self.root / "alarms.db"

    @property
    def serve_file(self) -> Path:
        """Where a running ``cloudviz serve`` answers (removed when it stops)."""
        return self.root / "serve.json"


def write_json_atomic(path: Path, document: dict) -> None:
    """Readers never see a half-written file: write beside it, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, path)
