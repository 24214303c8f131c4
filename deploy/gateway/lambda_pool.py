"""Lambda execution environments for the local gateway: the Lambda routes' handlers in worker processes.

On AWS each request to a function runs in one of its execution environments, one request at a time each. The
gateway can do the same (``ApiGateway(lambda_workers=N)``, ``cloudviz serve --lambda-workers``): a request's
Python work in the handler (validation, boto3, the store write) then runs beside the gateway's and the
endpoint's on the machine's other cores, instead of queueing with them for one interpreter lock
(benchmarks/README.md, "Serving"). Handlers must be module-level functions (a worker imports them by name).

A worker that dies or outlives the route's timeout is replaced; its request is the client's 502, as a crashed
or timed-out function's is on AWS.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from deploy.child_process import Child, republish
from deploy.gateway.events import LambdaContext
from deploy.gateway.lambda_worker import Invocation, Outcome, handler_name
from serving_lambdas import metrics

T = TypeVar("T")


class LambdaFailed(Exception):
    """The function did not answer: it raised (the message is its traceback), crashed or timed out."""


class _Worker(Child):
    """One worker process and the connection to it."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        super().__init__("deploy.gateway.lambda_worker", environment)

    def call(self, invocation: Invocation, timeout: float) -> Outcome:
        self.connection.send(invocation)
        if not self.connection.poll(timeout):
            raise TimeoutError(f"no answer within {timeout:.1f} s")
        return self.connection.recv()


class HandOff(Generic[T]):
    """Free items (workers), handed to waiting requests strictly in their order of arrival. (``queue.Queue`` lets a
    request that arrives as a worker frees up take it before those already waiting, which sends a woken one to the
    back of the line: at 16 connections on two workers the API's p99 was 52 ms with it, 33 ms with this.)"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: collections.deque[T] = collections.deque()
        self._waiting: collections.deque[list] = collections.deque()  # [a held lock, the item handed over]

    def put(self, item: T) -> None:
        with self._lock:
            if not self._waiting:
                self._free.append(item)
                return
            waiter = self._waiting.popleft()
            waiter[1] = item
        waiter[0].release()

    def get(self, timeout: float) -> T | None:
        """The oldest free item, once every request before this one has had its own; None after ``timeout``."""
        with self._lock:
            if self._free and not self._waiting:
                return self._free.popleft()
            waiter = [threading.Lock(), None]
            waiter[0].acquire()
            self._waiting.append(waiter)
        if waiter[0].acquire(timeout=max(timeout, 0)):
            return waiter[1]
        with self._lock:
            if waiter[1] is None:
                self._waiting.remove(waiter)
                return None
        return waiter[1]  # handed over as the wait ran out


class LambdaPool:
    """``size`` worker processes with ``environment`` (the functions' configuration) added to this process's."""

    def __init__(self, size: int, environment: Mapping[str, str]) -> None:
        if size < 1:
            raise ValueError(f"a Lambda pool needs at least one worker, not {size}")
        self.size = size
        self.environment = {**os.environ, **environment}
        self._idle: HandOff[_Worker] = HandOff()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._generation = 0
        self._closed = False

    def start(self) -> LambdaPool:
        for _ in range(self.size):
            self._add(_Worker(self.environment))
        return self

    def invoke(self, handler: Callable[[dict, object], dict], event: dict, context: LambdaContext) -> dict | None:
        """``handler(event, context)`` in a free worker (waiting for one at most the route's timeout): its result;
        LambdaFailed when it raised, crashed or timed out. Its metric documents and log records are published
        here, as the handler's own would be."""
        worker = self._free_worker(context)
        try:
            outcome = worker.call(Invocation(handler_name(handler), event, context, self._generation),
                                  context.get_remaining_time_in_millis() / 1000)
        except Exception as error:  # it crashed, timed out or answered nonsense: never reused
            self._replace(worker)
            reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            raise LambdaFailed(f"{context.function_name}'s execution environment ended ({reason})") from None
        self._idle.put(worker)
        _publish(outcome)
        if outcome.error is not None:
            raise LambdaFailed(outcome.error)
        return outcome.result  # what the handler returned, checked by the gateway as a proxy response

    def _free_worker(self, context: LambdaContext) -> _Worker:
        """A free worker that is alive (one that ended while idle is replaced first), within the timeout."""
        while True:
            worker = self._idle.get(context.get_remaining_time_in_millis() / 1000)
            if worker is None:
                raise LambdaFailed(f"no execution environment of {context.function_name} was free within the"
                                   f" function's timeout")
            if worker.process.poll() is None:
                return worker
            self._replace(worker)

    def pids(self) -> list[int]:
        """The worker processes' ids, now."""
        with self._lock:
            return [worker.process.pid for worker in self._workers]

    def forget_cached_state(self) -> None:
        """What the handlers cached (the served version) is stale: each worker forgets it before its next event."""
        self._generation += 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()

    def _add(self, worker: _Worker) -> None:
        with self._lock:
            if self._closed:
                worker.stop(kill=True)
                return
            self._workers.append(worker)
        self._idle.put(worker)

    def _replace(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
        worker.stop(kill=True)
        if not self._closed:  # a request failing as the pool closes is not replaced
            self._add(_Worker(self.environment))


def _publish(outcome: Outcome) -> None:
    for document in outcome.documents:
        metrics.publish(document)
    for record in outcome.records:
        republish(record)
