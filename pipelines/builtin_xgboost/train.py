"""Local emulation of SageMaker's built-in XGBoost training container (image 3.0-5).

The container's contract below an ``/opt/ml``-shaped root (``--ml-root``), its per-round metric log lines and its
distributed mode (one process per host). Exit status 2 for a user error, 1 for anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import xgboost as xgb
from xgboost import collective
from xgboost.tracker import RabitTracker

from pipelines.builtin_xgboost.hyperparameters import HyperparameterError, validate

SUPPORTED_CONTENT_TYPES = ("text/csv", "csv")
MODEL_FILE = "xgboost-model"
TOO_FEW_COLUMNS = "needs a label column and at least one feature"
LOOPBACK = "127.0.0.1"
# How long a host waits for the others: the container waits up to 15 minutes for its hosts' names to resolve.
CLUSTER_WAIT_SECONDS = 15 * 60


class UserError(Exception):
    """The job's inputs are wrong; the container reports these as ClientError."""


def sniff_delimiter(path: Path) -> str:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        sample = handle.readline()
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def channel_files(channel_dir: Path) -> list[Path]:
    """A channel's data files. Like the container, files whose names start with ``.`` or ``_`` (``_SUCCESS``
    markers) are not data; neither is an empty file (the container sums the files' sizes)."""
    return sorted(
        p for p in channel_dir.rglob("*") if p.is_file() and not p.name.startswith((".", "_")) and p.stat().st_size
    )


