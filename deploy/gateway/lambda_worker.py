"""One Lambda execution environment of the local gateway: a process that runs handlers one event at a time.

Started by ``deploy.gateway.lambda_pool`` (``serve(FD)`` in a new interpreter), with the functions'
configuration in its environment variables, as Lambda starts a function's runtime. Over the connection on file
descriptor FD it receives ``Invocation``s and answers each with an ``Outcome``: the handler's result (or its
traceback), the metric documents (EMF) it emitted and the records it logged, which the gateway publishes as its
own, as CloudWatch Logs would. EOF on the connection ends the process.
"""

from __future__ import annotations

import importlib
import logging
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from deploy.child_process import plain_record
from deploy.gateway.events import LambdaContext
from serving_lambdas import metrics
from serving_lambdas.served_version import forget_served_versions


@dataclass(frozen=True)
class Invocation:
    handler: str  # "module:qualified_name"
    event: dict
    context: LambdaContext
    generation: int  # raised by the gateway when what the handlers cached is stale (a model swap)


@dataclass
class Outcome:
    result: dict | None = None
    error: str | None = None  # the handler's traceback, when it raised
    documents: list[dict] = field(default_factory=list)
    records: list[logging.LogRecord] = field(default_factory=list)


def handler_name(handler: object) -> str:
    """How an invocation names a module-level ``handler`` (a worker imports it by this name)."""
    return f"{handler.__module__}:{handler.__qualname__}"


class _Collector(logging.Handler):
    """Keeps the records of one invocation, made plain to cross processes."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(plain_record(record))


def _resolve(name: str) -> object:
    module, _, qualified = name.partition(":")
    found: object = importlib.import_module(module)
    for part in qualified.split("."):
        found = getattr(found, part)
    return found


def run(connection: Connection) -> None:
    """Serve invocations until the gateway closes the connection."""
    collector = _Collector()
    root = logging.getLogger()
    root.addHandler(collector)
    root.setLevel(logging.INFO)  # the serve log's level: a debug line a request would cross processes for nothing
    outcome = Outcome()
    metrics.set_sink(lambda document: outcome.documents.append(document))
    generation = 0
    while True:
        try:
            invocation: Invocation = connection.recv()
        except EOFError:
            return
        if invocation.generation != generation:
            forget_served_versions()
            generation = invocation.generation
        outcome = Outcome()
        collector.records = outcome.records
        try:
            outcome.result = _resolve(invocation.handler)(invocation.event, invocation.context)
        except Exception:  # the gateway answers 502 and logs it, as API Gateway does for a failing function
            outcome.error = traceback.format_exc()
        connection.send(outcome)


def serve(descriptor: int) -> None:
    """The worker process's entry point: serve the connection on ``descriptor``."""
    run(Connection(descriptor))
