"""Where ``cloudviz serve`` hosts its endpoint: in a process of its own (``EndpointProcess``), as a SageMaker
endpoint runs apart from the functions that call it, or in the serve process itself (``InProcessEndpoint``: tests,
debugging). Both serve the same ``EndpointServer`` on 127.0.0.1 and take the same calls: ``start`` with the first
model, ``swap`` in another (blue/green: ``SwapRefused`` leaves the live one), ``close``, and a ``metrics`` object
whose Prometheus ``registry`` holds the endpoint's counts.

In its own process, the endpoint's Python work (HTTP, encoding) no longer queues for the serve process's
interpreter lock behind the gateway's: at 16 connections on two cores the API answers about a fifth more
requests per second (benchmarks/README.md, "Serving").
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from deploy.child_process import Child, republish
from deploy.endpoint.errors import SwapRefused
from deploy.endpoint.model import ServingModel
from deploy.endpoint.server import EndpointServer
from deploy.endpoint.slot import ModelSlot
from deploy.http11 import Limits
from deploy.monitoring.metrics import EndpointMetrics

START_SECONDS = 120.0  # a new interpreter imports numpy and XGBoost, then loads the model
SWAP_SECONDS = 60.0  # a swap unpickles and probes a model
METRICS_SECONDS = 10.0


class EndpointProcessError(Exception):
    """The endpoint's process did not start, ended, or did not answer."""


@dataclass(frozen=True)
class Boot:
    """What the endpoint's process serves: sent as its first message."""

    name: str
    port: int
    limits: Limits
    model: ServingModel


class _Hosted:
    """An endpoint's name, its port (0 until first started: a free one, then kept) and its connection limits."""

    def __init__(self, name: str, port: int = 0, limits: Limits | None = None) -> None:
        self.name = name
        self.port = port
        self.limits = limits or Limits()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class InProcessEndpoint(_Hosted):
    """The endpoint served by threads of this process."""

    def __init__(self, name: str, port: int = 0, limits: Limits | None = None) -> None:
        super().__init__(name, port, limits)
        self.metrics = EndpointMetrics(name)
        self.slot = ModelSlot()
        self.server: EndpointServer | None = None

    @property
    def version(self) -> int | None:
        """The version it serves."""
        return None if self.slot.current is None else self.slot.current.version

    @property
    def exit_status(self) -> int | None:
        return None  # it lives as long as this process

    def start(self, model: ServingModel | None = None) -> InProcessEndpoint:
        """Serve ``model`` (None: the one served before a ``close``) on the port (0 at first: a free one, then
        kept); OSError when it cannot listen."""
        if model is not None:
            self.swap(model)
        self.server = EndpointServer(self.slot, name=self.name, port=self.port, metrics=self.metrics)
        self.server.limits = self.limits
        self.server.start()
        self.port = self.server.port
        return self

    def swap(self, model: ServingModel) -> None:
        self.slot.swap(model)
        self.metrics.set_live_version(model.version)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


class _PulledMetrics:
    """A Prometheus collector answering with the metric families the endpoint's process holds, fetched at each
    collection (none while it is not running)."""

    def __init__(self, endpoint: EndpointProcess) -> None:
        self.endpoint = endpoint

    def collect(self) -> list:
        try:
            return self.endpoint.call(("metrics",), METRICS_SECONDS)
        except EndpointProcessError:
            return []


class PulledEndpointMetrics:
    """The endpoint's metrics, read from its process whenever the registry is collected."""

    def __init__(self, endpoint: EndpointProcess) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_PulledMetrics(endpoint))


class EndpointProcess(_Hosted):
    """The endpoint served by a process of its own (``deploy.endpoint.hosting_main``)."""

    def __init__(self, name: str, port: int = 0, limits: Limits | None = None) -> None:
        super().__init__(name, port, limits)
        self.metrics = PulledEndpointMetrics(self)
        self.model: ServingModel | None = None  # the one it serves (loaded here too, to start a new process with)
        self._child: Child | None = None
        self._receiver: threading.Thread | None = None
        self._calls = threading.Lock()  # one call at a time: each waits for its own reply
        self._replies: queue.Queue = queue.Queue()

    @property
    def version(self) -> int | None:
        return None if self.model is None else self.model.version

    @property
    def pid(self) -> int | None:
        return None if self._child is None else self._child.process.pid

    @property
    def exit_status(self) -> int | None:
        """The exit status of its process (-N: killed by signal N) if it ended without being closed (also when it
        could not start), else None."""
        return None if self._child is None else self._child.process.poll()

    def start(self, model: ServingModel | None = None) -> EndpointProcess:
        """Start a process serving ``model`` (None: the one served last) on the port (0 at first: a free one,
        then kept); OSError when it cannot listen, EndpointProcessError when it does not start (its ended process
        is kept until ``close``: ``exit_status`` says to try again)."""
        self.close()
        self.model = model or self.model
        if self.model is None:
            raise ValueError("the endpoint's first start needs a model")
        self._replies = queue.Queue()
        self._child = Child("deploy.endpoint.hosting_main", os.environ)
        self._receiver = threading.Thread(target=self._receive, args=(self._child, self._replies), daemon=True,
                                          name=f"endpoint-{self.name}-process")
        self._receiver.start()
        with self._calls:
            self._child.connection.send(Boot(self.name, self.port, self.limits, self.model))
            answer = self._reply(START_SECONDS)
        if isinstance(answer, OSError):
            raise answer
        self.port = answer
        return self

    def swap(self, model: ServingModel) -> None:
        """Serve ``model`` from now on; SwapRefused (the live one stays) when it fails its probe."""
        refused = self.call(("swap", model), SWAP_SECONDS)
        if refused is not None:
            raise SwapRefused(refused)
        self.model = model

    def call(self, request: tuple, timeout: float) -> object:
        """Send ``request`` and wait for its answer; EndpointProcessError when the process is gone or silent."""
        with self._calls:
            if self._child is None:
                raise EndpointProcessError(f"the endpoint {self.name}'s process is not running")
            try:
                self._child.connection.send(request)
            except OSError as error:
                raise EndpointProcessError(f"the endpoint {self.name}'s process is gone ({error})") from None
            return self._reply(timeout)

    def close(self) -> None:
        """Stop the process (EOF on its connection: it stops serving, then ends)."""
        child, self._child = self._child, None
        if child is not None:
            child.end()
            self._receiver.join()  # it reads until the process's end of the connection closes
            child.connection.close()

    def _reply(self, timeout: float) -> object:
        try:
            kind, value = self._replies.get(timeout=timeout)
        except queue.Empty:
            # Hung: killed, so that its late answer is never taken for the next call's (serve starts it again).
            self._child.process.kill()
            raise EndpointProcessError(f"the endpoint {self.name}'s process did not answer within {timeout:.0f} s"
                                       " and was killed") from None
        if kind == "ended":
            raise EndpointProcessError(f"the endpoint {self.name}'s process ended")
        if kind == "failed":
            raise EndpointProcessError(f"the endpoint {self.name}'s process failed: {value}")
        return value

    @staticmethod
    def _receive(child: Child, replies: queue.Queue) -> None:
        """The process's messages: log records are logged here, answers go to the caller waiting for them."""
        while True:
            try:
                kind, value = child.connection.recv()
            except (EOFError, OSError):
                replies.put(("ended", None))
                return
            if kind == "log":
                republish(value)
            else:
                replies.put((kind, value))
