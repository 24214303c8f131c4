"""predictions.db files as earlier releases wrote them, for the migration tests of the SQLite store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from serving_lambdas.records import PredictionRecord


def write_old_predictions_db(path: Path, record: PredictionRecord, columns: str, *extra: object) -> None:
    """A predictions table of ``columns`` (its SQL column definitions) holding ``record`` as a virginica prediction
    of version 3: the eight values every release stored, then ``extra`` for the columns added later."""
    with sqlite3.connect(path) as connection:
        connection.execute(f"CREATE TABLE predictions ({columns}) WITHOUT ROWID")
        values = (record.id, record.timestamp, json.dumps(record.features), 1, "virginica",
                  json.dumps(record.probabilities), 3, 1.25, *extra)
        connection.execute(f"INSERT INTO predictions VALUES ({', '.join('?' * len(values))})", values)
