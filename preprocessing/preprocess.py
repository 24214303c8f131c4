"""Preprocess step: raw CSV -> train/validation/test channels, schema and baseline statistics.

A SageMaker Processing script (paths under ``/opt/ml/processing``; ``--base-dir`` moves them) that imports nothing
of the project outside this folder. The raw input is one CSV file, or a folder of CSV files with one header (a data
set version's parts) read as one table, in sorted path order. Channels are label first with no header (the built-in
XGBoost layout), optionally in ``--parts`` files for sharded training. Exit status 2 with one ``error:`` line for
bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

DEFAULT_BASE_DIR = "/opt/ml/processing"
SPLITS = ("train", "validation", "test")
HISTOGRAM_BINS = 10
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
MAX_REPORTED = 20  # bad cells named in one error; the rest are counted
# Names the prediction API's request body gives a meaning of its own (serving_lambdas/payload.py): a feature so
# named could not be sent by name.
RESERVED_NAMES = {
    "request_id": "a client's own id of a row",
    "sample_id": "a client's own id of a row (another name for request_id)",
    "instances": "a batch of rows by name",
    "input_data": "a batch of rows of values",
    "features": "one row by name",
}
# The objectives the pipeline trains, by task: the task decides how the label is read and split,
# how many classes it needs, and which metrics Evaluate reports.
TASKS = {
    "multi:softprob": "multiclass",
    "multi:softmax": "multiclass",
    "binary:logistic": "binary",
    "reg:squarederror": "regression",
}


class InputError(Exception):
    """A problem with the user's data or arguments: reported as one line, exit status 2."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", default=DEFAULT_BASE_DIR, help="root of the processing layout")
    # raw/, not below input/: SageMaker mounts the code there (input/code/preprocess.py)
    parser.add_argument("--input", help="raw CSV file, or folder of CSV files (default: <base-dir>/raw)")
    parser.add_argument("--label-column", required=True, help="name of the label column (required, not empty)")
    parser.add_argument(
        "--feature-columns", default="",
        help="comma-separated feature column names, in model order; empty: every column but the label, in file order",
    )
    parser.add_argument(
        "--class-names",
        default="",
        help="comma-separated class names in index order; empty: the sorted distinct labels",
    )
    parser.add_argument(
        "--objective", default="multi:softprob", help="XGBoost objective: multi:softprob, multi:softmax, "
        "binary:logistic or reg:squarederror; it decides how the label is read"
    )
    parser.add_argument(
        "--num-class", type=int, default=0, help="expected number of classes; 0: as many as the label column has"
    )
    parser.add_argument("--validation-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--parts", type=int, default=1, help="files per split: one per training instance (default 1: <split>.csv)"
    )
    return parser.parse_args(argv)


def split_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


@dataclass(frozen=True)
class Source:
    """The raw input: its CSV files (one, or a folder's), resolved so that messages name the user's files rather
    than links to them in the step's folder, and their paths relative to the folder (a file: its name)."""

    path: Path
    parts: list[Path]
    keys: list[str]

    @property
    def shown(self) -> Path:
        """What a message about the whole input names: the file, or the folder of several."""
        return self.parts[0] if len(self.parts) == 1 else self.path


