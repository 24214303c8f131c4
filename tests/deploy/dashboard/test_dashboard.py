"""The dashboard: its data document, its offline assets, headless Chromium after real traffic, `cloudviz dashboard`."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import browser
import pytest
from polling import wait_for

from deploy.dashboard.data import OVERLAP_SECONDS, RecentPredictions
from deploy.dashboard.routes import is_loopback, plotly_js
from deploy.dashboard.serve_file import ServeRecord, record_serve
from deploy.endpoint_state import EndpointFiles
from deploy.gateway import PlainRequest
from deploy.local_service import LocalService
from deploy.monitoring.alarm_rules import ALARM_RULES
from pipelines.registry import ModelRegistry
from pipelines.runs import RunStore
from pipelines.state import StateHome
from serving_lambdas.records import PredictionRecord, new_ids, time_bound, timestamp_text
from serving_lambdas.store import SqliteStore

GROUP = "CloudVizIris"
KEY = "k" * 32
FEATURES = ("x1", "x2", "x3", "x4")
PERIOD = 0.5  # seconds: the alarm period, and so the sampler's
CHART_PANELS = ("requests", "errors", "latency", "predictions", "classes", "drift", "drift-history", "evaluation",
                "confusion", "importance", "runs")
TABLE_PANELS = {"alarms": len(ALARM_RULES), "registry": 2, "runs": 2}  # panel: rows expected in its table

needs_browser = pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))


@pytest.fixture
def home(two_versions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateHome:
    """A state home with two runs and two versions: v1 approved (it goes live), v2 pending."""
    root = tmp_path / "home"
    shutil.copytree(two_versions, root, symlinks=True)
    ModelRegistry(StateHome(root).registry_db).update_approval(GROUP, 1, "Approved", "test")
    monkeypatch.setenv("CLOUDVIZ_HOME", str(root))
    monkeypatch.delenv("CLOUDVIZ_API_KEY", raising=False)
    return StateHome(root)


def training_rows(home: StateHome) -> list[list[float]]:
    """Version 1's training split, features only: in-distribution traffic by construction."""
    run_id = ModelRegistry(home.registry_db).get(GROUP, 1).lineage["run_id"]
    folder = Path(RunStore(home.runs).load(run_id).steps["Preprocess"].outputs["train"])
    lines = (folder / "train.csv").read_text(encoding="utf-8").split()
    return [[float(value) for value in line.split(",")[1:]] for line in lines]


