"""A CSV file checked against a data set's schema, row by row (no pandas: a file of any size streams through),
and written out as a *part*: a canonical CSV (UTF-8, the schema's column order, ``\\n`` line ends) whose sha256
names it. Every problem names the file, the line and the column."""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import UserError

TASKS = ("classification", "regression")
MAX_REPORTED = 10  # bad cells named in one message


@dataclass(frozen=True)
class DatasetSchema:
    """The columns every part has, in order; the label column; the task; a classifier's classes in index order
    (None while a new data set's first file has not been read: every label is then accepted and collected); the
    feature columns, in model order (None: every column but the label). Other columns are kept as they are."""

    columns: tuple[str, ...]
    label_column: str
    task: str
    classes: tuple[str, ...] | None = None
    features: tuple[str, ...] | None = None

    @property
    def feature_columns(self) -> tuple[str, ...]:
        if self.features is not None:
            return self.features
        return tuple(name for name in self.columns if name != self.label_column)

    def to_dict(self) -> dict:
        return {"columns": list(self.columns), "label_column": self.label_column,
                "feature_columns": list(self.feature_columns), "task": self.task, "classes": list(self.classes or ())}

    @classmethod
    def from_dict(cls, document: dict) -> DatasetSchema:
        return cls(tuple(document["columns"]), document["label_column"], document["task"],
                   tuple(document["classes"]) if document["task"] == "classification" else (),
                   tuple(document["feature_columns"]))


@dataclass(frozen=True)
class CheckedFile:
    """A file that passed, as the part written to ``path``; ``labels``: a classifier's labels, as first seen."""

    path: Path
    sha256: str
    rows: int
    bytes: int
    labels: tuple[str, ...]


def read_header(source: Path) -> list[str]:
    with _opened(source) as lines:
        return next(lines, (1, []))[1]


def new_schema(source: Path, label_column: str, task: str,
               feature_columns: Sequence[str] | None = None) -> DatasetSchema:
    """The schema of a new data set whose first file is ``source``: its header's columns, ``label_column`` the
    label, ``feature_columns`` the features (None: every other column)."""
    if task not in TASKS:
        raise UserError(f"--task {task!r}: expected one of {', '.join(TASKS)}")
    header = read_header(source)
    _check_header_names(source, header)
    if label_column not in header:
        raise UserError(f"--label-column {label_column!r}: {source} has no such column (its columns: "
                        f"{', '.join(header)})")
    if len(header) < 2:
        raise UserError(f"{source}, line 1: a data set needs at least one feature column beside the label")
    features = None if feature_columns is None else _chosen_features(source, header, label_column, feature_columns)
    return DatasetSchema(tuple(header), label_column, task, None if task == "classification" else (), features)


def _chosen_features(source: Path, header: list[str], label_column: str,
                     feature_columns: Sequence[str]) -> tuple[str, ...]:
    """``--feature-columns``: columns of ``header``, once each, not the label, at least one."""
    if not feature_columns:
        raise UserError("--feature-columns: name at least one column (or leave the option out: every column but "
                        "the label)")
    for index, name in enumerate(feature_columns):
        if name not in header:
            raise UserError(f"--feature-columns {name!r}: {source} has no such column (its columns: "
                            f"{', '.join(header)})")
        if name == label_column:
            raise UserError(f"--feature-columns {name!r}: the label column (--label-column) cannot be a feature")
        if name in feature_columns[:index]:
            raise UserError(f"--feature-columns {name!r}: named more than once")
    return tuple(feature_columns)


