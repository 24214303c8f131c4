"""Local emulation of SageMaker's built-in XGBoost training container (image 3.0-5).

Same contract as the container, below an ``/opt/ml``-shaped root (``--ml-root``)::

    input/config/hyperparameters.json    {"num_round": "10", ...}: strings, as SageMaker passes them
    input/config/inputdataconfig.json    {"train": {"ContentType": "text/csv"}, "validation": {...}}
    input/data/<channel>/*.csv            label first, no header
    model/xgboost-model                   the trained booster, UBJSON (what XGBoost 3.x saves and loads)
    output/failure                        the reason, when the job fails

Evaluation metrics are logged per round as the container logs them
(``[3]#011train-merror:0.02#011validation-merror:0.04``), so the same metric regexes work.
Exit status 2 for a user error (bad hyperparameters or data), 1 for anything else.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import xgboost as xgb

from pipelines.builtin_xgboost.hyperparameters import HyperparameterError, validate

SUPPORTED_CONTENT_TYPES = ("text/csv", "csv")
MODEL_FILE = "xgboost-model"
TOO_FEW_COLUMNS = "needs a label column and at least one feature"


class UserError(Exception):
    """The job's inputs are wrong; the container reports these as ClientError."""


def sniff_delimiter(path: Path) -> str:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        sample = handle.readline()
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_channel(channel_dir: Path, name: str, num_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All CSV files of a channel, concatenated: (features float32, labels float32).

    Like the container, files whose names start with ``.`` or ``_`` (``_SUCCESS`` markers) are not data.
    """
    files = sorted(p for p in channel_dir.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    if not files:
        raise UserError(f"No data in {name} channel path {channel_dir}")
    tables = []
    for path in files:
        tables.append(read_file(path, f"{name} channel, {path.name}"))
        check_labels(tables[-1].column(0).to_numpy(), num_class, f"{name} channel, {path.name}")
    widths = {table.num_columns for table in tables}
    if len(widths) > 1:
        raise UserError(f"{name} channel: files have different column counts {sorted(widths)}")
    return stack(tables)


def stack(tables: list[pa.Table]) -> tuple[np.ndarray, np.ndarray]:
    """The rows of label-first tables of equal width as (features, labels), float32, the features C-contiguous."""
    features = np.empty((sum(table.num_rows for table in tables), tables[0].num_columns - 1), dtype=np.float32)
    labels = np.empty(features.shape[0], dtype=np.float32)
    start = 0
    for table in tables:
        end = start + table.num_rows
        labels[start:end] = table.column(0).to_numpy()
        for j, column in enumerate(table.columns[1:]):
            features[start:end, j] = column.to_numpy()
        start = end
    return features, labels


def read_file(path: Path, where: str) -> pa.Table:
    """One file of a channel, its values parsed straight to float32 as the container's CSV parser does.

    Arrow's streaming reader gives the column count. When the typed read fails, the file is read
    again with type inference, only to say what is wrong with it.
    """
    options = {
        "read_options": pcsv.ReadOptions(autogenerate_column_names=True),
        "parse_options": pcsv.ParseOptions(delimiter=sniff_delimiter(path)),
    }
    try:
        with pcsv.open_csv(path, **options) as reader:
            float32 = {name: pa.float32() for name in reader.schema.names}
        table = pcsv.read_csv(path, **options, convert_options=pcsv.ConvertOptions(column_types=float32))
    except pa.ArrowInvalid:
        raise UserError(f"{where}: {why_unreadable(path, options)}") from None
    if table.num_columns < 2:
        raise UserError(f"{where}: {TOO_FEW_COLUMNS}")
    return table


def why_unreadable(path: Path, options: dict) -> str:
    try:
        table = pcsv.read_csv(path, **options)
    except pa.ArrowInvalid as exc:
        return str(exc).splitlines()[0]
    return TOO_FEW_COLUMNS if table.num_columns < 2 else "every value must be a number"


def check_labels(labels: np.ndarray, num_class: int | None, where: str) -> None:
    if num_class is None:
        return
    bad = np.flatnonzero((labels < 0) | (labels >= num_class) | (labels != np.floor(labels)))
    if bad.size:
        raise UserError(
            f"{where}, row {int(bad[0]) + 1}: label {labels[bad[0]]:g} is not a class index "
            f"in [0, {num_class}) (num_class={num_class})"
        )


def read_json(path: Path, default: dict) -> dict:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def read_config(ml_root: Path) -> tuple[dict, dict]:
    """hyperparameters.json (none: no hyperparameters, so num_round is missing) and inputdataconfig.json."""
    config = ml_root / "input" / "config"
    hyperparameters = read_json(config / "hyperparameters.json", {})
    data_config = read_json(config / "inputdataconfig.json", {"train": {"ContentType": "text/csv"}})
    return hyperparameters, data_config


def check_channels(data_config: dict) -> None:
    if "train" not in data_config:
        raise UserError("Missing required channel: train")
    for channel, settings in data_config.items():
        if channel not in ("train", "validation"):
            raise UserError(f"Extraneous channel found: {channel}")
        content_type = settings.get("ContentType", "text/csv").split(";")[0].strip().lower()
        if content_type not in SUPPORTED_CONTENT_TYPES:
            raise UserError(
                f"Channel {channel}: content type {content_type!r} is not supported by the local trainer "
                "(use text/csv)"
            )


def matrix(features: np.ndarray, labels: np.ndarray, csv_weights: int) -> xgb.DMatrix:
    """With csv_weights=1 the first column after the label holds the instance weights."""
    if csv_weights == 1:
        return xgb.DMatrix(features[:, 1:], label=labels, weight=features[:, 0])
    return xgb.DMatrix(features, label=labels)


def log_evaluation(period: int = 1) -> xgb.callback.TrainingCallback:
    class ContainerStyleLog(xgb.callback.TrainingCallback):
        """Logs every evaluated round. XGBoost keeps callbacks in a set and stops calling them at the first
        that asks to stop, so when early stopping runs first the last round is logged after training."""

        def __init__(self) -> None:
            super().__init__()
            self.history: dict = {}
            self.logged = 0  # rounds logged so far

        def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict) -> bool:
            self.history = evals_log  # the same dict every round, updated before any callback runs
            self.log_until(epoch + 1)
            return False

        def after_training(self, model: xgb.Booster) -> xgb.Booster:
            self.log_until(max((len(v) for metrics in self.history.values() for v in metrics.values()), default=0))
            return model

        def log_until(self, rounds: int) -> None:
            for epoch in range(self.logged, rounds):
                if epoch % period == 0:
                    scores = [
                        f"{data}-{metric}:{values[epoch]:.5f}"
                        for data, metrics in self.history.items()
                        for metric, values in metrics.items()
                    ]
                    print(f"[{epoch}]#011" + "#011".join(scores), flush=True)
            self.logged = max(self.logged, rounds)

    return ContainerStyleLog()


def train(ml_root: Path) -> xgb.Booster:
    hyperparameters, data_config = read_config(ml_root)
    try:
        params = validate(hyperparameters)
    except HyperparameterError as exc:
        raise UserError(str(exc)) from None
    check_channels(data_config)
    data_dir = ml_root / "input" / "data"
    num_round = params.pop("num_round")
    early_stopping = params.pop("early_stopping_rounds", None)
    csv_weights = params.pop("csv_weights", 0)
    # A plain DMatrix, as the container builds: QuantileDMatrix only works with tree_method=hist,
    # the default max_bin and the gbtree booster.
    train_x, train_y = read_channel(data_dir / "train", "train", params.get("num_class"))
    dtrain = matrix(train_x, train_y, csv_weights)
    evals = [(dtrain, "train")]
    callbacks = [log_evaluation()]
    if "validation" in data_config:
        val_x, val_y = read_channel(data_dir / "validation", "validation", params.get("num_class"))
        if val_x.shape[1] != train_x.shape[1]:
            raise UserError(
                f"validation channel has {val_x.shape[1]} features, train channel has {train_x.shape[1]}"
            )
        evals.append((matrix(val_x, val_y, csv_weights), "validation"))
    elif early_stopping is not None:
        raise UserError("early_stopping_rounds needs a validation channel")
    if early_stopping is not None:
        # save_best, as the container does: the stored model ends at the best round.
        callbacks.append(xgb.callback.EarlyStopping(rounds=early_stopping, data_name="validation", save_best=True))
    print(f"Train matrix has {dtrain.num_row()} rows and {dtrain.num_col()} features", flush=True)
    del train_x
    try:
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=num_round,
            evals=evals,
            callbacks=callbacks,
            verbose_eval=False,
        )
    except xgb.core.XGBoostError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    model_dir = ml_root / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / MODEL_FILE).write_bytes(bytes(booster.save_raw("ubj")))
    return booster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ml-root", default="/opt/ml", help="root of the /opt/ml training layout")
    args = parser.parse_args(argv)
    ml_root = Path(args.ml_root)
    try:
        booster = train(ml_root)
    except UserError as exc:
        failure = ml_root / "output" / "failure"
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(f"ClientError: {exc}\n", encoding="utf-8")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Stored trained model ({booster.num_boosted_rounds()} rounds) at {ml_root / 'model' / MODEL_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