def find_source(path: Path) -> Source:
    """A file, or every file of a folder (a ProcessingInput prefix or manifest), in sorted path order."""
    if path.is_file():
        return Source(path, [path.resolve()], [path.name])
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    files = sorted(
        (p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")),
        key=lambda p: p.relative_to(path).as_posix(),
    )
    if not files:
        raise InputError(f"{path}: no CSV file in the folder")
    return Source(path, [p.resolve() for p in files], [p.relative_to(path).as_posix() for p in files])


def sha256_of(parts: list[Path]) -> tuple[str, list[str]]:
    """One sha256 over the parts' bytes in order, and each part's own. Read in 1 MiB blocks, not
    ``hashlib.file_digest``: the SageMaker XGBoost image runs Python 3.10."""
    whole, own = hashlib.sha256(), []
    for part in parts:
        digest = hashlib.sha256()
        with part.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                whole.update(block)
                digest.update(block)
        own.append(digest.hexdigest())
    return whole.hexdigest(), own


def record_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """The file's non-blank records, each with the line it starts on. Arrow skips blank lines and
    a quoted cell may hold line breaks, so records and lines need not be one to one."""
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        end = 0  # the line the previous record ended on
        with contextlib.suppress(csv.Error):
            for record in reader:
                if record:
                    yield end + 1, record
                end = reader.line_num


def lines_of(path: Path, rows: set[int]) -> dict[int, int]:
    """File lines of 0-based data rows (line 1 is the header), in one pass; read again only to report errors."""
    found: dict[int, int] = {}
    for index, (line, _) in enumerate(record_lines(path), start=-1):
        if index in rows:
            found[index] = line
            if len(found) == len(rows):
                break
    return {row: found.get(row, row + 2) for row in rows}


def unreadable(path: Path, exc: Exception) -> str:
    """Message for a file Arrow cannot parse: the first row whose cell count differs from the header's."""
    width = None
    for line, record in record_lines(path):
        if width is None:
            width = len(record)
        elif len(record) != width:
            return f"{path}, line {line}: {len(record)} cells, the header has {width}"
    return f"{path}: not a readable CSV file ({first_line(exc)})"


def read_header(parts: list[Path]) -> list[str]:
    """The parts' one header: each part must have the first one's."""
    header = header_of(parts[0])
    for part in parts[1:]:
        other = header_of(part)
        if other != header:
            raise InputError(f"{part}: its header {','.join(other)} differs from the header of {parts[0]}: "
                             f"{','.join(header)}")
    return header


def header_of(path: Path) -> list[str]:
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    try:
        with pcsv.open_csv(path) as reader:
            return reader.schema.names
    except pa.ArrowInvalid as exc:
        raise InputError(unreadable(path, exc)) from None


def choose_columns(path: Path, header: list[str], label: str, features: list[str]) -> list[str]:
    """The feature columns, checked against the header: those given, or every column but the label, in file order."""
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise InputError(f"{path}: duplicate column name(s): {', '.join(duplicates)}")
    if not label:
        raise InputError(f"{path}: no label column given: set LabelColumn to one of its columns: {', '.join(header)}")
    if not features:
        features = [name for name in header if name != label]
        if label in header and not features:
            raise InputError(f"{path}: no column but the label {label!r}: nothing to learn from")
    check_columns(path, header, label, features)
    return features


def check_columns(path: Path, header: list[str], label: str, features: list[str]) -> None:
    missing = [name for name in [label, *features] if name not in header]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(repr(m) for m in missing)}; "
            f"columns found: {', '.join(header)}"
        )
    if label in features:
        raise InputError(f"column {label!r} is both the label and a feature")
    repeated = sorted({name for name in features if features.count(name) > 1})
    if repeated:
        raise InputError(f"--feature-columns names {', '.join(repr(r) for r in repeated)} more than once")
    for name in features:
        if name in RESERVED_NAMES:
            others = ",".join(other for other in features if other != name)
            raise InputError(
                f"{path}: column {name!r} cannot be a feature: the prediction API's request body uses "
                f"{name!r} for {RESERVED_NAMES[name]}; rename the column, or leave it out with "
                f"FeatureColumns={others}"
            )


def read_columns(path: Path, label: str, features: list[str], numbers: list[str]) -> pa.Table:
    """The label and feature columns: those in ``numbers`` as float64 (Arrow reads its null markers, the empty
    cell, ``NaN``, ``n/a``..., as nulls), the others as text (nothing null)."""
    options = pcsv.ConvertOptions(
        include_columns=[label, *features],
        column_types={name: pa.float64() if name in numbers else pa.string() for name in [label, *features]},
        strings_can_be_null=False,
    )
    return pcsv.read_csv(path, convert_options=options)


