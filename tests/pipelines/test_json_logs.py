"""JSON log files: one object a line with the call's fields, rotated by size; the runner's log of a real run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cloudviz.cli import main
from pipelines.json_logs import log_to_file
from pipelines.state import StateHome


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_pipeline_run_logs_every_step_and_the_run(home: StateHome, capsys: pytest.CaptureFixture[str]):
    assert main(["pipeline", "run", "--quiet", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    logged = lines(home.logs / "runner.log")
    steps = [(entry["step"], entry["status"]) for entry in logged if "step" in entry]
    assert steps == [("Preprocess", "Succeeded"), ("Train", "Succeeded"), ("Evaluate", "Succeeded"),
                     ("CheckAccuracy", "Succeeded"), ("Register", "Succeeded")]
    assert all(entry["run_id"] == run_id and entry["level"] == "INFO" for entry in logged)
    assert all(isinstance(entry["duration_seconds"], float) for entry in logged if "step" in entry)
    assert logged[-1]["message"] == f"run {run_id} Succeeded" and logged[-1]["status"] == "Succeeded"
    assert logged[0]["logger"] == "pipelines.runner" and logged[0]["time"].endswith("+00:00")


def test_fields_and_exceptions_become_keys(tmp_path: Path):
    log_to_file(tmp_path / "x.log", "cloudviz-test-fields")
    logger = logging.getLogger("cloudviz-test-fields")
    logger.info("served", extra={"request_id": "r1", "status": 200, "latency_ms": 1.5, "model_version": 3})
    try:
        raise ValueError("broken")
    except ValueError:
        logger.exception("failed")
    served, failed = lines(tmp_path / "x.log")
    assert {k: served[k] for k in ("message", "request_id", "status", "latency_ms", "model_version")} == {
        "message": "served", "request_id": "r1", "status": 200, "latency_ms": 1.5, "model_version": 3,
    }
    assert failed["level"] == "ERROR" and "ValueError: broken" in failed["exception"]


def test_files_rotate_by_size_and_a_second_call_replaces_the_file(tmp_path: Path):
    log_to_file(tmp_path / "first.log", "cloudviz-test-rotation", max_bytes=2000)
    logger = logging.getLogger("cloudviz-test-rotation")
    for i in range(100):
        logger.info("line %d", i)
    rotated = sorted(p.name for p in tmp_path.iterdir())
    assert rotated[:3] == ["first.log", "first.log.1", "first.log.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    log_to_file(tmp_path / "second.log", "cloudviz-test-rotation")
    logger.info("after")
    assert [entry["message"] for entry in lines(tmp_path / "second.log")] == ["after"]
    assert "after" not in (tmp_path / "first.log").read_text()
