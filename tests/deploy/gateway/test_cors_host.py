"""Browser exposure of the local API, on the real service (endpoint, prediction API, dashboard) on 127.0.0.1: CORS
only on the API's routes and only to the configured origins, the gateway's own pages only to a loopback ``Host``
(DNS rebinding), the curl hint naming no foreign host, and the dashboard document built once per interval."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from pathlib import Path

import pytest

from cloudviz.cli import build_parser
from deploy.dashboard.routes import SharedBuild
from deploy.gateway.policy import checked_origins, is_loopback_host
from deploy.local_service import LocalService
from deploy.prediction_api import build_prediction_api
from pipelines.registry import ModelRegistry
from pipelines.state import StateHome

GROUP = "CloudVizIris"
KEY = "k" * 32
ALLOWED = "https://app.example.com"
OTHER = "https://evil.example"
ROW = {"x1": 5.1, "x2": 3.5, "x3": 1.4, "x4": 0.2}
LOCAL_PAGES = ("/metrics", "/dashboard", "/dashboard/data", "/dashboard/dashboard.js", "/openapi.json")


@pytest.fixture(scope="module")
def service(two_versions: Path, tmp_path_factory: pytest.TempPathFactory):
    """The stage served with one allowed origin, version 1 live."""
    root = tmp_path_factory.mktemp("cors") / "home"
    shutil.copytree(two_versions, root, symlinks=True)
    home = StateHome(root)
    ModelRegistry(home.registry_db).update_approval(GROUP, 1, "Approved", "test")
    with LocalService(home, GROUP, KEY, cors_origins=[ALLOWED]).start() as running:
        yield running


def raw(port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"",
        host: str | None = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """One request as written here, byte for byte (``host`` None: no Host header), on its own connection."""
    lines = [f"{method} {path} HTTP/1.1", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"Host: {host}"] if host is not None else []
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answered = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        answered[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), answered, payload


def cors_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.startswith("access-control-")}


def predict(port: int, origin: str, key: str = KEY) -> tuple[int, dict[str, str], bytes]:
    return raw(port, "POST", "/predictions", {"Origin": origin, "x-api-key": key, "Content-Type": "application/json"},
               json.dumps(ROW).encode())


# -- CORS -------------------------------------------------------------------------------------------------------


def test_an_allowed_origin_is_echoed_on_the_prediction_routes_and_others_get_no_cors(service: LocalService):
    port = service.api.port
    status, headers, _ = predict(port, ALLOWED)
    assert status == 200
    assert headers["access-control-allow-origin"] == ALLOWED and headers["vary"] == "Origin"
    assert "X-Next-Token" in headers["access-control-expose-headers"]
    status, headers, _ = predict(port, ALLOWED, key="wrong")  # an error of the API's route: still readable
    assert status == 403 and headers["access-control-allow-origin"] == ALLOWED
    status, headers, body = predict(port, OTHER)
    assert status == 200 and json.loads(body)["model_version"] == 1  # answered, but a browser may not read it
    assert cors_headers(headers) == {} and headers["vary"] == "Origin"
    for path in ("/predictions?limit=1", "/model"):
        status, headers, _ = raw(port, "GET", path, {"Origin": ALLOWED, "x-api-key": KEY})
        assert (status, headers["access-control-allow-origin"]) == (200, ALLOWED), path


def test_a_preflight_is_answered_to_allowed_origins_only(service: LocalService):
    port = service.api.port
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key,content-type"}
    status, headers, body = raw(port, "OPTIONS", "/predictions", {"Origin": ALLOWED, **ask})
    assert (status, body) == (204, b"")
    assert headers["access-control-allow-origin"] == ALLOWED and headers["vary"] == "Origin"
    assert headers["access-control-allow-methods"] == "GET,OPTIONS,POST"
    assert raw(port, "OPTIONS", "/predictions/some-id", {"Origin": ALLOWED, **ask})[0] == 204
    for origin in (OTHER, "null", ALLOWED + ".evil.example", ALLOWED.upper()):
        status, headers, _ = raw(port, "OPTIONS", "/predictions", {"Origin": origin, **ask})
        assert status == 403 and cors_headers(headers) == {}, origin
    status, headers, _ = raw(port, "OPTIONS", "/predictions", ask)  # no Origin at all
    assert status == 403 and cors_headers(headers) == {}


def test_gateway_pages_and_unknown_routes_never_carry_cors(service: LocalService):
    port = service.api.port
    for path in (*LOCAL_PAGES, "/nowhere"):
        for method in ("GET", "OPTIONS"):
            _, headers, _ = raw(port, method, path, {"Origin": ALLOWED})
            assert cors_headers(headers) == {}, (method, path)


def test_without_origins_no_answer_carries_any_cors_header():
    """The default: the real prediction API's routes, no origins (its handlers are unconfigured: 502s)."""
    with build_prediction_api({}, KEY).start() as api:
        for method, path in (("POST", "/predictions"), ("GET", "/predictions/x"), ("OPTIONS", "/predictions"),
                             ("GET", "/openapi.json"), ("OPTIONS", "/model")):
            status, headers, _ = raw(api.port, method, path, {"Origin": ALLOWED, "x-api-key": KEY})
            assert cors_headers(headers) == {} and "vary" not in headers, (method, path, status)
        assert raw(api.port, "OPTIONS", "/predictions", {"Origin": ALLOWED})[0] == 403


