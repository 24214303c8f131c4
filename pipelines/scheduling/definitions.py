"""The schedule definitions file, ``cloudviz.schedules.json`` beside ``cloudviz.toml``: committed with the code, so
the local scheduler and ``cloudviz deploy aws`` (EventBridge Scheduler, per stage) run the same schedules.

``{"schedules": {"nightly": {"cron": "0 3 * * *", "dataset": "iris", "parameters": {"Eta": "0.2"},
"paused": false, "stages": ["dev"]}}}``
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deploy.aws.names import STAGES
from pipelines.errors import UserError
from pipelines.scheduling.cron import CronExpression
from pipelines.state import write_json_atomic

SCHEDULES_FILE = "cloudviz.schedules.json"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")  # short enough to prefix for EventBridge Scheduler names
DATASET_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
FIELDS = {"cron", "dataset", "parameters", "paused", "stages"}
# Set by the schedule itself: it trains on its data set's newest version.
RESERVED_PARAMETERS = ("DataSetVersion", "InputData", "InputDataType")


@dataclass(frozen=True)
class ScheduleDefinition:
    name: str
    cron: str
    dataset: str = "iris"
    parameters: Mapping[str, str] = field(default_factory=dict)
    paused: bool = False
    stages: tuple[str, ...] = ("dev",)

    @property
    def expression(self) -> CronExpression:
        return CronExpression.parse(self.cron)

    def to_dict(self) -> dict:
        return {"cron": self.cron, "dataset": self.dataset, "parameters": dict(self.parameters),
                "paused": self.paused, "stages": list(self.stages)}


def schedule_from(name: str, document: object, where: str) -> ScheduleDefinition:
    """A checked definition; a UserError naming ``where`` (the file), the schedule and the field."""
    def wrong(field_name: str, problem: str) -> UserError:
        return UserError(f"{where}: schedule {name!r}: {field_name}: {problem}")

    if not NAME_PATTERN.fullmatch(name):
        raise UserError(f"{where}: schedule name {name!r}: use 1-40 of a-z, 0-9, '-' and '_', starting with a letter "
                        "or digit")
    if not isinstance(document, dict):
        raise wrong("definition", "expected an object")
    if unknown := sorted(set(document) - FIELDS):
        raise wrong(unknown[0], f"unknown field; the fields are {', '.join(sorted(FIELDS))}")
    cron = document.get("cron")
    if not isinstance(cron, str):
        raise wrong("cron", "expected a cron expression such as \"0 3 * * *\"")
    try:
        CronExpression.parse(cron)
    except UserError as error:
        raise wrong("cron", str(error)) from None
    dataset = document.get("dataset", "iris")
    if not isinstance(dataset, str) or not DATASET_PATTERN.fullmatch(dataset):
        raise wrong("dataset", f"{dataset!r} is no data set name (a-z, 0-9, '-', '_'; `cloudviz data list`)")
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise wrong("parameters", "expected an object of parameter names and values")
    for key, value in parameters.items():
        if key in RESERVED_PARAMETERS:
            raise wrong(f"parameters.{key}", "set by the schedule (it trains on its data set's newest version); "
                                             "choose the data set with \"dataset\"")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise wrong(f"parameters.{key}", f"expected a string or a number, got {value!r}")
    paused = document.get("paused", False)
    if not isinstance(paused, bool):
        raise wrong("paused", f"expected true or false, got {paused!r}")
    stages = document.get("stages", ["dev"])
    if not isinstance(stages, list) or not stages or any(stage not in STAGES for stage in stages):
        raise wrong("stages", f"expected a list of stages out of {', '.join(STAGES)}, got {stages!r}")
    return ScheduleDefinition(name, " ".join(cron.split()), dataset,
                              {key: str(value) for key, value in parameters.items()}, paused,
                              tuple(dict.fromkeys(stages)))


def load_schedules(path: Path) -> dict[str, ScheduleDefinition]:
    """The schedules of the file, by name; none when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("schedules", {}), dict):
        raise UserError(f"{path}: expected {{\"schedules\": {{NAME: {{\"cron\": ...}}}}}}")
    return {name: schedule_from(name, definition, str(path))
            for name, definition in document.get("schedules", {}).items()}


def save_schedules(path: Path, schedules: Mapping[str, ScheduleDefinition]) -> None:
    """Readers (another scheduler, ``cloudviz deploy aws``) never see a half-written file."""
    write_json_atomic(Path(path), {"schedules": {name: schedules[name].to_dict() for name in sorted(schedules)}})
