"""The `cloudviz` command: output for people and for scripts, exit statuses, one-line errors."""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from polling import wait_for
from terminal import read_until_closed

from cloudviz.cli import build_parser, main
from deploy.endpoint_state import EndpointFiles
from deploy.monitoring.alarm_history import AlarmHistory
from pipelines.registry import ModelRegistry
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
    assert "Metrics: accuracy 0.9167, macro F1" in out
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
    assert document["parameters"]["GateThreshold"] == 0.9


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
    assert "Failed: AccuracyBelowThreshold: Accuracy 0.9167 is below the threshold 0.99" in out
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
    assert "setosa" in out and "Data:       iris@1 (id " in out
    approved = json.loads(cli(capsys, "models", "list", "--status", "Approved", "--json")[1])
    assert [p["version"] for p in approved] == [2]


def test_pipeline_parameters_lists_defaults(capsys):
    code, out, _ = cli(capsys, "pipeline", "parameters", "--json")
    parameters = {p["name"]: p["default"] for p in json.loads(out)}
    assert parameters["MaxDepth"] == 5 and parameters["Eta"] == 0.2 and parameters["NumRound"] == 10
    assert parameters["ClassNames"] == "" and parameters["LabelColumn"] == ""  # from the data; iris's for iris


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
    code, out, _ = cli(capsys, "pipeline", "run", "--quiet", "--data", str(data), "--param", "LabelColumn=species",
                       "--param", "ClassNames=setosa,virginica,versicolor", "--param", "ModelPackageGroupName=Flowers")
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
    screen = read_until_closed(leader)
    assert process.wait() == 0
    os.close(leader)
    text = screen.decode()
    assert "\x1b[6F" in text  # moved back up over the six step lines to redraw them
    assert "✓ Preprocess" in text and "↷ AccuracyBelowThreshold" in text


# -- papercuts (issue 9) --------------------------------------------------------------------------------------

GROUP = "CloudVizIris"


