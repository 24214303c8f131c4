"""A resumed run keeps the options it was started with (``--no-cache``), and reports the version it registered
itself, not one another run registered meanwhile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloudviz.cli import build_parser, main
from pipelines.dag import Param, Parameter, Pipeline, ProcessingInput, ProcessingOutput, ProcessingStep, StepOutput
from pipelines.definition import build_pipeline
from pipelines.registry import ModelRegistry
from pipelines.runner import LocalRunner
from pipelines.runs import EXECUTING, RunRecord, RunStore
from pipelines.state import StateHome

COPY = """
    import argparse, pathlib
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-dir")
    base = pathlib.Path(parser.parse_args().base_dir)
    (base / "out").mkdir()
    source = next(path for path in (base / "input").rglob("*") if path.is_file())
    (base / "out" / "copy.txt").write_text(source.read_text())
"""


class InterruptAt:
    """A RunObserver standing for the user's Ctrl-C as ``step`` starts: the run ends Failed, to be resumed."""

    def __init__(self, step: str) -> None:
        self.step = step

    def run_changed(self, record: RunRecord) -> None:
        if record.steps[self.step].status == EXECUTING:
            raise KeyboardInterrupt


def interrupted(runner: LocalRunner, overrides: dict[str, str], use_cache: bool = True) -> RunRecord:
    """Start a run that the runner's observer interrupts; its record as saved."""
    with pytest.raises(KeyboardInterrupt):
        runner.start(overrides, use_cache=use_cache)
    failed = RunStore(runner.home.runs).list()[0]
    assert failed.status == "Failed" and failed.failure_reason.startswith("interrupted")
    return failed


@pytest.fixture
def two_steps(home: StateHome, write_script, tmp_path: Path):
    """A pipeline of two real copying steps, First -> Second, and its inputs."""
    script = write_script("copy.py", COPY)
    data = tmp_path / "data.txt"
    data.write_text("payload")
    pipeline = Pipeline(
        name="Two",
        parameters=(Parameter("InputData", "String", ""),),
        steps=(
            ProcessingStep(name="First", code=str(script),
                           inputs=(ProcessingInput("raw", Param("InputData"), "/opt/ml/processing/input"),),
                           outputs=(ProcessingOutput("out", "/opt/ml/processing/out"),)),
            ProcessingStep(name="Second", code=str(script),
                           inputs=(ProcessingInput("raw", StepOutput("First", "out"), "/opt/ml/processing/input"),),
                           outputs=(ProcessingOutput("out", "/opt/ml/processing/out"),)),
        ),
    )
    return pipeline, {"InputData": str(data)}, tmp_path


def test_a_run_started_without_the_cache_resumes_without_it(home: StateHome, two_steps):
    pipeline, inputs, scripts = two_steps
    failed = interrupted(LocalRunner(home, pipeline, InterruptAt("Second"), repo_root=scripts), inputs,
                         use_cache=False)
    other = LocalRunner(home, pipeline, repo_root=scripts).start(inputs)  # meanwhile: Second is in the cache now
    assert other.steps["Second"].cached_from is None

    resumed = LocalRunner(home, pipeline, repo_root=scripts).resume(failed.run_id)
    assert resumed.status == "Succeeded"
    assert resumed.steps["Second"].cached_from is None, "executed, as the run began: not taken from the cache"
    assert Path(resumed.steps["Second"].outputs["out"]).is_relative_to(failed.folder)
    assert resumed.steps["First"].started_at == failed.steps["First"].started_at  # what succeeded is kept
    assert failed.options == RunStore(home.runs).load(failed.run_id).options == {"use_cache": False}


def test_a_resume_may_choose_otherwise_and_later_resumes_keep_that(home: StateHome, two_steps):
    pipeline, inputs, scripts = two_steps
    failed = interrupted(LocalRunner(home, pipeline, InterruptAt("Second"), repo_root=scripts), inputs,
                         use_cache=False)
    other = LocalRunner(home, pipeline, repo_root=scripts).start(inputs)
    with pytest.raises(KeyboardInterrupt):  # the override is recorded before the resume executes anything
        LocalRunner(home, pipeline, InterruptAt("Second"), repo_root=scripts).resume(failed.run_id, use_cache=True)
    resumed = LocalRunner(home, pipeline, repo_root=scripts).resume(failed.run_id)
    assert resumed.steps["Second"].cached_from == other.run_id
    assert (resumed.resumed, resumed.options) == (2, {"use_cache": True})


def test_a_run_recorded_before_options_were_kept_resumes_with_the_cache(tmp_path: Path):
    document = {"run_id": "20261201-000000-abcdef", "pipeline": "P", "parameters": {}, "folder": str(tmp_path),
                "status": "Failed", "steps": {}}
    assert RunRecord.from_dict(document).uses_cache()


def test_the_resume_command_takes_the_runs_choice_unless_told(home: StateHome, capsys):
    parser = build_parser()
    assert parser.parse_args(["pipeline", "resume", "latest"]).use_cache is None
    assert parser.parse_args(["pipeline", "resume", "latest", "--no-cache"]).use_cache is False
    assert parser.parse_args(["pipeline", "resume", "latest", "--cache"]).use_cache is True
    with pytest.raises(SystemExit) as exit_status:
        parser.parse_args(["pipeline", "resume", "latest", "--cache", "--no-cache"])
    assert exit_status.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_interleaved_runs_each_report_the_version_they_registered(home: StateHome, capsys):
    """Run A (--no-cache) is interrupted before Evaluate; run B registers version 1; A resumed registers and
    reports version 2, its own: not B's, which the cache holds."""
    first = interrupted(LocalRunner(home, build_pipeline(), InterruptAt("Evaluate")), {}, use_cache=False)
    second = LocalRunner(home, build_pipeline()).start({})
    assert second.registered()["version"] == 1
    assert second.steps["Train"].cached_from == first.run_id  # B took what A had made

    assert main(["pipeline", "resume", first.run_id, "--json", "--quiet"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["run_id"], document["status"]) == (first.run_id, "Succeeded")
    assert document["registered"]["version"] == 2
    assert document["steps"]["Register"]["cached_from"] is None
    registry = ModelRegistry(home.registry_db)
    assert registry.get("CloudVizIris", 2).lineage["run_id"] == first.run_id
    assert registry.get("CloudVizIris", 1).lineage["run_id"] == second.run_id
    assert RunStore(home.runs).load(second.run_id).registered()["version"] == 1
