"""The Python processes ``cloudviz serve`` runs beside its own: the Lambda workers (``deploy.gateway.lambda_pool``)
and the endpoint (``deploy.endpoint.hosting``).

Each is a new interpreter (no fork of a process with threads) that runs ``serve(FD)`` of a module, FD being its
end of a socket pair wrapped in a ``multiprocessing`` connection. It runs in a session of its own, so a
terminal's Ctrl-C reaches only ``cloudviz serve``, which then ends it; EOF on the connection ends it too. What it
logs crosses as plain records (``plain_record``) and is logged again here (``republish``), so ``serve.log`` has it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path

STOP_SECONDS = 5.0
SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the child imports its module from the same tree


class Child:
    """A child process running ``module.serve(FD)``, with ``environment`` as its whole environment (plus this
    tree on ``PYTHONPATH``), and the connection to it."""

    def __init__(self, module: str, environment: Mapping[str, str]) -> None:
        environment = {**environment, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(SOURCE_ROOT), environment.get("PYTHONPATH")]))}
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-c", f"import sys; from {module} import serve; serve(int(sys.argv[1]))",
                 str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), env=environment, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.connection = Connection(ours.detach())

    def end(self, kill: bool = False) -> None:
        """Send EOF (the child returns) and wait for the process (``kill``: at once), killing it after
        ``STOP_SECONDS``. The connection stays open to read what the child sent before it ended."""
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(self.connection.fileno())) as ours:
            ours.shutdown(socket.SHUT_WR)  # (OSError: the child is gone already)
        if kill:
            self.process.kill()
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def stop(self, kill: bool = False) -> None:
        """``end`` it, then close the connection."""
        self.end(kill)
        self.connection.close()


def plain_record(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` made to cross processes: its message formatted, its traceback as text."""
    plain = logging.makeLogRecord(record.__dict__)
    plain.msg, plain.args = record.getMessage(), None
    if record.exc_info:
        plain.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    plain.exc_info = None
    return plain


def republish(record: logging.LogRecord) -> None:
    """Log a child's record here, through the logger of its name, when that logger takes its level."""
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)