@pytest.fixture
def versions(two_versions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateHome:
    """A copy of the session's state home with two runs and two pending versions, as CLOUDVIZ_HOME."""
    root = tmp_path / "versions"
    shutil.copytree(two_versions, root, symlinks=True)
    monkeypatch.setenv("CLOUDVIZ_HOME", str(root))
    monkeypatch.delenv("CLOUDVIZ_API_KEY", raising=False)
    return StateHome(root)


def test_version_is_the_installed_package_version():
    result = subprocess.run([*CLOUDVIZ, "--version"], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"cloudviz {metadata.version('cloudviz')}\n", "")


def test_top_level_help_describes_the_tool_its_commands_and_state():
    result = subprocess.run([*CLOUDVIZ, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "CloudViz trains a tabular XGBoost model" in result.stdout
    assert "parses arguments" not in result.stdout  # the module's docstring, written for developers
    for command, actions in (("models", "list, show, approve, reject"), ("runs", "list, show"),
                             ("alarms", "list, history"), ("promote", "local, aws")):
        assert re.search(rf"^  {command} +{actions}$", result.stdout, re.MULTILINE), command
    assert "deployments" in result.stdout and "$CLOUDVIZ_HOME (default ./.cloudviz)" in result.stdout


def test_the_cli_imports_without_aws_or_model_libraries():
    code = ("import sys, cloudviz.cli; cloudviz.cli.build_parser(); "
            "print(sorted({'boto3', 'xgboost', 'matplotlib', 'numpy', 'sklearn'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "[]\n"


def test_runs_are_named_by_latest_or_a_unique_prefix(home: StateHome, capsys, tmp_path: Path):
    assert cli(capsys, "runs", "show", "latest")[2].startswith("cloudviz: error: no runs yet under ")
    first = json.loads(cli(capsys, "pipeline", "run", "--quiet", "--json")[1])["run_id"]
    second = json.loads(cli(capsys, "pipeline", "run", "--quiet", "--json", "--param", "NumRound=5")[1])["run_id"]
    common = os.path.commonprefix([first, second])
    assert cli(capsys, "runs", "show", "latest")[1].startswith(f"Run {second}: Succeeded")
    code, out, _ = cli(capsys, "runs", "show", first[: len(common) + 1], "--json")
    assert code == 0 and json.loads(out)["run_id"] == first
    code, _, err = cli(capsys, "runs", "show", common)
    assert code == 2
    assert err == (f"cloudviz: error: run id prefix '{common}' is ambiguous: it starts 2 runs "
                   f"({', '.join(sorted([first, second]))})\n")
    code, _, err = cli(capsys, "report", "zz", "--output", str(tmp_path / "r"))
    assert code == 2 and err.startswith(f"cloudviz: error: no run 'zz' under {home.runs}")
    code, out, err = cli(capsys, "report", second[: len(common) + 1], "--output", str(tmp_path / "r"), "--json")
    assert code == 0, err
    assert f"Pipeline run {second}:" in Path(json.loads(out)["html"]).read_text(encoding="utf-8")


def test_status_filter_takes_any_letter_case(versions: StateHome, capsys):
    cli(capsys, "models", "approve", GROUP, "2")
    for spelling in ("approved", "APPROVED", "Approved"):
        code, out, _ = cli(capsys, "models", "list", "--status", spelling, "--json")
        assert code == 0 and [(p["version"], p["approval_status"]) for p in json.loads(out)] == [(2, "Approved")]
    assert cli(capsys, "models", "list", "--status", "rejected")[1] == "No Rejected versions.\n"
    result = subprocess.run([*CLOUDVIZ, "models", "list", "--status", "approve"], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice: 'approve'" in result.stderr


def test_models_list_and_deployments_say_what_is_live_where(versions: StateHome, capsys):
    assert cli(capsys, "deployments")[1].startswith("Nothing is deployed on this state home yet")
    cli(capsys, "models", "approve", GROUP, "1")
    cli(capsys, "models", "approve", GROUP, "2")
    assert cli(capsys, "deploy", "local", "--version", "1")[0] == 0
    assert cli(capsys, "deploy", "local", "--stage", "prod", "--version", "1", "--force")[0] == 0
    assert cli(capsys, "deploy", "local")[0] == 0  # the latest Approved: 2
    code, out, _ = cli(capsys, "models", "list")
    assert [line.split()[:4] for line in out.splitlines()] == [
        ["GROUP", "VERSION", "APPROVAL", "LIVE"], [GROUP, "2", "Approved", "dev"], [GROUP, "1", "Approved", "prod"]]
    listed = json.loads(cli(capsys, "models", "list", "--json")[1])
    assert [(p["version"], p["live"]) for p in listed] == [(2, ["dev"]), (1, ["prod"])]
    assert f"  Live:       dev ({GROUP}-endpoint) since " in cli(capsys, "models", "show", GROUP, "2")[1]

    cli(capsys, "models", "reject", GROUP, "1", "--reason", "bad")
    code, out, _ = cli(capsys, "deployments")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["GROUP", "STAGE", "VERSION", "APPROVAL", "SINCE", "(UTC)", "ENDPOINT",
                                              "REASON"]
    assert lines[1].split()[:4] == [GROUP, "dev", "2", "Approved"] and f"{GROUP}-endpoint" in lines[1]
    assert lines[2].split()[:4] == [GROUP, "prod", "1", "Rejected"] and f"{GROUP}-prod-endpoint" in lines[2]
    assert lines[3:] == [f"{GROUP}-endpoint: `cloudviz serve` is not running on this state home",
                         f"{GROUP}-prod-endpoint: `cloudviz serve --stage prod` is not running on this state home"]
    only_prod = json.loads(cli(capsys, "deployments", "--stage", "prod", "--json")[1])
    assert [(d["stage"], d["version"], d["approval_status"], d["serve"]) for d in only_prod] == [
        ("prod", 1, "Rejected", None)]
    history = [json.loads(line) for line in (versions.deployments / f"{GROUP}-prod-endpoint.history.jsonl")
               .read_text().splitlines()]
    assert only_prod[0]["deployed_at"] == history[-1]["deployed_at"]  # since when: the deployment's own record


def test_deployments_and_alarms_say_whether_serve_runs(versions: StateHome, capsys):
    cli(capsys, "models", "approve", GROUP, "1")
    serve = subprocess.Popen([*CLOUDVIZ, "serve", "--api-port", "0", "--endpoint-port", "0", "--alarm-period", "0.2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    files = EndpointFiles.of(versions, GROUP, "dev")
    try:
        printed = serve.stdout.readline()  # serve.json is written before the first line
        assert files.serve_file.is_file(), printed + serve.stderr.read()
        deployed = json.loads(cli(capsys, "deployments", "--json")[1])
        assert [(d["stage"], d["version"], d["serve"]["pid"]) for d in deployed] == [("dev", 1, serve.pid)]
        api = json.loads(files.serve_file.read_text())["api_url"]
        assert cli(capsys, "deployments")[1].splitlines()[-1] == (
            f"{GROUP}-endpoint: `cloudviz serve` is running (process {serve.pid}, API {api})")
        wait_for(lambda: AlarmHistory(files.alarms_db).states(), "serve to evaluate the alarms")
        assert "is not running" not in cli(capsys, "alarms", "list")[1]
        assert cli(capsys, "alarms", "list", "--stage", "prod")[1].splitlines()[-1] == (
            "`cloudviz serve --stage prod` is not running on this state home: start it to evaluate the alarms.")
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=60)
    code, out, _ = cli(capsys, "alarms", "list")
    assert code == 0 and out.splitlines()[-1] == (
        "`cloudviz serve` is not running on this state home: these are the states it recorded when it last ran;"
        " nothing is evaluated until it runs again.")


def test_models_show_prints_readable_lines_only(home: StateHome, capsys):
    cli(capsys, "pipeline", "run", "--quiet")
    ModelRegistry(home.registry_db).register(GROUP, "file:///tmp/model.tar.gz")  # v2: no metrics, no lineage
    code, out, _ = cli(capsys, "models", "show", GROUP, "1")
    assert code == 0
    assert "  Rows:       150 input, 97 train, 29 validation, 24 test\n" in out
    assert "  Features:   x1, x2, x3, x4\n  Classes:    setosa, virginica, versicolor\n" in out
    assert re.search(r"^  Data:       iris@1 \(id [0-9a-f]{16}\) sha256 [0-9a-f]{16}… \(3,678 bytes\)$", out,
                     re.MULTILINE)
    sparse = cli(capsys, "models", "show", GROUP, "2")[1]
    assert sparse.splitlines()[-1].startswith("  Updated:    ")
    for shown in (out, sparse):
        assert not re.search(r"None|[{}\[\]']", shown), shown


def test_run_json_carries_the_evaluation_metrics(home: StateHome, capsys):
    code, out, _ = cli(capsys, "pipeline", "run", "--quiet", "--json")
    document = json.loads(out)
    evaluation = json.loads((Path(document["steps"]["Evaluate"]["outputs"]["evaluation"]) / "evaluation.json")
                            .read_text())["multiclass_classification_metrics"]
    assert code == 0
    assert document["metrics"] == {name: evaluation[name]["value"] for name in
                                   ("accuracy", "macro_f1", "weighted_f1", "weighted_precision", "weighted_recall")}
    assert document["metrics"]["accuracy"] == pytest.approx(22 / 24)
    assert document["registered"] == {"model_package_group": GROUP, "version": 1,
                                      "approval_status": "PendingManualApproval"}
    shown = json.loads(cli(capsys, "runs", "show", document["run_id"], "--json")[1])
    assert shown["metrics"] == document["metrics"]


def test_run_summary_shows_the_gate_the_evaluation_decided(home: StateHome, capsys):
    code, out, _ = cli(capsys, "pipeline", "run", "--quiet")
    assert code == 0
    assert "\nGate: Accuracy 0.9167 is at or above the threshold 0.9\n" in out
    assert re.search(r"^CheckAccuracy +Succeeded +\S+ +condition: true$", out, re.MULTILINE)  # not "1 == 1"


def test_a_cached_run_reports_the_versions_current_approval_status(home: StateHome, capsys):
    cli(capsys, "pipeline", "run", "--quiet")
    cli(capsys, "models", "reject", GROUP, "1", "--reason", "not good enough")
    code, out, _ = cli(capsys, "pipeline", "run", "--quiet")
    assert code == 0 and "Register                Succeeded" in out and "cached, from run" in out
    assert f"Registered: {GROUP} version 1 (Rejected; registered as PendingManualApproval)\n" in out
    assert "approve it with" not in out
    document = json.loads(cli(capsys, "runs", "show", "latest", "--json")[1])
    assert document["registered"]["approval_status"] == "Rejected"
    assert document["steps"]["Register"]["properties"]["approval_status"] == "PendingManualApproval"  # as recorded


@pytest.mark.parametrize(("value", "message"), [("-1", "must be 0 or more, got -1"),
                                                ("two", "invalid integer value: 'two'")])
def test_serve_refuses_a_bad_worker_count_naming_the_option(capsys, value: str, message: str):
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--lambda-workers", value])
    assert exited.value.code == 2
    assert f"argument --lambda-workers: {message}" in capsys.readouterr().err
