"""One JSON line per request, like an API Gateway access log with ``$context`` variables, appended to a file that
is rotated by size (10 MiB, five old files kept) so a long-running server cannot fill the disk."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

from pipelines.json_logs import BACKUPS, MAX_BYTES
from pipelines.state import OwnerOnlyRotatingFileHandler


class AccessLog:
    """Thread-safe: each line is written whole under a lock and flushed, so ``tail -f`` sees complete lines. The
    file's size is counted here rather than asked of the file system per line, as the logging handler's own
    rollover check does (three system calls per request); its rotation is the handler's."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self._handler = OwnerOnlyRotatingFileHandler(path, maxBytes=max_bytes, backupCount=BACKUPS, encoding="utf-8")
        self._lock = threading.Lock()
        self._size = self._handler.stream.seek(0, 2)

    def write(self, record: dict) -> None:
        line = json.dumps({"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **record}) + "\n"
        size = len(line.encode())
        with self._lock:
            if self._size and self._size + size > self.max_bytes:
                self._handler.doRollover()
                self._size = 0
            self._handler.stream.write(line)
            self._handler.stream.flush()
            self._size += size

    def close(self) -> None:
        self._handler.close()
