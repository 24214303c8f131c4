"""Serving benchmark: the local endpoint against `mlflow models serve` on the same model, and the API end to end.

One model (the pipeline's, trained on iris by the real runner into ``benchmarks/.data/serving/``) is served by

* endpoint: CloudViz's local endpoint (``deploy.endpoint.EndpointServer``) in its own process, answering
  ``POST /invocations`` with a single-row ``text/csv`` body;
* mlflow: ``mlflow models serve --env-manager local`` on the same booster, saved with
  ``mlflow.xgboost.save_model``, answering the same row as ``application/json`` in MLflow's documented ``inputs``
  tensor format (``{"inputs": [[...]]}``; its CSV input goes through pandas ``read_csv``, an unfairly slow peer).
  MLflow lives in its own virtual environment (``.venv-bench-mlflow``, made on first use), not in the project's;
* api: ``cloudviz serve`` as users run it (started with this interpreter, ``python -m cloudviz serve``), answering
  ``POST /predictions`` with the original API's JSON body and an API key: gateway, inference Lambda, boto3
  ``invoke_endpoint``, the endpoint, and the SQLite write of every prediction, in whatever processes
  ``cloudviz serve`` runs them.

The load comes from ``wrk`` (C, keep-alive connections; installed with apt when missing), with the same
connections, threads and duration for every side, after a warm-up; the sides alternate for ``--rounds`` rounds
and the medians are compared. A side that answers anything but 2xx fails the run. Each side's CPU time per
request is its server process tree's (user + system, psutil) over the measured run, and the tree's process count
(after the warm-up) is reported.

Targets (issue 12 item 9, at the default 16 connections): endpoint requests/s >= 2x MLflow's; endpoint p99
<= 10 ms; API requests/s >= 1x MLflow's; API p99 <= 25 ms; no failed request. Rewrites the "Serving" section of
``benchmarks/README.md``; exit status 1 when a target is missed.

    .venv/bin/python benchmarks/bench_serving.py [--connections N] [--duration S] [--rounds N] [--no-readme]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
from common import HERE, REPO, machine, positive_int, progress, table, write_section

SECTION = "## Serving: `make bench-serving`"
WORK = HERE / ".data" / "serving"
MLFLOW_VENV = REPO / ".venv-bench-mlflow"
MLFLOW_PACKAGES = ["mlflow==3.*", "xgboost-cpu==3.0.5", "pandas"]
API_KEY = "bench-serving-api-key-0123456789"
ROW = [6.7, 3.3, 5.7, 2.5]
FEATURES = ("x1", "x2", "x3", "x4")
CSV_ROW = ",".join(map(str, ROW))
JSON_ROW = json.dumps(dict(zip(FEATURES, ROW, strict=True)))  # the original API's body
MLFLOW_JSON_ROW = json.dumps({"inputs": [ROW]})  # MLflow's documented tensor input for a pyfunc
API_SIDE = (
    f"`cloudviz serve`, `POST /predictions` with `{JSON_ROW}` and the API key: the gateway (with its access-log "
    "line), the inference Lambda, boto3 `invoke_endpoint`, the endpoint and the SQLite write of every prediction, in "
    "the processes `cloudviz serve` runs (its whole process tree's CPU is counted)."
)
ENDPOINT_VS_MLFLOW_TARGET = 2.0
ENDPOINT_P99_TARGET_MS = 10.0
API_VS_MLFLOW_TARGET = 1.0
API_P99_TARGET_MS = 25.0
WRK_DONE = """
done = function(summary, latency, requests)
  io.write(string.format('\\n{"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d,'
    .. ' "p50_us": %d, "p90_us": %d, "p99_us": %d}\\n', summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Target:
    """One side's server: how to start it, where it answers, and the request wrk sends."""

    name: str
    command: list[str]
    environment: dict[str, str]
    ready_path: str
    path: str
    content_type: str
    body: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Load:
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    failures: int
    cpu_us_per_request: float  # the server process tree's user + system CPU time over the run
    processes: int  # processes in the server's tree after the warm-up


# -- set-up ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def trained_home() -> Path:
    """A state home with the pipeline's model registered, approved and deployed (reused across runs)."""
    home = WORK / "home"
    shutil.rmtree(home / "endpoints", ignore_errors=True)  # earlier runs' predictions and access log
    for stale in (*home.glob("predictions.db*"), home / "logs" / "api-access.log"):  # a home of before: serve
        stale.unlink(missing_ok=True)  # would move them into the endpoint's folder
    cloudviz = [sys.executable, "-m", "cloudviz"]
    environment = {**os.environ, "CLOUDVIZ_HOME": str(home)}
    for step in (["pipeline", "run", "--quiet"], ["models", "approve", "CloudVizIris", "latest"], ["deploy", "local"]):
        subprocess.run(cloudviz + step, env=environment, check=True, stdout=subprocess.DEVNULL)
    return home


def model_tarball(home: Path) -> Path:
    deployment = json.loads((home / "deployments" / "CloudVizIris-endpoint.json").read_text(encoding="utf-8"))
    return Path(deployment["model_data_url"].removeprefix("file://"))


def mlflow_model(tarball: Path) -> Path:
    """The same booster as an MLflow model, saved by MLflow's own xgboost flavor (in MLflow's environment)."""
    python = MLFLOW_VENV / "bin" / "python"
    if not python.exists():
        progress(f"installing MLflow into {MLFLOW_VENV.relative_to(REPO)} (once) ...")
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *MLFLOW_PACKAGES], check=True)
    folder = WORK / "mlflow-model"
    shutil.rmtree(folder, ignore_errors=True)
    script = (
        "import sys, tarfile, tempfile, xgboost, mlflow.xgboost\n"
        "with tempfile.TemporaryDirectory() as tmp:\n"
        "    tarfile.open(sys.argv[1]).extractall(tmp, filter='data')\n"
        "    booster = xgboost.Booster(model_file=tmp + '/xgboost-model')\n"
        "mlflow.xgboost.save_model(booster, sys.argv[2])\n"
    )
    subprocess.run([str(python), "-c", script, str(tarball), str(folder)], check=True)
    return folder


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        progress("installing wrk with apt-get ...")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit("bench-serving needs wrk (apt-get install wrk)")
    return found


