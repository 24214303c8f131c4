"""The SQLite files of the state home (the registry, the alarm history): opened the same way everywhere."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.state import create_owner_only


def create(path: Path, schema: str) -> None:
    """Create the file's folder, the file owner-only, and its tables (the schema is ``CREATE ... IF NOT EXISTS``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    create_owner_only(path)
    with connect(path) as db:
        db.executescript(schema)


@contextmanager
def connect(path: Path, foreign_keys: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection in autocommit mode on a WAL journal (readers never wait for a writer), rows by name,
    waiting up to 30 s for another process's write lock; closed on exit."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        if foreign_keys:
            db.execute("PRAGMA foreign_keys=ON")
        db.row_factory = sqlite3.Row
        yield db
    finally:
        db.close()


@contextmanager
def transaction(path: Path, foreign_keys: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection inside ``BEGIN IMMEDIATE``: it holds the write lock from its first read, so no other process
    writes between what it reads and what it writes. Committed on exit, rolled back on an error."""
    with connect(path, foreign_keys) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
