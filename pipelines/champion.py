"""The champion a run's Evaluate compares the new model with: the group's live model, on the local target.

``ChampionModelData`` left empty is resolved before the run starts to a folder of the state home holding the
model live in prod (else dev) as ``model.tar.gz``, its data schema as ``schema.json`` (Evaluate matches features and
classes by name with it) and a ``champion.json`` naming its group, version and stage; a group with no live model
gets the empty no-champion folder. The folder's content, not its path, keys the step cache, so a new deployment
reruns Evaluate; a registered version's files do not change, so a run copies them only when the folder lacks them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from deploy.aws.names import STAGES
from deploy.deployments import Deployment, DeploymentStore
from pipelines.artifacts import artifact_path
from pipelines.errors import UserError
from pipelines.registry import ModelRegistry
from pipelines.runs import RunStore
from pipelines.state import StateHome, write_json_atomic

CHAMPION_PARAMETER = "ChampionModelData"
CHAMPION_SCHEMA_PARAMETER = "ChampionDataSchema"  # locally the champion folder holds it; on AWS its own input
CHAMPION_FILE = "champion.json"  # read by evaluation/evaluate.py, which imports nothing of ours
MODEL_ARCHIVE = "model.tar.gz"
CHAMPION_SCHEMA = "schema.json"  # read by evaluation/evaluate.py


def no_champion_folder(home: StateHome) -> Path:
    """The no-champion marker: an empty folder (Evaluate then gates on the threshold alone)."""
    folder = home.root / "no-champion"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def live_deployment(store: DeploymentStore, group: str) -> Deployment | None:
    """The group's deployment on its furthest stage: prod's, else dev's; None when it has none."""
    live = {record.stage: record for record in store.live() if record.group == group}
    return next((live[stage] for stage in reversed(STAGES) if stage in live), None)


def local_champion(home: StateHome, group: str) -> Path:
    """The champion folder of ``group``'s live model, or the no-champion marker."""
    deployment = live_deployment(DeploymentStore(home.deployments), group)
    if deployment is None:
        return no_champion_folder(home)
    package, runs = ModelRegistry(home.registry_db).get(group, deployment.version), RunStore(home.runs)
    try:
        model = artifact_path(package, "model", runs)
    except UserError as error:
        raise UserError(f"parameter {CHAMPION_PARAMETER}: the live model of {group} on {deployment.stage}: {error}; "
                        f"give {CHAMPION_PARAMETER}=PATH to compare with another model") from None
    folder = home.root / "champions" / group / str(package.version)
    folder.mkdir(parents=True, exist_ok=True)
    copy_when_changed(model, folder / MODEL_ARCHIVE)
    try:
        copy_when_changed(artifact_path(package, "schema", runs), folder / CHAMPION_SCHEMA)
    except UserError:  # a version registered without its schema: Evaluate compares by counts alone
        (folder / CHAMPION_SCHEMA).unlink(missing_ok=True)
    write_json_atomic(folder / CHAMPION_FILE, {"group": group, "version": package.version,
                                               "stage": deployment.stage, "model_data_url": package.model_data_url})
    return folder


def copy_when_changed(source: Path, target: Path) -> None:
    """``target`` a copy of ``source``, copied unless it already is one (same size and modification time)."""
    stat = source.stat()
    if target.is_file() and (target.stat().st_size, target.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns):
        return
    temporary = target.parent.parent / f".{target.parent.name}.{target.name}.{os.getpid()}.tmp"  # not in the input
    shutil.copy2(source, temporary)
    os.replace(temporary, target)  # concurrent runs each replace it with the same bytes


def champion_of(value: object) -> dict | None:
    """Which model a run's ChampionModelData value named: its ``champion.json``, the file given, or None (no
    champion)."""
    path = Path(str(value)) if str(value).strip() else None
    if path is None or not path.exists():
        return None
    if path.is_file():
        return {"model_data_url": path.as_uri()}
    known = path / CHAMPION_FILE
    return json.loads(known.read_text(encoding="utf-8")) if known.is_file() else None
