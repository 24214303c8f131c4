"""Data sets and their versions, the same on both targets (:mod:`pipelines.data.storage` holds the files).

A data set (``iris``, ``churn``) has a schema and versions 1, 2, 3, ...: each version is the previous one's parts
plus one new part, a CSV stored once under its sha256 (``<name>/parts/<sha256>.csv``). A version is its metadata
(``<name>/versions/<n>.json``) and a SageMaker manifest of its parts (``<name>/versions/<n>.manifest``); the
manifest is written first and the json last, so a version exists only once whole, and two adds never both make
version n (the json is written only if absent; the loser adds on top of the winner). ``iris`` exists implicitly:
referenced for the first time, its version 1 is made from the bundled CSV.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.data.manifest import manifest_of
from pipelines.data.storage import LocalStorage, S3Storage, Storage
from pipelines.data.validation import DatasetSchema, check_csv, new_schema
from pipelines.datasets import IRIS_COLUMNS, IRIS_PARAMETERS, iris_csv
from pipelines.definition import DEFAULT_GROUP, suggested_group
from pipelines.errors import NotFoundError, UserError
from pipelines.state import StateHome

IRIS = "iris"
IRIS_SCHEMA = DatasetSchema(IRIS_COLUMNS, IRIS_PARAMETERS["LabelColumn"], "classification",
                            tuple(IRIS_PARAMETERS["ClassNames"].split(",")))
NAME = r"[a-z0-9][a-z0-9_-]{0,62}"
REF = re.compile(rf"(?P<name>{NAME})(?:@(?P<version>[1-9][0-9]*))?")
MANY_CLASSES = 20  # a label column of more distinct numbers than this, task not given: ask which task is meant
COMMIT_ATTEMPTS = 40  # versions other adds of the same data set may commit first


@dataclass(frozen=True)
class Part:
    sha256: str
    rows: int
    bytes: int
    source: str  # where its rows came from: the added file's name, or the group whose feedback was exported

    @property
    def key(self) -> str:
        """Its key below the data set's folder, as the manifest lists it."""
        return f"parts/{self.sha256}.csv"


@dataclass(frozen=True)
class DatasetVersion:
    dataset: str
    version: int
    id: str  # the first 16 hex of the sha256 over the sorted part hashes: equal ids, equal data
    parts: tuple[Part, ...]
    rows: int
    created_at: str
    origin: str  # "add <file name>", "export-feedback" or "bundled"
    schema: dict
    parameters: dict  # the pipeline parameters describing the data: LabelColumn, FeatureColumns, ClassNames, group
    manifest_uri: str
    exported_predictions: tuple[str, ...] = ()  # export-feedback: the ids of the predictions it holds

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.version}"

    @property
    def group(self) -> str:
        return self.parameters["ModelPackageGroupName"]

    def to_dict(self) -> dict:
        document = {
            "dataset": self.dataset, "version": self.version, "id": self.id,
            "parts": [{"sha256": p.sha256, "rows": p.rows, "bytes": p.bytes, "source": p.source} for p in self.parts],
            "rows": self.rows, "created_at": self.created_at, "origin": self.origin, "schema": self.schema,
            "parameters": self.parameters, "manifest": self.manifest_uri,
        }
        if self.exported_predictions:
            document["exported_predictions"] = list(self.exported_predictions)
        return document

    @classmethod
    def from_dict(cls, document: dict) -> DatasetVersion:
        return cls(
            document["dataset"], document["version"], document["id"],
            tuple(Part(p["sha256"], p["rows"], p["bytes"], p["source"]) for p in document["parts"]),
            document["rows"], document["created_at"], document["origin"], document["schema"],
            document["parameters"], document["manifest"], tuple(document.get("exported_predictions", ())),
        )


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``NAME`` (None: the newest version) or ``NAME@N``."""
    match = REF.fullmatch(ref.strip())
    if match is None:
        raise UserError(f"data set {ref!r}: expected NAME or NAME@N, NAME of lower-case letters, digits, - and _ "
                        "(at most 63, starting with a letter or digit)")
    return match["name"], int(match["version"]) if match["version"] else None


def check_name(name: str) -> str:
    """A data set's name (a ref without ``@N``)."""
    found, number = parse_ref(name)
    if number is not None:
        raise UserError(f"data set {name!r}: name a data set, not one of its versions (drop @{number})")
    return found