def check_csv(source: Path, schema: DatasetSchema, output: Path, dataset: str) -> CheckedFile:
    """Check every row of ``source`` against ``schema`` (of data set ``dataset``) and write the part to ``output``;
    a UserError naming file, line and column of the first problems (then nothing is kept at ``output``)."""
    problems: list[str] = []
    rows = 0
    seen: dict[str, None] = {}  # an ordered set
    known = None if schema.classes is None else set(schema.classes)
    with _opened(source) as lines, output.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        _, header = next(lines, (1, []))
        order = _column_order(source, header, schema, dataset)
        label_at = header.index(schema.label_column)
        numeric = {header.index(name) for name in schema.feature_columns}
        if schema.task == "regression":
            numeric.add(label_at)
        trimmed = numeric | {label_at}  # Preprocess trims the label and parses numbers with their spaces
        writer.writerow(schema.columns)
        for line, record in lines:
            rows += 1
            if len(record) != len(header):
                problems.append(f"line {line}: {len(record)} cells, the header has {len(header)}")
                continue
            cells = [cell.strip() if index in trimmed else cell for index, cell in enumerate(record)]
            for index in sorted(numeric):
                if not _is_number(cells[index]):
                    problems.append(f"line {line}, column {header[index]!r}: {record[index]!r} is not a number")
            if schema.task == "classification":
                label = cells[label_at]
                if not label:
                    problems.append(f"line {line}, column {schema.label_column!r}: missing label")
                elif known is not None and label not in known:
                    problems.append(f"line {line}, column {schema.label_column!r}: unknown label {label!r} (the "
                                    f"classes of data set {dataset}: {', '.join(schema.classes or ())})")
                else:
                    seen.setdefault(label)
            if not problems:
                writer.writerow([cells[index] for index in order])
            if len(problems) > MAX_REPORTED:
                break
    if problems or not rows:
        output.unlink()
    if problems:
        shown = "; ".join(problems[:MAX_REPORTED])
        more = " (and more)" if len(problems) > MAX_REPORTED else ""
        raise UserError(f"{source}: {shown}{more}")
    if not rows:
        raise UserError(f"{source}: the file has a header but no rows")
    return CheckedFile(output, _sha256(output), rows, output.stat().st_size, tuple(seen))


class _opened:  # noqa: N801 - used as a function: ``with _opened(path) as lines``
    """``with _opened(path) as lines``: the file's non-blank records, each with the line it starts on (a quoted cell
    may hold line breaks); an empty, missing or non-UTF-8 file is a UserError naming it."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def __enter__(self) -> Iterator[tuple[int, list[str]]]:
        try:
            self.handle = self.source.open(newline="", encoding="utf-8-sig")
        except FileNotFoundError:
            raise UserError(f"{self.source}: no such file") from None
        except IsADirectoryError:
            raise UserError(f"{self.source}: a folder, not a CSV file") from None
        return self._records()

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        reader = csv.reader(self.handle)
        end, first = 0, True
        try:
            for record in reader:
                if record:
                    yield end + 1, record
                    first = False
                end = reader.line_num
        except UnicodeDecodeError as error:
            raise UserError(f"{self.source}, line {end + 1}: not UTF-8 text ({error.reason})") from None
        except csv.Error as error:
            raise UserError(f"{self.source}, line {end + 1}: not a readable CSV file ({error})") from None
        if first:
            raise UserError(f"{self.source}: the file is empty")


def _check_header_names(source: Path, header: list[str]) -> None:
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise UserError(f"{source}, line 1, column {repeated[0]!r}: the column name appears more than once")
    if "" in header:
        raise UserError(f"{source}, line 1, column {header.index('') + 1}: a column without a name")


def _column_order(source: Path, header: list[str], schema: DatasetSchema, dataset: str) -> list[int]:
    """Where each of the schema's columns is in ``header`` (the file may order them otherwise)."""
    _check_header_names(source, header)
    columns = f"data set {dataset}'s columns: {', '.join(schema.columns)}"
    unexpected = [name for name in header if name not in schema.columns]
    if unexpected:
        raise UserError(f"{source}, line 1, column {unexpected[0]!r}: not a column of the data set ({columns})")
    missing = [name for name in schema.columns if name not in header]
    if missing:
        raise UserError(f"{source}, line 1: missing column(s) {', '.join(map(repr, missing))} ({columns})")
    return [header.index(name) for name in schema.columns]


def _is_number(text: str) -> bool:
    """A finite decimal number as Arrow's CSV reader parses it (Python's ``float`` also takes ``1_000``)."""
    if "_" in text:
        return False
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
