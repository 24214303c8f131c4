"""The lean HTTP/1.1 keep-alive server under the local endpoint and the local API gateway.

Every prediction and API call crosses it, so it reads plain ``Content-Length`` requests with a few string
operations instead of ``BaseHTTPRequestHandler``'s ``email``-based header parsing, and writes each response as one
buffer with Nagle off. A ``Service`` answers in ``respond`` and ``error_page``; ``Server`` serves any such pair.
"""

from __future__ import annotations

import contextlib
import email.utils
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import BinaryIO, Self

IDLE_SECONDS = 60  # keep-alive timeout, as the SageMaker container's gunicorn sets
MAX_LINE = 65536
MAX_HEADERS = 100
MIB = 1024 * 1024
DRAIN_LIMIT = 16 * MIB  # an oversized body up to this is read and dropped, keeping the connection usable
PHRASES = {status.value: status.phrase for status in HTTPStatus}
_FRAMING = frozenset({"content-length", "connection", "transfer-encoding", "date"})

Response = tuple[int, list[tuple[str, str]], bytes]  # status, headers, body


class HTTPError(Exception):
    """A request answered with an error ``status`` and a one-line ``message`` by the service's error page: raised
    by the readers here, or by a ``respond`` that refuses a request before it gets to the application's logic."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Request:
    """A request line and its headers, as read; the body is read apart, against the size limit."""

    method: str
    path: str  # still percent-encoded, without the query string
    query: str  # after the "?", "" when none
    headers: list[tuple[str, str]]  # as sent, in order, repeated names kept (the proxy event keeps them)
    lower: dict[str, str]  # lower-cased name -> value (repeated values joined with ", "), for lookups
    keep_alive: bool
    http10: bool  # an HTTP/1.0 client keeps the connection only when the response says so
    client: str  # the peer's IP address
    received: float  # time.perf_counter() when the headers were read, for latencies


Application = Callable[[Request, bytes], Response]
ErrorPage = Callable[[Request | None, HTTPError], Response]  # None: the request line or headers were unreadable


def read_request(rfile: BinaryIO, client: str) -> Request | None:
    """The next request line and headers; ``None`` when the client closed the connection between requests."""
    line = rfile.readline(MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):  # blank lines before a request are allowed (RFC 9112, 2.2)
        line = rfile.readline(MAX_LINE + 1)
    if not line:
        return None
    if len(line) > MAX_LINE:
        raise HTTPError(414, "the request line is too long")
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HTTPError(400, "malformed HTTP request line")
    method, target, version = parts
    headers: list[tuple[str, str]] = []
    lower: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        line = rfile.readline(MAX_LINE + 1)
        if line in (b"\r\n", b"\n", b""):
            break
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or len(line) > MAX_LINE:
            raise HTTPError(400, "malformed HTTP header line")
        name, value = name.strip(), value.strip()
        headers.append((name, value))
        key = name.lower()
        lower[key] = f"{lower[key]}, {value}" if key in lower else value
    else:
        raise HTTPError(431, f"more than {MAX_HEADERS} header lines")
    connection = lower.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    path, _, query = target.partition("?")
    return Request(method, path, query, headers, lower, keep_alive, version == "HTTP/1.0", client, time.perf_counter())


def read_body(rfile: BinaryIO, wfile: BinaryIO, request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes. Beyond, a 413 after dropping the body when that is cheap, so
    the connection serves the next request; a huge body, or one held back until told to continue, closes it."""
    if "transfer-encoding" in request.lower:
        request.keep_alive = False  # the body's end cannot be found
        raise HTTPError(411, "send the body with a Content-Length (chunked bodies are not supported)")
    text = request.lower.get("content-length", "0")
    if not text.isdigit():
        request.keep_alive = False
        raise HTTPError(400, f"Content-Length {text!r} is not a number")
    length = int(text)
    continues = length > 0 and request.lower.get("expect", "").lower() == "100-continue"
    if length > limit:
        if continues or length > DRAIN_LIMIT:
            request.keep_alive = False
        else:
            drain(rfile, request, length)
        raise HTTPError(413, f"the request body is {length} bytes; this endpoint accepts at most {limit}")
    if continues:
        wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = rfile.read(length) or b""  # None: the idle timeout struck before any of it came
    if len(body) < length:
        request.keep_alive = False
        raise HTTPError(400, f"the body ended after {len(body)} of {length} bytes")
    return body