def version_id(parts: tuple[Part, ...]) -> str:
    return hashlib.sha256("\n".join(sorted(p.sha256 for p in parts)).encode()).hexdigest()[:16]


class DatasetStore:
    """The data sets kept in ``storage``: :func:`local_dataset_store` or :func:`s3_dataset_store` makes one."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def names(self) -> list[str]:
        """The data sets with a version, and ``iris`` (made when first referenced)."""
        stored = {key.split("/")[0] for key in self.storage.list("") if _version_number(key) is not None}
        return sorted(stored | {IRIS})

    def versions(self, name: str) -> list[DatasetVersion]:
        """The data set's versions, oldest first ([] for a data set that does not exist)."""
        name = check_name(name)
        versions = self._stored_versions(name)
        if not versions and name == IRIS:
            with tempfile.TemporaryDirectory(prefix="cloudviz-iris-") as folder:
                self._add_part(IRIS, iris_csv(Path(folder)), IRIS_SCHEMA, DEFAULT_GROUP, "bundled")
            versions = self._stored_versions(name)
        return versions

    def newest(self, name: str) -> DatasetVersion | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    def resolve(self, ref: str) -> DatasetVersion:
        """``NAME`` (its newest version) or ``NAME@N``; a NotFoundError naming the ref when there is none."""
        name, number = parse_ref(ref)
        versions = self.versions(name)
        if not versions:
            raise NotFoundError(f"data set {ref!r}: no such data set (make it with `cloudviz data add FILE --dataset "
                                f"{name} --label-column COLUMN`)")
        if number is None:
            return versions[-1]
        found = next((version for version in versions if version.version == number), None)
        if found is None:
            raise NotFoundError(f"data set {ref!r}: no such version; {name} has versions "
                                f"{', '.join(str(v.version) for v in versions)}")
        return found

    def add(self, name: str, path: str | Path, label_column: str | None = None, task: str | None = None,
            group: str | None = None, *, feature_columns: Sequence[str] | None = None, origin: str | None = None,
            exported_predictions: tuple[str, ...] = ()) -> DatasetVersion:
        """Check the CSV file at ``path`` against the data set's schema and make a version holding it; the newest
        version unchanged when it holds this content already. A new data set takes its schema from the file:
        ``label_column`` is required, ``task`` classification (default) or regression, ``group`` the model package
        group its runs register into (default from the name), ``feature_columns`` its features (default every
        column but the label; the others are kept, unchecked). A UserError naming the file, line and column (or
        the option) of what is wrong; nothing is written then."""
        name, path = check_name(name), Path(path)
        newest = self.newest(name)
        if newest is None:
            if not label_column:
                raise UserError(f"--label-column: {name} is a new data set; name the column of {path.name} that "
                                "holds the label")
            schema = new_schema(path, label_column, task or "classification", feature_columns)
            return self._add_part(name, path, schema, group or suggested_group(name),
                                  origin or f"add {path.name}", exported_predictions, task_given=task is not None)
        schema = DatasetSchema.from_dict(newest.schema)
        for option, given, recorded in (("--label-column", label_column, schema.label_column),
                                        ("--task", task, schema.task), ("--group", group, newest.group),
                                        ("--feature-columns", feature_columns and ",".join(feature_columns),
                                         ",".join(schema.feature_columns))):
            if given and given != recorded:
                raise UserError(f"{option} {given!r}: data set {name} has {recorded!r} (set by its first version)")
        return self._add_part(name, path, schema, newest.group, origin or f"add {path.name}", exported_predictions)

    def exported_predictions(self, name: str) -> set[str]:
        """The ids of the predictions export-feedback put into any version of the data set."""
        return {prediction for version in self.versions(name) for prediction in version.exported_predictions}

    def _add_part(self, name: str, path: Path, schema: DatasetSchema, group: str, origin: str,
                  exported_predictions: tuple[str, ...] = (), task_given: bool = True) -> DatasetVersion:
        with tempfile.TemporaryDirectory(prefix="cloudviz-part-") as folder:
            checked = check_csv(path, schema, Path(folder) / "part.csv", name)
            if schema.classes is None:
                schema = _classes_found(schema, checked.labels, path, task_given)
            part = Part(checked.sha256, checked.rows, checked.bytes, path.name)
            self.storage.write_if_absent(f"{name}/{part.key}", checked.path)
        return self._commit(name, part, schema, _describing(schema, group), origin, exported_predictions)

    def _commit(self, name: str, part: Part, schema: DatasetSchema, parameters: dict, origin: str,
                exported_predictions: tuple[str, ...]) -> DatasetVersion:
        """Version newest + 1 with ``part``. Its manifest is named by the version's content, so writing it never
        conflicts; its json, written only if absent, is the one commit point: an add interrupted in between leaves
        a manifest nothing names, and blocks nothing; an add that loses the race for a number takes the next."""
        for _ in range(COMMIT_ATTEMPTS):
            newest = self._newest_stored(name)
            if newest is not None and any(p.sha256 == part.sha256 for p in newest.parts):
                return newest
            number = 1 if newest is None else newest.version + 1
            parts = (part,) if newest is None else (*newest.parts, part)
            manifest_key = f"{name}/versions/{number}-{version_id(parts)}.manifest"
            self.storage.write_if_absent(manifest_key, manifest_of(self.storage.uri(f"{name}/"),
                                                                   [p.key for p in parts]).to_bytes())
            version = DatasetVersion(
                name, number, version_id(parts), parts, sum(p.rows for p in parts),
                datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"), origin, schema.to_dict(),
                parameters, self.storage.uri(manifest_key), exported_predictions)
            if self.storage.write_if_absent(f"{name}/versions/{number}.json", _json_bytes(version.to_dict())):
                return version
        raise UserError(f"data set {name}: {COMMIT_ATTEMPTS} other adds committed a version before this one; "
                        "add it again")

    def _stored_numbers(self, name: str) -> list[int]:
        return sorted(n for key in self.storage.list(f"{name}/versions/") if (n := _version_number(key)))

    def _stored_version(self, name: str, number: int) -> DatasetVersion:
        return DatasetVersion.from_dict(json.loads(self.storage.read(f"{name}/versions/{number}.json") or b"{}"))

    def _stored_versions(self, name: str) -> list[DatasetVersion]:
        return [self._stored_version(name, number) for number in self._stored_numbers(name)]

    def _newest_stored(self, name: str) -> DatasetVersion | None:
        """Only the newest json read (each commit attempt asks)."""
        numbers = self._stored_numbers(name)
        return self._stored_version(name, numbers[-1]) if numbers else None