def targets(home: Path, tarball: Path, mlflow_dir: Path) -> list[Target]:
    endpoint_port, mlflow_port, api_port, api_endpoint_port = (free_port() for _ in range(4))
    return [
        Target(
            "endpoint",
            [sys.executable, __file__, "--serve-endpoint", str(tarball), "--port", str(endpoint_port)],
            {}, f"http://127.0.0.1:{endpoint_port}/ping", f"http://127.0.0.1:{endpoint_port}/invocations",
            "text/csv", CSV_ROW, {},
        ),
        Target(
            "mlflow",
            [str(MLFLOW_VENV / "bin" / "mlflow"), "models", "serve", "-m", str(mlflow_dir), "--env-manager", "local",
             "--host", "127.0.0.1", "--port", str(mlflow_port)],
            # MLflow starts `uvicorn` through the shell: its environment's bin folder must be on PATH.
            {"MLFLOW_TRACKING_URI": f"file://{WORK / 'mlruns'}",
             "PATH": f"{MLFLOW_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"},
            f"http://127.0.0.1:{mlflow_port}/ping", f"http://127.0.0.1:{mlflow_port}/invocations",
            "application/json", MLFLOW_JSON_ROW, {},
        ),
        Target(
            "api",
            [sys.executable, "-m", "cloudviz", "serve", "--api-port", str(api_port),
             "--endpoint-port", str(api_endpoint_port)],
            {"CLOUDVIZ_HOME": str(home), "CLOUDVIZ_API_KEY": API_KEY},
            f"http://127.0.0.1:{api_port}/openapi.json", f"http://127.0.0.1:{api_port}/predictions",
            "application/json", JSON_ROW,
            {"x-api-key": API_KEY},
        ),
    ]


# -- running a side -------------------------------------------------------------------------------


