"""Runs a step's script as ``__main__`` in a child process, its output going to a log file.

The child is forked from the runner, so libraries the runner has imported once (numpy,
pyarrow, xgboost: over a second of start-up) are already loaded in every step, as they would
be in a warm container. The child still has its own memory and exit status: a crashing or
leaking step cannot take the runner down, and a step's memory is returned when it ends.
"""

from __future__ import annotations

import importlib
import os
import runpy
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

WARM_IMPORTS = ("numpy", "pyarrow", "pyarrow.csv", "pyarrow.compute", "xgboost")


def warm_up() -> None:
    """Import the libraries every step uses, once, before the first fork."""
    for module in WARM_IMPORTS:
        importlib.import_module(module)


def _child(script: Path, argv: list[str], log_path: Path) -> None:
    code = 1
    try:
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        # The parent's streams may not be fds 1 and 2 (pytest's capture, a notebook kernel):
        # the step writes to its log whatever the runner was embedded in.
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.argv = [str(script), *argv]
        try:
            runpy.run_path(str(script), run_name="__main__")
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            if isinstance(exit_.code, str):
                print(exit_.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_script(
    script: Path, argv: list[str], log_path: Path, on_tick: Callable[[], None] = lambda: None
) -> int:
    """Exit code of the script (negative: killed by that signal); ``on_tick`` runs ~10x a second."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(script, argv, log_path)
    try:
        while True:
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                return os.waitstatus_to_exitcode(status)
            on_tick()
            time.sleep(0.1)
    except BaseException:
        _stop(pid)
        raise


def _stop(pid: int) -> None:
    """Ends the child when the runner is interrupted, so no step outlives its run."""
    try:
        os.kill(pid, 15)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
