"""The lean HTTP/1.1 keep-alive server under the local endpoint and the local API gateway.

Every prediction and API call crosses it, so it reads plain ``Content-Length`` requests with a few string
operations instead of ``BaseHTTPRequestHandler``'s ``email``-based header parsing, and writes each response as one
buffer with Nagle off. A ``Service`` answers in ``respond`` and ``error_page``; ``Server`` serves any such pair.

It holds under hostile clients (``Limits``): a cap on connections within the process's open-file budget
(``deploy.open_files``), where the longest-waiting idle connection is closed to make room and a 503 answers when
none is idle; total deadlines for the header block, the body and the response, however slowly the bytes come;
strict header syntax (RFC 9110 5.1-5.5, RFC 9112 5); and a lingering close after an error answer.
"""

from __future__ import annotations

import collections
import contextlib
import email.utils
import errno
import logging
import math
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from operator import attrgetter
from typing import BinaryIO, Self

from deploy.open_files import connection_budget

IDLE_SECONDS = 60.0  # keep-alive timeout, as the SageMaker container's gunicorn sets
HEADER_SECONDS = 10.0  # the whole request line and header block, from the request's first byte
BODY_SECONDS = 60.0  # the whole body; and the whole response, for a client that does not read it
MAX_CONNECTIONS = 512  # per server, and never beyond the process's open-file budget
MAX_LINE = 16384  # the request line (414 beyond) or one header line (431)
MAX_HEADER_BYTES = 65536  # the header block (431)
MAX_HEADERS = 100
MIB = 1024 * 1024
DRAIN_LIMIT = 16 * MIB  # an oversized body up to this is read and dropped, keeping the connection usable
LINGER_SECONDS = 1.0  # after an error answer: how long what the client still sends is read and dropped
LINGER_BYTES = 256 * 1024  # ... and how much of it
MAX_LINGERING = 64  # sockets lingering at once per server; beyond, closed at once (kept in the fd reserve)
SWEEP_SECONDS = 0.1  # how often the accept loop enforces deadlines and drains lingering sockets
ACCEPT_PAUSE_SECONDS = 0.1  # out of descriptors: accept again after this (at once would spin a core)
PHRASES = {status.value: status.phrase for status in HTTPStatus}
_FRAMING = frozenset({"content-length", "connection", "transfer-encoding", "date"})
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # RFC 9110 5.6.2: a method or a field name
_TOKEN_RE = re.compile(_TOKEN)
_REQUEST_LINE = re.compile(rf"({_TOKEN}) ([^\x00-\x20\x7f]+) (HTTP/1\.[0-9])\r?\n")
# A field line: a token, the colon right after it, a value of visible characters, spaces and tabs (5.5). The value
# class excludes CR and LF, so matching is linear in the line's length.
_FIELD = re.compile(rf"({_TOKEN}):([^\x00-\x08\x0a-\x1f\x7f]*)\r?\n")
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: str.isdigit() accepts "\xb2", which int() refuses
_FATAL_ACCEPT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

logger = logging.getLogger(__name__)

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
        raise HTTPError(414, f"the request line is longer than {MAX_LINE} bytes")
    matched = _REQUEST_LINE.fullmatch(line.decode("latin-1"))
    if matched is None:
        raise HTTPError(400, "malformed HTTP request line")
    method, target, version = matched.groups()
    headers: list[tuple[str, str]] = []
    lower: dict[str, str] = {}
    size = 0
    for _ in range(MAX_HEADERS + 1):
        line = rfile.readline(MAX_LINE + 1)
        if line in (b"\r\n", b"\n"):
            break
        size += len(line)
        if size > MAX_HEADER_BYTES:
            raise HTTPError(431, f"the header block is longer than {MAX_HEADER_BYTES} bytes")
        name, value = header_field(line)
        headers.append((name, value))
        key = name.lower()
        lower[key] = f"{lower[key]}, {value}" if key in lower else value
    else:
        raise HTTPError(431, f"more than {MAX_HEADERS} header lines")
    connection = lower.get("connection", "").lower()
    http10 = version == "HTTP/1.0"
    keep_alive = "keep-alive" in connection if http10 else "close" not in connection
    path, _, query = target.partition("?")
    return Request(method, path, query, headers, lower, keep_alive, http10, client, time.perf_counter())


