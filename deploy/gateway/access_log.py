"""One JSON line per request, like an API Gateway access log with ``$context`` variables, appended to a file."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path


class AccessLog:
    """Thread-safe: each line is written whole under a lock and flushed, so ``tail -f`` sees complete lines."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        line = json.dumps({"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **record})
        with self._lock:
            self._file.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            self._file.close()
