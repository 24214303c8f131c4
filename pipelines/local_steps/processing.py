"""A processing step: its script run with the ``/opt/ml/processing`` layout rooted in the step's folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

from pipelines.dag import ProcessingStep
from pipelines.local_steps.scripts import StepFailed, fresh_step_folder, link, run_scripts
from pipelines.run_values import format_value, resolve
from pipelines.runs import RunRecord

PROCESSING_ROOT = PurePosixPath("/opt/ml/processing")


def run_processing(
    record: RunRecord, step: ProcessingStep, repo_root: Path, on_tick: Callable[[], None]
) -> dict[str, str]:
    """Run the step's script on its inputs; its outputs, by name, as folders."""
    base = fresh_step_folder(record, step.name) / "processing"
    for item in step.inputs:
        link(Path(resolve(item.source, record)), base / container_relative(item.destination))
    arguments = [format_value(resolve(a, record)) for a in step.arguments]
    run_scripts(record, step.name, repo_root / step.code, {"algo-1": [*arguments, "--base-dir", str(base)]}, on_tick)
    outputs = {o.name: str(base / container_relative(o.source)) for o in step.outputs}
    missing = [name for name, path in outputs.items() if not Path(path).exists()]
    if missing:
        raise StepFailed(f"the script wrote no output for {', '.join(missing)}")
    return outputs


def container_relative(destination: str) -> Path:
    return Path(PurePosixPath(destination).relative_to(PROCESSING_ROOT))
