"""The embedded prediction store: one SQLite file in WAL mode, safe for writers on many threads.

Ids start with the time a prediction was made, so the ``WITHOUT ROWID`` primary key is also the time index.
Idempotency keys live in the same file (table ``idempotency_keys``), so an answer is remembered in the
transaction that stores its predictions; expired keys are deleted as new ones are claimed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import astuple
from pathlib import Path

from serving_lambdas.records import Feedback, PredictionRecord
from serving_lambdas.store.base import ClaimLost, DuplicateId, FeedbackConflict, IdempotentRequest, StorePage

BUSY_TIMEOUT_SECONDS = 30.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY,
    timestamp TEXT NOT NULL,
    features TEXT NOT NULL,
    prediction NUMERIC NOT NULL,
    label TEXT,
    probabilities TEXT,
    model_version INTEGER,
    latency_ms REAL NOT NULL,
    request_id TEXT,
    feedback_label,
    feedback_recorded_at TEXT
) WITHOUT ROWID
"""
IDEMPOTENCY_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS idempotency_keys (
        digest TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        token TEXT NOT NULL,
        lease_until INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        status INTEGER,
        body TEXT
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys (expires_at)",
)
IDEMPOTENCY_COLUMNS = "digest, fingerprint, token, lease_until, expires_at, status, body"
ANSWER = "UPDATE idempotency_keys SET status = ?, body = ? WHERE digest = ? AND token = ? AND status IS NULL"
# feedback_label has no type: it keeps a class name as text and a regression model's value as a number.
COLUMNS = ("id, timestamp, features, prediction, label, probabilities, model_version, latency_ms, request_id, "
           "feedback_label, feedback_recorded_at")
# Files made before a column existed lack it: it is added in place (every such column is nullable).
ADDED_COLUMNS = {"request_id": "request_id TEXT", "feedback_label": "feedback_label",
                 "feedback_recorded_at": "feedback_recorded_at TEXT"}
RECORD_FEEDBACK = ("UPDATE predictions SET feedback_label = ?, feedback_recorded_at = ? "
                   "WHERE id = ? AND feedback_recorded_at IS NULL")
# Files made before regression models were served declare ``label TEXT NOT NULL``: the table is rebuilt once,
# its rows kept, as SQLite cannot drop a constraint in place.
MIGRATION = (
    "ALTER TABLE predictions RENAME TO predictions_before_regression",
    SCHEMA,
    f"INSERT INTO predictions ({COLUMNS}) SELECT {COLUMNS} FROM predictions_before_regression",
    "DROP TABLE predictions_before_regression",
)


def writers_lock_file(path: Path) -> Path:
    """The file a store's writers ``flock`` (beside the database: it goes where the database goes)."""
    return path.with_name(path.name + ".writers")


