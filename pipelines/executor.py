"""Runs a step's script as ``__main__`` in a child process, its output going to a log file.

Steps are forked from a fork server: a clean interpreter started once per runner process that
has imported the libraries every step uses (numpy, pyarrow, xgboost: over a second of start-up),
as a warm container would have. Forking from the runner itself would be quicker to set up but
unsafe: a runner embedded in a notebook or a test session that has already trained a model holds
an OpenMP thread pool, and a forked child that trains again waits forever for those threads.
The child has its own memory and exit status: a crashing or leaking step cannot take the runner
down, and a step's memory is returned when it ends.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

WARM_IMPORTS = ["numpy", "pyarrow", "pyarrow.csv", "pyarrow.compute", "xgboost"]

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(WARM_IMPORTS)


def _child(script: str, argv: list[str], log_path: str) -> None:
    code = 1
    try:
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.argv = [script, *argv]
        try:
            runpy.run_path(script, run_name="__main__")
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
    process = _context.Process(target=_child, args=(str(script), argv, str(log_path)))
    process.start()
    try:
        while process.exitcode is None:
            on_tick()
            process.join(0.1)
        return process.exitcode
    except BaseException:
        # The runner was interrupted: no step outlives its run.
        process.terminate()
        process.join()
        raise
