"""The HTTP server under hostile clients, on real sockets: the local API gateway and the local endpoint (both on
``deploy.http11``) facing idle-connection floods, slowloris, malformed header blocks, and the open-file limit."""

from __future__ import annotations

import http.client
import json
import resource
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from project_root import ROOT

from cloudviz.api.local import LocalProject
from deploy.endpoint import EndpointServer, ModelSlot
from deploy.gateway import ApiGateway, PlainRequest, PlainRoute
from deploy.http11 import Limits, Service
from deploy.open_files import DESCRIPTORS_PER_CONNECTION, RESERVED_DESCRIPTORS


def echo(request: PlainRequest):
    return 200, {"Content-Type": "application/octet-stream"}, request.body


ROUTES = [PlainRoute("POST", "/echo", echo), PlainRoute("GET", "/echo", echo)]


def gateway(limits: Limits | None = None) -> ApiGateway:
    api = ApiGateway(ROUTES, "test-key-0123456789abcdef")
    api.limits = limits or api.limits
    return api


@pytest.fixture(params=["api", "endpoint"])
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    """Each of the two servers the parser answers for (the endpoint needs no model to refuse a request)."""
    server = gateway() if request.param == "api" else EndpointServer(ModelSlot(None))
    with server.start():
        yield server


def connect(server: Service, timeout: float = 5) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def exchange(server: Service, raw: bytes) -> tuple[int, bytes]:
    """(status, whole answer) for raw request bytes that the server must refuse and close the connection after."""
    with connect(server) as sock:
        sock.sendall(raw)
        whole = answer(sock)
    assert whole.startswith(b"HTTP/1.1 "), whole
    assert b"Connection: close" in whole.partition(b"\r\n\r\n")[0].split(b"\r\n")
    return int(whole[9:12]), whole


def post_answered(server_port: int, timeout: float) -> tuple[int, bytes, float]:
    started = time.perf_counter()
    client = http.client.HTTPConnection("127.0.0.1", server_port, timeout=timeout)
    try:
        client.request("POST", "/echo", b"ping")
        response = client.getresponse()
        return response.status, response.read(), time.perf_counter() - started
    finally:
        client.close()


# -- parser ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "status", "said"),
    [
        (b"Content-Length: \xb2", 400, b"not a number"),  # a Latin-1 digit: str.isdigit() says yes, int() no
        (b"Content-Length : 15", 400, b"whitespace between"),  # RFC 9112 5.1: a smuggling hole behind proxies
        (b"X-Note: a\x00b", 400, b"control character"),
        (b"X-Note: a\rb", 400, b"control character"),  # a lone CR
        (b"X Note: a", 400, b"not a token"),
        (b"X-Note: " + b"a" * 100_000, 431, b"longer than"),
        (b"\r\n".join(b"X-Note-%d: a" % n for n in range(101)), 431, b"more than 100 header lines"),
    ],
)
def test_malformed_header_blocks_are_refused_through_the_error_page_without_a_traceback(
    service, capfd, head, status, said
):
    got, whole = exchange(service, b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head + b"\r\n\r\n" + b"x" * 15)
    assert got == status, whole
    assert said in whole.partition(b"\r\n\r\n")[2], whole
    assert capfd.readouterr().err == ""


def test_the_api_words_a_refused_header_in_api_gateways_shape(capfd):
    with gateway().start() as api:
        status, whole = exchange(api, b"POST /echo HTTP/1.1\r\nContent-Length : 15\r\n\r\n" + b"x" * 15)
    assert status == 400
    assert json.loads(whole.partition(b"\r\n\r\n")[2]) == {
        "message": "Bad Request: whitespace between the header name 'Content-Length' and its ':'"
    }
    assert capfd.readouterr().err == ""


def test_a_client_still_sending_its_body_after_an_error_answer_gets_no_reset(service):
    """Lingering close: the server shuts only its writing side, then reads and drops what the client still sends
    for a while. Closing at once makes the kernel reset the connection at the client's next bytes, so a client
    busy sending its body fails with a broken pipe before it reads the answer."""
    with connect(service) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 20000000\r\n\r\n")  # 413
        assert select.select([sock], [], [], 2.0)[0]  # the answer came and the server closed its side
        for _ in range(2):
            sock.sendall(b"x" * 50_000)
            time.sleep(0.05)
        assert answer(sock).startswith(b"HTTP/1.1 413 ")


# -- deadlines ---------------------------------------------------------------------------------------------------


def trickle(sock: socket.socket, first: bytes, pace: float, give_up: float) -> tuple[bytes, float]:
    """Send ``first``, then one byte every ``pace`` seconds until the server answers or closes (or ``give_up``):
    (what it sent back, seconds from the start)."""
    started = time.monotonic()
    sock.sendall(first)
    while time.monotonic() - started < give_up:
        if select.select([sock], [], [], pace)[0]:
            return answer(sock), time.monotonic() - started
        sock.sendall(b"a")
    return b"", give_up


SLOW = Limits(header_seconds=1.0, body_seconds=1.0)


