"""One JSON line per request, like an API Gateway access log with ``$context`` variables, appended to a file that
is rotated by size (10 MiB, five old files kept) so a long-running server cannot fill the disk."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from pipelines.json_logs import BACKUPS, MAX_BYTES
from pipelines.state import OwnerOnlyRotatingFileHandler


class AccessLog:
    """Thread-safe: the handler writes each line whole under its lock and flushes it, so ``tail -f`` sees
    complete lines."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handler = OwnerOnlyRotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")

    def write(self, record: dict) -> None:
        line = json.dumps({"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **record})
        self._handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO, "levelname": "INFO"}))

    def close(self) -> None:
        self._handler.close()
