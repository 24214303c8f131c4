"""Runs a step's script as ``__main__`` in a child process, its output going to a log file.

Children fork from a server that imported ``WARM_IMPORTS`` once, like a warm container; a crash spares the runner.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import sys
import traceback
from collections.abc import Callable, Sequence
from multiprocessing import connection
from pathlib import Path

WARM_IMPORTS = ["numpy", "pyarrow", "pyarrow.csv", "pyarrow.compute", "xgboost"]

# Not the runner itself: a runner that has trained (a notebook, a test session) holds an OpenMP thread pool, and
# a forked child that trains again waits forever for those threads.
_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(WARM_IMPORTS)


def _child(script: str, argv: list[str], log_path: str, cpus: set[int] | None = None) -> None:
    code = 1
    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
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


def cpu_shares(jobs: int) -> list[set[int] | None]:
    """This process's CPUs dealt to ``jobs`` processes run side by side (None: one job, all of them).

    Emulated instances each get their own cores, as on SageMaker: on shared cores, XGBoost's OpenMP threads
    spin while their process waits for the others at every collective operation, and starve them.
    """
    if jobs == 1:
        return [None]
    cpus = sorted(os.sched_getaffinity(0))
    return [set(cpus[i::jobs]) or {cpus[i % len(cpus)]} for i in range(jobs)]


def run_scripts(
    jobs: Sequence[tuple[Path, list[str], Path]], on_tick: Callable[[], None] = lambda: None
) -> list[int | None]:
    """Run ``(script, argv, log)`` jobs side by side, as the hosts of one training job, each on its share of
    the CPUs (``cpu_shares``): each one's exit code (negative: killed by that signal); ``on_tick`` runs ~10x
    a second. The jobs wait for each other, so when one fails the
    others are stopped: their code is None.
    """
    processes = []
    try:
        for (script, argv, log_path), share in zip(jobs, cpu_shares(len(jobs)), strict=True):
            log_path.parent.mkdir(parents=True, exist_ok=True)
            process = _context.Process(target=_child, args=(str(script), argv, str(log_path), share))
            process.start()
            processes.append(process)
        stopped: set[int] = set()
        while any(process.exitcode is None for process in processes):
            on_tick()
            connection.wait([process.sentinel for process in processes if process.exitcode is None], timeout=0.1)
            if any(process.exitcode for process in processes):
                for index, process in enumerate(processes):
                    if process.exitcode is None:
                        stopped.add(index)
                        process.terminate()
                        process.join()
        return [None if index in stopped else process.exitcode for index, process in enumerate(processes)]
    except BaseException:
        # The runner was interrupted: no step outlives its run.
        for process in processes:
            process.terminate()
            process.join()
        raise
