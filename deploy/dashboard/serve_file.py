"""``serve.json`` in an endpoint's folder: where its running ``cloudviz serve`` answers, so ``cloudviz dashboard``
can find it.

``cloudviz serve`` writes the file once it listens and removes it when it stops. A serve that was killed
leaves it behind; its pid then names no process (or one that does not answer at the URL), which
``running_serve`` tells apart from a live one.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipelines.errors import UserError
from pipelines.runs import process_alive
from pipelines.state import write_json_atomic


@dataclass(frozen=True)
class ServeRecord:
    api_url: str
    endpoint_url: str
    pid: int
    group: str
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def dashboard_url(self) -> str:
        return f"{self.api_url}/dashboard"

    def to_dict(self) -> dict:
        return asdict(self)


def record_serve(path: Path, record: ServeRecord) -> None:
    write_json_atomic(path, record.to_dict())


def forget_serve(path: Path, record: ServeRecord) -> None:
    """Remove the file if it still describes ``record`` (a serve started since on the same home keeps its own)."""
    try:
        if json.loads(path.read_text(encoding="utf-8")) == record.to_dict():
            path.unlink()
    except (OSError, ValueError):
        pass


def running_serve(path: Path, start: str = "cloudviz serve") -> ServeRecord:
    """The record of the serve of ``path`` that is running; a one-line UserError when there is none, saying to
    ``start`` one (the command that serves its endpoint)."""
    hint = f"start it with `{start}`"
    if not path.is_file():
        raise UserError(f"cloudviz serve is not running on this state home (no {path}): {hint}")
    try:
        record = ServeRecord(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as error:
        raise UserError(f"{path} is not a serve record ({error}): {hint}") from None
    if not process_alive(record.pid):
        raise UserError(f"cloudviz serve is not running: {path} names process {record.pid}, which has exited;"
                        f" {hint}")
    return record


def serve_if_running(path: Path) -> ServeRecord | None:
    """The record of the serve of ``path`` if one is running, else None."""
    try:
        return running_serve(path)
    except UserError:
        return None


def check_answers(record: ServeRecord, timeout: float = 5.0) -> None:
    """Raise a one-line UserError unless the serve's dashboard answers."""
    try:
        # No proxy: the serve is on this machine, whatever http_proxy says.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(record.dashboard_url, timeout=timeout) as response:
            response.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        message = f"cloudviz serve (process {record.pid}) does not answer at {record.dashboard_url}: {reason}"
        raise UserError(message) from None