def drain(rfile: BinaryIO, request: Request, length: int) -> None:
    while length > 0:
        chunk = rfile.read(min(length, MIB))
        if not chunk:  # the client gave up sending
            request.keep_alive = False
            return
        length -= len(chunk)


_date = (0, "")


def http_date() -> str:
    """The Date header's value, formatted once a second: ``formatdate`` costs as much as the rest of ``encode``."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True))
    return _date[1]


def encode(response: Response, keep_alive: bool, http10: bool = False, head_only: bool = False) -> bytes:
    """Status line, headers and body in one buffer. The server owns the framing: an application's
    Content-Length, Connection, Transfer-Encoding or Date header is replaced."""
    status, headers, body = response
    lines = [f"HTTP/1.1 {status} {PHRASES.get(status, '')}"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in _FRAMING]
    lines += [f"Date: {http_date()}", f"Content-Length: {len(body)}"]
    if not keep_alive:
        lines.append("Connection: close")
    elif http10:
        lines.append("Connection: keep-alive")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return head if head_only else head + body


class Connection(socketserver.StreamRequestHandler):
    """Serves requests on one connection until the client closes it, asks to, or stays idle too long."""

    disable_nagle_algorithm = True
    server: Server

    def setup(self) -> None:
        # The idle timeout as a kernel receive timeout: a Python socket timeout would add a poll() to every read.
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", IDLE_SECONDS, 0))
        super().setup()

    def handle(self) -> None:
        app, error_page, limit = self.server.app, self.server.error_page, self.server.max_body_bytes
        client = self.client_address[0]
        while True:
            request = None
            try:
                request = read_request(self.rfile, client)
                if request is None:
                    return
                response = app(request, read_body(self.rfile, self.wfile, request, limit))
            except HTTPError as error:
                response = error_page(request, error)
            except OSError:  # the client went away
                return
            keep_alive = request is not None and request.keep_alive
            head_only = request is not None and request.method == "HEAD"
            try:
                self.wfile.write(encode(response, keep_alive, keep_alive and request.http10, head_only))
            except OSError:
                return
            if not keep_alive:
                return


class Server(socketserver.ThreadingTCPServer):
    """A thread per connection; ``close_connections`` ends idle keep-alive connections at shutdown."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # a benchmark's connections arrive at once; the default backlog of 5 drops SYNs

    def __init__(self, address: tuple[str, int], app: Application, error_page: ErrorPage, max_body_bytes: int):
        self.app, self.error_page, self.max_body_bytes = app, error_page, max_body_bytes
        self.open_sockets: set[socket.socket] = set()
        super().__init__(address, Connection)

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:
        self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake each connection's thread with end-of-file; the thread then closes its socket."""
        for sock in list(self.open_sockets):
            with contextlib.suppress(OSError):  # the client closed it first
                sock.shutdown(socket.SHUT_RDWR)


class Service:
    """An HTTP service on ``host:port`` (port 0: a free one), served from background threads between ``start``
    and ``close``: a subclass answers in ``respond`` and words refused requests in ``error_page``."""

    def __init__(self, host: str, port: int, max_body_bytes: int, thread_name: str) -> None:
        self.address = (host, port)
        self.max_body_bytes = max_body_bytes
        self.thread_name = thread_name
        self._server: Server | None = None

    def respond(self, request: Request, body: bytes) -> Response:
        raise NotImplementedError

    def error_page(self, request: Request | None, error: HTTPError) -> Response:
        raise NotImplementedError

    def start(self) -> Self:
        self._server = Server(self.address, self.respond, self.error_page, self.max_body_bytes)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name=self.thread_name, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.thread_name} is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.port}"

    def close(self) -> None:
        """Stop accepting, then end the open keep-alive connections."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
            self._server = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
