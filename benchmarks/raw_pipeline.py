"""The hand-written reference of the pipeline benchmark: preprocess + train + evaluate in one script.

What a competent engineer writes without any framework, with the same libraries used the
same plain way as the pipeline's steps: pyarrow.csv to read and write, numpy for the split
and the metrics, XGBoost's QuantileDMatrix and ``xgboost.train``. It does the same I/O as
the pipeline (three channel CSVs written, label first and no header, then read back) and the
same training (the built-in algorithm's defaults, validation watched every round), so the
benchmark measures the pipeline's overhead and nothing else. It imports nothing of the
project on purpose.

    python benchmarks/raw_pipeline.py --data raw.csv --out DIR

Prints one JSON object: accuracy, macro F1 and the seconds of each phase.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import xgboost as xgb

# The same values as pipelines/builtin_xgboost/hyperparameters.py DEFAULT_HYPERPARAMETERS.
PARAMS = {
    "max_depth": 5,
    "eta": 0.2,
    "gamma": 4,
    "min_child_weight": 6,
    "objective": "multi:softprob",
    "num_class": 3,
}
NUM_ROUND = 10


def content_split(
    features: dict[str, np.ndarray], labels: np.ndarray, classes: list[str], validation: float, test: float,
    seed: int,
) -> dict[str, np.ndarray]:
    """Row indices of train/validation/test by a seeded hash of each row's content (the usual way to keep a
    growing data set's test rows out of training): test below ``test``, then validation, then train."""

    def mix(z: np.ndarray) -> np.ndarray:  # SplitMix64's finalizer
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    def name_hash(text: str) -> np.uint64:
        return np.uint64(int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little"))

    with np.errstate(over="ignore"):
        key = np.full(labels.size, mix(np.uint64(seed)), dtype=np.uint64)
        for name, values in features.items():
            key += mix((values + 0.0).view(np.uint64) ^ name_hash(name))
        label = np.array([name_hash(name) for name in classes], dtype=np.uint64)[labels]
        key = mix(key ^ mix(label ^ name_hash("")))
    unit = (key >> np.uint64(11)).astype(np.float64) * 2.0**-53
    rng = np.random.default_rng(seed)
    masks = {"train": unit >= test + validation, "validation": (unit >= test) & (unit < test + validation),
             "test": unit < test}
    return {name: rng.permutation(np.flatnonzero(mask)) for name, mask in masks.items()}


def read_channel(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A label-first, headerless CSV as (features float32, labels float32)."""
    table = pcsv.read_csv(path, read_options=pcsv.ReadOptions(autogenerate_column_names=True))
    data = np.empty((table.num_rows, table.num_columns), dtype=np.float32)
    for j, column in enumerate(table.columns):
        data[:, j] = column.to_numpy()
    return data[:, 1:], data[:, 0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="raw CSV with a header")
    parser.add_argument("--out", required=True, type=Path, help="folder for the channels, model and metrics")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    phases: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = round(now - clock, 3)
        clock = now

    # Preprocess: read, encode the label, split, write the three channels (label first, no header).
    with args.data.open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle))
    features = [name for name in header if name != args.label_column]
    types = {args.label_column: pa.string(), **{name: pa.float64() for name in features}}
    raw = pcsv.read_csv(args.data, convert_options=pcsv.ConvertOptions(column_types=types))
    lap("read_raw_csv")
    label_text = raw.column(args.label_column)
    classes = sorted(pc.unique(label_text).to_pylist())
    labels = pc.index_in(label_text, value_set=pa.array(classes)).to_numpy()
    columns = {name: raw.column(name).to_numpy() for name in features}
    splits = content_split(columns, labels, classes, 0.15, 0.15, args.seed)
    del columns
    lap("encode_and_split")
    channels = pa.table(
        [pa.array(labels), *(raw.column(name) for name in features)], names=["label", *features]
    )
    del raw
    for name, rows in splits.items():
        (out / name).mkdir(exist_ok=True)
        pcsv.write_csv(
            channels.take(rows), out / name / f"{name}.csv", write_options=pcsv.WriteOptions(include_header=False)
        )
    del channels
    lap("write_channels")

    # Train: read the channels back, QuantileDMatrix, xgboost.train watching train and validation.
    train_x, train_y = read_channel(out / "train" / "train.csv")
    validation_x, validation_y = read_channel(out / "validation" / "validation.csv")
    lap("read_train_validation")
    dtrain = xgb.QuantileDMatrix(train_x, label=train_y)
    dvalidation = xgb.QuantileDMatrix(validation_x, label=validation_y, ref=dtrain)
    del train_x, validation_x
    lap("build_dmatrix")
    booster = xgb.train(
        PARAMS, dtrain, num_boost_round=NUM_ROUND, evals=[(dtrain, "train"), (dvalidation, "validation")],
        verbose_eval=False,
    )
    del dtrain, dvalidation
    lap("train")
    (out / "model").mkdir(exist_ok=True)
    booster.save_model(out / "model" / "xgboost-model.ubj")
    lap("save_model")

    # Evaluate: read the test channel, predict, accuracy / macro F1 / confusion matrix.
    test_x, test_y = read_channel(out / "test" / "test.csv")
    lap("read_test")
    predicted = booster.predict(xgb.DMatrix(test_x)).argmax(axis=1)  # multi:softprob: one probability per class
    lap("predict")
    actual = test_y.astype(np.int64)
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (actual, predicted), 1)
    hits = np.diag(matrix).astype(np.float64)
    precision = np.divide(hits, matrix.sum(axis=0), out=np.zeros(len(classes)), where=matrix.sum(axis=0) > 0)
    recall = np.divide(hits, matrix.sum(axis=1), out=np.zeros(len(classes)), where=matrix.sum(axis=1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(classes)), where=precision + recall > 0)
    report = {
        "accuracy": float(hits.sum() / matrix.sum()),
        "macro_f1": float(f1.mean()),
        "confusion_matrix": {
            actual_name: dict(zip(classes, map(int, row), strict=True))
            for actual_name, row in zip(classes, matrix, strict=True)
        },
        "classes": classes,
        "rows": {name: int(rows.size) for name, rows in splits.items()},
    }
    (out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lap("metrics")
    print(json.dumps({"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "phases": phases}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
