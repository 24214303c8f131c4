"""The API's Prometheus labels come from closed sets, on the real prediction API and its /metrics on 127.0.0.1:
made-up methods and paths (raw socket requests, no key) cannot grow the exposition."""

from __future__ import annotations

import re
import socket

import pytest

from deploy.monitoring.metrics import OTHER_METHOD, STANDARD_METHODS, UNMATCHED_ROUTE, ApiMetrics, method_label
from deploy.prediction_api import build_prediction_api

KEY = "k" * 32
SAMPLE = re.compile(rb"^(\S+) \S+$", re.MULTILINE)  # a sample line: name{labels} value


@pytest.fixture
def api():
    """The prediction API wired to its metrics as ``LocalService`` wires them (its handlers are never reached)."""
    metrics = ApiMetrics()
    gateway = build_prediction_api({}, KEY, extra_routes=[metrics.route()], observers=[metrics.observe_request])
    with gateway.start():
        yield gateway


def send(port: int, request: bytes) -> bytes:
    """One request written as is, on its own connection; the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


def made_up(port: int, number: int) -> None:
    """A method nobody defines, on a new path each time, and on a route that exists."""
    for path in (f"/probe-{number}", "/predictions"):
        answer = send(port, f"M{number:04d}X {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 "), answer[:80]


def scrape(port: int) -> bytes:
    answer = send(port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return body


def series(exposition: bytes) -> bytes:
    """The exposition without its sample values: which series exist, not their counts."""
    return SAMPLE.sub(rb"\1", exposition)


def test_three_hundred_made_up_methods_leave_metrics_the_same_size(api):
    port = api.port
    made_up(port, 0)  # the "other" and "unmatched" series exist from the first such request on
    scrape(port)  # and /metrics' own series from the first scrape on
    before = scrape(port)
    for number in range(1, 301):
        made_up(port, number)
    after = scrape(port)
    assert len(series(after)) == len(series(before)) and series(after) == series(before)
    # Only counts grew: 601 requests more change a few counters' digits, never the number of lines.
    assert after.count(b"\n") == before.count(b"\n") and abs(len(after) - len(before)) < 200
    assert b'method="M0001X"' not in after and b"/probe-1" not in after
    assert f'cloudviz_api_requests_total{{method="{OTHER_METHOD}",route="{UNMATCHED_ROUTE}",status="403"}} 301.0' \
        .encode() in after
    assert b'cloudviz_api_requests_total{method="other",route="/predictions",status="403"} 301.0' in after


def test_standard_methods_keep_their_name_and_routes_their_template(api):
    port = api.port
    for method in ("DELETE", "get", "PROPFIND"):
        send(port, f"{method} /predictions/abc%2F1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    exposition = scrape(port)
    assert b'method="DELETE",route="/predictions/{id}",status="403"' in exposition
    assert b'method="other",route="/predictions/{id}",status="403"} 2.0' in exposition  # get and PROPFIND
    assert b"abc" not in exposition
    assert {method_label(m) for m in STANDARD_METHODS} == STANDARD_METHODS
    assert method_label("get") == method_label("BREW") == OTHER_METHOD
