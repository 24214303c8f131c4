"""Copies of the session's trained state homes, for tests that change what they hold."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pipelines.state import StateHome


def point_into_copy(source: Path, copy: Path) -> StateHome:
    """Make a copied state home self-contained: its run records and registered artifacts name files in the copy,
    not in ``source`` (a test that changes or deletes one then leaves the session's home alone)."""
    for record in (copy / "runs").glob("*/run.json"):
        record.write_text(record.read_text(encoding="utf-8").replace(str(source), str(copy)), encoding="utf-8")
    home = StateHome(copy)
    with sqlite3.connect(home.registry_db) as db:
        db.execute("UPDATE model_packages SET artifacts = replace(artifacts, ?, ?),"
                   " model_data_url = replace(model_data_url, ?, ?)", (str(source), str(copy)) * 2)
    db.close()
    return home
