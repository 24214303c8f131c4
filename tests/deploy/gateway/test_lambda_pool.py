"""The gateway's Lambda workers (``ApiGateway(lambda_workers=N)``): handlers in their own processes, with the
functions' configuration, their logs and metrics published by the gateway, and failing, crashing or hanging
workers answered 502 and replaced."""

from __future__ import annotations

import http.client
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pool_handlers
import psutil
import pytest

from deploy.gateway import ApiGateway, LambdaRoute
from deploy.gateway.lambda_pool import HandOff
from serving_lambdas import metrics

KEY = "pool-test-key-0123456789abcdef"
ROUTES = [
    LambdaRoute("POST", "/where", pool_handlers.where, "pool-where"),
    LambdaRoute("POST", "/fails", pool_handlers.fails, "pool-fails"),
    LambdaRoute("POST", "/crashes", pool_handlers.crashes, "pool-crashes"),
    LambdaRoute("POST", "/hangs", pool_handlers.hangs, "pool-hangs", timeout_seconds=1.0),
]


@pytest.fixture(autouse=True)
def handlers_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers find ``pool_handlers`` where pytest found it."""
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(pool_handlers.__file__))


@pytest.fixture
def gateway() -> Iterator[ApiGateway]:
    documents: list[dict] = []
    metrics.set_sink(documents.append)
    server = ApiGateway(ROUTES, KEY, environment={"POOL_TEST_SETTING": "from the gateway"}, lambda_workers=2)
    server.documents = documents
    try:
        yield server.start()
    finally:
        server.close()
        metrics.set_sink(None)


def post(gateway: ApiGateway, path: str, body: str = "{}") -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    connection.request("POST", path, body, {"x-api-key": KEY, "Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def worker_pids(gateway: ApiGateway) -> set[int]:
    """The gateway's workers, each a live child process of this one."""
    assert gateway.lambda_pool is not None
    pids = set(gateway.lambda_pool.pids())
    children = {child.pid for child in psutil.Process().children() if child.status() != psutil.STATUS_ZOMBIE}
    assert pids <= children
    return pids


def test_handlers_run_in_the_workers_with_the_configuration_and_their_logs_and_metrics_reach_the_gateway(
    gateway: ApiGateway, caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.WARNING, "tests.pool_handlers")
    with ThreadPoolExecutor(4) as clients:
        answers = list(clients.map(lambda number: post(gateway, "/where", json.dumps({"n": number})), range(40)))
    assert {status for status, _ in answers} == {200}
    assert sorted(json.loads(answer["body"])["n"] for _, answer in answers) == list(range(40))
    assert {answer["setting"] for _, answer in answers} == {"from the gateway"}
    pids = {answer["pid"] for _, answer in answers}
    assert os.getpid() not in pids
    assert pids <= worker_pids(gateway) and len(worker_pids(gateway)) == 2
    served = [record for record in caplog.records if record.name == "tests.pool_handlers"]
    assert len(served) == 40 and {record.process for record in served} == pids
    assert sum(document["PoolTestCalls"] for document in gateway.documents) == 40


def test_a_failing_handler_is_a_502_with_its_traceback_logged_and_its_worker_kept(
    gateway: ApiGateway, caplog: pytest.LogCaptureFixture,
):
    before = worker_pids(gateway)
    assert post(gateway, "/fails") == (502, {"message": "Internal server error"})
    assert "RuntimeError: the handler's own failure" in caplog.text
    assert post(gateway, "/where")[0] == 200
    assert worker_pids(gateway) == before


@pytest.mark.parametrize("path", ["/crashes", "/hangs"])
def test_a_worker_that_crashes_or_outlives_the_timeout_is_a_502_and_is_replaced(
    gateway: ApiGateway, caplog: pytest.LogCaptureFixture, path: str,
):
    before = worker_pids(gateway)
    assert post(gateway, path) == (502, {"message": "Internal server error"})
    assert f"pool-{path.strip('/')}'s execution environment ended" in caplog.text
    after = worker_pids(gateway)
    assert len(after) == 2 and len(after - before) == 1
    assert {post(gateway, "/where")[0] for _ in range(4)} == {200}


def test_closing_the_gateway_ends_its_workers():
    server = ApiGateway(ROUTES, KEY, lambda_workers=2).start()
    workers = [psutil.Process(pid) for pid in worker_pids(server)]
    assert len(workers) == 2
    assert post(server, "/where")[0] == 200
    server.close()
    assert not any(worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE
                                         for worker in workers)


def test_free_workers_go_to_the_waiting_requests_in_their_order_of_arrival():
    hand_off: HandOff[str] = HandOff()
    got: dict[int, str | None] = {}

    def wait(number: int) -> None:
        got[number] = hand_off.get(timeout=30)

    waiting = []
    for number in range(3):
        waiting.append(threading.Thread(target=wait, args=(number,)))
        waiting[-1].start()
        while len(hand_off._waiting) <= number:  # this one queues behind those before it
            time.sleep(0.001)
    for item in ("first", "second", "third"):
        hand_off.put(item)
    hand_off.put("free")
    for thread in waiting:
        thread.join()
    assert got == {0: "first", 1: "second", 2: "third"}
    assert hand_off.get(timeout=0) == "free"  # no one waits: a free item is taken at once
    assert hand_off.get(timeout=0.01) is None  # none free within the timeout
    assert not hand_off._waiting
