"""The embedded model registry: SageMaker Model Registry semantics in one SQLite file.

Model package groups hold versions numbered 1, 2, ... per group. Each version carries its
approval status (PendingManualApproval / Approved / Rejected), metrics, lineage, the URIs of its
artifacts and creation time. Version numbers are taken inside an immediate (write-locked)
transaction, so concurrent registrations from many processes never share a number.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipelines import sqlite_files
from pipelines.errors import NotFoundError, UserError
from pipelines.runs import LATEST

APPROVAL_STATUSES = ("PendingManualApproval", "Approved", "Rejected")

SCHEMA = """
CREATE TABLE IF NOT EXISTS model_package_groups (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS model_packages (
    group_name TEXT NOT NULL REFERENCES model_package_groups(name),
    version INTEGER NOT NULL,
    approval_status TEXT NOT NULL,
    model_data_url TEXT NOT NULL,
    metrics TEXT NOT NULL,
    lineage TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    status_reason TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    artifacts TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (group_name, version)
);
"""
# Columns added since the first schema, with their definitions: added in place to an older registry.db.
ADDED_COLUMNS = {"artifacts": "TEXT NOT NULL DEFAULT '{}'"}


@dataclass(frozen=True)
class ModelPackage:
    group: str
    version: int
    approval_status: str
    model_data_url: str
    metrics: dict
    lineage: dict
    description: str
    status_reason: str
    created_at: str
    updated_at: str
    # "model", "evaluation", "baseline_statistics", "schema" -> file:// URIs (the AWS model package's ModelMetrics
    # and DataSchema); empty for a version registered before the registry recorded them.
    artifacts: dict[str, str] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        """Shaped like SageMaker's, so scripts can key on it the same way."""
        return f"arn:cloudviz:local:model-package/{self.group.lower()}/{self.version}"

    def to_dict(self) -> dict:
        return {"arn": self.arn, **asdict(self)}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def check_group_name(name: str) -> None:
    """SageMaker's rule for ModelPackageGroupName: 1-63 of [a-zA-Z0-9-], starting alphanumeric."""
    valid = 0 < len(name) <= 63 and name[0].isalnum() and all(c.isalnum() or c == "-" for c in name)
    if not valid or not name.isascii():
        raise UserError(
            f"model package group name {name!r} is invalid: use 1-63 letters, digits or hyphens, "
            "starting with a letter or digit"
        )


def check_approval_status(status: str) -> None:
    if status not in APPROVAL_STATUSES:
        raise UserError(f"approval status {status!r} is not one of {', '.join(APPROVAL_STATUSES)}")


def approval_status(text: str) -> str:
    """An approval status in any letter case (approved, APPROVED), as the registry spells it."""
    return next((status for status in APPROVAL_STATUSES if status.lower() == text.lower()), text)


class ModelRegistry:
    """Model package groups and versions in ``<state home>/registry.db``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        sqlite_files.create(path, SCHEMA)
        self._add_missing_columns()

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite_files.connect(self.path, foreign_keys=True)

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite_files.transaction(self.path, foreign_keys=True)

    def _add_missing_columns(self) -> None:
        """Migrate a registry.db made by an older version in place; its versions get each column's default."""
        with self._transaction() as db:
            present = {row["name"] for row in db.execute("PRAGMA table_info(model_packages)")}
            for name, definition in ADDED_COLUMNS.items():
                if name not in present:
                    db.execute(f"ALTER TABLE model_packages ADD COLUMN {name} {definition}")

    def register(
        self,
        group: str,
        model_data_url: str,
        approval_status: str = "PendingManualApproval",
        metrics: dict | None = None,
        lineage: dict | None = None,
        description: str = "",
        artifacts: dict[str, str] | None = None,
    ) -> ModelPackage:
        """Add the next version of ``group`` (creating the group on first use)."""
        check_group_name(group)
        check_approval_status(approval_status)
        stamp = now()
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO model_package_groups (name, created_at) VALUES (?, ?)", (group, stamp)
            )
            (version,) = db.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM model_packages WHERE group_name = ?", (group,)
            ).fetchone()
            db.execute(
                "INSERT INTO model_packages (group_name, version, approval_status, model_data_url, metrics,"
                " lineage, description, created_at, updated_at, artifacts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    group,
                    version,
                    approval_status,
                    model_data_url,
                    json.dumps(metrics or {}),
                    json.dumps(lineage or {}),
                    description,
                    stamp,
                    stamp,
                    json.dumps(artifacts or {}),
                ),
            )
        return self.get(group, version)

    def get(self, group: str, version: int) -> ModelPackage:
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM model_packages WHERE group_name = ? AND version = ?", (group, version)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no model package {group} version {version}")
        return self._package(row)

    def latest_version(self, group: str) -> int:
        """The group's newest version number, whatever its approval status."""
        with self._connect() as db:
            (version,) = db.execute("SELECT MAX(version) FROM model_packages WHERE group_name = ?", (group,)).fetchone()
        if version is None:
            raise NotFoundError(f"no model package group {group!r} (or it has no versions)")
        return version

    def version_number(self, group: str, version: int | str) -> int:
        """``version`` as a number: ``latest`` is the group's newest version."""
        if version == LATEST:
            return self.latest_version(group)
        if isinstance(version, int) or (isinstance(version, str) and version.isdigit()):
            return int(version)
        raise UserError(f"model version {version!r}: expected a version number (1, 2, ...) or 'latest'")

    def list_groups(self) -> list[dict]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT g.name, g.created_at, COUNT(p.version) AS versions,"
                " MAX(CASE WHEN p.approval_status = 'Approved' THEN p.version END) AS latest_approved"
                " FROM model_package_groups g LEFT JOIN model_packages p ON p.group_name = g.name"
                " GROUP BY g.name ORDER BY g.name"
            ).fetchall()
        return [dict(row) for row in rows]

    def list_packages(self, group: str | None = None, approval_status: str | None = None) -> list[ModelPackage]:
        """Versions newest first (by group, then version), optionally filtered."""
        if approval_status is not None:
            check_approval_status(approval_status)
        query, args = "SELECT * FROM model_packages WHERE 1 = 1", []
        if group is not None:
            query, args = query + " AND group_name = ?", [*args, group]
        if approval_status is not None:
            query, args = query + " AND approval_status = ?", [*args, approval_status]
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY group_name, version DESC", args).fetchall()
        return [self._package(row) for row in rows]

    def latest_approved(self, group: str) -> ModelPackage | None:
        packages = self.list_packages(group, "Approved")
        return packages[0] if packages else None

    def update_approval(self, group: str, version: int, status: str, reason: str = "") -> ModelPackage:
        check_approval_status(status)
        with self._transaction() as db:
            updated = db.execute(
                "UPDATE model_packages SET approval_status = ?, status_reason = ?, updated_at = ?"
                " WHERE group_name = ? AND version = ?",
                (status, reason, now(), group, version),
            ).rowcount
        if not updated:
            raise NotFoundError(f"no model package {group} version {version}")
        return self.get(group, version)

    @staticmethod
    def _package(row: sqlite3.Row) -> ModelPackage:
        return ModelPackage(
            group=row["group_name"],
            version=row["version"],
            approval_status=row["approval_status"],
            model_data_url=row["model_data_url"],
            metrics=json.loads(row["metrics"]),
            lineage=json.loads(row["lineage"]),
            description=row["description"],
            status_reason=row["status_reason"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            artifacts=json.loads(row["artifacts"]),
        )
