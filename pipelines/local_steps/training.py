"""A training step: the built-in XGBoost trainer, one process per instance, each in its own ``/opt/ml`` root."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path

from pipelines.builtin_xgboost.hyperparameters import HyperparameterError, stand_in
from pipelines.builtin_xgboost.hyperparameters import validate as validate_hyperparameters
from pipelines.dag import JsonGet, Param, TrainingStep, sent
from pipelines.errors import UserError
from pipelines.local_steps.scripts import StepFailed, fresh_step_folder, link, run_scripts
from pipelines.run_values import format_value, resolve
from pipelines.runs import RunRecord

TRAINER = Path(__file__).resolve().parent.parent / "builtin_xgboost" / "train.py"


def run_training(record: RunRecord, step: TrainingStep, on_tick: Callable[[], None]) -> dict[str, str]:
    """One trainer process per instance, each in its own ``/opt/ml`` root (``ml/`` on one instance,
    ``ml/algo-<i>`` on several) with the files SageMaker gives that host; the output ``model`` holds the first
    host's model as model.tar.gz."""
    folder = fresh_step_folder(record, step.name)
    ml = folder / "ml"
    hosts = [f"algo-{i}" for i in range(1, int(resolve(step.instance_count, record)) + 1)]
    roots = {host: ml if len(hosts) == 1 else ml / host for host in hosts}
    hyperparameters = {k: format_value(resolve(v, record)) for k, v in step.hyperparameters.items()
                       if sent(step, k, record.parameters)}
    channels = {
        c: {"ContentType": step.content_type, "TrainingInputMode": "File",
            "S3DistributionType": "ShardedByS3Key" if c in step.sharded_channels else "FullyReplicated"}
        for c in step.channels
    }
    for host, root in roots.items():
        config = root / "input" / "config"
        config.mkdir(parents=True)
        for name, document in (("hyperparameters", hyperparameters), ("inputdataconfig", channels),
                               ("resourceconfig", {"current_host": host, "hosts": hosts})):
            (config / f"{name}.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
    for channel, source in step.channels.items():
        source_path = Path(resolve(source, record))
        if len(hosts) > 1 and channel in step.sharded_channels:
            for root, files in zip(roots.values(), deal_files(source_path, len(hosts)), strict=True):
                (root / "input" / "data" / channel).mkdir(parents=True)  # SageMaker's, even when empty
                for path in files:
                    link(path, root / "input" / "data" / channel / path.parent.relative_to(source_path))
        else:
            for root in roots.values():
                link(source_path, root / "input" / "data" / channel)
    argv = {host: ["--ml-root", str(root)] + (["--tracker-dir", str(ml / "tracker")] if len(hosts) > 1 else [])
            for host, root in roots.items()}
    run_scripts(record, step.name, TRAINER, argv, on_tick)
    stored = [root / "model" for root in roots.values() if (root / "model").is_dir()]
    if not stored:
        raise StepFailed("no host stored a model")
    output = folder / "output" / "model"
    output.mkdir(parents=True)
    with tarfile.open(output / "model.tar.gz", "w:gz") as archive:
        for path in sorted(stored[0].iterdir()):
            archive.add(path, arcname=path.name)
    return {"model": str(output)}


def deal_files(folder: Path, hosts: int) -> list[list[Path]]:
    """A folder's files dealt to ``hosts`` hosts in key order, as a ShardedByS3Key channel deals a prefix's
    objects: host i gets files i, i + hosts, ... (fewer files than hosts: some hosts get none)."""
    files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())
    return [files[i::hosts] for i in range(hosts)]


def check_hyperparameters(step: TrainingStep, values: dict) -> None:
    """The hyperparameters as the container will check them, before a run starts; one the data decides (a JsonGet)
    stands in as a valid value until Train checks the real one."""
    resolved = {
        k: stand_in(k) if isinstance(v, JsonGet) else format_value(values[v.name] if isinstance(v, Param) else v)
        for k, v in step.hyperparameters.items()
        if sent(step, k, values)
    }
    try:
        validate_hyperparameters(resolved)
    except HyperparameterError as error:
        raise UserError(f"{step.name}: {error}") from None
