"""Log files of one JSON object a line, rotated by size: what an on-call engineer greps and a log shipper parses.

Fields given to a log call as ``extra`` (run id, step, status, request id, latency, model version, ...) become
keys of the line beside the time, level, logger and message.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path

from pipelines.state import OwnerOnlyRotatingFileHandler

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **{key: value for key, value in vars(record).items() if key not in STANDARD_ATTRIBUTES},
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


_installed: dict[str, RotatingFileHandler] = {}  # logger name -> the file handler log_to_file gave it


def log_to_file(
    path: Path, *loggers: str, level: int = logging.INFO, max_bytes: int = MAX_BYTES
) -> RotatingFileHandler:
    """Send the named loggers' records at ``level`` and above to ``path`` as JSON lines (rotated at 10 MiB,
    five old files kept). Called again for a logger (another command in the same process), the new file
    replaces the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = OwnerOnlyRotatingFileHandler(path, maxBytes=max_bytes, backupCount=BACKUPS, encoding="utf-8")
    handler.setFormatter(JsonLineFormatter())
    for name in loggers:
        logger = logging.getLogger(name)
        previous = _installed.pop(name, None)
        if previous is not None:
            logger.removeHandler(previous)
            previous.close()
        logger.addHandler(handler)
        logger.setLevel(min(logger.level or level, level))
        _installed[name] = handler
    return handler
