"""The endpoint in a process of its own (``EndpointProcess``): it answers as the in-process endpoint does, swaps
blue/green, reports its metrics and logs to the serve process, refuses a taken port, and ends when closed."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest
from endpoint_calls import CONTRACT_EXAMPLE, VARIANT, call, invoke
from test_endpoint_models import nan_model

from deploy.aws.names import PRODUCTION_VARIANT
from deploy.endpoint import ServingModel, SwapRefused
from deploy.endpoint.hosting import EndpointProcess, EndpointProcessError, InProcessEndpoint

NAME = "hosted-endpoint"


@pytest.fixture
def hosted():
    """Start an endpoint of the given class serving a model; closed after the test."""
    endpoints: list = []

    def start(kind: type, model: ServingModel, **options) -> EndpointProcess | InProcessEndpoint:
        endpoint = kind(NAME, **options)
        endpoints.append(endpoint)
        return endpoint.start(model)

    yield start
    for endpoint in endpoints:
        endpoint.close()


def samples(endpoint: EndpointProcess | InProcessEndpoint) -> dict[tuple[str, tuple], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in endpoint.metrics.registry.collect() for sample in family.samples}


def exit_status_of(endpoint: EndpointProcess) -> int | None:
    """Its exit status once its process has ended (within 10 s)."""
    deadline = time.monotonic() + 10
    while endpoint.exit_status is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return endpoint.exit_status


def test_the_process_answers_as_the_in_process_endpoint_does(hosted, artifacts):
    model = ServingModel.load(artifacts["softprob"], version=3)
    endpoints = [hosted(kind, model) for kind in (InProcessEndpoint, EndpointProcess)]
    answers = []
    for endpoint in endpoints:
        status, headers, body = invoke(endpoint, CONTRACT_EXAMPLE + "\n5.1,3.5,1.4,0.2", accept="application/json")
        answers.append((status, headers[VARIANT], json.loads(body)))
        assert call(endpoint, "GET", "/ping")[0] == 200
        assert endpoint.version == 3
    assert answers[0] == answers[1]
    assert answers[0][:2] == (200, PRODUCTION_VARIANT)
    assert [len(p["score"]) for p in answers[0][2]["predictions"]] == [3, 3]


def test_its_metrics_are_read_from_the_process(hosted, artifacts):
    endpoint = hosted(EndpointProcess, ServingModel.load(artifacts["softprob"], version=3))
    for _ in range(3):
        assert invoke(endpoint, CONTRACT_EXAMPLE)[0] == 200
    assert invoke(endpoint, "1,2")[0] == 400
    pulled = samples(endpoint)
    assert pulled[("cloudviz_endpoint_invocations_total", (("status", "200"),))] == 3
    assert pulled[("cloudviz_endpoint_invocations_total", (("status", "400"),))] == 1
    assert pulled[("cloudviz_model_latency_seconds_count", ())] == 3
    assert pulled[("cloudviz_model_version_live", (("endpoint", NAME),))] == 3
    endpoint.close()
    assert samples(endpoint) == {}, "a closed endpoint has no metrics"


def test_a_swap_serves_the_new_model_and_a_refused_one_keeps_the_old(hosted, artifacts, tmp_path: Path):
    endpoint = hosted(EndpointProcess, ServingModel.load(artifacts["softprob"], version=1))
    before = invoke(endpoint, CONTRACT_EXAMPLE, accept="application/json")[2]
    endpoint.swap(ServingModel.load(artifacts["softmax"], version=2))
    assert json.loads(invoke(endpoint, CONTRACT_EXAMPLE, accept="application/json")[2]) == {
        "predictions": [{"score": 1.0}]}
    assert json.loads(before) != {"predictions": [{"score": 1.0}]}
    broken = ServingModel.load(nan_model(artifacts["softprob"], tmp_path / "nan.tar.gz"), version=3)
    with pytest.raises(SwapRefused, match=r"the probe prediction is not a finite number"):
        endpoint.swap(broken)
    assert endpoint.version == 2
    assert samples(endpoint)[("cloudviz_model_version_live", (("endpoint", NAME),))] == 2
    assert invoke(endpoint, CONTRACT_EXAMPLE)[0] == 200


def test_its_log_reaches_the_serve_process(hosted, artifacts, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="deploy")
    endpoint = hosted(EndpointProcess, ServingModel.load(artifacts["softprob"], version=4))
    endpoint.call(("metrics",), 10)  # the start line was sent before this call's answer
    started = [record for record in caplog.records if record.name == "deploy.endpoint.hosting_main"]
    assert [record.getMessage() for record in started] == [
        f"endpoint {NAME}: process {endpoint.pid} serves version 4 on 127.0.0.1:{endpoint.port}"]


def test_a_taken_port_is_the_oserror_of_listening_and_a_later_start_takes_it(artifacts):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        endpoint = EndpointProcess(NAME, port)
        with pytest.raises(OSError) as caught:
            endpoint.start(ServingModel.load(artifacts["softprob"], version=2))
    try:
        assert caught.value.errno == errno.EADDRINUSE
        assert exit_status_of(endpoint) == 0, "ended: the serve process's watcher tries again"
        endpoint.start()  # the port is free now
        assert (endpoint.port, endpoint.version) == (port, 2)
        assert invoke(endpoint, CONTRACT_EXAMPLE)[0] == 200
    finally:
        endpoint.close()


def test_close_ends_the_process_and_start_serves_again_on_the_same_port(hosted, artifacts):
    endpoint = hosted(EndpointProcess, ServingModel.load(artifacts["softprob"], version=5))
    pid, port = endpoint.pid, endpoint.port
    endpoint.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert endpoint.exit_status is None, "closed, not crashed"
    with pytest.raises(EndpointProcessError, match="is not running"):
        endpoint.swap(ServingModel.load(artifacts["softprob"], version=6))
    endpoint.start()
    assert (endpoint.port, endpoint.version) == (port, 5) and endpoint.pid != pid
    assert invoke(endpoint, CONTRACT_EXAMPLE)[0] == 200


def test_a_killed_process_is_reported_with_its_exit_status(hosted, artifacts):
    endpoint = hosted(EndpointProcess, ServingModel.load(artifacts["softprob"]))
    os.kill(endpoint.pid, signal.SIGKILL)
    assert exit_status_of(endpoint) == -signal.SIGKILL
    with pytest.raises(EndpointProcessError):
        endpoint.call(("metrics",), 10)


def test_a_process_that_does_not_answer_is_killed(hosted, artifacts):
    endpoint = hosted(EndpointProcess, ServingModel.load(artifacts["softprob"]))
    os.kill(endpoint.pid, signal.SIGSTOP)  # hung
    with pytest.raises(EndpointProcessError, match="did not answer within 0 s and was killed"):
        endpoint.call(("metrics",), 0.2)
    assert exit_status_of(endpoint) == -signal.SIGKILL
