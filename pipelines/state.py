"""Where local state lives: the state home (``CLOUDVIZ_HOME``, default ``./.cloudviz``), readable by its owner only.

It holds every prediction, the training data and the API key, so no other local user may read it: the folder is
0700, and its databases, logs and key are created 0600 whatever the process's umask (the ``cloudviz`` command also
sets the umask to 077, so every other file and folder it makes below the home is owner-only too).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import IO, overload

logger = logging.getLogger(__name__)

OWNER_ONLY_UMASK = 0o077
OWNER_ONLY_FILE = 0o600
OWNER_ONLY_FOLDER = 0o700


class _Below:
    """A file or folder of the state home, read as an attribute: ``home.runs`` is ``home.root / "runs"``."""

    def __init__(self, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, home: None, owner: type) -> _Below: ...
    @overload
    def __get__(self, home: StateHome, owner: type) -> Path: ...
    def __get__(self, home: StateHome | None, owner: type) -> Path | _Below:
        return self if home is None else home.root / self.name


@dataclass(frozen=True)
class StateHome:
    """Runs, the step cache, the model registry, bundled data and serving state, all below one folder."""

    root: Path

    def __post_init__(self) -> None:
        """The home exists, owner-only, before anything is written below it."""
        _make_owner_only(self.root)

    @classmethod
    def from_env(cls) -> StateHome:
        return cls(Path(os.environ.get("CLOUDVIZ_HOME", ".cloudviz")).resolve())

    runs = _Below("runs")
    cache = _Below("cache")
    data = _Below("data")
    registry_db = _Below("registry.db")
    schedules_db = _Below("schedules.db")  # the schedules' history: pipelines.scheduling.history
    deployments = _Below("deployments")
    api_key_file = _Below("api-key")
    logs = _Below("logs")
    endpoints = _Below("endpoints")  # each local endpoint's serving state: deploy.endpoint_state
    datasets = _Below("datasets")  # data sets and their versions: pipelines.data.versions


def write_json_atomic(path: Path, document: dict) -> None:
    """Readers never see a half-written file: write beside it, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def use_owner_only_umask() -> None:
    """Every file and folder this process (and what it starts) creates is its owner's only: called first thing by
    the ``cloudviz`` command, whose files all belong to the state home (or are asked for by path)."""
    os.umask(OWNER_ONLY_UMASK)


def owner_only_opener(path: str | os.PathLike[str], flags: int) -> int:
    """``open(..., opener=owner_only_opener)``: a file created 0600 from its first instant, whatever the umask."""
    return os.open(path, flags, OWNER_ONLY_FILE)


def create_owner_only(path: Path) -> None:
    """Create ``path`` empty and 0600 if it does not exist (an existing file is left as it is). Before
    ``sqlite3.connect``: SQLite keeps the mode of a file it finds and gives its -wal and -shm files that mode."""
    os.close(owner_only_opener(path, os.O_RDONLY | os.O_CREAT))


class OwnerOnlyRotatingFileHandler(RotatingFileHandler):
    """A size-rotated log whose file, and each new one a rotation starts, is created 0600."""

    def _open(self) -> IO[str]:
        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors,  # noqa: SIM115
                    opener=owner_only_opener)


def _make_owner_only(root: Path) -> None:
    """Create the home 0700; a home an older version left open to others is closed once, with all it holds."""
    root.mkdir(mode=OWNER_ONLY_FOLDER, parents=True, exist_ok=True)
    mode = stat.S_IMODE(root.stat().st_mode)
    if not mode & ~OWNER_ONLY_FOLDER:
        return
    for folder, _, files in os.walk(root):
        os.chmod(folder, OWNER_ONLY_FOLDER)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):  # a link's own mode means nothing; its target may be outside the home
                os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) & OWNER_ONLY_FOLDER)
    logger.warning("the state home %s was readable by other users (mode %04o): made it and everything in it"
                   " readable by its owner only", root, mode)
