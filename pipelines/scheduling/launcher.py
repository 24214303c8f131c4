"""Starting a retraining run in the background and keeping its history entry up to date: shared by the scheduler
and the drift trigger. A run is a real local pipeline run (``pipelines.runner.LocalRunner``) on a data set
version, executed in a thread so that a long run does not hold up the next tick."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

from pipelines.data.versions import local_dataset_store
from pipelines.definition import build_pipeline
from pipelines.errors import NotFoundError
from pipelines.json_logs import log_to_file
from pipelines.runner import LocalRunner
from pipelines.runs import SUCCEEDED as RUN_SUCCEEDED
from pipelines.runs import RunRecord
from pipelines.scheduling.history import EXECUTING, FAILED, SUCCEEDED, HistoryEntry, ScheduleHistory, time_text
from pipelines.state import StateHome

Clock = Callable[[], datetime]
# Runs the pipeline with these overrides to its end, calling back once the run record exists.
RunStarter = Callable[[dict[str, str], Callable[[RunRecord], None]], RunRecord]
DATASET_PARAMETER = "DataSetVersion"


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Created:
    """A run observer that reports the run once, when its record exists."""

    def __init__(self, callback: Callable[[RunRecord], None]) -> None:
        self.callback: Callable[[RunRecord], None] | None = callback

    def run_changed(self, record: RunRecord) -> None:
        if self.callback is not None:
            callback, self.callback = self.callback, None
            callback(record)


def local_run_starter(home: StateHome) -> RunStarter:
    log_to_file(home.logs / "runner.log", "pipelines")  # once: runs in threads side by side share the file handler

    def start(overrides: dict[str, str], on_created: Callable[[RunRecord], None]) -> RunRecord:
        return LocalRunner(home, build_pipeline(), _Created(on_created)).start(overrides)

    return start


def newest_version(home: StateHome, dataset: str) -> str | None:
    """The data set's newest version ref (``iris@3``); None when it has none."""
    try:
        return local_dataset_store(home).resolve(dataset).ref  # resolve: makes the bundled iris version 1 once
    except NotFoundError:
        return None


class BackgroundRuns:
    """Runs started for history entries, each in its own thread; ``wait`` joins them."""

    def __init__(self, history: ScheduleHistory, start_run: RunStarter, clock: Clock) -> None:
        self.history = history
        self.start_run = start_run
        self.clock = clock
        self._threads: list[threading.Thread] = []

    def launch(self, entry: HistoryEntry, parameters: dict[str, str]) -> None:
        """Run the pipeline with ``parameters`` on the entry's data set version."""
        overrides = {**parameters, DATASET_PARAMETER: entry.dataset_version or ""}
        thread = threading.Thread(target=self._run, args=(entry, overrides), name=f"retrain-{entry.schedule}",
                                  daemon=True)
        self._threads = [*(alive for alive in self._threads if alive.is_alive()), thread]
        thread.start()

    def _run(self, entry: HistoryEntry, overrides: dict[str, str]) -> None:
        def created(record: RunRecord) -> None:
            self.history.update(entry.id, status=EXECUTING, run_id=record.run_id)

        try:
            record = self.start_run(overrides, created)
        except Exception as error:  # a parameter the pipeline refuses, a broken state home: the entry says why
            self.history.update(entry.id, status=FAILED, ended_at=time_text(self.clock()),
                                reason=f"{entry.reason}; the run did not start: {error}".lstrip("; "))
            return
        registered = record.registered()
        outcome = (f"; registered {registered['model_package_group']} version {registered['version']}"
                   if registered else "; registered nothing")
        failure = f"; failed: {record.failure_reason}" if record.failure_reason else ""
        self.history.update(
            entry.id, status=SUCCEEDED if record.status == RUN_SUCCEEDED else FAILED, run_id=record.run_id,
            ended_at=time_text(self.clock()), reason=f"{entry.reason}{failure}{outcome}".lstrip("; "),
            registered=f"{registered['model_package_group']}@{registered['version']}" if registered else None)

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def wait(self, timeout: float | None = None) -> None:
        """Until every run started here ended (or ``timeout`` seconds passed)."""
        for thread in list(self._threads):
            thread.join(timeout)