def start(target: Target, log: Path) -> subprocess.Popen:
    handle = log.open("w")
    process = subprocess.Popen(target.command, env={**os.environ, **target.environment}, stdout=handle,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{target.name} server exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(target.ready_path, timeout=1) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    stop(process)
    raise SystemExit(f"{target.name} server did not become ready in 120 s; see {log}")


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wrk_script(target: Target, folder: Path) -> Path:
    headers = {"Content-Type": target.content_type, **target.headers}
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(target.body)}"]
    lines += [f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}" for name, value in headers.items()]
    path = folder / f"{target.name}.lua"
    path.write_text("\n".join(lines) + "\n" + WRK_DONE, encoding="utf-8")
    return path


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants so far."""
    total = 0.0
    for process in process_tree(pid):
        with contextlib.suppress(psutil.Error):  # it ended between the listing and the read
            times = process.cpu_times()
            total += times.user + times.system
    return total


def load(wrk: str, target: Target, script: Path, connections: int, threads: int, seconds: int, server: int) -> Load:
    processes = len(process_tree(server))  # the measured run comes after the warm-up
    cpu_before = cpu_seconds(server)
    run = subprocess.run(
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(script), target.path],
        capture_output=True, text=True, check=False,
    )
    if run.returncode != 0:
        raise SystemExit(f"wrk failed on the {target.name} side ({run.returncode}): {run.stderr.strip()}")
    output = run.stdout
    cpu = cpu_seconds(server) - cpu_before
    figures = json.loads(output.strip().splitlines()[-1])
    return Load(
        requests_per_second=figures["requests"] / (figures["duration_us"] / 1e6),
        p50_ms=figures["p50_us"] / 1000,
        p90_ms=figures["p90_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        requests=figures["requests"],
        failures=figures["status_errors"] + figures["socket_errors"],
        cpu_us_per_request=cpu / max(figures["requests"], 1) * 1e6,
        processes=processes,
    )


def check_answer(target: Target) -> str:
    """One request by hand before the load: the side must answer the row, and we record what it answered."""
    request = urllib.request.Request(target.path, data=target.body.encode(), method="POST",
                                     headers={"Content-Type": target.content_type, **target.headers})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read().decode()


def api_breakdown(tarball: Path, calls: int = 2000) -> dict[str, float]:
    """Microseconds per call of each stage of the API path, one at a time in this process (no contention): where
    the API's time goes."""
    sys.path.insert(0, str(REPO))
    import http.client

    from deploy.endpoint import EndpointServer, ModelSlot, ServingModel
    from deploy.monitoring.metrics import ApiMetrics
    from serving_lambdas import metrics as lambda_metrics
    from serving_lambdas.config import inference_settings
    from serving_lambdas.endpoint import invoke
    from serving_lambdas.inference import handler, make_records
    from serving_lambdas.records import new_ids, timestamp_text, utc_now
    from serving_lambdas.store import SqliteStore

    def per_call(action: object) -> float:
        for _ in range(200):
            action()
        started = time.perf_counter()
        for _ in range(calls):
            action()
        return (time.perf_counter() - started) / calls * 1e6

    row = CSV_ROW.encode()
    with tempfile.TemporaryDirectory() as scratch, EndpointServer(
        ModelSlot(ServingModel.load(tarball, version=1)), name="bench"
    ).start() as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port)

        def raw_invocation() -> None:
            connection.request("POST", "/endpoints/bench/invocations", row,
                               {"Content-Type": "text/csv", "Accept": "application/json"})
            connection.getresponse().read()

        store = SqliteStore(Path(scratch) / "predictions.db")
        os.environ.update({
            "ENDPOINT_NAME": "bench", "SAGEMAKER_RUNTIME_URL": server.url, "FEATURE_NAMES": ",".join(FEATURES),
            "CLASS_NAMES": "setosa,virginica,versicolor", "PREDICTION_STORE": f"sqlite:{store.path}",
            "AWS_DEFAULT_REGION": "us-east-1",
        })
        lambda_metrics.set_sink(ApiMetrics().observe_lambda)  # as in cloudviz serve, not printed
        answer = invoke("bench", server.url, [ROW])
        settings = inference_settings()
        event = {"httpMethod": "POST", "resource": "/predictions", "path": "/predictions", "isBase64Encoded": False,
                 "headers": {"Content-Type": "application/json"},
                 "body": JSON_ROW}
        return {
            "the inference handler, whole (validation, boto3 invoke_endpoint, SQLite write)": per_call(
                lambda: handler(event, None)
            ),
            "endpoint round trip over HTTP (http.client; the endpoint's own work included)": per_call(raw_invocation),
            "the same through boto3 invoke_endpoint": per_call(lambda: invoke("bench", server.url, [ROW])),
            "SQLite write of one prediction": per_call(
                lambda: store.put(make_records([ROW], answer, settings, [None]))
            ),
            "ids and timestamp of one prediction": per_call(lambda: (new_ids(utc_now(), 1), timestamp_text(utc_now()))),
        }


