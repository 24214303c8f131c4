"""Run records: one folder per pipeline run, with ``run.json`` saying what happened.

``<state home>/runs/<run id>/run.json`` holds the parameters, the run options (``use_cache``: what a resume
keeps unless told otherwise), the run status, and per step
its status, attempts, timings, cache use, outputs, log file and failure reason. The file is
rewritten atomically at every change, so ``cloudviz runs show`` can read a live run.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipelines.errors import NotFoundError, UserError
from pipelines.state import write_json_atomic

# Step and run statuses, as SageMaker names them.
PENDING, EXECUTING, SUCCEEDED, FAILED, SKIPPED = "Pending", "Executing", "Succeeded", "Failed", "Skipped"
LATEST = "latest"  # the newest run (or model version) wherever one is named


def utc_now_text() -> str:
    """The current UTC time as ISO-8601 text with microseconds, as run records store it."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_run_id() -> str:
    """Sortable by start time, unique across concurrent starts."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


@dataclass
class StepRecord:
    name: str
    status: str = PENDING
    attempts: int = 0
    started_at: str | None = None
    ended_at: str | None = None
    duration_seconds: float | None = None
    cache_key: str | None = None
    cached_from: str | None = None
    inputs: dict = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    properties: dict = field(default_factory=dict)
    log: str | None = None
    failure_reason: str | None = None


@dataclass
class RunRecord:
    run_id: str
    pipeline: str
    parameters: dict
    folder: Path
    options: dict = field(default_factory=dict)  # how the run executes: {"use_cache": bool}; a resume keeps them
    status: str = EXECUTING
    created_at: str = field(default_factory=utc_now_text)
    ended_at: str | None = None
    failure_reason: str | None = None
    resumed: int = 0
    pid: int | None = None
    steps: dict[str, StepRecord] = field(default_factory=dict)

    def to_dict(self) -> dict:
        document = asdict(self)
        document["folder"] = str(self.folder)
        return document

    @classmethod
    def from_dict(cls, document: dict) -> RunRecord:
        steps = {name: StepRecord(**step) for name, step in document.pop("steps").items()}
        return cls(**{**document, "folder": Path(document["folder"]), "steps": steps})

    def output_file(self, output: str, filename: str) -> Path | None:
        """A file a step wrote into one of its outputs (``evaluation``, ``schema``, ...), when the run got that far."""
        for step in self.steps.values():
            folder = step.outputs.get(output)
            if folder and (Path(folder) / filename).is_file():
                return Path(folder) / filename
        return None

    def output_json(self, output: str, filename: str) -> dict | None:
        """The JSON file a step wrote into one of its outputs, when the run got that far."""
        path = self.output_file(output, filename)
        return json.loads(path.read_text(encoding="utf-8")) if path else None

    def registered(self) -> dict | None:
        """The Register step's properties (group, version, ARN, approval status when registered), if the run
        registered a version."""
        return next((step.properties for step in self.steps.values() if "version" in step.properties), None)

    def uses_cache(self) -> bool:
        """Whether the run takes steps from the step cache (a run recorded before options were kept: yes)."""
        return bool(self.options.get("use_cache", True))

    def runner_alive(self) -> bool:
        """Whether the process that executes this run is still running."""
        return self.pid is not None and process_alive(self.pid)

    def save(self) -> None:
        write_json_atomic(self.folder / "run.json", self.to_dict())


class RunStore:
    """The runs below ``<state home>/runs``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def create(self, pipeline: str, parameters: dict, step_names: list[str], options: dict | None = None) -> RunRecord:
        """A new run record, saved, with the ``options`` it executes with (recorded so a resume keeps them)."""
        run_id = new_run_id()
        record = RunRecord(
            run_id=run_id,
            pipeline=pipeline,
            parameters=parameters,
            folder=self.folder / run_id,
            options=dict(options or {}),
            pid=os.getpid(),
            steps={name: StepRecord(name) for name in step_names},
        )
        record.save()
        return record

    def load(self, run_id: str) -> RunRecord:
        path = self.folder / run_id / "run.json"
        if not path.is_file():
            raise NotFoundError(f"no run {run_id!r} under {self.folder}")
        return RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def find(self, text: str) -> RunRecord:
        """The run ``text`` names: its id, a unique prefix of one (ids start with the UTC start time), or
        ``latest``."""
        if text == LATEST:
            records = self.list()
            if not records:
                raise NotFoundError(f"no runs yet under {self.folder}: start one with `cloudviz pipeline run`")
            return records[0]
        if text and "/" not in text and not (self.folder / text / "run.json").is_file():
            matches = sorted(path.parent.name for path in self.folder.glob(f"{glob.escape(text)}*/run.json"))
            if len(matches) == 1:
                return self.load(matches[0])
            if matches:
                shown = ", ".join(matches[:10]) + (f" and {len(matches) - 10} more" if len(matches) > 10 else "")
                raise UserError(f"run id prefix {text!r} is ambiguous: it starts {len(matches)} runs ({shown})")
        return self.load(text)

    def list(self) -> list[RunRecord]:
        """Newest first."""
        if not self.folder.is_dir():
            return []
        paths = self.folder.glob("*/run.json")
        records = [RunRecord.from_dict(json.loads(p.read_text(encoding="utf-8"))) for p in paths]
        return sorted(records, key=lambda r: (r.created_at, r.run_id), reverse=True)


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one of another user's counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
