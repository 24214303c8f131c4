"""Each local endpoint's serving state in a folder of its own: ``<state home>/endpoints/<endpoint>/``.

Store, alarms and logs apart per endpoint, as each AWS endpoint has its own table, alarms and log groups.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deploy.aws.names import STAGES
from deploy.deployments import Deployment, DeploymentStore
from deploy.release import local_endpoint_name
from pipelines import sqlite_files
from pipelines.errors import NotFoundError, UserError
from pipelines.state import StateHome
from serving_lambdas.store.sqlite import COLUMNS, SCHEMA, writers_lock_file

logger = logging.getLogger(__name__)
LOCK_FILE = ".endpoints.lock"  # in the state home: one process migrates, the others wait for it
# Each file of an endpoint's folder, and where a state home of before kept it for its first stage.
STAGE_FILES = {"predictions_db": "predictions.db", "alarms_db": "alarms.db", "access_log": "logs/api-access.log",
               "serve_log": "logs/serve.log", "serve_file": "serve.json"}
BATCH_ROWS = 10_000


@dataclass(frozen=True)
class EndpointFiles:
    """The files of one local endpoint's serving state (created by their writers when first needed)."""

    endpoint: str
    folder: Path

    @classmethod
    def of(cls, home: StateHome, group: str, stage: str) -> EndpointFiles:
        """The files of ``group``'s endpoint on ``stage``."""
        return cls.named(home, local_endpoint_name(group, stage))

    @classmethod
    def named(cls, home: StateHome, endpoint: str) -> EndpointFiles:
        """The files of ``endpoint``, once the state home's files of before are in the endpoints' folders."""
        migrate_stage_files(home)
        return _files(home, endpoint)

    @property
    def predictions_db(self) -> Path:
        return self.folder / "predictions.db"

    @property
    def alarms_db(self) -> Path:
        return self.folder / "alarms.db"

    @property
    def access_log(self) -> Path:
        return self.folder / "api-access.log"

    @property
    def serve_log(self) -> Path:
        return self.folder / "serve.log"

    @property
    def serve_file(self) -> Path:
        """Where a running ``cloudviz serve`` of the endpoint answers (removed when it stops)."""
        return self.folder / "serve.json"


def _files(home: StateHome, endpoint: str) -> EndpointFiles:
    return EndpointFiles(endpoint, home.endpoints / endpoint)


def stage_file(home: StateHome, name: str, stage: str) -> Path:
    """Where a state home of before kept file ``name`` (a key of STAGE_FILES) of ``stage``: the first stage under
    the plain name, another beside it (``predictions.db`` -> ``predictions-prod.db``)."""
    path = home.root / STAGE_FILES[name]
    return path if stage == STAGES[0] else path.with_name(f"{path.stem}-{stage}{path.suffix}")


def unassigned(path: Path) -> Path:
    """Where a file of before whose endpoint cannot be told is kept (``predictions.db`` ->
    ``predictions.unassigned.db``)."""
    return path.with_name(f"{path.stem}.unassigned{path.suffix}")