def request(url: str, method: str, path: str, body: object = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    payload = None if body is None else json.dumps(body)
    connection.request(method, path, payload, {"x-api-key": KEY, "Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def strict_json(body: bytes) -> dict:
    """JSON as browsers parse it: NaN and Infinity are not JSON."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the data document")

    return json.loads(body, parse_constant=refuse)


def data(service: LocalService) -> dict:
    status, _, body = request(service.api.url, "GET", "/dashboard/data")
    assert status == 200
    return strict_json(body)


def send_traffic(service: LocalService, rows: list[list[float]]) -> None:
    """300 predictions in three batches (enough for drift), 20 single ones, and 3 malformed requests (400)."""
    for start in range(0, 300, 100):
        batch = [rows[i % len(rows)] for i in range(start, start + 100)]
        assert request(service.api.url, "POST", "/predictions", {"input_data": batch})[0] == 200
    for row in rows[:20]:
        single = dict(zip(FEATURES, row, strict=True))
        assert request(service.api.url, "POST", "/predictions", single)[0] == 200
    for _ in range(3):
        assert request(service.api.url, "POST", "/predictions", {"x1": "wide"})[0] == 400


def ready(document: dict) -> dict | None:
    """The document once every panel has something to draw: traffic, drift values, evaluated alarms."""
    traffic, drift = document["traffic"], document["drift"]
    complete = (
        any(traffic["requests"]) and any(value is not None for value in traffic["error_4xx_percent"])
        and bool(drift["features"]) and bool(drift["history"]["time"])
        and all(alarm["evaluated_at"] for alarm in document["alarms"]["states"])
    )
    return document if complete else None


class BrowserWatch:
    """Everything a page did that the dashboard must not: console errors, uncaught exceptions, requests that
    leave 127.0.0.1 (aborted), failed responses."""

    def __init__(self, page) -> None:
        self.problems: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda message: self._console(message))
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.on("response", lambda response: response.status >= 400 and self.problems.append(
            f"HTTP {response.status} for {response.url}"))
        page.route("**/*", self._route)

    def _console(self, message) -> None:
        if message.type == "error":
            self.problems.append(f"console {message.type}: {message.text}")

    def _route(self, route) -> None:
        url = route.request.url
        self.requests.append(url)
        if url.startswith("data:") or urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.problems.append(f"request leaving 127.0.0.1: {url}")
            route.abort()


def panel_states(page) -> dict[str, str]:
    return page.evaluate("Object.fromEntries([...document.querySelectorAll('[data-panel]')]"
                         ".map(p => [p.dataset.panel, p.dataset.state]))")


# -- headless chromium --------------------------------------------------------------------------------


@needs_browser
def test_every_panel_renders_with_data_after_real_traffic(home: StateHome, tmp_path: Path):
    with LocalService(home, GROUP, KEY, alarm_period_seconds=PERIOD).start() as service:
        send_traffic(service, training_rows(home))
        document = wait_for(lambda: ready(data(service)), "traffic, drift and alarms in the data document", timeout=60)
        predictions = document["predictions"]
        assert predictions["rows"] == 320
        assert sum(sum(counts) for counts in predictions["by_class"].values()) == 320
        assert set(predictions["class_counts"]) <= set(document["classes"])
        assert document["model"]["version"] == 1 and document["model"]["evaluation"]["accuracy"] > 0.9
        assert [v["version"] for v in document["registry"]["versions"]] == [2, 1]
        assert max(document["drift"]["features"].values()) < 0.25, "training rows do not drift"

        with browser.headless_chromium() as chromium:
            page = chromium.new_page(viewport={"width": 1440, "height": 900})
            watch = BrowserWatch(page)
            page.goto(f"{service.api.url}/dashboard")
            try:
                page.wait_for_selector("[data-panel]:not([data-state=data])", state="detached", timeout=30_000)
            except Exception:
                pytest.fail(f"panels not drawn with data: {panel_states(page)}; problems: {watch.problems}")
            for name in CHART_PANELS:
                assert page.locator(f"[data-panel='{name}'] .main-svg").count() >= 1, f"{name}: no plotly chart"
            for name, rows in TABLE_PANELS.items():
                assert page.locator(f"[data-panel='{name}'] table tbody tr").count() == rows, name
            assert page.inner_text("#tile-model .value") == "v1"
            assert page.inner_text("#tile-predictions .value") == "320"
            assert "Live" in page.inner_text("#status")
            screenshot = tmp_path / "dashboard.png"
            page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes().startswith(b"\x89PNG"), "a PNG screenshot is saved"
    assert watch.problems == []
    assert {urlsplit(url).path for url in watch.requests} >= {
        "/dashboard", "/dashboard/plotly.min.js", "/dashboard/dashboard.js", "/dashboard/dashboard.css",
        "/dashboard/data",
    }


@needs_browser
def test_an_idle_service_explains_each_empty_panel(home: StateHome):
    service = LocalService(home, GROUP, KEY, alarm_period_seconds=PERIOD).start()
    api = service.api.url
    with service, browser.headless_chromium() as chromium:
        page = chromium.new_page(viewport={"width": 1440, "height": 900})
        watch = BrowserWatch(page)
        page.goto(f"{api}/dashboard")
        page.wait_for_selector("[data-panel][data-state=loading]", state="detached", timeout=30_000)
        states = panel_states(page)
        hint = page.inner_text("[data-panel='predictions'] .empty")
        drift = page.inner_text("[data-panel='drift'] .empty")
    assert states["predictions"] == states["classes"] == states["drift"] == "empty"
    assert states["evaluation"] == states["registry"] == states["runs"] == "data", "the model is there already"
    assert "No predictions in the last 60 minutes" in hint
    assert f"curl -s -X POST {api}/predictions" in hint and str(home.api_key_file) in hint
    assert "at least 200 predictions are stored (0 so far)" in drift
    assert watch.problems == []


# -- the routes -----------------------------------------------------------------------------------------


def test_the_page_loads_nothing_from_elsewhere_and_plotly_is_the_packaged_one(home: StateHome):
    with LocalService(home, GROUP, KEY, alarm_period_seconds=PERIOD).start() as service:
        status, headers, page = request(service.api.url, "GET", "/dashboard")
        script = request(service.api.url, "GET", "/dashboard/plotly.min.js")
        no_key = http.client.HTTPConnection(service.api.url.removeprefix("http://"), timeout=10)
        no_key.request("GET", "/dashboard/data")
        data_status = no_key.getresponse().status
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "script-src 'self'" in headers["content-security-policy"]
    assert re.findall(r"""(?:src|href)=["']([^"']+)""", page.decode()) and all(
        link.startswith(("/", "data:")) for link in re.findall(r"""(?:src|href)=["']([^"']+)""", page.decode())
    )
    assert script[0] == 200 and script[2] == plotly_js() and b"plotly.js v" in script[2][:200]
    assert data_status == 200, "like /metrics, the dashboard needs no API key"


def test_requests_from_another_machine_are_refused(home: StateHome):
    with LocalService(home, GROUP, KEY, alarm_period_seconds=PERIOD).start() as service:
        for address in ("192.0.2.7", "10.0.0.1"):
            for path in ("/dashboard", "/dashboard/data", "/dashboard/plotly.min.js"):
                resource, _ = service.api.router.resource(path)  # the route the running gateway serves
                request = PlainRequest("GET", path, {}, {}, {}, b"", "id", address)
                status, _, body = resource.methods["GET"].respond(request)
                assert (status, json.loads(body)["message"]) == (
                    403, "the dashboard answers only on this machine: open it on 127.0.0.1")
    assert all(map(is_loopback, ("127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1")))
    assert not any(map(is_loopback, ("192.0.2.7", "::ffff:10.0.0.1", "")))


# -- `cloudviz serve` writes serve.json, `cloudviz dashboard` reads it ------------------------------------


def test_cloudviz_dashboard_finds_the_running_serve_and_says_when_there_is_none(home: StateHome):
    environment = {**os.environ, "CLOUDVIZ_API_KEY": KEY}
    serve_file = EndpointFiles.of(home, GROUP, "dev").serve_file
    serve = subprocess.Popen(
        [sys.executable, "-m", "cloudviz", "serve", "--api-port", "0", "--endpoint-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
    )
    try:
        printed = serve.stdout.readline() + serve.stdout.readline()  # serve.json is written before this
        assert serve_file.is_file(), printed
        found = subprocess.run([sys.executable, "-m", "cloudviz", "dashboard", "--no-browser", "--json"],
                               capture_output=True, text=True, env=environment)
        assert found.returncode == 0, found.stderr
        answer = json.loads(found.stdout)
        api = re.search(r"^API +(\S+)/predictions", printed, re.MULTILINE).group(1)
        assert answer["url"] == f"{api}/dashboard" and answer["opened"] is False
        assert answer["serve"]["pid"] == serve.pid
        assert request(api, "GET", "/dashboard")[0] == 200
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=60)
    assert serve.returncode == 0
    assert not serve_file.exists(), "serve removes serve.json when it stops"
    gone = subprocess.run([sys.executable, "-m", "cloudviz", "dashboard", "--no-browser"], capture_output=True,
                          text=True, env=environment)
    assert (gone.returncode, gone.stdout) == (2, "")
    assert gone.stderr == (f"cloudviz: error: cloudviz serve is not running on this state home (no "
                           f"{serve_file}): start it with `cloudviz serve`\n")


def test_cloudviz_dashboard_has_help():
    done = subprocess.run([sys.executable, "-m", "cloudviz", "dashboard", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("usage: cloudviz dashboard")
    assert "--no-browser" in done.stdout and "serve.json" in done.stdout


def test_a_serve_file_left_by_a_killed_serve_is_reported(home: StateHome):
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(exited.stdout)
    serve_file = EndpointFiles.of(home, GROUP, "dev").serve_file
    record_serve(serve_file, ServeRecord("http://127.0.0.1:9", "http://127.0.0.1:9", pid, GROUP))
    done = subprocess.run([sys.executable, "-m", "cloudviz", "dashboard", "--no-browser"], capture_output=True,
                          text=True)
    assert done.returncode == 2
    assert done.stderr == (f"cloudviz: error: cloudviz serve is not running: {serve_file} names process {pid},"
                           " which has exited; start it with `cloudviz serve`\n")


# -- the predictions window ---------------------------------------------------------------------------------


def stored(moment: datetime, count: int, label: str = "setosa") -> list[PredictionRecord]:
    return [
        PredictionRecord(prediction_id, timestamp_text(moment), {"x1": 5.1}, 0, label, None, 1, 0.5)
        for prediction_id in new_ids(moment, count)
    ]


def test_the_predictions_window_reads_only_new_rows_finds_late_ones_and_caps_what_it_holds(tmp_path: Path):
    store = SqliteStore(tmp_path / "predictions.db")
    now = datetime.now(UTC)
    store.put(stored(now - timedelta(hours=2), 5))  # older than the window: never shown
    store.put(stored(now - timedelta(minutes=30), 30))
    recent = RecentPredictions(store, max_rows=50)
    asked: list[str] = []  # the `since` bound of each read of the store
    newest = store.newest
    store.newest = lambda limit, since="", before="~": asked.append(since) or newest(limit, since, before)
    assert (len(recent.read(now)), recent.truncated) == (30, False)
    store.put(stored(now - timedelta(seconds=1), 6, "virginica"))
    assert len(recent.read(now)) == 36
    assert asked == [time_bound(now - timedelta(hours=1)),
                     time_bound(now - timedelta(minutes=30) - timedelta(seconds=OVERLAP_SECONDS))], \
        "the first read covers the hour, the next only what follows the newest row held (less the overlap)"
    store.put(stored(now - timedelta(seconds=3), 4, "virginica"))  # committed late, behind rows already read
    rows = recent.read(now)
    assert (len(rows), Counter(row.label for row in rows)) == (40, {"setosa": 30, "virginica": 10})
    store.put(stored(now, 20, "versicolor"))
    rows = recent.read(now)
    assert (len(rows), recent.truncated) == (50, True), "the cap keeps the newest rows and says so"
    assert Counter(row.label for row in rows) == {"versicolor": 20, "virginica": 10, "setosa": 20}
    later = now + timedelta(minutes=45)  # the dropped rows have left the window: nothing is missing now
    assert (len(recent.read(later)), recent.truncated) == (30, False)