def read_text_columns(parts: list[Path], label: str, features: list[str]) -> list[pa.Table]:
    """Each part's label and feature columns as text; a part Arrow cannot parse is named with its first bad row,
    a part without rows is named too."""
    tables = []
    for part in parts:
        try:
            table = read_columns(part, label, features, [])
        except pa.ArrowInvalid as exc:
            raise InputError(unreadable(part, exc)) from None
        if table.num_rows == 0:
            raise InputError(f"{part}: the file has a header but no rows")
        tables.append(table)
    return tables


@dataclass
class Data:
    """The checked input: feature names and columns, the label (class codes or the regression target) and the
    classes."""

    names: list[str]
    features: list[pa.ChunkedArray]
    labels: np.ndarray
    classes: list[str]
    part_rows: list[int]


@dataclass
class Problems:
    """The bad cells of one column: their 0-based data rows, in order, and what is wrong with a row's cell."""

    column: str
    rows: np.ndarray
    describe: Callable[[int], str]


def read_data(source: Source, label: str, features: list[str], task: str, class_names: list[str]) -> Data:
    """The features (``features``, or none given: every column but the label) as float64 columns and the label
    encoded for the task, every cell of every part checked.

    Fast path: Arrow parses the numbers and every one is finite. Otherwise the parts are read again as text
    and every bad cell is reported at once (the first ``MAX_REPORTED`` with file, line, column and value).
    """
    path = source.shown
    header = read_header(source.parts)
    from_data = not features
    features = choose_columns(path, header, label, features)
    numbers = [*features, label] if task == "regression" else features
    try:
        tables = [read_columns(part, label, features, numbers) for part in source.parts]
        clean = all(table.num_rows for table in tables) and all(
            finite(table.column(name)) for table in tables for name in numbers)
    except pa.ArrowInvalid:
        clean = False
    if not clean:
        tables = read_text_columns(source.parts, label, features)
    table = pa.concat_tables(tables)
    part_rows = [t.num_rows for t in tables]
    problems = [] if clean else [number_problems(table.column(name), name) for name in numbers]
    text = [group.column for group in problems if group.column != label and group.rows.size == table.num_rows]
    if from_data and text:
        numeric = ",".join(name for name in features if name not in text)
        raise InputError(
            f"{path}: column(s) {', '.join(repr(name) for name in text)} hold no numbers, so they cannot be features "
            f"(FeatureColumns is empty: every column but the label); name the features: FeatureColumns={numeric}"
        )
    classes: list[str] = []
    if task != "regression":
        label_problems, codes, classes = encode_labels(table.column(label), label, class_names)
        problems.append(label_problems)
    if any_rows(problems):
        raise InputError(cell_report(source, part_rows, problems, header))
    labels = as_floats(table.column(label)).to_numpy() if task == "regression" else codes
    return Data(features, [as_floats(table.column(name)) for name in features], labels, classes, part_rows)


def first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def finite(column: pa.ChunkedArray) -> bool:
    return column.null_count == 0 and pc.all(pc.is_finite(column)).as_py() is not False


