"""Running a step's script in its own folder, one process per host, each with its own log."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from pipelines import executor
from pipelines.runs import RunRecord

USER_ERROR_EXIT = 2


class StepFailed(Exception):
    """A step ended without success; ``retryable`` says whether its retry policy applies."""

    def __init__(self, reason: str, retryable: bool = False) -> None:
        super().__init__(reason)
        self.retryable = retryable


def run_scripts(
    record: RunRecord, name: str, script: Path, argv: dict[str, list[str]], on_tick: Callable[[], None]
) -> None:
    """The script once per host, side by side, each with its own log (``attempt-<n>-<host>.log``; one host:
    ``attempt-<n>.log``); the step's log is the first host's. A failure not caused by the input
    (any exit status but 2) is retryable."""
    state = record.steps[name]
    attempt = record.folder / "steps" / name / "logs" / f"attempt-{state.attempts}"
    logs = {host: Path(f"{attempt}-{host}.log" if len(argv) > 1 else f"{attempt}.log") for host in argv}
    state.log = str(next(iter(logs.values())))
    record.save()
    codes = executor.run_scripts([(script, args, logs[host]) for host, args in argv.items()], on_tick=on_tick)
    for log, code in zip(logs.values(), codes, strict=True):
        if code:
            raise StepFailed(failure_reason(log, code), retryable=code != USER_ERROR_EXIT)


def fresh_step_folder(record: RunRecord, name: str) -> Path:
    """The step's working folder, emptied of any earlier attempt (its logs are kept)."""
    folder = record.folder / "steps" / name
    for child in ("processing", "ml", "output"):
        shutil.rmtree(folder / child, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def link(source: Path, target: Path) -> None:
    """Make ``source`` visible at ``target`` without copying: a file goes inside the folder."""
    if source.is_file():
        target.mkdir(parents=True, exist_ok=True)
        (target / source.name).symlink_to(source)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source, target_is_directory=True)


def failure_reason(log: Path, code: int) -> str:
    """The script's own ``error:`` line when it gave one; otherwise how it ended, and where to look."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
    last = lines[-1].strip() if lines else "no output"
    return f"{how} ({last}); log: {log}"
