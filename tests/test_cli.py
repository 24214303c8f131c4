"""The `cloudviz` command: output for people and for scripts, exit statuses, one-line errors."""

from __future__ import annotations

import argparse
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from cloudviz.cli import build_parser, main
from pipelines.state import StateHome

CLOUDVIZ = [sys.executable, "-m", "cloudviz"]


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[list[str]]:
    """Every command and group of the parser, as the words that name it (the top level is [])."""
    found = [list(path)]
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its subcommands nowhere else
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, child in action.choices.items():
                found += commands(child, (*path, name))
    return found


def test_the_help_test_covers_the_commands_users_know():
    assert {("alarms", "history"), ("dashboard",), ("deploy", "aws"), ("destroy", "aws"), ("pipeline", "definition"),
            ("promote", "local")} <= {tuple(command) for command in commands(build_parser())}


@pytest.mark.parametrize("command", commands(build_parser()), ids=lambda command: " ".join(command) or "cloudviz")
def test_every_command_has_help(command: list[str]):
    result = subprocess.run([*CLOUDVIZ, *command, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: cloudviz")


def test_pipeline_run_prints_the_summary(home: StateHome, capsys):
    code, out, err = cli(capsys, "pipeline", "run")
    assert code == 0, err
    assert out.startswith("Run ") and ": Succeeded" in out.splitlines()[0]
    for step in ("Preprocess", "Train", "Evaluate", "CheckAccuracy", "Register"):
        assert f"\n{step} " in out
    assert "Metrics: accuracy 0.9583, macro F1" in out
    assert "Registered: CloudVizIris version 1 (PendingManualApproval)" in out
    assert "approve it with: cloudviz models approve CloudVizIris 1" in out
    # Not a terminal: one plain line per status change, on stderr.
    assert "Preprocess: Executing\nPreprocess: Succeeded in " in err
    assert "\x1b[" not in err


def test_pipeline_run_json_is_the_run_record(home: StateHome, capsys):
    code, out, _ = cli(capsys, "pipeline", "run", "--json", "--quiet")
    document = json.loads(out)
    assert code == 0
    assert document["status"] == "Succeeded"
    assert document["steps"]["Register"]["properties"]["version"] == 1
    assert document["parameters"]["AccuracyThreshold"] == 0.9


def test_run_list_and_show(home: StateHome, capsys):
    assert cli(capsys, "runs", "list")[1].startswith("No runs yet")
    cli(capsys, "pipeline", "run", "--quiet")
    cli(capsys, "pipeline", "run", "--quiet", "--param", "AccuracyThreshold=0.99")
    code, out, _ = cli(capsys, "runs", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["RUN", "STATUS", "STARTED", "(UTC)", "TIME", "ACCURACY", "REGISTERED"]
    assert "Failed" in lines[1] and "Succeeded" in lines[2] and "CloudVizIris v1" in lines[2]
    runs = json.loads(cli(capsys, "runs", "list", "--json")[1])
    assert [r["status"] for r in runs] == ["Failed", "Succeeded"]
    code, out, _ = cli(capsys, "runs", "show", runs[0]["run_id"])
    assert code == 0
    assert "Failed: AccuracyBelowThreshold: Accuracy 0.9583 is below the threshold 0.99" in out
    assert f"resume it with: cloudviz pipeline resume {runs[0]['run_id']}" in out


def test_failed_run_exits_1(home: StateHome, capsys):
    code, out, _ = cli(capsys, "pipeline", "run", "--quiet", "--param", "AccuracyThreshold=0.99")
    assert code == 1
    assert "AccuracyBelowThreshold  Failed" in out


def test_models_list_show_approve_reject(home: StateHome, capsys):
    cli(capsys, "pipeline", "run", "--quiet")
    cli(capsys, "pipeline", "run", "--quiet", "--no-cache")
    code, out, _ = cli(capsys, "models", "list")
    assert code == 0
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [
        ["CloudVizIris", "2", "PendingManualApproval"], ["CloudVizIris", "1", "PendingManualApproval"],
    ]
    code, out, _ = cli(capsys, "models", "approve", "CloudVizIris", "2")
    assert (code, out) == (0, "CloudVizIris version 2: Approved\n")
    code, out, _ = cli(capsys, "models", "reject", "CloudVizIris", "1", "--reason", "superseded", "--json")
    assert json.loads(out)["approval_status"] == "Rejected"
    assert json.loads(out)["status_reason"] == "superseded"
    code, out, _ = cli(capsys, "models", "show", "CloudVizIris", "latest")
    assert out.startswith("CloudVizIris version 2\n")
    assert "Approval:   Approved" in out
    assert "setosa" in out and "Data:       iris.csv sha256" in out
    approved = json.loads(cli(capsys, "models", "list", "--status", "Approved", "--json")[1])
    assert [p["version"] for p in approved] == [2]


def test_pipeline_parameters_lists_defaults(capsys):
    code, out, _ = cli(capsys, "pipeline", "parameters", "--json")
    parameters = {p["name"]: p["default"] for p in json.loads(out)}
    assert parameters["MaxDepth"] == 5 and parameters["Eta"] == 0.2 and parameters["NumRound"] == 10
    assert parameters["ClassNames"] == "setosa,virginica,versicolor"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["runs", "show", "nope"], "cloudviz: error: no run 'nope' under "),
        (["models", "show", "CloudVizIris", "3"], "cloudviz: error: no model package CloudVizIris version 3"),
        (["models", "approve", "CloudVizIris", "9"], "cloudviz: error: no model package CloudVizIris version 9"),
        (["models", "approve", "Nope", "latest"], "cloudviz: error: no model package group 'Nope' (or it has no"),
        (["pipeline", "run", "--param", "Foo=1"], "cloudviz: error: unknown parameter 'Foo'"),
        (["pipeline", "run", "--param", "Eta"], "cloudviz: error: --param 'Eta': expected NAME=VALUE"),
        (["pipeline", "run", "--param", "Eta=abc"], "cloudviz: error: parameter Eta: expected float, got 'abc'"),
        (["pipeline", "run", "--data", "missing.csv"], "cloudviz: error: parameter InputData: no such file"),
        (["pipeline", "resume", "nope"], "cloudviz: error: no run 'nope' under "),
    ],
)
def test_user_errors_are_one_line_with_exit_2(home: StateHome, capsys, argv: list[str], message: str):
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert err.startswith(message)
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_data_fails_the_run_naming_the_line(home: StateHome, capsys, tmp_path: Path):
    data = tmp_path / "flowers.csv"
    data.write_text("x1,x2,x3,x4,species\n5.1,3.5,1.4,0.2,setosa\n4.9,3.0,1.4,0.2,tulip\n")
    code, out, _ = cli(capsys, "pipeline", "run", "--quiet", "--data", str(data))
    assert code == 1
    assert "line 3, column 'species': unknown label 'tulip' (expected one of: setosa, virginica, versicolor)" in out


def test_usage_errors_exit_2_without_traceback(home: StateHome):
    result = subprocess.run([*CLOUDVIZ, "models", "approve", "CloudVizIris", "zero"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "argument VERSION: expected a version number (1, 2, ...) or 'latest', got 'zero'" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(home: StateHome):
    result = subprocess.run([*CLOUDVIZ, "--debug", "runs", "show", "nope"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "NotFoundError: no run 'nope'" in result.stderr


def test_progress_redraws_in_place_on_a_terminal(home: StateHome):
    leader, follower = pty.openpty()
    process = subprocess.Popen([*CLOUDVIZ, "pipeline", "run"], stdout=subprocess.DEVNULL, stderr=follower,
                               env={**os.environ, "TERM": "xterm"})
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    assert process.wait() == 0
    os.close(leader)
    text = screen.decode()
    assert "\x1b[6F" in text  # moved back up over the six step lines to redraw them
    assert "✓ Preprocess" in text and "↷ AccuracyBelowThreshold" in text
