"""The dashboard's routes on the API gateway: the page, its script and style, plotly.js, and the data document.

Like ``/metrics`` they need no API key, and they answer only on this machine: a request from another address
gets 403 even when the gateway listens beyond 127.0.0.1 (and, as for every gateway page, a ``Host`` other than a
loopback one gets 421). The page loads nothing from elsewhere (no CDN: the plotly.js served is the one the
``plotly`` Python package ships) and its Content-Security-Policy forbids it to. The data document is built at most
once per refresh interval, whatever the number of open pages or callers: concurrent requests share one build.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Callable
from importlib.resources import files

from deploy.dashboard.data import REFRESH_SECONDS, DashboardSources, RecentPredictions, build, to_json
from deploy.gateway import PlainRequest, PlainRoute
from deploy.gateway.routes import PlainResponse

ASSETS = files("deploy.dashboard") / "assets"
# plotly's own <style> elements need 'unsafe-inline' styles; everything else comes from this server only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def plotly_js() -> bytes:
    """The minified plotly.js bundled in the ``plotly`` package (its offline mode's copy)."""
    return (files("plotly") / "package_data" / "plotly.min.js").read_bytes()


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.removeprefix("::ffff:")).is_loopback
    except ValueError:
        return False


class SharedBuild:
    """A value built at most once per ``seconds`` (by ``clock``), the callers meanwhile, and those waiting for a
    build in progress, all getting that one: a busy caller cannot make the server rebuild it for every request."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._built: tuple[float, bytes] | None = None  # (clock when built, value)

    def get(self, build: Callable[[], bytes]) -> bytes:
        """The value built last, or ``build()``'s when it is older than ``seconds``."""
        with self._lock:
            now = self._clock()
            if self._built is None or now - self._built[0] >= self.seconds:
                self._built = (now, build())
            return self._built[1]


class Dashboard:
    """``GET /dashboard`` and what the page loads from below it; the assets are read once, at construction.
    ``refresh_seconds`` and ``clock``: how often the data document may be rebuilt, measured how."""

    def __init__(self, sources: DashboardSources, refresh_seconds: float = REFRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sources = sources
        self.recent = RecentPredictions(sources.store)
        self.document = SharedBuild(refresh_seconds, clock)
        self._files = {
            "/dashboard": ("text/html; charset=utf-8", (ASSETS / "dashboard.html").read_bytes()),
            "/dashboard/dashboard.js": ("text/javascript; charset=utf-8", (ASSETS / "dashboard.js").read_bytes()),
            "/dashboard/dashboard.css": ("text/css; charset=utf-8", (ASSETS / "dashboard.css").read_bytes()),
            "/dashboard/plotly.min.js": ("text/javascript; charset=utf-8", plotly_js()),
        }

    def routes(self) -> list[PlainRoute]:
        return [
            *(PlainRoute("GET", path, self._asset(path)) for path in self._files),
            PlainRoute("GET", "/dashboard/data", self._data),
        ]

    def _asset(self, path: str) -> Callable[[PlainRequest], PlainResponse]:
        content_type, body = self._files[path]
        headers = {"Content-Type": content_type, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if content_type.startswith("text/html"):
            headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY

        def respond(request: PlainRequest) -> PlainResponse:
            return (200, headers, body) if is_loopback(request.source_ip) else refused()

        return respond

    def _data(self, request: PlainRequest) -> PlainResponse:
        if not is_loopback(request.source_ip):
            return refused()
        body = self.document.get(lambda: to_json(build(self.sources, self.recent)))
        return 200, {"Content-Type": "application/json", "Cache-Control": "no-store"}, body


def refused() -> PlainResponse:
    body = json.dumps({"message": "the dashboard answers only on this machine: open it on 127.0.0.1"}).encode()
    return 403, {"Content-Type": "application/json"}, body