def header_field(line: bytes) -> tuple[str, str]:
    """A header line's name and value, its surrounding spaces stripped; a 400 or 431 naming what is wrong."""
    if len(line) > MAX_LINE:
        raise HTTPError(431, f"a header line is longer than {MAX_LINE} bytes")
    text = line.decode("latin-1")
    matched = _FIELD.fullmatch(text)
    if matched is None:
        raise HTTPError(400, field_problem(text))
    return matched[1], matched[2].strip(" \t")


def field_problem(text: str) -> str:
    """Why a header line that does not match ``_FIELD`` is refused, for the error answer."""
    if not text.endswith("\n"):
        return "the connection ended inside the header block"
    name, colon, _ = text.partition(":")
    shown = repr(name[:64])
    if not colon:
        return f"malformed HTTP header line {text[:64]!r}: no ':'"
    if name != name.rstrip(" \t"):
        return f"whitespace between the header name {name.strip()[:64]!r} and its ':'"
    if not _TOKEN_RE.fullmatch(name):
        return f"the header name {shown} is not a token (letters, digits and !#$%&'*+-.^_`|~ only)"
    return f"a control character (such as NUL or a lone CR) in the value of the header {shown}"


def read_body(rfile: BinaryIO, wfile: BinaryIO, request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes. Beyond, a 413 after dropping the body when that is cheap, so
    the connection serves the next request; a huge body, or one held back until told to continue, closes it."""
    if "transfer-encoding" in request.lower:
        request.keep_alive = False  # the body's end cannot be found
        raise HTTPError(411, "send the body with a Content-Length (chunked bodies are not supported)")
    text = request.lower.get("content-length", "0")
    if not _DIGITS.fullmatch(text):
        request.keep_alive = False
        raise HTTPError(400, f"Content-Length {text[:40]!r} is not a number of bytes (ASCII digits)")
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


@dataclass(frozen=True, slots=True)
class Limits:
    """What clients may hold of one server: connections, and the time to send a request and to take the answer.
    Each deadline is a total, however slowly or quickly the bytes come."""

    max_connections: int = MAX_CONNECTIONS
    idle_seconds: float = IDLE_SECONDS  # between requests on a keep-alive connection (and before the first)
    header_seconds: float = HEADER_SECONDS  # from a request's first byte to the end of its header block
    body_seconds: float = BODY_SECONDS  # to send the body; and to take the response

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be 1 or more, got {self.max_connections}")
        for name in ("idle_seconds", "header_seconds", "body_seconds"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a positive number of seconds, got {getattr(self, name)}")


WAITING, READING, BUSY, SENDING = "waiting", "reading", "busy", "sending"


@dataclass(slots=True, eq=False)
class Watch:
    """A connection's phase and deadline (``time.monotonic()``), set by its thread and enforced by the accept loop.
    ``since``: when it began waiting for a request (the longest-waiting one is closed to make room)."""

    sock: socket.socket
    since: float
    deadline: float
    phase: str = WAITING
    evicted: bool = False  # closed to make room for a new connection
    expired: bool = False  # its request missed a deadline: answered 408
    linger: bool = False  # closed after an error answer: drained before the close

    def enter(self, phase: str, deadline: float) -> None:
        self.phase, self.deadline = phase, deadline


def _shutdown(sock: socket.socket, how: int) -> None:
    with contextlib.suppress(OSError):  # the client closed it first
        sock.shutdown(how)


class Lingering:
    """Sockets closed after an error answer: the write side is shut, then what the client still sends is read and
    dropped (at most ``LINGER_BYTES`` for ``LINGER_SECONDS``) before the close. Closing with unread data would send
    a reset, and a client still sending its request would lose the answer. Added from any thread, drained by the
    accept loop."""

    def __init__(self) -> None:
        self.arrived: collections.deque[socket.socket] = collections.deque()
        self.sockets: dict[socket.socket, tuple[float, int]] = {}  # deadline, bytes still allowed
        self.closed = False

    def add(self, sock: socket.socket) -> None:
        _shutdown(sock, socket.SHUT_WR)
        if self.closed:  # the server stopped: nothing drains any more
            sock.close()
        else:
            self.arrived.append(sock)

    def drain(self, now: float) -> None:
        while self.arrived:
            sock = self.arrived.popleft()
            if len(self.sockets) >= MAX_LINGERING:
                sock.close()
            else:
                sock.setblocking(False)
                self.sockets[sock] = (now + LINGER_SECONDS, LINGER_BYTES)
        for sock, (deadline, allowed) in list(self.sockets.items()):
            left = _dropped(sock, allowed)
            if left is None or now >= deadline:
                del self.sockets[sock]
                sock.close()
            else:
                self.sockets[sock] = (deadline, left)

    def close(self) -> None:
        self.closed = True
        self.drain(math.inf)


def _dropped(sock: socket.socket, allowed: int) -> int | None:
    """Read and drop what has arrived: the bytes still allowed after, or None when the client closed, the
    allowance is spent, or the socket failed."""
    try:
        while allowed > 0:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            allowed -= len(chunk)
    except BlockingIOError:
        return allowed
    except OSError:
        return None
    return None


class Connection(socketserver.StreamRequestHandler):
    """Serves requests on one connection until the client closes it, asks to, stays idle too long, misses a
    deadline, or the server needs the room."""

    disable_nagle_algorithm = True
    server: Server
    watch: Watch

    def setup(self) -> None:
        super().setup()
        self.watch = self.server.watches[self.request]  # registered by the accept loop before this thread began

    def handle(self) -> None:
        app, error_page, limit = self.server.app, self.server.error_page, self.server.max_body_bytes
        watch, limits, client = self.watch, self.server.limits, self.client_address[0]
        while True:
            request = None
            try:
                if not self.request_begins():
                    return
                request = read_request(self.rfile, client)
                if request is None:
                    return
                watch.enter(READING, time.monotonic() + limits.body_seconds)
                body = read_body(self.rfile, self.wfile, request, limit)
                watch.enter(BUSY, math.inf)
                response = app(request, body)
            except HTTPError as error:
                response = error_page(request, self.timed_out(request, error))
            except OSError:  # the client went away, or the server closed the connection to make room
                return
            keep_alive = request is not None and request.keep_alive and not watch.expired
            head_only = request is not None and request.method == "HEAD"
            watch.enter(SENDING, time.monotonic() + limits.body_seconds)
            try:
                self.wfile.write(encode(response, keep_alive, keep_alive and request.http10, head_only))
            except OSError:
                return
            if not keep_alive:
                watch.linger = response[0] >= 400
                return

    def request_begins(self) -> bool:
        """Wait (idle) for the next request's first byte, from which its header block has its deadline; False
        when the client closed the connection, or the server did."""
        watch, limits = self.watch, self.server.limits
        now = time.monotonic()
        watch.since = now
        watch.enter(WAITING, now + limits.idle_seconds)
        if not self.rfile.peek(1):
            return False
        watch.enter(READING, time.monotonic() + limits.header_seconds)
        return True

    def timed_out(self, request: Request | None, error: HTTPError) -> HTTPError:
        """A 408 instead of the error the reader saw, when its request missed a deadline (the accept loop shut the
        reading side, so the reader saw the request end early)."""
        limits = self.server.limits
        if not self.watch.expired:
            return error
        if request is None:
            return HTTPError(408, f"the request line and headers took more than {limits.header_seconds:g} s")
        return HTTPError(408, f"the request body took more than {limits.body_seconds:g} s")


class Server(socketserver.ThreadingTCPServer):
    """A thread per connection, at most ``limits.max_connections`` of them (and the whole process within its
    open-file budget); ``close_connections`` ends idle keep-alive connections at shutdown. The accept loop admits
    or refuses connections, and every ``SWEEP_SECONDS`` enforces the deadlines and drains lingering sockets."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024  # bursts of connections (a benchmark, a flood) wait here: a full backlog drops SYNs
    _lock = threading.Lock()  # every server's watches and counts
    _process_active = 0  # connections held (and not being closed) by every server of the process

    def __init__(
        self, address: tuple[str, int], app: Application, error_page: ErrorPage, max_body_bytes: int, limits: Limits
    ) -> None:
        self.app, self.error_page, self.max_body_bytes, self.limits = app, error_page, max_body_bytes, limits
        self.budget = connection_budget()
        self.cap = min(limits.max_connections, self.budget)
        self.watches: dict[socket.socket, Watch] = {}
        self.active = 0  # connections held and not being closed to make room
        self.lingering = Lingering()
        self._next_sweep = 0.0
        self._starved = False
        super().__init__(address, Connection)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        try:
            accepted = super().get_request()
        except OSError as error:
            if error.errno in _FATAL_ACCEPT:
                if not self._starved:
                    logger.warning("cannot accept connections on port %d: %s", self.server_address[1], error)
                self._starved = True
                time.sleep(ACCEPT_PAUSE_SECONDS)  # the backlog keeps the waiting clients meanwhile
            raise
        self._starved = False
        return accepted

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:
        if self.admit(request):
            super().process_request(request, client_address)
        else:
            self.refuse(request)

    def admit(self, sock: socket.socket) -> bool:
        """Register a new connection, closing the longest-waiting idle one to make room at the cap; False when
        every connection is in the middle of a request (their deadlines bound how long)."""
        now = time.monotonic()
        with Server._lock:
            if self.active >= self.cap or Server._process_active >= self.budget:
                idle = (watch for watch in self.watches.values() if watch.phase == WAITING and not watch.evicted)
                oldest = min(idle, key=attrgetter("since"), default=None)
                if oldest is None:
                    return False
                oldest.evicted = True
                self._count(-1)
                _shutdown(oldest.sock, socket.SHUT_RDWR)  # its thread wakes to end-of-file and closes it
            self.watches[sock] = Watch(sock, since=now, deadline=now + self.limits.idle_seconds)
            self._count(+1)
        return True

    def _count(self, change: int) -> None:
        self.active += change
        Server._process_active += change

    def refuse(self, sock: socket.socket) -> None:
        """503 to a connection beyond the cap, written by the accept loop itself (no thread), then lingering."""
        message = f"the server holds its limit of {self.cap} connections, none of them idle; retry shortly"
        status, headers, body = self.error_page(None, HTTPError(503, message))
        try:
            sock.setblocking(False)  # a new socket's send buffer is empty: the answer fits without waiting
            sock.send(encode((status, [*headers, ("Retry-After", "1")], body), keep_alive=False))
        except OSError:
            sock.close()
            return
        self.lingering.add(sock)

    def shutdown_request(self, request: socket.socket) -> None:
        with Server._lock:
            watch = self.watches.pop(request, None)
            if watch is not None and not watch.evicted:
                self._count(-1)
        if watch is not None and watch.linger:
            self.lingering.add(request)
        else:
            super().shutdown_request(request)

    def service_actions(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        with Server._lock:
            for watch in self.watches.values():
                if watch.deadline <= now and not watch.evicted:
                    watch.deadline = math.inf
                    if watch.phase == READING:  # its thread reads end-of-file, then answers 408
                        watch.expired = True
                        _shutdown(watch.sock, socket.SHUT_RD)
                    else:  # idle too long, or not reading its answer
                        _shutdown(watch.sock, socket.SHUT_RDWR)
        self.lingering.drain(now)

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> None:
        """A bug while serving a connection: logged (not printed to stderr); the connection is closed."""
        logger.exception("serving the connection from %s failed", client_address)

    def server_close(self) -> None:
        super().server_close()
        self.lingering.close()

    def close_connections(self) -> None:
        """Wake each connection's thread with end-of-file; the thread then closes its socket."""
        with Server._lock:
            for sock in self.watches:
                _shutdown(sock, socket.SHUT_RDWR)


class Service:
    """An HTTP service on ``host:port`` (port 0: a free one), served from background threads between ``start``
    and ``close``: a subclass answers in ``respond`` and words refused requests in ``error_page``. ``limits``
    (the connection cap and the deadlines) may be replaced before ``start``."""

    def __init__(self, host: str, port: int, max_body_bytes: int, thread_name: str) -> None:
        self.address = (host, port)
        self.max_body_bytes = max_body_bytes
        self.thread_name = thread_name
        self.limits = Limits()
        self._server: Server | None = None

    def respond(self, request: Request, body: bytes) -> Response:
        raise NotImplementedError

    def error_page(self, request: Request | None, error: HTTPError) -> Response:
        raise NotImplementedError

    def start(self) -> Self:
        self._server = Server(self.address, self.respond, self.error_page, self.max_body_bytes, self.limits)
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