def read_channel(channel_dir: Path, name: str, num_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All CSV files of a channel, concatenated: (features float32, labels float32)."""
    files = channel_files(channel_dir)
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


@dataclass(frozen=True)
class Cluster:
    """The training job's hosts, sorted by name as the container sorts them, and the one this process is."""

    hosts: tuple[str, ...]
    current_host: str


def read_cluster(ml_root: Path) -> Cluster:
    """resourceconfig.json, which SageMaker writes on every host; without it, one host."""
    path = ml_root / "input" / "config" / "resourceconfig.json"
    document = read_json(path, {"current_host": "algo-1", "hosts": ["algo-1"]})
    hosts, current = document.get("hosts"), document.get("current_host")
    if not isinstance(hosts, list) or current not in hosts:
        raise UserError(f"{path}: current_host {current!r} is not one of the hosts {hosts!r}")
    return Cluster(tuple(sorted(hosts)), current)


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
                    # As the container logs them, so the same metric regexes work.
                    print(f"[{epoch}]#011" + "#011".join(scores), flush=True)
            self.logged = max(self.logged, rounds)

    return ContainerStyleLog()


@dataclass
class Job:
    """What one host trains on: the validated parameters and its channels, each None when the host has no data."""

    params: dict
    num_round: int
    early_stopping: int | None
    csv_weights: int
    train: tuple[np.ndarray, np.ndarray] | None
    validation: tuple[np.ndarray, np.ndarray] | None
    needs_validation: bool


def load_job(ml_root: Path, single_host: bool) -> Job:
    """The configuration and this host's data. On one host a channel without data is an error, as in the
    container; on several it only keeps this host out of training."""
    hyperparameters, data_config = read_config(ml_root)
    try:
        params = validate(hyperparameters)
    except HyperparameterError as exc:
        raise UserError(str(exc)) from None
    check_channels(data_config)
    data_dir = ml_root / "input" / "data"
    num_class = params.get("num_class")
    needs_validation = "validation" in data_config
    early_stopping = params.pop("early_stopping_rounds", None)
    if early_stopping is not None and not needs_validation:
        raise UserError("early_stopping_rounds needs a validation channel")
    data = {
        channel: read_channel(data_dir / channel, channel, num_class)
        if single_host or channel_files(data_dir / channel) else None
        for channel in ("train", "validation") if channel in data_config
    }
    train_data, validation_data = data["train"], data.get("validation")
    if train_data and validation_data and validation_data[0].shape[1] != train_data[0].shape[1]:
        raise UserError(
            f"validation channel has {validation_data[0].shape[1]} features, "
            f"train channel has {train_data[0].shape[1]}"
        )
    num_round, csv_weights = params.pop("num_round"), params.pop("csv_weights", 0)  # not XGBoost parameters
    return Job(
        params=params,
        num_round=num_round,
        early_stopping=early_stopping,
        csv_weights=csv_weights,
        train=train_data,
        validation=validation_data,
        needs_validation=needs_validation,
    )


def fit(job: Job) -> xgb.Booster:
    """XGBoost's training on this host's data; inside a communicator group, with the other hosts'."""
    # A plain DMatrix, as the container builds: QuantileDMatrix only works with tree_method=hist,
    # the default max_bin and the gbtree booster.
    dtrain = matrix(*job.train, job.csv_weights)
    evals = [(dtrain, "train")]
    callbacks = [log_evaluation()]
    if job.validation is not None:
        evals.append((matrix(*job.validation, job.csv_weights), "validation"))
    if job.early_stopping is not None:
        # save_best, as the container does: the stored model ends at the best round.
        callbacks.append(xgb.callback.EarlyStopping(rounds=job.early_stopping, data_name="validation", save_best=True))
    print(f"Train matrix has {dtrain.num_row()} rows and {dtrain.num_col()} features", flush=True)
    job.train = None  # the DMatrix holds its own copy
    try:
        return xgb.train(
            job.params, dtrain, num_boost_round=job.num_round, evals=evals, callbacks=callbacks, verbose_eval=False
        )
    except xgb.core.XGBoostError as exc:
        raise UserError(str(exc).splitlines()[0]) from None


@contextlib.contextmanager
def communicator(hosts: tuple[str, ...], current_host: str, address: Path) -> Iterator[None]:
    """This host in the XGBoost collective of ``hosts``; the first host runs the tracker and publishes its
    address in the file ``address`` (the container's tracker listens on port 9099 of that host)."""
    tracker = None
    if current_host == hosts[0]:
        tracker = RabitTracker(
            n_workers=len(hosts), host_ip=LOOPBACK, port=0, sortby="task", timeout=CLUSTER_WAIT_SECONDS
        )
        tracker.start()
        address.parent.mkdir(parents=True, exist_ok=True)
        partial = address.with_name(f".{address.name}.{current_host}")
        partial.write_text(json.dumps(tracker.worker_args()), encoding="utf-8")
        os.replace(partial, address)
    deadline = time.monotonic() + CLUSTER_WAIT_SECONDS
    while not address.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no tracker address at {address} after {CLUSTER_WAIT_SECONDS} s")
        time.sleep(0.05)
    worker_args = json.loads(address.read_text(encoding="utf-8"))
    try:
        # sortby="task": ranks follow the sorted host names, the order of ``hosts``.
        with collective.CommunicatorContext(**worker_args, dmlc_task_id=current_host):
            yield
        if tracker is not None:
            tracker.wait_for(CLUSTER_WAIT_SECONDS)
    finally:
        if tracker is not None:
            tracker.free()


def hosts_with_data(cluster: Cluster, has_data: bool, tracker_dir: Path) -> tuple[str, ...]:
    """Every host learns which hosts have data (the container's first collective group)."""
    flags = np.zeros(len(cluster.hosts), dtype=np.float64)
    flags[cluster.hosts.index(cluster.current_host)] = float(has_data)
    with communicator(cluster.hosts, cluster.current_host, tracker_dir / "hosts.json"):
        flags = collective.allreduce(flags, collective.Op.SUM)
    return tuple(host for host, flag in zip(cluster.hosts, flags, strict=True) if flag)


def train(ml_root: Path, tracker_dir: Path | None = None) -> xgb.Booster | None:
    """Train this host's part of the job; the booster if this host stored it (None: another host stores it,
    or this host had no data and left). As the container's distributed mode (``distributed.rabit_run``): the hosts
    first tell each other which have data, one without leaves (a warning, exit 0), the others train together and
    the first of them by name stores the model."""
    cluster = read_cluster(ml_root)
    job = load_job(ml_root, single_host=len(cluster.hosts) == 1)
    group = cluster.hosts
    if len(cluster.hosts) > 1:
        if tracker_dir is None:
            raise UserError(f"{len(cluster.hosts)} hosts: training together needs --tracker-dir")
        print(f"Distributed node training with {len(cluster.hosts)} hosts: {', '.join(cluster.hosts)}", flush=True)
        has_data = job.train is not None and (job.validation is not None or not job.needs_validation)
        group = hosts_with_data(cluster, has_data, tracker_dir)
        if not group:
            raise UserError("No hosts received training data")
        if not has_data:
            print(
                f"Host {cluster.current_host} has no training or validation data: it is not used in training "
                "(divide the data into at least as many files as instances)",
                file=sys.stderr, flush=True,
            )
            return None
    together = (
        communicator(group, cluster.current_host, tracker_dir / "training.json")
        if len(group) > 1 else contextlib.nullcontext()
    )
    with together:
        booster = fit(job)
    if cluster.current_host != group[0]:
        return None
    model_dir = ml_root / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / MODEL_FILE).write_bytes(bytes(booster.save_raw("ubj")))
    return booster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ml-root", default="/opt/ml", help="root of the /opt/ml training layout")
    parser.add_argument("--tracker-dir", type=Path, help="folder shared by the hosts of one job (several hosts only)")
    args = parser.parse_args(argv)
    ml_root = Path(args.ml_root)
    try:
        booster = train(ml_root, args.tracker_dir)
    except UserError as exc:
        failure = ml_root / "output" / "failure"
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(f"ClientError: {exc}\n", encoding="utf-8")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if booster is None:
        return 0
    print(f"Stored trained model ({booster.num_boosted_rounds()} rounds) at {ml_root / 'model' / MODEL_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
