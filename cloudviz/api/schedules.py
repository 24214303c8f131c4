"""``project.schedules``: the schedule definitions of ``cloudviz.schedules.json`` (one file for both targets), and
on the local target their history and ticks of the local scheduler."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cloudviz.api.base import Schedules
from pipelines.definition import build_pipeline
from pipelines.errors import NotFoundError, UserError
from pipelines.scheduling.definitions import (
    SCHEDULES_FILE,
    ScheduleDefinition,
    load_schedules,
    save_schedules,
    schedule_from,
)
from pipelines.scheduling.history import HistoryEntry, ScheduleHistory
from pipelines.scheduling.launcher import Clock, utc_now
from pipelines.scheduling.scheduler import Scheduler
from pipelines.state import StateHome


class FileSchedules(Schedules):
    """Edits the definitions file ``path`` (default ./cloudviz.schedules.json)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path or SCHEDULES_FILE).resolve()

    def add(self, name: str, cron: str, dataset: str = "iris", parameters: dict[str, object] | None = None,
            stages: tuple[str, ...] | list[str] = ("dev",)) -> ScheduleDefinition:
        schedules = load_schedules(self.path)
        if name in schedules:
            raise UserError(f"{self.path}: schedule {name!r} exists already: remove it first, or pause it")
        pipeline = build_pipeline()
        for key, value in (parameters or {}).items():
            pipeline.parameter(key).parse(str(value), key)  # a UserError naming the parameter
        definition = schedule_from(name, {"cron": cron, "dataset": dataset, "parameters": dict(parameters or {}),
                                          "stages": list(stages)}, str(self.path))
        save_schedules(self.path, {**schedules, name: definition})
        self._started(name)
        return definition

    def list(self) -> list[ScheduleDefinition]:
        return sorted(load_schedules(self.path).values(), key=lambda definition: definition.name)

    def get(self, name: str) -> ScheduleDefinition:
        schedules = load_schedules(self.path)
        if name not in schedules:
            known = ", ".join(sorted(schedules)) or "none yet: add one with `cloudviz schedule add`"
            raise NotFoundError(f"{self.path}: no schedule {name!r} (schedules: {known})")
        return schedules[name]

    def remove(self, name: str) -> ScheduleDefinition:
        definition = self.get(name)
        save_schedules(self.path, {key: value for key, value in load_schedules(self.path).items() if key != name})
        self._forget(name)
        return definition

    def pause(self, name: str) -> ScheduleDefinition:
        return self._set_paused(name, True)

    def resume(self, name: str) -> ScheduleDefinition:
        definition = self._set_paused(name, False)
        self._started(name)
        return definition

    def _set_paused(self, name: str, paused: bool) -> ScheduleDefinition:
        definition = dataclasses.replace(self.get(name), paused=paused)
        save_schedules(self.path, {**load_schedules(self.path), name: definition})
        return definition

    def _started(self, name: str) -> None:
        """The schedule was added or resumed: count its due times from now."""

    def _forget(self, name: str) -> None:
        """The schedule was removed."""


class LocalSchedules(FileSchedules):
    """The definitions file, with the state home's history; ``tick`` runs the local scheduler once."""

    def __init__(self, home: StateHome, path: str | Path | None = None, clock: Clock = utc_now) -> None:
        super().__init__(path)
        self.home = home
        self.clock = clock

    def history(self, name: str | None = None, limit: int = 50) -> list[HistoryEntry]:
        """Each due time (and drift alarm, under ``drift:<group>``) handled, newest first."""
        return ScheduleHistory(self.home.schedules_db).entries(name, limit)

    def tick(self, wait: bool = True) -> list[HistoryEntry]:
        """Start the runs of the schedules due now; with ``wait``, return once they ended (their entries then)."""
        scheduler = Scheduler(self.home, self.path, self.clock)
        entries = scheduler.tick()
        if not wait:
            return entries
        scheduler.wait()
        return [scheduler.history.get(entry.id) for entry in entries]

    def _started(self, name: str) -> None:
        ScheduleHistory(self.home.schedules_db).set_baseline(name, self.clock())

    def _forget(self, name: str) -> None:
        ScheduleHistory(self.home.schedules_db).forget(name)


class AwsSchedules(FileSchedules):
    """The definitions file; on AWS, EventBridge Scheduler runs them once the stage is deployed."""

    def history(self, name: str | None = None, limit: int = 50) -> list[HistoryEntry]:
        raise UserError("on AWS, EventBridge Scheduler runs the schedules of cloudviz.schedules.json once "
                        "`cloudviz deploy aws` deployed the stage; their runs are the pipeline's executions "
                        "(project.runs.list())")

    def tick(self, wait: bool = True) -> list[HistoryEntry]:
        return self.history()