# -- Host: DNS rebinding -----------------------------------------------------------------------------------------


def test_gateway_pages_answer_a_loopback_host_and_refuse_any_other_with_421(service: LocalService):
    port = service.api.port
    for host in ("127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "[::1]"):
        for path in LOCAL_PAGES:
            assert raw(port, "GET", path, host=host)[0] == 200, (host, path)
    foreign = ("rebound.evil.example", f"rebound.evil.example:{port}", "127.0.0.1.evil.example", "localhost.",
               "127.0.0.2", f"127.0.0.1:{port}, evil.example", "192.0.2.7:80", "")
    for host in (*foreign, None):
        for path in LOCAL_PAGES:
            status, headers, body = raw(port, "GET", path, host=host)
            assert status == 421, (host, path)
            assert json.loads(body)["message"].startswith("Misdirected Request") and cors_headers(headers) == {}
    assert predict(port, ALLOWED)[0] == 200  # the API itself is called by any name (a proxy's, a tunnel's)


def test_the_curl_hint_names_the_api_itself_whatever_the_host_header(service: LocalService):
    port = service.api.port
    status, _, body = raw(port, "GET", "/dashboard/data", host=f"localhost:{port}")
    assert status == 200
    assert json.loads(body)["predictions"]["hint"].startswith(f"curl -s -X POST {service.api.url}/predictions ")
    assert raw(port, "GET", "/dashboard/data", host=f"rebound.evil.example:{port}")[0] == 421


def test_loopback_host_and_origin_syntax():
    assert all(map(is_loopback_host, ("127.0.0.1", "localhost:1", "[::1]:8000", "Localhost")))
    assert not any(map(is_loopback_host, (None, "", "::1", "127.0.0.1:", "localhost:8000:1", "a.localhost")))
    assert checked_origins(["https://a.example/", "http://b.example:8080", "https://a.example"]) == (
        "https://a.example", "http://b.example:8080")
    for bad in ("*", "https://a.example/app", "a.example", "https://*.example", "ftp://a.example", "null"):
        with pytest.raises(ValueError, match="must be scheme://host"):
            checked_origins([bad])


def test_cloudviz_serve_takes_repeated_origins_and_refuses_a_bad_one(capsys: pytest.CaptureFixture[str]):
    parser = build_parser()
    args = parser.parse_args(["serve", "--cors-origin", ALLOWED, "--cors-origin", "http://localhost:3000/"])
    assert args.cors_origin == [ALLOWED, "http://localhost:3000"]
    assert parser.parse_args(["serve"]).cors_origin == []
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["serve", "--cors-origin", "*"])
    assert exit_info.value.code == 2
    assert "argument --cors-origin: CORS origin '*' must be scheme://host[:port]" in capsys.readouterr().err


# -- /dashboard/data: built at most once per refresh interval ----------------------------------------------------


def test_the_dashboard_document_is_built_once_per_interval_and_shared_by_concurrent_callers():
    now = [100.0]
    shared = SharedBuild(5.0, clock=lambda: now[0])
    builds: list[int] = []
    entered, release = threading.Event(), threading.Event()

    def build() -> bytes:
        builds.append(1)
        entered.set()
        assert release.wait(5)
        return f"document {len(builds)}".encode()

    answers: list[bytes] = []
    callers = [threading.Thread(target=lambda: answers.append(shared.get(build))) for _ in range(16)]
    callers[0].start()
    assert entered.wait(5)  # the first caller builds; the others arrive meanwhile and wait for its document
    for caller in callers[1:]:
        caller.start()
    release.set()
    for caller in callers:
        caller.join(5)
    assert answers == [b"document 1"] * 16 and len(builds) == 1
    now[0] += 4.9
    assert shared.get(build) == b"document 1" and len(builds) == 1
    now[0] += 0.1
    assert shared.get(build) == b"document 2" and len(builds) == 2


def test_the_served_dashboard_document_is_shared_between_requests(service: LocalService):
    """30 requests in well under the 5 s interval: one build, or two if they straddle an interval's end."""
    port = service.api.port
    built_at = {json.loads(raw(port, "GET", "/dashboard/data")[2])["generated_at"] for _ in range(30)}
    assert len(built_at) <= 2