def test_a_slowloris_header_block_is_closed_at_its_deadline():
    """A byte every 0.2 s: each byte used to restart the timeout; the header block's deadline is a total."""
    with gateway(SLOW).start() as api, connect(api) as sock:
        sent_back, seconds = trickle(sock, b"GET /echo HTTP/1.1\r\nX-Slow: ", pace=0.2, give_up=4.0)
    assert sent_back.startswith(b"HTTP/1.1 408 "), sent_back
    assert b"took more than 1 s" in sent_back
    assert seconds < 2.0


def test_a_slow_body_is_closed_at_its_deadline():
    with gateway(SLOW).start() as api, connect(api) as sock:
        sent_back, seconds = trickle(sock, b"POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\n", 0.2, 4.0)
    assert sent_back.startswith(b"HTTP/1.1 408 "), sent_back
    assert b"the request body took more than 1 s" in sent_back
    assert seconds < 2.0


def test_a_connection_idle_between_requests_is_closed_after_the_idle_timeout():
    with gateway(Limits(idle_seconds=0.5)).start() as api:
        client = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
        client.request("POST", "/echo", b"one")
        assert client.getresponse().read() == b"one"
        assert select.select([client.sock], [], [], 2.0)[0] and client.sock.recv(1) == b""
        client.close()


# -- the connection cap ------------------------------------------------------------------------------------------


def test_beyond_the_cap_with_no_idle_connection_a_503_answers_and_closes():
    with gateway(Limits(max_connections=2)).start() as api:
        busy = [connect(api) for _ in range(2)]
        for sock in busy:  # mid-request: not idle, so not closed to make room
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabc")
        time.sleep(0.2)
        status, whole = exchange(api, b"POST /echo HTTP/1.1\r\nContent-Length: 4\r\n\r\nping")
        assert status == 503, whole
        assert b"limit of 2 connections" in whole
        assert b"\r\nRetry-After: 1\r\n" in whole
        for sock in busy:  # still served
            sock.sendall(b"defghij")
            assert answer_of_one(sock).endswith(b"abcdefghij")
            sock.close()


def answer_of_one(sock: socket.socket) -> bytes:
    """One response on a keep-alive connection (read until its body, by Content-Length, is complete)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_at_the_cap_the_longest_idle_connection_makes_room():
    with gateway(Limits(max_connections=2)).start() as api:
        oldest, newer = connect(api), connect(api)
        time.sleep(0.1)
        assert post_answered(api.port, timeout=1.0)[:2] == (200, b"ping")
        assert select.select([oldest], [], [], 1.0)[0] and oldest.recv(1) == b""
        assert not select.select([newer], [], [], 0.1)[0]  # untouched
        oldest.close()
        newer.close()


SERVER_UNDER_1024_FILES = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))  # soft and hard: no way out by raising it
from deploy.gateway import ApiGateway, PlainRoute
echo = PlainRoute("POST", "/echo", lambda request: (200, {}, request.body))
with ApiGateway([echo], "test-key-0123456789abcdef").start() as api:
    print(api.port, flush=True)
    sys.stdin.read()
"""


def test_1100_idle_connections_under_a_1024_file_limit_leave_a_post_answered_within_a_second():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip(f"the client needs 1,300 open files; this process may have {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1300), hard))
    server = subprocess.Popen([sys.executable, "-c", SERVER_UNDER_1024_FILES], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    idle: list[socket.socket] = []
    try:
        port = int(server.stdout.readline())
        for _ in range(1100):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        time.sleep(0.5)  # the server accepts the backlog
        status, body, seconds = post_answered(port, timeout=5.0)
        assert (status, body) == (200, b"ping")
        assert seconds < 1.0
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        server.stdin.close()
        server.wait(timeout=10)
    assert server.stderr.read() == ""


def test_a_serve_holds_the_connections_it_is_given(two_versions, tmp_path, monkeypatch):
    """``cloudviz serve --max-connections N`` reaches both servers: with 1, a connection in the middle of a request
    leaves room for no other."""
    root = tmp_path / "home"
    shutil.copytree(two_versions, root, ignore=shutil.ignore_patterns("runs", "cache"))
    monkeypatch.delenv("CLOUDVIZ_API_KEY", raising=False)
    project = LocalProject(root)
    project.models.approve("CloudVizIris", 1)
    with project.serve("CloudVizIris", max_connections=1) as serving:
        for server in (serving.service.api, serving.service.endpoint_server):
            assert server.limits.max_connections == 1
            with connect(server) as busy:
                busy.sendall(b"POST /invocations HTTP/1.1\r\nContent-Length: 10\r\n\r\n")
                time.sleep(0.2)
                assert exchange(server, b"GET /ping HTTP/1.1\r\n\r\n")[0] == 503


# -- the open-file limit -----------------------------------------------------------------------------------------

RAISE_LIMIT = """
import resource
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 2048))
from deploy.open_files import connection_budget
print(connection_budget(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def test_a_server_process_raises_its_soft_open_file_limit_and_keeps_a_reserve():
    printed = subprocess.run([sys.executable, "-c", RAISE_LIMIT], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert printed == [str((2048 - RESERVED_DESCRIPTORS) // DESCRIPTORS_PER_CONNECTION), "2048"]


def test_limits_name_the_bad_field():
    with pytest.raises(ValueError, match="max_connections must be 1 or more, got 0"):
        Limits(max_connections=0)
    with pytest.raises(ValueError, match="header_seconds must be a positive number of seconds"):
        Limits(header_seconds=0)
