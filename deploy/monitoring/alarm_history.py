"""Alarm states and their history in an endpoint's ``alarms.db`` (SQLite, WAL): the current state of each alarm and
every state change, written by the evaluator inside ``cloudviz serve`` and read by ``cloudviz alarms`` from
another process at any time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines import sqlite_files

OK, ALARM, INSUFFICIENT_DATA = "OK", "ALARM", "INSUFFICIENT_DATA"
STATES = (OK, ALARM, INSUFFICIENT_DATA)

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm_states (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    since TEXT NOT NULL,
    value REAL,
    threshold REAL NOT NULL,
    description TEXT NOT NULL,
    metric TEXT NOT NULL,
    evaluated_at TEXT,
    condition TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alarm_transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alarm TEXT NOT NULL,
    old_state TEXT NOT NULL,
    new_state TEXT NOT NULL,
    reason TEXT NOT NULL,
    value REAL,
    threshold REAL NOT NULL,
    timestamp TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alarm_transitions_by_alarm ON alarm_transitions (alarm, id);
"""


@dataclass(frozen=True)
class AlarmState:
    """An alarm as it stands: ``since`` is when it entered ``state``; ``value`` the newest datapoint (None when
    missing); ``reason`` explains the newest evaluation; ``evaluated_at`` is None before the first one;
    ``condition`` is the rule in one line, with the period it is evaluated over."""

    name: str
    state: str
    reason: str
    since: str
    value: float | None
    threshold: float
    description: str
    metric: str
    evaluated_at: str | None = None
    condition: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Transition:
    """One state change of one alarm, as recorded and as notified."""

    alarm: str
    old_state: str
    new_state: str
    reason: str
    value: float | None
    threshold: float
    timestamp: str

    def to_dict(self) -> dict:
        return asdict(self)


class AlarmHistory:
    """The current state per alarm and every transition, in the SQLite file ``path`` (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        sqlite_files.create(path, SCHEMA)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite_files.connect(self.path)

    def save(self, states: Iterable[AlarmState], transitions: Iterable[Transition] = ()) -> None:
        """Replace the current state of each alarm in ``states`` and append ``transitions``, in one transaction."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO alarm_states (name, state, reason, since, value, threshold, description,"
                    " metric, evaluated_at, condition) VALUES (:name, :state, :reason, :since, :value, :threshold,"
                    " :description, :metric, :evaluated_at, :condition)",
                    [state.to_dict() for state in states],
                )
                db.executemany(
                    "INSERT INTO alarm_transitions (alarm, old_state, new_state, reason, value, threshold, timestamp)"
                    " VALUES (:alarm, :old_state, :new_state, :reason, :value, :threshold, :timestamp)",
                    [transition.to_dict() for transition in transitions],
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def states(self) -> dict[str, AlarmState]:
        """The recorded state of every alarm evaluated at least once, by name."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM alarm_states ORDER BY name").fetchall()
        return {row["name"]: AlarmState(**dict(row)) for row in rows}

    def transitions(self, alarm: str | None = None, limit: int | None = None) -> list[Transition]:
        """State changes, newest first: of one alarm or all, at most ``limit``."""
        query = "SELECT alarm, old_state, new_state, reason, value, threshold, timestamp FROM alarm_transitions"
        parameters: list[object] = []
        if alarm is not None:
            query += " WHERE alarm = ?"
            parameters.append(alarm)
        query += " ORDER BY id DESC"
        if limit is not None:
            query += " LIMIT ?"
            parameters.append(limit)
        with self._connect() as db:
            rows = db.execute(query, parameters).fetchall()
        return [Transition(**dict(row)) for row in rows]
