"""Step cache: a finished step's outputs, found again by a key over everything that made them.

The key covers the step's declaration with its parameter values, a digest of its code, and
the keys of its inputs (a raw file by its content hash; another step's output by that step's
key). Steps are deterministic for a given seed, so equal keys mean equal outputs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipelines.state import write_json_atomic


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
