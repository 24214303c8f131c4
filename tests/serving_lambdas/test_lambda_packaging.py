"""The serving Lambdas as packaged: imports limited to the standard library, boto3 and their own package, one store
a process, metrics as embedded metric format log lines, CORS when the stack sets an origin."""

from __future__ import annotations

import ast
import json
import sys
import time
from pathlib import Path

import pytest
from lambda_events import SEED, rest_event
from project_root import ROOT

from serving_lambdas import inference, retrieve
from serving_lambdas.store import SqliteStore, StoreSpec, open_store

PACKAGE = ROOT / "serving_lambdas"


# -- packaging --------------------------------------------------------------------------------------------------


def test_the_lambdas_import_only_the_standard_library_boto3_and_their_own_package():
    allowed = set(sys.stdlib_module_names) | {"boto3", "botocore", "serving_lambdas", "__future__"}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]} if node.level == 0 else set()
            else:
                continue
            assert roots <= allowed, f"{path.name} imports {roots - allowed}"


def test_a_store_spec_opens_one_store_per_process(tmp_path: Path):
    spec = StoreSpec("sqlite", str(tmp_path / "predictions.db"))
    assert open_store(spec) is open_store(spec)
    assert isinstance(open_store(spec), SqliteStore)


def test_metrics_are_embedded_metric_format_log_lines(capsys: pytest.CaptureFixture[str]):
    from serving_lambdas import metrics  # noqa: PLC0415

    metrics.emit({"Predictions": (2, "Count"), "ModelLatency": (1.5, "Milliseconds")}, Endpoint="e", Label="setosa")
    line = json.loads(capsys.readouterr().out)
    assert line["_aws"]["CloudWatchMetrics"] == [{
        "Namespace": "CloudViz",
        "Dimensions": [["Endpoint", "Label"]],
        "Metrics": [{"Name": "Predictions", "Unit": "Count"}, {"Name": "ModelLatency", "Unit": "Milliseconds"}],
    }]
    assert (line["Endpoint"], line["Label"], line["Predictions"], line["ModelLatency"]) == ("e", "setosa", 2, 1.5)
    assert abs(line["_aws"]["Timestamp"] / 1000 - time.time()) < 60
    received: list[dict] = []
    metrics.set_sink(received.append)
    try:
        metrics.emit({"StoreErrors": (1, "Count")}, Endpoint="e")
    finally:
        metrics.set_sink(None)
    assert capsys.readouterr().out == "" and received[0]["StoreErrors"] == 1


def test_answers_carry_cors_to_the_origins_the_stack_lists(live):
    """On AWS nothing adds CORS to a proxy response; locally the gateway does and the variable is unset."""

    def from_origin(event: dict, origin: str) -> dict:
        return {**event, "headers": {**event["headers"], "origin": origin}}  # HTTP/2 clients send it lower-case

    event = from_origin(rest_event("POST", "/predictions", json.dumps(SEED)), "https://app.example.com")
    headers = inference.handler(event, None)["headers"]
    assert not {name for name in headers if name.startswith("Access-Control-")} and "Vary" not in headers
    live.setenv("CORS_ALLOW_ORIGINS", "https://app.example.com,https://admin.example.com")
    events = (event, from_origin(rest_event("POST", "/predictions", "{"), "https://admin.example.com"),
              from_origin(rest_event("GET", "/predictions"), "https://app.example.com"))
    for handler, asked in zip((inference.handler, inference.handler, retrieve.handler), events, strict=True):
        headers = handler(asked, None)["headers"]
        assert headers["Access-Control-Allow-Origin"] == asked["headers"]["origin"]
        assert {"X-Next-Token", "Idempotent-Replayed"} <= set(headers["Access-Control-Expose-Headers"].split(","))
        assert headers["Vary"] == "Origin"
    headers = inference.handler(from_origin(event, "https://evil.example"), None)["headers"]
    assert "Access-Control-Allow-Origin" not in headers and headers["Vary"] == "Origin"