class SqliteStore:
    """Predictions in the SQLite file at ``path`` (created with its folder if missing)."""

    max_rows_per_put = 65_536  # the row field of an id has four hex digits

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        # Writers queue here (``_writing``): SQLite's busy handler sleeps (1, 2, 5 ... 100 ms), which makes a slow
        # p99 under concurrent requests (benchmarks/README.md).
        self._write_lock = threading.Lock()
        self._writers: int | None = None  # the descriptor of the ``.writers`` file, opened at the first write
        connection = self._connection()
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(SCHEMA)
        for statement in IDEMPOTENCY_SCHEMA:
            connection.execute(statement)
        self._migrate(connection)

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """Bring a file of before up to date in one transaction (another process may open it too): add the
        missing columns, then rebuild the table if ``label`` is NOT NULL (the rebuild copies them too)."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            columns = {row[1]: row for row in connection.execute("PRAGMA table_info(predictions)")}
            for name, definition in ADDED_COLUMNS.items():
                if name not in columns:
                    connection.execute(f"ALTER TABLE predictions ADD COLUMN {definition}")
            if columns["label"][3]:  # notnull
                for statement in MIGRATION:
                    connection.execute(statement)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            # Owner-only from its first instant (SQLite keeps the mode it finds, and gives it to -wal and -shm).
            os.close(os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o600))
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            # A committed prediction survives a crash of the process; a power loss may lose the last transactions.
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
        return connection

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Held around each write transaction: this process's threads queue on a lock, processes (the local
        gateway's Lambda workers) on an ``flock`` of the ``.writers`` file, both woken the moment it is free."""
        with self._write_lock:
            if self._writers is None:  # kept open, as the connections are: no open and close per write
                self._writers = os.open(writers_lock_file(self.path), os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._writers, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._writers, fcntl.LOCK_UN)

    def put(self, records: Sequence[PredictionRecord], answered: IdempotentRequest | None = None) -> None:
        connection = self._connection()
        rows = [_row(record) for record in records]
        insert = f"INSERT INTO predictions ({COLUMNS}) VALUES ({', '.join('?' * len(rows[0]))})" if rows else None
        with self._writing():
            connection.execute("BEGIN IMMEDIATE")
            try:
                if insert is not None:
                    connection.executemany(insert, rows)
                if answered is not None and connection.execute(
                        ANSWER, (answered.status, answered.body, answered.digest, answered.token)).rowcount != 1:
                    raise ClaimLost(f"idempotency key {answered.digest} is no longer held by this request")
            except sqlite3.IntegrityError as error:
                connection.execute("ROLLBACK")
                if error.sqlite_errorname != "SQLITE_CONSTRAINT_PRIMARYKEY":  # NOT NULL...: a bug, not a duplicate
                    raise
                raise DuplicateId(f"a prediction id is already stored: {error}") from None
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def claim(self, request: IdempotentRequest, now: int) -> IdempotentRequest:
        """In one transaction: delete the expired keys, read the key's row, and write ``request`` over it unless it
        is held."""
        connection = self._connection()
        with self._writing():
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (now,))
                row = connection.execute(f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys WHERE digest = ?",
                                         (request.digest,)).fetchone()
                held = None if row is None else IdempotentRequest(*row)
                if held is None or held.claimable(now):
                    connection.execute(f"INSERT OR REPLACE INTO idempotency_keys ({IDEMPOTENCY_COLUMNS}) "
                                       f"VALUES (?, ?, ?, ?, ?, ?, ?)", astuple(request))
                    held = request
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        return held

    def release(self, request: IdempotentRequest) -> None:
        with self._writing():
            self._connection().execute("DELETE FROM idempotency_keys WHERE digest = ? AND token = ? AND status IS NULL",
                                       (request.digest, request.token))

    def record_feedback(self, prediction_id: str, feedback: Feedback) -> PredictionRecord | None:
        """One UPDATE of the row, when it has no label yet, then the row read back in the same transaction."""
        connection = self._connection()
        with self._writing():
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute(RECORD_FEEDBACK, (feedback.label, feedback.recorded_at, prediction_id))
                record = self.get(prediction_id)
            finally:
                connection.execute("COMMIT")
        if record is not None and record.feedback is not None and record.feedback.label != feedback.label:
            raise FeedbackConflict(record)
        return record

    def get(self, prediction_id: str) -> PredictionRecord | None:
        row = self._connection().execute(f"SELECT {COLUMNS} FROM predictions WHERE id = ?", (prediction_id,)).fetchone()
        return None if row is None else _record(row)

    def page(self, limit: int, since: str = "", before: str = "~") -> StorePage:
        """One indexed SELECT whatever the range: the page is always whole."""
        return StorePage(self.newest(limit, since, before))

    def newest(self, limit: int, since: str = "", before: str = "~") -> list[PredictionRecord]:
        rows = self._connection().execute(
            f"SELECT {COLUMNS} FROM predictions WHERE id >= ? AND id < ? ORDER BY id DESC LIMIT ?",
            (since, before, limit),
        )
        return [_record(row) for row in rows]


def _row(record: PredictionRecord) -> tuple:
    probabilities = None if record.probabilities is None else json.dumps(record.probabilities)
    return (
        record.id,
        record.timestamp,
        json.dumps(record.features),
        record.prediction,
        record.label,
        probabilities,
        record.model_version,
        record.latency_ms,
        record.request_id,
        None if record.feedback is None else record.feedback.label,
        None if record.feedback is None else record.feedback.recorded_at,
    )


def _record(row: tuple) -> PredictionRecord:
    (id_, timestamp, features, prediction, label, probabilities, model_version, latency_ms, request_id,
     feedback_label, feedback_recorded_at) = row
    return PredictionRecord(
        id_,
        timestamp,
        json.loads(features),
        float(prediction) if label is None else int(prediction),  # NUMERIC keeps 12.0 as 12: the task decides
        label,
        None if probabilities is None else json.loads(probabilities),
        model_version,
        latency_ms,
        request_id=request_id,
        feedback=None if feedback_recorded_at is None else Feedback(feedback_label, feedback_recorded_at),
    )