def as_floats(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A checked column as float64 (text when Arrow could not parse it, e.g. `` 1.5`` with spaces)."""
    if pa.types.is_floating(column.type):
        return column
    return pc.cast(pc.utf8_trim_whitespace(column), pa.float64())


def any_rows(problems: list[Problems]) -> bool:
    return any(group.rows.size for group in problems)


NUMBER = r"^[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf|infinity)$"
MISSING = r"^([-+]?nan)?$"  # the empty cell and NaN: a missing value


def number_problems(column: pa.ChunkedArray, name: str) -> Problems:
    """Every cell of a text column that is not a finite number: missing (empty, NaN), text, or infinite."""
    cells = pc.utf8_trim_whitespace(column)
    missing = pc.match_substring_regex(cells, MISSING, ignore_case=True)
    number = pc.match_substring_regex(cells, NUMBER, ignore_case=True)
    bad = pc.or_(pc.invert(number), pc.match_substring(cells, "inf", ignore_case=True))
    rows = np.flatnonzero(bad.to_numpy(zero_copy_only=False))

    def describe(row: int) -> str:
        cell = cells[row].as_py()
        if missing[row].as_py():
            return "missing value"
        return f"non-finite value {float(cell)}" if number[row].as_py() else f"{cell!r} is not a number"

    return Problems(name, rows, describe)


def encode_labels(
    column: pa.ChunkedArray, label: str, class_names: list[str]
) -> tuple[Problems, np.ndarray, list[str]]:
    """Class codes in class-name order (given, or the sorted distinct labels) and the cells that are not a class."""
    raw = pc.utf8_trim_whitespace(column)
    empty = pc.equal(raw, "")
    classes = class_names or sorted(set(pc.unique(pc.filter(raw, pc.invert(empty))).to_pylist()))
    if len(set(classes)) != len(classes):
        raise InputError(f"class names must be distinct: {', '.join(classes)}")
    codes = pc.index_in(raw, value_set=pa.array(classes, pa.string())).to_numpy(zero_copy_only=False)
    unknown = np.isnan(codes.astype(np.float64))
    empty_rows = empty.to_numpy(zero_copy_only=False)

    def describe(row: int) -> str:
        if empty_rows[row]:
            return "missing label"
        return f"unknown label {raw[row].as_py()!r} (expected one of: {', '.join(classes)})"

    problems = Problems(label, np.flatnonzero(unknown), describe)
    return problems, np.where(unknown, -1, codes).astype(np.int64), classes


def cell_report(source: Source, part_rows: list[int], problems: list[Problems], header: list[str]) -> str:
    """One line naming the first ``MAX_REPORTED`` bad cells in input order (file when several, line, column,
    value), then a count. ``part_rows``: each part's rows, in the order the table concatenates them."""
    total = sum(group.rows.size for group in problems)
    first = sorted(
        (int(row), header.index(group.column), group)
        for group in problems
        for row in group.rows[:MAX_REPORTED]
    )[:MAX_REPORTED]
    places = places_of(source.parts, part_rows, {row for row, _, _ in first})

    def cell(row: int, group: Problems, named: bool) -> str:
        part, line = places[row]
        return f"{part.name + ', ' if named else ''}line {line}, column {group.column!r}: {group.describe(row)}"

    if total == 1:
        row, _, group = first[0]
        return f"{places[row][0]}, {cell(row, group, False)}"
    items = [cell(row, group, len(source.parts) > 1) for row, _, group in first]
    more = f"; and {total - len(items)} more" if total > len(items) else ""
    return f"{source.shown}: {total} bad cells: {'; '.join(items)}{more}"


def places_of(parts: list[Path], part_rows: list[int], rows: set[int]) -> dict[int, tuple[Path, int]]:
    """The part and file line of each 0-based row of the parts' concatenated table."""
    starts = np.cumsum([0, *part_rows])
    by_part: dict[int, set[int]] = {}
    for row in rows:
        by_part.setdefault(int(np.searchsorted(starts, row, side="right")) - 1, set()).add(row)
    places = {}
    for index, members in by_part.items():
        lines = lines_of(parts[index], {row - int(starts[index]) for row in members})
        places.update({row: (parts[index], lines[row - int(starts[index])]) for row in members})
    return places


def split_rows(
    groups: list[tuple[str, np.ndarray]], keys: np.ndarray, validation_fraction: float, test_fraction: float,
    seed: int,
) -> dict[str, np.ndarray]:
    """Row indices per split. A row's split follows from its key alone (test below ``test_fraction``, then
    validation, then train), so a data set that grows keeps every old row in its split and a champion is never
    scored on rows it trained on. A group (a class, or the whole data set for regression) whose keys leave a
    split empty is dealt by key rank instead, in the same proportions."""
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1 and validation_fraction + test_fraction < 1):
        raise InputError(
            "--validation-fraction and --test-fraction must each be in (0, 1) and sum to less than 1, "
            f"got {validation_fraction} and {test_fraction}"
        )
    parts: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for what, members in groups:
        n_test = max(1, round(len(members) * test_fraction))
        n_validation = max(1, round(len(members) * validation_fraction))
        if len(members) < n_test + n_validation + 1:
            raise InputError(
                f"{what} has {len(members)} row(s): too few to put at least one in each of "
                f"train, validation and test (need at least {n_test + n_validation + 1})"
            )
        ranked = members[np.argsort(keys[members], kind="stable")]
        bands = np.searchsorted(keys[ranked], [test_fraction, test_fraction + validation_fraction])
        if not 0 < bands[0] < bands[1] < len(ranked):
            bands = np.array([n_test, n_test + n_validation])
        parts["test"].append(ranked[: bands[0]])
        parts["validation"].append(ranked[bands[0] : bands[1]])
        parts["train"].append(ranked[bands[1] :])
    rng = np.random.default_rng(seed)
    return {split: rng.permutation(np.sort(np.concatenate(chunks))) for split, chunks in parts.items()}