# -- report ---------------------------------------------------------------------------------------


def mlflow_server(log: Path) -> str:
    """The server and worker count `mlflow models serve` chose, from the command it logs running."""
    match = re.search(r"Running command '(?:exec )?(\S+) .*?--workers (\d+)", log.read_text(encoding="utf-8"))
    return f"{match[1]}, {match[2]} worker(s)" if match else "not found in its log"


def median_load(loads: list[Load]) -> Load:
    return Load(*(statistics.median(getattr(one, name) for one in loads) for name in Load.__dataclass_fields__))


def verdicts(runs: dict[str, list[Load]]) -> list[tuple[str, str, str, bool]]:
    medians = {name: median_load(loads) for name, loads in runs.items()}
    endpoint, mlflow, api = medians["endpoint"], medians["mlflow"], medians["api"]
    failures = sum(one.failures for loads in runs.values() for one in loads)
    endpoint_vs_mlflow = endpoint.requests_per_second / mlflow.requests_per_second
    api_vs_mlflow = api.requests_per_second / mlflow.requests_per_second
    return [
        ("endpoint requests/s / MLflow's", f">= {ENDPOINT_VS_MLFLOW_TARGET:.1f}", f"{endpoint_vs_mlflow:.2f}",
         endpoint_vs_mlflow >= ENDPOINT_VS_MLFLOW_TARGET),
        ("endpoint p99 latency", f"<= {ENDPOINT_P99_TARGET_MS:.0f} ms", f"{endpoint.p99_ms:.2f} ms",
         endpoint.p99_ms <= ENDPOINT_P99_TARGET_MS),
        ("API requests/s / MLflow's", f">= {API_VS_MLFLOW_TARGET:.1f}", f"{api_vs_mlflow:.2f}",
         api_vs_mlflow >= API_VS_MLFLOW_TARGET),
        ("API p99 latency", f"<= {API_P99_TARGET_MS:.0f} ms", f"{api.p99_ms:.2f} ms", api.p99_ms <= API_P99_TARGET_MS),
        ("failed requests (non-2xx, socket errors), all sides", "0", f"{failures:,}", failures == 0),
    ]


def section(
    runs: dict[str, list[Load]], answers: dict[str, str], breakdown: dict[str, float], options: argparse.Namespace,
    info: dict, mlflow_server_used: str, command: str,
) -> str:
    medians = {name: median_load(loads) for name, loads in runs.items()}
    rows = [
        [name, f"{m.requests_per_second:,.0f}", ", ".join(f"{one.requests_per_second:,.0f}" for one in runs[name]),
         f"{m.p50_ms:.2f}", f"{m.p90_ms:.2f}", f"{m.p99_ms:.2f}", f"{m.cpu_us_per_request:,.0f}",
         ", ".join(str(one.processes) for one in runs[name]), str(sum(one.failures for one in runs[name]))]
        for name, m in medians.items()
    ]
    lines = [
        SECTION, "",
        "The same model (the pipeline's iris model, `multi:softprob`) served three ways, loaded by `wrk` with the "
        f"same settings: {options.connections} keep-alive connections, {options.threads} wrk thread(s), "
        f"{options.duration} s per measurement after a {options.warmup} s warm-up, sides alternating, "
        f"{options.rounds} rounds; medians compared.", "",
        "- **endpoint**: CloudViz's local endpoint in its own process, `POST /invocations`, `text/csv` body "
        f"`{CSV_ROW}`.",
        "- **mlflow**: `mlflow models serve --env-manager local` on the same booster saved with "
        "`mlflow.xgboost.save_model`, MLflow's default server settings (it ran "
        f"{mlflow_server_used}), the same row as `application/json` in MLflow's documented `inputs` tensor format, "
        f"`{MLFLOW_JSON_ROW}` (its CSV input goes through pandas `read_csv`, which would make it an unfairly slow "
        "peer).",
        f"- **api**: {API_SIDE}", "",
        "Server CPU is each side's whole process tree's user + system time over the measured run; \"server "
        "processes\" is the size of that tree (the root and all its descendants) counted after each round's warm-up.",
        "",
        f"Command: `{command}`. Run on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.", "",
        "### Machine", "", *table(["", ""], [[k, v] for k, v in info.items()]), "",
        "### Results", "",
        *table(["side", "requests/s (median)", "each round", "p50 ms", "p90 ms", "p99 ms", "server CPU µs/request",
                "server processes (each round)", "failed requests"], rows),
        "",
        *table(["target", "limit", "measured", "result"],
               [[name, limit, measured, "PASS" if ok else "FAIL"] for name, limit, measured, ok in verdicts(runs)]),
        "", "What each side answered to the row:", "",
        *(f"- {name}: `{answer.strip()}`" for name, answer in answers.items()),
        "", "### Where the API's time goes", "",
        "Each stage of the API path timed alone, serially in one process with no contention (microseconds per "
        "call):", "",
        *table(["stage", "µs per call"], [[name, f"{value:,.0f}"] for name, value in breakdown.items()]),
    ]
    return "\n".join(lines)


