"""`cloudviz deploy local` and `cloudviz serve`: choosing the version, blue/green swaps, the API key."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cloudviz.commands.serve import DEFAULT_LAMBDA_WORKERS
from deploy.api_key import api_key
from deploy.deployments import DeploymentStore
from deploy.local_service import LocalService
from deploy.release import deploy_local
from pipelines.errors import UserError
from pipelines.registry import ModelRegistry
from pipelines.state import StateHome

GROUP = "CloudVizIris"
KEY = "k" * 32
SEED = {"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5}


@pytest.fixture
def home(two_versions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateHome:
    """A copy of the state home with two pending versions, for one test (without the runs)."""
    root = tmp_path / "home"
    shutil.copytree(two_versions, root, ignore=shutil.ignore_patterns("runs", "cache"))
    monkeypatch.setenv("CLOUDVIZ_HOME", str(root))
    monkeypatch.delenv("CLOUDVIZ_API_KEY", raising=False)
    return StateHome(root)


def registry(home: StateHome) -> ModelRegistry:
    return ModelRegistry(home.registry_db)


def deploy(home: StateHome, version: int | None = None, force: bool = False):
    return deploy_local(registry(home), DeploymentStore(home.deployments), GROUP, version, force, "test")


def post(url: str, body: object, key: str = KEY) -> tuple[int, dict]:
    host = url.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=10)
    connection.request("POST", "/predictions", json.dumps(body), {"x-api-key": key, "Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


# -- choosing the version -------------------------------------------------------------------------


def test_nothing_approved_is_refused_with_the_command_to_approve(home: StateHome):
    with pytest.raises(UserError, match=r"CloudVizIris has no Approved version to deploy: approve one with "):
        deploy(home)


def test_the_latest_approved_version_is_deployed_by_default(home: StateHome):
    registry(home).update_approval(GROUP, 1, "Approved")
    registry(home).update_approval(GROUP, 2, "Approved")
    deployment, model = deploy(home)
    assert (deployment.version, model.version) == (2, 2)
    assert DeploymentStore(home.deployments).current("CloudVizIris-endpoint") == deployment


def test_a_version_that_is_not_approved_needs_force(home: StateHome):
    with pytest.raises(UserError, match="version 2 is PendingManualApproval, not Approved: .* or deploy it anyway"):
        deploy(home, version=2)
    assert DeploymentStore(home.deployments).current("CloudVizIris-endpoint") is None
    deployment, _ = deploy(home, version=2, force=True)
    assert deployment.version == 2


def test_a_broken_artifact_is_refused_and_recorded(home: StateHome, tmp_path: Path):
    registry(home).update_approval(GROUP, 1, "Approved")
    deploy(home)
    broken = tmp_path / "model.tar.gz"
    broken.write_bytes(b"not a tarball")
    registry(home).register(GROUP, broken.as_uri(), "Approved")
    with pytest.raises(UserError, match="CloudVizIris version 3 cannot be served: "):
        deploy(home)
    store = DeploymentStore(home.deployments)
    assert store.current("CloudVizIris-endpoint").version == 1
    assert [event["event"] for event in store.history("CloudVizIris-endpoint")] == ["deployed", "refused"]


def test_cli_deploy_local(home: StateHome):
    registry(home).update_approval(GROUP, 1, "Approved")
    done = subprocess.run([sys.executable, "-m", "cloudviz", "deploy", "local", "--json"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 1
    done = subprocess.run([sys.executable, "-m", "cloudviz", "deploy", "local", "--version", "2"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("cloudviz: error: CloudVizIris version 2 is PendingManualApproval, not Approved")


# -- the API key ----------------------------------------------------------------------------------


def test_api_key_is_generated_once_and_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CLOUDVIZ_API_KEY", raising=False)
    path = tmp_path / "api-key"
    key = api_key(path)
    assert len(key) >= 20 and api_key(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv("CLOUDVIZ_API_KEY", KEY)
    assert api_key(path) == KEY
    monkeypatch.setenv("CLOUDVIZ_API_KEY", "short")
    with pytest.raises(UserError, match="CLOUDVIZ_API_KEY must be at least 20 characters"):
        api_key(path)


# -- serving and blue/green -----------------------------------------------------------------------


def test_serve_answers_the_seed_example_with_the_live_version(home: StateHome):
    registry(home).update_approval(GROUP, 1, "Approved")
    with LocalService(home, GROUP, KEY).start() as service:
        status, answer = post(service.api.url, SEED)
    assert status == 200, answer
    assert (answer["prediction"], answer["label"], answer["model_version"]) == (1, "virginica", 1)


@pytest.mark.parametrize(("lambda_workers", "endpoint_process"), [(0, False), (2, True)],
                         ids=["all in-process", "handlers and endpoint in processes of their own"])
def test_approving_a_newer_version_swaps_it_in_with_no_failed_request(home: StateHome, lambda_workers: int,
                                                                      endpoint_process: bool):
    registry(home).update_approval(GROUP, 1, "Approved")
    events: list[str] = []
    with LocalService(home, GROUP, KEY, on_event=events.append, lambda_workers=lambda_workers,
                      endpoint_process=endpoint_process).start(poll_seconds=0.05) as service:
        failures: list[tuple[int, dict]] = []
        versions: set[int] = set()
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                status, answer = post(service.api.url, SEED)
                if status != 200:
                    failures.append((status, answer))
                else:
                    versions.add(answer["model_version"])

        clients = [threading.Thread(target=client) for _ in range(4)]
        for thread in clients:
            thread.start()
        deadline = time.monotonic() + 10
        while 1 not in versions and time.monotonic() < deadline:
            time.sleep(0.05)
        registry(home).update_approval(GROUP, 2, "Approved")
        deadline = time.monotonic() + 10
        while service.live.version != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        deadline = time.monotonic() + 10  # answers say version 2 once the handler's version lookup expires (1 s)
        while 2 not in versions and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for thread in clients:
            thread.join()
    assert failures == []
    assert versions == {1, 2}
    approved_at = registry(home).get(GROUP, 2).updated_at
    assert events == [f"CloudVizIris-endpoint: version 1 -> 2 (approved at {approved_at})"]
    assert DeploymentStore(home.deployments).current("CloudVizIris-endpoint").version == 2


def test_a_newly_approved_version_that_cannot_serve_leaves_the_old_one_live(home: StateHome, tmp_path: Path):
    registry(home).update_approval(GROUP, 1, "Approved")
    events: list[str] = []
    with LocalService(home, GROUP, KEY, on_event=events.append).start(poll_seconds=0.05) as service:
        broken = tmp_path / "model.tar.gz"
        broken.write_bytes(b"not a tarball")
        registry(home).register(GROUP, broken.as_uri(), "Approved", lineage=registry(home).get(GROUP, 1).lineage)
        deadline = time.monotonic() + 10
        while not events and time.monotonic() < deadline:
            time.sleep(0.05)
        status, answer = post(service.api.url, SEED)
    assert events[0].startswith("kept version 1 live: CloudVizIris version 3 cannot be served: ")
    assert len(events) == 1, "a refused version is not retried every poll"
    assert (status, answer["model_version"]) == (200, 1)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_command_prints_what_to_call_and_stops_on_ctrl_c(home: StateHome, stop: signal.Signals):
    registry(home).update_approval(GROUP, 1, "Approved")
    environment = {**os.environ, "CLOUDVIZ_API_KEY": KEY}
    process = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "cloudviz", "serve", "--api-port", "0", "--endpoint-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
    )
    try:
        lines = [process.stdout.readline()]
        while lines[-1] and not lines[-1].startswith("A version"):  # the banner's last line (or the end)
            lines.append(process.stdout.readline())
        assert lines[0].startswith("Endpoint  CloudVizIris-endpoint at http://127.0.0.1:"), lines
        assert "serving CloudVizIris version 1" in lines[0]
        api = lines[1].split()[1].removesuffix("/predictions")
        assert lines[2].startswith(f"API key   {KEY}   (send it as x-api-key; CLOUDVIZ_API_KEY)")
        assert lines[3].startswith(f"Try       curl -s -X POST {api}/predictions -H 'x-api-key: {KEY}'")
        assert lines[-2].startswith("Smoke     version 1 passed: version 1 predicted virginica for the example;")
        assert "cloudviz promote local --from dev --to prod" in lines[-1]
        status, answer = post(api, SEED)
        assert (status, answer["prediction"]) == (200, 1)
        children = psutil.Process(process.pid).children()
        workers = [child for child in children if "deploy.gateway.lambda_worker" in " ".join(child.cmdline())]
        assert len(workers) == DEFAULT_LAMBDA_WORKERS  # the handlers' processes
        endpoint = [child for child in children if "deploy.endpoint.hosting_main" in " ".join(child.cmdline())]
        assert len(endpoint) == 1  # the endpoint's own
    finally:
        process.send_signal(stop)
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)  # faulthandler (-X faulthandler) prints every thread's stack
            out, err = process.communicate()
            pytest.fail(f"serve did not stop on {stop.name}:\n{err}")
    assert process.returncode == 0, err
    assert "Stopping." in out and "Traceback" not in err
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in workers + endpoint)


def test_an_endpoint_process_that_dies_is_started_again_with_the_live_model(home: StateHome):
    registry(home).update_approval(GROUP, 1, "Approved")
    events: list[str] = []
    with LocalService(home, GROUP, KEY, on_event=events.append,
                      endpoint_process=True).start(poll_seconds=0.05) as service:
        assert post(service.api.url, SEED)[0] == 200
        pid, port = service.endpoint_server.pid, service.endpoint_server.port
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # 503s until it is back
            status, answer = post(service.api.url, SEED)
            if status == 200:
                break
            assert status == 503, answer
        assert status == 200 and answer["model_version"] == 1
        assert service.endpoint_server.port == port and service.endpoint_server.pid != pid
    assert events == [f"{service.endpoint}: the endpoint's process ended (exit status -9); starting it again"]


def test_endpoint_down_is_a_503_and_nothing_is_stored(home: StateHome):
    registry(home).update_approval(GROUP, 1, "Approved")
    with LocalService(home, GROUP, KEY).start() as service:
        status, answer = post(service.api.url, SEED)
        assert status == 200
        service.endpoint_server.close()
        status, answer = post(service.api.url, {"input_data": [list(SEED.values())] * 3})
        connection = http.client.HTTPConnection(service.api.url.removeprefix("http://"), timeout=10)
        connection.request("GET", "/predictions", headers={"x-api-key": KEY})
        stored = json.loads(connection.getresponse().read())
    assert (status, answer) == (503, {"message": "the model endpoint is unavailable; nothing was stored, retry later"})
    assert len(stored) == 1


# -- metrics --------------------------------------------------------------------------------------


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=")  # the Prometheus text format
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_move_under_traffic(home: StateHome):
    registry(home).update_approval(GROUP, 1, "Approved")
    with LocalService(home, GROUP, KEY).start() as service:
        api, endpoint = service.api.url, service.endpoint_server.url
        before = scrape(api)
        for _ in range(3):
            assert post(api, SEED)[0] == 200
        assert post(api, {"x1": 1})[0] == 400
        assert post(api, SEED, key="wrong-key-0123456789")[0] == 403
        after, at_endpoint = scrape(api), scrape(endpoint)
    route = ("route", "/predictions")
    assert ("cloudviz_api_requests_total", (("method", "POST"), route, ("status", "200"))) not in before
    assert after[("cloudviz_api_requests_total", (("method", "POST"), route, ("status", "200")))] == 3
    assert after[("cloudviz_api_requests_total", (("method", "POST"), route, ("status", "400")))] == 1
    assert after[("cloudviz_api_requests_total", (("method", "POST"), route, ("status", "403")))] == 1
    assert after[("cloudviz_api_request_duration_seconds_count", (("method", "POST"), route))] == 5
    assert after[("cloudviz_predictions_total", (("label", "virginica"),))] == 3
    assert after[("cloudviz_store_write_duration_seconds_count", ())] == 3
    assert after[("cloudviz_api_model_latency_seconds_count", ())] == 3
    assert after.get(("cloudviz_store_errors_total", ()), 0) == 0
    assert at_endpoint[("cloudviz_endpoint_invocations_total", (("status", "200"),))] == 3
    assert at_endpoint[("cloudviz_model_latency_seconds_count", ())] == 3
    assert at_endpoint[("cloudviz_model_version_live", (("endpoint", "CloudVizIris-endpoint"),))] == 1
