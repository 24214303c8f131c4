"""The local API's key: ``CLOUDVIZ_API_KEY`` when set, else one generated once and kept in the state home."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pipelines.errors import UserError

MIN_LENGTH = 20  # API Gateway's minimum for an API key value


def api_key(key_file: Path) -> str:
    configured = os.environ.get("CLOUDVIZ_API_KEY")
    if configured is not None:
        if len(configured) < MIN_LENGTH:
            raise UserError(f"CLOUDVIZ_API_KEY must be at least {MIN_LENGTH} characters, as API Gateway requires")
        return configured
    if key_file.exists():
        return key_file.read_text(encoding="utf-8").strip()
    key = secrets.token_urlsafe(30)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    # Created readable by its owner only, then moved into place, so no reader ever sees a partial key.
    temporary = key_file.with_name(f".{key_file.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    os.replace(temporary, key_file)
    return key