def migrate_stage_files(home: StateHome) -> None:
    """Move the per-stage files of before into the endpoints' folders; nothing to do (and no lock taken) once
    they are gone. A stage that one endpoint ever served gives it its files whole. A stage of several endpoints
    has its predictions split row by row (``split_predictions``) and its other files kept, renamed
    ``*.unassigned.*``: alarm states and the logs are rebuilt by serving. Safe to run from several processes
    at once, and again after a crash: rows are copied before their file is removed, and never twice."""
    if not any(stage_file(home, name, stage).exists() for stage in STAGES for name in STAGE_FILES):
        return
    home.root.mkdir(parents=True, exist_ok=True)
    with (home.root / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        for stage in STAGES:
            _migrate_stage(home, stage)


def _migrate_stage(home: StateHome, stage: str) -> None:
    legacy = {name: stage_file(home, name, stage) for name in STAGE_FILES}
    if not any(path.exists() for path in legacy.values()):
        return
    store = DeploymentStore(home.deployments)
    deployments = {endpoint: served for endpoint in store.endpoints()
                   if (served := store.deployments(endpoint)) and served[0].stage == stage}
    only = _files(home, next(iter(deployments))) if len(deployments) == 1 else None
    if legacy["predictions_db"].exists():
        if only is not None and not only.predictions_db.exists():
            _move_sqlite(legacy["predictions_db"], only.predictions_db)
        else:
            split_predictions(home, legacy["predictions_db"], deployments)
    for name in ("alarms_db", "access_log", "serve_log", "serve_file"):
        source = legacy[name]
        if not source.exists():
            continue
        target = getattr(only, name) if only is not None else unassigned(source)
        if target.exists():
            logger.warning("kept %s where it is: %s exists already", source, target)
            continue
        if name == "alarms_db":
            _move_sqlite(source, target)
        else:
            _move_with_backups(source, target)
        if only is None:
            logger.warning("%s: %d endpoints were deployed on %s, so it cannot be given to one: kept as %s (serving"
                           " starts it anew per endpoint)", source, len(deployments), stage, target)


def _move_with_backups(source: Path, target: Path) -> None:
    """A log and the numbered backups its rotation left (``serve.log.1``, ...)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for backup in source.parent.glob(f"{source.name}.[0-9]*"):
        os.replace(backup, target.with_name(target.name + backup.name.removeprefix(source.name)))
    os.replace(source, target)
    logger.info("moved %s to %s", source, target)


def _checkpoint(path: Path) -> None:
    """Fold the file's write-ahead log into it: the file alone then holds every row, and may be moved."""
    with sqlite_files.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    # Closing the last connection removes -wal and -shm; either left means another connection has the file.
    if any(path.with_name(path.name + suffix).exists() for suffix in ("-wal", "-shm")):
        raise UserError(f"{path} is still open (by a `cloudviz serve` of an earlier version?): stop what has it open,"
                        " then run the command again to move the file into its endpoint's folder")


def _move_sqlite(source: Path, target: Path) -> None:
    _checkpoint(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    writers_lock_file(source).unlink(missing_ok=True)  # nobody has the file open (checked): its lock is unused
    logger.info("moved %s to %s", source, target)


def split_predictions(home: StateHome, source: Path, deployments: Mapping[str, list[Deployment]]) -> None:
    """Copy each row of ``source`` into the store of the endpoint that made it (``explaining_endpoint``), the
    rows no endpoint explains into ``unassigned(source)``; then remove ``source``. Rows already in a target
    (a run cut short) are not copied twice."""
    _checkpoint(source)
    features = _registered_features(home, deployments)
    served = {endpoint: [(_instant(d.deployed_at), d) for d in history] for endpoint, history in deployments.items()}
    copied: dict[Path, int] = {}
    with contextlib.closing(sqlite3.connect(source)) as db:
        present = {row[1] for row in db.execute("PRAGMA table_info(predictions)")}
        names = [name.strip() for name in COLUMNS.split(",")]
        select = ", ".join(name if name in present else f"NULL AS {name}" for name in names)
        batches: dict[Path, list[tuple]] = {}
        for row in db.execute(f"SELECT {select} FROM predictions"):
            record = dict(zip(names, row, strict=True))
            endpoint = explaining_endpoint(record, served, features)
            target = _files(home, endpoint).predictions_db if endpoint else unassigned(source)
            batches.setdefault(target, []).append(row)
            if len(batches[target]) >= BATCH_ROWS:
                copied[target] = copied.get(target, 0) + _insert(target, batches.pop(target))
        for target, rows in batches.items():
            copied[target] = copied.get(target, 0) + _insert(target, rows)
    source.unlink()
    writers_lock_file(source).unlink(missing_ok=True)
    for target, count in copied.items():
        if target == unassigned(source):
            logger.warning("%d predictions of %s match no endpoint's deployments (its model version deployed at or"
                           " before the prediction, with the prediction's features): kept in %s",
                           count, source, target)
        else:
            logger.info("moved %d predictions of %s to %s", count, source, target)


def _insert(target: Path, rows: list[tuple]) -> int:
    sqlite_files.create(target, SCHEMA)
    with sqlite_files.connect(target) as db:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(f"INSERT OR IGNORE INTO predictions ({COLUMNS}) VALUES ({', '.join('?' * len(rows[0]))})",
                       rows)
        db.execute("COMMIT")
    return len(rows)


def explaining_endpoint(
    record: Mapping[str, object],
    served: Mapping[str, list[tuple[datetime | None, Deployment]]],
    features: Mapping[tuple[str, int], frozenset[str]],
) -> str | None:
    """The endpoint that made a stored prediction: one whose history deployed the row's model version at or
    before the row's time, a version of its group with exactly the row's features; of several, the one that
    deployed it last before the row. None when no endpoint (or more than one, at the same instant) explains it."""
    moment = _instant(str(record["timestamp"]))
    try:
        names = frozenset(json.loads(str(record["features"])))
    except ValueError:
        return None
    version = record["model_version"]
    latest: dict[str, datetime] = {}
    for endpoint, history in served.items():
        times = [at for at, deployment in history if moment is not None and at is not None and at <= moment
                 and deployment.version == version and features.get((deployment.group, deployment.version)) == names]
        if times:
            latest[endpoint] = max(times)
    if not latest:
        return None
    newest = max(latest.values())
    winners = [endpoint for endpoint, at in latest.items() if at == newest]
    return winners[0] if len(winners) == 1 else None


def _registered_features(home: StateHome, deployments: Mapping[str, list[Deployment]]) -> dict[tuple[str, int],
                                                                                                  frozenset[str]]:
    """The feature names of every deployed version, as its registered schema says (a version the registry lost
    explains no row)."""
    from deploy.model_signature import Signature
    from pipelines.registry import ModelRegistry
    from pipelines.runs import RunStore

    registry, runs = ModelRegistry(home.registry_db), RunStore(home.runs)
    features = {}
    for group, version in {(d.group, d.version) for history in deployments.values() for d in history}:
        with contextlib.suppress(NotFoundError):
            features[group, version] = frozenset(Signature.of(registry.get(group, version), runs).features)
    return features


def _instant(text: str) -> datetime | None:
    """A stored time as an aware instant (times without a zone are UTC); None when it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def every_endpoint(home: StateHome) -> Iterator[EndpointFiles]:
    """The files of every endpoint that has a folder on this state home."""
    migrate_stage_files(home)
    folder = home.endpoints
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_dir():
                yield _files(home, path.name)
