"""The schedules' history in the state home's ``schedules.db``: per schedule the last due time handled, and every
due time (or drift alarm) handled: the run it started and how that ended, or why it skipped.

Several schedulers may tick the same state home (``cloudviz serve`` of dev and of prod, ``cloudviz scheduler``):
a due time is claimed inside one write-locked transaction, so exactly one of them handles it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipelines import sqlite_files
from pipelines.retraining import Decision
from pipelines.runs import process_alive

SCHEMA = """
CREATE TABLE IF NOT EXISTS schedule_state (
    schedule TEXT PRIMARY KEY,
    last_due TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule TEXT NOT NULL,
    trigger TEXT NOT NULL,
    due_at TEXT NOT NULL,
    handled_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL,
    run_id TEXT,
    dataset_version TEXT,
    registered TEXT,
    reason TEXT NOT NULL DEFAULT '',
    pid INTEGER
);
CREATE INDEX IF NOT EXISTS schedule_history_by_schedule ON schedule_history (schedule, id);
"""
# Entry statuses: a claimed due time is STARTING until its run exists, then EXECUTING until it ends.
STARTING, EXECUTING, SUCCEEDED, FAILED, SKIPPED = "starting", "executing", "succeeded", "failed", "skipped"
ACTIVE = (STARTING, EXECUTING)
# Triggers: a due time of the cron expression, the newest of several missed ones, the feature-drift alarm.
CRON, CATCH_UP, DRIFT = "cron", "catch-up", "drift"


def time_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    schedule: str
    trigger: str
    due_at: str
    handled_at: str
    ended_at: str | None
    status: str
    run_id: str | None
    dataset_version: str | None
    registered: str | None  # "Group@version" when the run registered a model version
    reason: str
    pid: int | None

    def to_dict(self) -> dict:
        return asdict(self)


class ScheduleHistory:
    """``schedules.db`` at ``path``, created on first use: a serve with no schedules leaves no file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._created = False

    def _created_path(self) -> Path:
        if not self._created:
            sqlite_files.create(self.path, SCHEMA)
            self._created = True
        return self.path

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite_files.connect(self._created_path())

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite_files.transaction(self._created_path())

    # -- the last due time handled ------------------------------------------------------------------

    def last_due(self, schedule: str) -> datetime | None:
        with self._connect() as db:
            row = db.execute("SELECT last_due FROM schedule_state WHERE schedule = ?", (schedule,)).fetchone()
        return datetime.fromisoformat(row["last_due"]) if row else None

    def set_baseline(self, schedule: str, moment: datetime) -> None:
        """Count due times from ``moment`` on (a schedule added or resumed: earlier ones are no runs to catch up)."""
        with self._transaction() as db:
            db.execute("INSERT INTO schedule_state (schedule, last_due) VALUES (?, ?) ON CONFLICT (schedule) DO "
                       "UPDATE SET last_due = excluded.last_due", (schedule, time_text(moment)))

    def forget(self, schedule: str) -> None:
        """Drop the schedule's state (a removed schedule added again starts afresh); its entries stay."""
        with self._transaction() as db:
            db.execute("DELETE FROM schedule_state WHERE schedule = ?", (schedule,))

    # -- claiming -------------------------------------------------------------------------------------

    def claim_due(self, schedule: str, due_at: datetime, trigger: str, now: datetime,
                  note: str = "") -> HistoryEntry | None:
        """Handle ``due_at`` unless it (or a later due time) was handled already: None then. The entry is SKIPPED
        when the schedule's previous run still executes, else STARTING (for this process)."""
        with self._transaction() as db:
            row = db.execute("SELECT last_due FROM schedule_state WHERE schedule = ?", (schedule,)).fetchone()
            if row is not None and datetime.fromisoformat(row["last_due"]) >= due_at:
                return None
            db.execute("INSERT INTO schedule_state (schedule, last_due) VALUES (?, ?) ON CONFLICT (schedule) DO "
                       "UPDATE SET last_due = excluded.last_due", (schedule, time_text(due_at)))
            running = self._executing(db, schedule, now)
            if running is not None:
                return self._insert(db, schedule, trigger, due_at, now, SKIPPED, still_executing(running), ended=True)
            return self._insert(db, schedule, trigger, due_at, now, STARTING, note)

    def claim_drift(self, key: str, now: datetime, decide: Callable[[datetime | None], Decision]) -> HistoryEntry:
        """Record the alarm as ``key``'s entry: STARTING when ``decide`` (given when the last run ``key`` started)
        allows a run and no earlier one executes, else SKIPPED with the reason. One transaction, so two serves share
        the cool-down."""
        with self._transaction() as db:
            running = self._executing(db, key, now)
            row = db.execute("SELECT handled_at FROM schedule_history WHERE schedule = ? AND status != ? "
                             "ORDER BY id DESC LIMIT 1", (key, SKIPPED)).fetchone()
            decision = decide(datetime.fromisoformat(row["handled_at"]) if row else None)
            if decision.start and running is not None:  # a cool-down shorter than a run
                decision = Decision(False, still_executing(running))
            status = STARTING if decision.start else SKIPPED
            return self._insert(db, key, DRIFT, now, now, status, decision.reason, ended=not decision.start)

    def _executing(self, db: sqlite3.Connection, schedule: str, now: datetime) -> HistoryEntry | None:
        """The schedule's entry whose run is executing; one whose process ended is marked FAILED."""
        rows = db.execute("SELECT * FROM schedule_history WHERE schedule = ? AND status IN (?, ?)",
                          (schedule, *ACTIVE)).fetchall()
        for entry in map(entry_of, rows):
            if entry.pid is not None and process_alive(entry.pid):
                return entry
            resume = f"; resume it with `cloudviz pipeline resume {entry.run_id}`" if entry.run_id else ""
            db.execute("UPDATE schedule_history SET status = ?, ended_at = ?, reason = ? WHERE id = ?",
                       (FAILED, time_text(now), f"the scheduler process {entry.pid} ended before the run did{resume}",
                        entry.id))
        return None

    def _insert(self, db: sqlite3.Connection, schedule: str, trigger: str, due_at: datetime, now: datetime,
                status: str, reason: str, ended: bool = False) -> HistoryEntry:
        cursor = db.execute(
            "INSERT INTO schedule_history (schedule, trigger, due_at, handled_at, ended_at, status, reason, pid) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (schedule, trigger, time_text(due_at), time_text(now), time_text(now) if ended else None, status, reason,
             None if ended else os.getpid()))
        return entry_of(db.execute("SELECT * FROM schedule_history WHERE id = ?", (cursor.lastrowid,)).fetchone())

    # -- an entry's progress --------------------------------------------------------------------------

    def update(self, entry_id: int, **changes: object) -> HistoryEntry:
        """Set columns of an entry (status, run_id, dataset_version, registered, reason, ended_at)."""
        columns = ", ".join(f"{name} = ?" for name in changes)
        with self._transaction() as db:
            db.execute(f"UPDATE schedule_history SET {columns} WHERE id = ?", (*changes.values(), entry_id))
            return entry_of(db.execute("SELECT * FROM schedule_history WHERE id = ?", (entry_id,)).fetchone())

    def get(self, entry_id: int) -> HistoryEntry:
        with self._connect() as db:
            return entry_of(db.execute("SELECT * FROM schedule_history WHERE id = ?", (entry_id,)).fetchone())

    def last_succeeded(self, schedule: str) -> HistoryEntry | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM schedule_history WHERE schedule = ? AND status = ? ORDER BY id DESC "
                             "LIMIT 1", (schedule, SUCCEEDED)).fetchone()
        return entry_of(row) if row else None

    def entries(self, schedule: str | None = None, limit: int = 50) -> list[HistoryEntry]:
        """Newest first; every schedule's (and the drift trigger's) when ``schedule`` is None."""
        where, values = ("WHERE schedule = ?", (schedule,)) if schedule is not None else ("", ())
        with self._connect() as db:
            rows = db.execute(f"SELECT * FROM schedule_history {where} ORDER BY id DESC LIMIT ?",
                              (*values, limit)).fetchall()
        return [entry_of(row) for row in rows]


def still_executing(running: HistoryEntry) -> str:
    what = f"run {running.run_id}" if running.run_id else f"run (being started by process {running.pid})"
    return f"previous {what} still executing"


def entry_of(row: sqlite3.Row) -> HistoryEntry:
    return HistoryEntry(**dict(row))
