"""A processing step: its script run with the ``/opt/ml/processing`` layout rooted in the step's folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

from pipelines.dag import ProcessingInput, ProcessingStep
from pipelines.data.manifest import parse_manifest
from pipelines.errors import UserError
from pipelines.local_steps.scripts import StepFailed, fresh_step_folder, link, run_scripts
from pipelines.run_values import format_value, resolve
from pipelines.runs import RunRecord

PROCESSING_ROOT = PurePosixPath("/opt/ml/processing")
MANIFEST_FILE = "ManifestFile"


def run_processing(
    record: RunRecord, step: ProcessingStep, repo_root: Path, on_tick: Callable[[], None]
) -> dict[str, str]:
    """Run the step's script on its inputs; its outputs, by name, as folders."""
    base = fresh_step_folder(record, step.name) / "processing"
    for item in step.inputs:
        materialize(item, record, base / container_relative(item.destination))
    arguments = [format_value(resolve(a, record)) for a in step.arguments]
    run_scripts(record, step.name, repo_root / step.code, {"algo-1": [*arguments, "--base-dir", str(base)]}, on_tick)
    outputs = {o.name: str(base / container_relative(o.source)) for o in step.outputs}
    missing = [name for name, path in outputs.items() if not Path(path).exists()]
    if missing:
        raise StepFailed(f"the script wrote no output for {', '.join(missing)}")
    return outputs


def materialize(item: ProcessingInput, record: RunRecord, target: Path) -> None:
    """The input in its folder, as SageMaker downloads it: a prefix whole, a manifest's files at their keys."""
    source = Path(resolve(item.source, record))
    if resolve(item.data_type, record) == MANIFEST_FILE:
        link_manifest(source, target)
    else:
        link(source, target)


def link_manifest(manifest: Path, target: Path) -> None:
    """Link each file the manifest lists to ``target/<key>``; a UserError naming the manifest (and the part) when
    it is no SageMaker manifest, or a part it lists does not exist."""
    if not manifest.is_file():
        raise UserError(f"{manifest}: InputDataType is {MANIFEST_FILE}, but this is not a manifest file")
    try:
        parts = parse_manifest(manifest.read_bytes(), str(manifest)).local_files()
    except UserError as error:
        message = str(error)
        raise UserError(message if message.startswith(str(manifest)) else f"{manifest}: {message}") from None
    target.mkdir(parents=True, exist_ok=True)
    for key, path in parts:
        if not path.is_file():
            raise UserError(f"{manifest}: part {key} does not exist ({path})")
        (target / key).parent.mkdir(parents=True, exist_ok=True)
        (target / key).symlink_to(path)


def container_relative(destination: str) -> Path:
    return Path(PurePosixPath(destination).relative_to(PROCESSING_ROOT))
