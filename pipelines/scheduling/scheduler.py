"""The local scheduler: each tick starts the runs of the schedules that came due since the last tick.

Per schedule: due times are counted from the last one handled (or from when the schedule was added or resumed);
after downtime over several due times it runs once, for the newest. A schedule whose previous run still executes
skips the due time; one whose data set has no version newer than its last successful run trained on skips too
(and so registers nothing). Every due time handled is in the history, with its run or why it skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pipelines.errors import UserError
from pipelines.retraining import scheduled_run_decision
from pipelines.scheduling.definitions import ScheduleDefinition, load_schedules
from pipelines.scheduling.history import CATCH_UP, CRON, SKIPPED, HistoryEntry, ScheduleHistory, time_text
from pipelines.scheduling.launcher import (
    BackgroundRuns,
    Clock,
    RunStarter,
    local_run_starter,
    newest_version,
    utc_now,
)
from pipelines.state import StateHome

logger = logging.getLogger(__name__)


class Scheduler:
    """Ticks the schedules of ``definitions_path`` on the state home ``home``; runs go through ``start_run``
    (default: the local pipeline runner), each in its own thread."""

    def __init__(self, home: StateHome, definitions_path: Path, clock: Clock = utc_now,
                 start_run: RunStarter | None = None) -> None:
        self.home = home
        self.definitions_path = Path(definitions_path)
        self.clock = clock
        self.history = ScheduleHistory(home.schedules_db)
        self.runs = BackgroundRuns(self.history, start_run or local_run_starter(home), clock)

    def tick(self, now: datetime | None = None) -> list[HistoryEntry]:
        """Handle what came due by ``now`` (default the clock's time): the history entries this tick added."""
        now = now or self.clock()
        handled = (self._handle(definition, now) for definition in load_schedules(self.definitions_path).values()
                   if not definition.paused)
        return [entry for entry in handled if entry is not None]

    def _handle(self, definition: ScheduleDefinition, now: datetime) -> HistoryEntry | None:
        last = self.history.last_due(definition.name)
        if last is None:  # first seen (the file edited by hand): due times count from now
            self.history.set_baseline(definition.name, now)
            return None
        due = definition.expression.due_between(last, now)
        if not due:
            return None
        trigger, note = (CRON, "") if len(due) == 1 else (
            CATCH_UP, f"caught up once for {len(due)} due times since {last.isoformat()}")
        entry = self.history.claim_due(definition.name, due[-1], trigger, now, note)
        if entry is None or entry.status == SKIPPED:  # another scheduler handled it; an overlap
            return entry
        return self._start_or_skip(entry, definition)

    def _start_or_skip(self, entry: HistoryEntry, definition: ScheduleDefinition) -> HistoryEntry:
        newest = newest_version(self.home, definition.dataset)
        last = self.history.last_succeeded(definition.name)
        decision = scheduled_run_decision(newest, last.dataset_version if last else None,
                                          last.run_id if last else None)
        reason = "; ".join(part for part in (entry.reason, decision.reason) if part)
        if not decision.start:
            return self.history.update(entry.id, status=SKIPPED, reason=reason, dataset_version=newest,
                                       ended_at=time_text(self.clock()))
        entry = self.history.update(entry.id, reason=reason, dataset_version=newest)
        self.runs.launch(entry, dict(definition.parameters))
        return entry

    def wait(self, timeout: float | None = None) -> None:
        """Until the runs this scheduler started ended."""
        self.runs.wait(timeout)


def describe(entry: HistoryEntry) -> str:
    """One line for people: what a tick did with a due time."""
    run = f" run {entry.run_id}" if entry.run_id else ""
    return f"schedule {entry.schedule}: {entry.trigger} due {entry.due_at}: {entry.status}{run}: {entry.reason}"


class SchedulerLoop:
    """Ticks ``scheduler`` every ``interval_seconds`` until stopped, reporting each entry a tick added (and a tick
    that failed, say on a broken definitions file: the loop keeps going) to ``on_event``."""

    def __init__(self, scheduler: Scheduler, interval_seconds: float = 30.0,
                 on_event: Callable[[str], None] = lambda message: None) -> None:
        self.scheduler = scheduler
        self.interval_seconds = interval_seconds
        self.on_event = on_event
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Tick until ``stop`` (in this thread)."""
        reported = ""  # a broken definitions file is said once, not every tick until it is mended
        while True:
            try:
                for entry in self.scheduler.tick():
                    self.on_event(describe(entry))
                reported = ""
            except Exception as error:  # the next tick may do better; a serve keeps serving either way
                if str(error) != reported:
                    reported = str(error)
                    if isinstance(error, UserError):
                        logger.warning("scheduler: %s", error)
                    else:
                        logger.exception("scheduler tick failed")
                    self.on_event(f"scheduler: {error}")
            if self._stop.wait(self.interval_seconds):
                return

    def start(self) -> SchedulerLoop:
        self._thread = threading.Thread(target=self.run, name="scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
