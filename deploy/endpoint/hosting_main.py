"""The endpoint's own process (``deploy.endpoint.hosting.EndpointProcess``): serves the model it is sent.

Its first message is a ``Boot``; it answers with the port it listens on (or the OSError that kept it from
listening). Then each request gets one reply: ``("swap", model)`` None, or why the model was refused;
``("metrics",)`` the endpoint's metric families. What it logs goes to the serve process as ``("log", record)``.
EOF on the connection stops the server and ends the process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import traceback
from multiprocessing.connection import Connection

from deploy.child_process import plain_record
from deploy.endpoint.errors import SwapRefused
from deploy.endpoint.hosting import Boot, InProcessEndpoint

logger = logging.getLogger(__name__)


class _Sender:
    """Sends whole messages from any thread (the server's threads log while a reply is being sent)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._lock = threading.Lock()

    def send(self, kind: str, value: object) -> None:
        with self._lock:
            self.connection.send((kind, value))


class _Forwarder(logging.Handler):
    def __init__(self, sender: _Sender) -> None:
        super().__init__(logging.INFO)
        self.sender = sender

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(OSError):  # the serve process is gone: this one is about to end too
            self.sender.send("log", plain_record(record))


def answer(endpoint: InProcessEndpoint, request: tuple) -> object:
    if request[0] == "swap":
        try:
            endpoint.swap(request[1])
        except SwapRefused as error:
            return str(error)
        return None
    if request[0] == "metrics":
        return list(endpoint.metrics.registry.collect())
    raise ValueError(f"unknown request {request[0]!r}")


def run(connection: Connection) -> None:
    """Serve what the first message says until the serve process closes the connection."""
    sender = _Sender(connection)
    root = logging.getLogger()
    root.addHandler(_Forwarder(sender))
    root.setLevel(logging.INFO)  # the serve log's level
    try:
        boot: Boot = connection.recv()
    except EOFError:
        return
    endpoint = InProcessEndpoint(boot.name, boot.port, boot.limits)
    try:
        endpoint.start(boot.model)
    except OSError as error:
        sender.send("reply", OSError(error.errno, error.strerror))
        return
    except Exception:
        sender.send("failed", traceback.format_exc())
        return
    sender.send("reply", endpoint.port)
    logger.info("endpoint %s: process %d serves version %s on 127.0.0.1:%d", boot.name, os.getpid(),
                boot.model.version, endpoint.port)
    try:
        while True:
            try:
                request = connection.recv()
            except EOFError:
                return
            try:
                sender.send("reply", answer(endpoint, request))
            except Exception:
                sender.send("failed", traceback.format_exc())
    finally:
        endpoint.close()


def serve(descriptor: int) -> None:
    """The process's entry point: serve the connection on ``descriptor``."""
    run(Connection(descriptor))