def local_dataset_store(home: StateHome) -> DatasetStore:
    """The data sets of a state home, in ``<home>/datasets``."""
    return DatasetStore(LocalStorage(home.datasets))


def s3_dataset_store(s3_client: Any, bucket: str, prefix: str) -> DatasetStore:
    """The data sets below ``s3://bucket/prefix/datasets/`` (the project's artifact bucket and prefix)."""
    return DatasetStore(S3Storage(s3_client, bucket, f"{prefix.strip('/')}/datasets" if prefix.strip("/")
                                  else "datasets"))


def _version_number(key: str) -> int | None:
    """n of ``<name>/versions/<n>.json``, else None."""
    match = re.fullmatch(rf"{NAME}/versions/([1-9][0-9]*)\.json", key)
    return int(match[1]) if match else None


def _classes_found(schema: DatasetSchema, labels: tuple[str, ...], path: Path, task_given: bool) -> DatasetSchema:
    """A new classification data set's classes: the sorted labels of its first file (as Preprocess sorts them)."""
    if not task_given and len(labels) > MANY_CLASSES and all(_is_numeric(label) for label in labels):
        raise UserError(f"--task: column {schema.label_column!r} of {path} holds {len(labels)} distinct numbers; "
                        "give --task regression to predict them, or --task classification to keep each as a class")
    if len(labels) < 2:
        raise UserError(f"{path}, column {schema.label_column!r}: a classification data set needs at least 2 "
                        f"classes, found {', '.join(labels)} (or give --task regression)")
    return replace(schema, classes=tuple(sorted(labels)))


def _describing(schema: DatasetSchema, group: str) -> dict:
    return {"LabelColumn": schema.label_column, "FeatureColumns": ",".join(schema.feature_columns),
            "ClassNames": ",".join(schema.classes or ()), "ModelPackageGroupName": group}


def _is_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _json_bytes(document: dict) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")