# -- entry points ---------------------------------------------------------------------------------


def serve_endpoint(tarball: Path, port: int) -> None:
    """The endpoint side's server process, until SIGTERM."""
    sys.path.insert(0, str(REPO))
    from deploy.endpoint import EndpointServer, ModelSlot, ServingModel

    server = EndpointServer(ModelSlot(ServingModel.load(tarball, version=1)), name="CloudVizIris-endpoint", port=port)
    server.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=positive_int, default=16, help="keep-alive connections (default 16)")
    parser.add_argument("--threads", type=positive_int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--duration", type=positive_int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=positive_int, default=3, help="seconds of warm-up per side (default 3)")
    parser.add_argument("--rounds", type=positive_int, default=3, help="rounds of all sides (default 3)")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite benchmarks/README.md")
    parser.add_argument("--serve-endpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    arguments = sys.argv[1:] if argv is None else argv
    command = " ".join(["python benchmarks/bench_serving.py", *arguments]) if arguments else "make bench-serving"
    if options.serve_endpoint:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        serve_endpoint(options.serve_endpoint, options.port)
        return 0

    wrk = ensure_wrk()
    WORK.mkdir(parents=True, exist_ok=True)
    home = trained_home()
    tarball = model_tarball(home)
    mlflow_dir = mlflow_model(tarball)
    wrk_version = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False).stdout.split()[1]
    mlflow_version = subprocess.run(
        [str(MLFLOW_VENV / "bin" / "python"), "-c", "import mlflow; print(mlflow.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    info = {**machine(("xgboost",)), "mlflow": mlflow_version, "wrk": wrk_version}
    runs: dict[str, list[Load]] = {}
    answers: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for round_number in range(1, options.rounds + 1):
            for target in targets(home, tarball, mlflow_dir):
                process = start(target, WORK / f"{target.name}.log")
                try:
                    answers[target.name] = check_answer(target)
                    script = wrk_script(target, folder)
                    load(wrk, target, script, options.connections, options.threads, options.warmup, process.pid)
                    measured = load(wrk, target, script, options.connections, options.threads, options.duration,
                                    process.pid)
                finally:
                    stop(process)
                runs.setdefault(target.name, []).append(measured)
                progress(f"round {round_number} {target.name}: {measured.requests_per_second:,.0f} requests/s, "
                         f"p99 {measured.p99_ms:.2f} ms, {measured.failures} failed")
    progress("timing the API path's stages ...")
    text = section(runs, answers, api_breakdown(tarball), options, info, mlflow_server(WORK / "mlflow.log"), command)
    print(text)
    if not options.no_readme:
        write_section(SECTION, text)
        progress("wrote benchmarks/README.md")
    return 0 if all(ok for *_, ok in verdicts(runs)) else 1


if __name__ == "__main__":
    sys.exit(main())