def row_keys(data: Data, seed: int) -> np.ndarray:
    """A number in [0, 1) per row from its content and the seed: the same row (the same feature values by name
    and the same label) gets the same key in every version of a data set, and identical rows share a split."""
    with np.errstate(over="ignore"):
        acc = np.full(data.labels.size, _mix(np.uint64(seed & (2**64 - 1))), dtype=np.uint64)
        for name, column in zip(data.names, data.features, strict=True):
            values = column.to_numpy().astype(np.float64) + 0.0  # -0.0 and 0.0 alike
            acc += _mix(values.view(np.uint64) ^ _name_hash(name))
        if data.classes:
            label = np.array([_name_hash(name) for name in data.classes], dtype=np.uint64)[data.labels]
        else:
            label = (data.labels.astype(np.float64) + 0.0).view(np.uint64)
        acc = _mix(acc ^ _mix(label ^ _name_hash("")))
    return (acc >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _name_hash(text: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little"))


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: every input bit moves every output bit (uint64 arithmetic wraps)."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def split_groups(data: Data) -> list[tuple[str, np.ndarray]]:
    """Stratified by class for classification; a plain seeded shuffle of every row for regression."""
    if not data.classes:
        return [("the data set", np.arange(data.labels.size))]
    return [(f"class {name!r}", np.flatnonzero(data.labels == code)) for code, name in enumerate(data.classes)]


def task_of(objective: str) -> str:
    if objective not in TASKS:
        raise InputError(f"Objective {objective!r} is not one of {', '.join(TASKS)}")
    return TASKS[objective]


def check_task(args: argparse.Namespace, task: str, data: Data, source: Path, label: str) -> None:
    """The objective and NumClass fit the label column, or an error naming the parameter and the data."""
    objective, count = args.objective, len(data.classes)
    column = f"column {label!r} of {source.name}"
    if task == "regression":
        if args.num_class:
            raise InputError(
                f"NumClass is {args.num_class}, but Objective {objective} predicts a number: set NumClass=0"
            )
        return
    found = f"{column} has {count} class(es): {', '.join(data.classes)}"
    if args.num_class and args.num_class != count:
        raise InputError(f"NumClass is {args.num_class}, but {found}; set NumClass={count} or 0 (from the data)")
    if task == "binary" and count != 2:
        hint = "; use Objective=multi:softprob" if count > 2 else ""
        raise InputError(f"Objective {objective} needs exactly 2 classes, but {found}{hint}")
    if task == "multiclass" and count < 3:
        hint = "; use Objective=binary:logistic" if count == 2 else ""
        raise InputError(f"Objective {objective} needs at least 3 classes, but {found}{hint}")


def deal_parts(split_labels: np.ndarray, parts: int) -> list[np.ndarray]:
    """Positions of a (shuffled) split's rows dealt into ``parts`` parts whose sizes differ by at most one.

    Dealt round-robin down the rows ordered by label, so each part holds every class that has at least
    ``parts`` rows in the split, in the split's proportions (for regression: the target's whole range);
    each part keeps the split's shuffled order.
    """
    by_class = np.argsort(split_labels, kind="stable")
    part_of = np.empty(split_labels.size, dtype=np.int64)
    part_of[by_class] = np.arange(split_labels.size) % parts
    return [np.flatnonzero(part_of == k) for k in range(parts)]


def check_parts(parts: int, splits: dict[str, np.ndarray]) -> None:
    """Every part of every split gets at least one row."""
    smallest = min(splits, key=lambda split: splits[split].size)
    if parts > splits[smallest].size:
        raise InputError(
            f"--parts {parts}: more parts than rows in the {smallest} split ({splits[smallest].size}); "
            "use fewer training instances or more data"
        )


def part_names(split: str, parts: int) -> list[str]:
    """``<split>.csv`` for one part (the layout of a single instance), else ``<split>-part-00000.csv``, ..."""
    return [f"{split}.csv"] if parts == 1 else [f"{split}-part-{k:05d}.csv" for k in range(parts)]


def write_channel(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcsv.write_csv(table, path, write_options=pcsv.WriteOptions(include_header=False))


def baseline_statistics(
    features: list[pa.ChunkedArray], labels: np.ndarray, names: list[str], classes: list[str]
) -> dict:
    """Per-feature summary and decile histogram of the training split (the drift reference); the class
    distribution for classification, the target's summary for regression."""
    statistics = {
        "features": {name: feature_statistics(column.to_numpy()) for name, column in zip(names, features, strict=True)},
        "class_distribution": {},
    }
    if classes:
        class_counts = np.bincount(labels, minlength=len(classes))
        statistics["class_distribution"] = {
            name: float(class_counts[i] / labels.size) for i, name in enumerate(classes)
        }
    else:
        statistics["target"] = feature_statistics(labels)
    return statistics


def feature_statistics(column: np.ndarray) -> dict:
    """One feature's summary; its quantiles (histogram edges and percentiles) in one partial sort."""
    deciles = np.linspace(0, 1, HISTOGRAM_BINS + 1)
    quantiles = np.quantile(column, np.concatenate([deciles, np.array(PERCENTILES) / 100]))
    edges = np.unique(quantiles[: deciles.size])
    return {
        "count": int(column.size),
        "mean": float(column.mean()),
        "std": float(column.std()),
        "min": float(column.min()),
        "max": float(column.max()),
        "quantiles": {f"p{q}": float(v) for q, v in zip(PERCENTILES, quantiles[deciles.size :], strict=True)},
        "histogram": {"bin_edges": edges.tolist(), "counts": histogram_counts(column, edges)},
    }


def histogram_counts(column: np.ndarray, edges: np.ndarray) -> list[int]:
    """``np.histogram(column, edges)[0]`` (bins half-open but the last, closed) without sorting the column;
    the edges span the column."""
    if edges.size < 2:
        return []
    bins = np.searchsorted(edges[1:-1], column, side="right")
    return np.bincount(bins, minlength=edges.size - 1).tolist()


def write_json(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def source_description(source: Source, sha256: str, part_hashes: list[str], part_rows: list[int]) -> dict:
    """The file (name, sha256, bytes); of several parts also each one's, the sha256 over them all in order and
    their total bytes."""
    sizes = [part.stat().st_size for part in source.parts]
    if len(source.parts) == 1:
        return {"file": source.parts[0].name, "sha256": sha256, "bytes": sizes[0]}
    files = [{"file": key, "sha256": digest, "bytes": size, "rows": rows}
             for key, digest, size, rows in zip(source.keys, part_hashes, sizes, part_rows, strict=True)]
    return {"file": f"{len(files)} files", "files": files, "sha256": sha256, "bytes": sum(sizes)}


def preprocess(args: argparse.Namespace) -> dict:
    base = Path(args.base_dir)
    source = find_source(Path(args.input) if args.input else base / "raw")
    label = args.label_column.strip()
    if args.parts < 1:
        raise InputError(f"--parts must be at least 1, got {args.parts}")
    task = task_of(args.objective)
    class_names = split_names(args.class_names)
    if task == "regression" and class_names:
        raise InputError(
            f"ClassNames names classes ({', '.join(class_names)}), but Objective {args.objective} predicts "
            "a number: set ClassNames= (empty)"
        )
    # A second thread hashes the source and computes the statistics while Arrow (which releases the GIL)
    # parses the file and writes the channels.
    with ThreadPoolExecutor(max_workers=1) as background:
        source_hash = background.submit(sha256_of, source.parts)
        data = read_data(source, label, split_names(args.feature_columns), task, class_names)
        check_task(args, task, data, source.shown, label)
        part_rows = data.part_rows
        features, labels, classes = data.names, data.labels, data.classes
        splits = split_rows(
            split_groups(data), row_keys(data, args.seed), args.validation_fraction, args.test_fraction, args.seed
        )
        check_parts(args.parts, splits)
        channels = pa.table([pa.array(labels), *data.features], names=["label", *features])
        del data
        train_rows = splits["train"]
        train = channels.take(train_rows)
        statistics = background.submit(baseline_statistics, train.columns[1:], labels[train_rows], features, classes)
        for split, rows in splits.items():
            table = train if split == "train" else channels.take(rows)
            tables = [table] if args.parts == 1 else [table.take(p) for p in deal_parts(labels[rows], args.parts)]
            for name, part in zip(part_names(split, args.parts), tables, strict=True):
                write_channel(base / split / name, part)
        del train, channels
        baseline = statistics.result()
        write_json(base / "baseline" / "statistics.json", baseline)
        sha256, part_hashes = source_hash.result()
    schema = {
        "task": task,
        "objective": args.objective,
        "label_column": label,
        "feature_columns": features,
        "features": [
            {"name": name, "type": "number", "min": baseline["features"][name]["min"],
             "max": baseline["features"][name]["max"],
             "median": baseline["features"][name]["quantiles"]["p50"]}  # GET /model's example, on both targets
            for name in features
        ],
        "classes": classes,
        "num_class": len(classes) if classes else None,  # the Train step's num_class for multi:* objectives
        "label_map": {name: i for i, name in enumerate(classes)},
        "rows": {"input": int(labels.size), **{split: int(rows.size) for split, rows in splits.items()}},
        "class_counts": {
            split: dict(zip(classes, np.bincount(labels[rows], minlength=len(classes)).tolist(), strict=True))
            for split, rows in splits.items()
        } if classes else {},
        "source": source_description(source, sha256, part_hashes, part_rows),
        "seed": args.seed,
        "parts": args.parts,
        "validation_fraction": args.validation_fraction,
        "test_fraction": args.test_fraction,
    }
    if task == "regression":
        target = baseline["target"]
        schema["target"] = {"name": label, "min": target["min"], "max": target["max"], "mean": target["mean"]}
    write_json(base / "schema" / "schema.json", schema)
    return schema


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        schema = preprocess(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = schema["rows"]
    print(
        f"preprocessed {rows['input']} rows of {schema['source']['file']}: "
        f"train {rows['train']}, validation {rows['validation']}, test {rows['test']}; "
        + (f"classes {', '.join(f'{i}={c}' for i, c in enumerate(schema['classes']))}" if schema["classes"]
           else f"target {schema['target']['name']} in [{schema['target']['min']:g}, {schema['target']['max']:g}]")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
