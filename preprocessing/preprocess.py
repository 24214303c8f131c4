"""Preprocess step: raw CSV -> train/validation/test channels, schema and baseline statistics.

Runs unchanged as a SageMaker Processing script: every path defaults to the layout under
``/opt/ml/processing`` and ``--base-dir`` moves the whole layout (the local runner points it
at the step's folder). Imports nothing of the project outside this folder.

Layout below the base dir::

    raw/              the raw CSV (one file, or a folder holding exactly one); not below input/, where
                      SageMaker mounts the code (input/code/preprocess.py)
    train/train.csv   label first, no header (SageMaker built-in XGBoost layout)
    validation/validation.csv
    test/test.csv
                      with --parts K > 1, each split as K files instead: train/train-part-00000.csv ...,
                      one per training instance (SageMaker deals a ShardedByS3Key channel out by file)
    schema/schema.json        feature names, classes and their indices, split sizes, data hash
    baseline/statistics.json  training-feature statistics, for drift checks

Exit status 2 with one ``error:`` line on stderr for any problem with the input.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

DEFAULT_BASE_DIR = "/opt/ml/processing"
SPLITS = ("train", "validation", "test")
HISTOGRAM_BINS = 10
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


class InputError(Exception):
    """A problem with the user's data or arguments: reported as one line, exit status 2."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", default=DEFAULT_BASE_DIR, help="root of the processing layout")
    parser.add_argument("--input", help="raw CSV file or folder (default: <base-dir>/raw)")
    parser.add_argument("--label-column", required=True, help="name of the label column")
    parser.add_argument("--feature-columns", required=True, help="comma-separated feature column names")
    parser.add_argument(
        "--class-names",
        default="",
        help="comma-separated class names in index order; empty: the sorted distinct labels",
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


def find_csv(path: Path) -> Path:
    """The input may be a file or a folder holding exactly one CSV (a ProcessingInput prefix).

    Resolved, so that messages name the user's file rather than a link to it in the step's folder.
    """
    if path.is_file():
        return path.resolve()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if len(files) != 1:
        raise InputError(f"{path}: expected exactly one CSV file, found {len(files)}")
    return files[0].resolve()


def sha256_of(path: Path) -> str:
    """Read in 1 MiB blocks, not ``hashlib.file_digest``: the SageMaker XGBoost image runs Python 3.10."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def line_of(path: Path, row: int) -> int:
    """File line of a 0-based data row (line 1 is the header); the file is read again, only to report an error."""
    for index, (line, _) in enumerate(record_lines(path), start=-1):
        if index == row:
            return line
    return row + 2


def unreadable(path: Path, exc: Exception) -> str:
    """Message for a file Arrow cannot parse: the first row whose cell count differs from the header's."""
    width = None
    for line, record in record_lines(path):
        if width is None:
            width = len(record)
        elif len(record) != width:
            return f"{path}, line {line}: {len(record)} cells, the header has {width}"
    return f"{path}: not a readable CSV file ({first_line(exc)})"


def read_header(path: Path) -> list[str]:
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    try:
        with pcsv.open_csv(path) as reader:
            return reader.schema.names
    except pa.ArrowInvalid as exc:
        raise InputError(unreadable(path, exc)) from None


def check_columns(path: Path, header: list[str], label: str, features: list[str]) -> None:
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise InputError(f"{path}: duplicate column name(s): {', '.join(duplicates)}")
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


def read_columns(path: Path, label: str, features: list[str], feature_type: pa.DataType) -> pa.Table:
    options = pcsv.ConvertOptions(
        include_columns=[label, *features],
        column_types={label: pa.string(), **{name: feature_type for name in features}},
        strings_can_be_null=False,
    )
    return pcsv.read_csv(path, convert_options=options)


def read_table(path: Path, label: str, features: list[str]) -> pa.Table:
    """The label column as text and the features as float64 columns, every value checked.

    Fast path: Arrow parses the floats. Only when that fails is the file read again as text,
    to name the line and column of the first bad cell.
    """
    check_columns(path, read_header(path), label, features)
    try:
        table = read_columns(path, label, features, pa.float64())
    except pa.ArrowInvalid:
        try:
            text = read_columns(path, label, features, pa.string())
        except pa.ArrowInvalid as exc:
            raise InputError(unreadable(path, exc)) from None
        raise InputError(first_bad_cell(path, text, features)) from None
    for name in features:
        check_finite(path, table.column(name), name)
    return table


def check_finite(path: Path, column: pa.ChunkedArray, name: str) -> None:
    """Arrow reads empty cells and NaN as nulls: both are missing values; infinities are refused too."""
    if column.null_count:
        row = pc.index(column.is_null(), True).as_py()
        raise InputError(f"{path}, line {line_of(path, row)}, column {name!r}: missing value")
    row = pc.index(pc.is_finite(column), False).as_py()
    if row >= 0:
        raise InputError(f"{path}, line {line_of(path, row)}, column {name!r}: non-finite value {column[row].as_py()}")


def first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


NUMBER = r"^\s*[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf|infinity|nan)\s*$"


def first_bad_cell(path: Path, text: pa.Table, features: list[str]) -> str:
    """Message naming the first cell (in file order) that is not a number."""
    first: tuple[int, int] | None = None
    for j, name in enumerate(features):
        valid = pc.match_substring_regex(text.column(name), NUMBER, ignore_case=True)
        bad = np.flatnonzero(~valid.to_numpy(zero_copy_only=False))
        if bad.size and (first is None or bad[0] < first[0]):
            first = (int(bad[0]), j)
    if first is None:
        return f"{path}: the feature columns could not be read as numbers"
    row, j = first
    cell = text.column(features[j])[row].as_py().strip()
    what = "missing value" if cell == "" else f"{cell!r} is not a number"
    return f"{path}, line {line_of(path, row)}, column {features[j]!r}: {what}"


def encode_labels(table: pa.Table, path: Path, label: str, class_names: list[str]) -> tuple[np.ndarray, list[str]]:
    raw = pc.utf8_trim_whitespace(table.column(label))
    empty = np.flatnonzero(pc.equal(raw, "").to_numpy(zero_copy_only=False))
    if empty.size:
        raise InputError(f"{path}, line {line_of(path, int(empty[0]))}, column {label!r}: missing label")
    classes = class_names or sorted(set(pc.unique(raw).to_pylist()))
    if len(set(classes)) != len(classes):
        raise InputError(f"class names must be distinct: {', '.join(classes)}")
    codes = pc.index_in(raw, value_set=pa.array(classes)).to_numpy(zero_copy_only=False)
    unknown = np.flatnonzero(np.isnan(codes.astype(np.float64)))
    if unknown.size:
        row = int(unknown[0])
        raise InputError(
            f"{path}, line {line_of(path, row)}, column {label!r}: unknown label {raw[row].as_py()!r} "
            f"(expected one of: {', '.join(classes)})"
        )
    return codes.astype(np.int64), classes


def stratified_split(
    labels: np.ndarray, classes: list[str], validation_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Row indices per split; every class lands in every split, in the same proportions."""
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1 and validation_fraction + test_fraction < 1):
        raise InputError(
            "--validation-fraction and --test-fraction must each be in (0, 1) and sum to less than 1, "
            f"got {validation_fraction} and {test_fraction}"
        )
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for code, name in enumerate(classes):
        rows = rng.permutation(np.flatnonzero(labels == code))
        n_test = max(1, round(len(rows) * test_fraction))
        n_validation = max(1, round(len(rows) * validation_fraction))
        if len(rows) < n_test + n_validation + 1:
            raise InputError(
                f"class {name!r} has {len(rows)} row(s): too few to put at least one in each of "
                f"train, validation and test (need at least {n_test + n_validation + 1})"
            )
        parts["test"].append(rows[:n_test])
        parts["validation"].append(rows[n_test : n_test + n_validation])
        parts["train"].append(rows[n_test + n_validation :])
    return {split: rng.permutation(np.concatenate(chunks)) for split, chunks in parts.items()}


def deal_parts(split_labels: np.ndarray, parts: int) -> list[np.ndarray]:
    """Positions of a (shuffled) split's rows dealt into ``parts`` parts whose sizes differ by at most one.

    Dealt round-robin down the rows grouped by class, so each part holds every class that has at least
    ``parts`` rows in the split, in the split's proportions; each part keeps the split's shuffled order.
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
    """Per-feature summary and decile histogram of the training split (the drift reference)."""
    class_counts = np.bincount(labels, minlength=len(classes))
    return {
        "features": {name: feature_statistics(column.to_numpy()) for name, column in zip(names, features, strict=True)},
        "class_distribution": {name: float(class_counts[i] / labels.size) for i, name in enumerate(classes)},
    }


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


def preprocess(args: argparse.Namespace) -> dict:
    base = Path(args.base_dir)
    source = find_csv(Path(args.input) if args.input else base / "raw")
    features = split_names(args.feature_columns)
    if not features:
        raise InputError("--feature-columns names no column")
    label = args.label_column.strip()
    if args.parts < 1:
        raise InputError(f"--parts must be at least 1, got {args.parts}")
    # A second thread hashes the source and computes the statistics while Arrow (which releases the GIL)
    # parses the file and writes the channels.
    with ThreadPoolExecutor(max_workers=1) as background:
        source_hash = background.submit(sha256_of, source)
        table = read_table(source, label, features)
        if table.num_rows == 0:
            raise InputError(f"{source}: the file has a header but no rows")
        labels, classes = encode_labels(table, source, label, split_names(args.class_names))
        splits = stratified_split(labels, classes, args.validation_fraction, args.test_fraction, args.seed)
        check_parts(args.parts, splits)
        channels = pa.table([pa.array(labels), *table.select(features).columns], names=["label", *features])
        del table
        train_rows = splits["train"]
        train = channels.take(train_rows)
        statistics = background.submit(baseline_statistics, train.columns[1:], labels[train_rows], features, classes)
        for split, rows in splits.items():
            table = train if split == "train" else channels.take(rows)
            parts = deal_parts(labels[rows], args.parts)
            for name, positions in zip(part_names(split, args.parts), parts, strict=True):
                write_channel(base / split / name, table if args.parts == 1 else table.take(positions))
        del train, channels
        write_json(base / "baseline" / "statistics.json", statistics.result())
        sha256 = source_hash.result()
    schema = {
        "label_column": label,
        "feature_columns": features,
        "classes": classes,
        "label_map": {name: i for i, name in enumerate(classes)},
        "rows": {"input": int(labels.size), **{split: int(rows.size) for split, rows in splits.items()}},
        "class_counts": {
            split: dict(zip(classes, np.bincount(labels[rows], minlength=len(classes)).tolist(), strict=True))
            for split, rows in splits.items()
        },
        "source": {"file": source.name, "sha256": sha256, "bytes": source.stat().st_size},
        "seed": args.seed,
        "parts": args.parts,
        "validation_fraction": args.validation_fraction,
        "test_fraction": args.test_fraction,
    }
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
        f"classes {', '.join(f'{i}={c}' for i, c in enumerate(schema['classes']))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
