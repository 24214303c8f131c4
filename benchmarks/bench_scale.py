"""Scale benchmark: how far one instance goes, measured on this machine.

On the synthetic data sets of ``bench_pipeline.py`` (scikit-learn ``make_classification``, 20 features,
3 classes, generated once per size into ``benchmarks/.data/``; default 0.25M, 1M and 2M rows) it runs, each
as its own process, exactly as the pipeline does:

* Preprocess with ``--parts 1`` (one training instance) and ``--parts 2`` (two), the Processing script itself;
* Train on one host (the whole train split) and on two hosts (one part each, validation replicated), the
  built-in XGBoost emulation with the pipeline's default hyperparameters and ``resourceconfig.json``.

It records each step's wall time and peak RSS (the kernel's high-water mark from ``wait4``; for two hosts, the
larger of the two processes), fits peak RSS = fixed + per-row x rows to each step, and from that states how
many rows (and GB of raw CSV) fit in the memory of ml.m5.large and ml.m5.xlarge. Rewrites the "Scale" section
of ``benchmarks/README.md`` (other sections are kept); ``--no-readme`` leaves it alone.

    .venv/bin/python benchmarks/bench_scale.py [--rows N ...] [--no-readme]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from bench_pipeline import DATA_DIR, dataset, feature_names
from common import HERE, README, REPO, machine, positive_int, progress, table, write_section

SECTION = "## Scale: `make bench-scale`"
PREPROCESS = REPO / "preprocessing" / "preprocess.py"
TRAINER = REPO / "pipelines" / "builtin_xgboost" / "train.py"
DEFAULT_ROWS = (250_000, 1_000_000, 2_000_000)
GIB = 2**30
MIB = 2**20
# SageMaker instance memory, and the share a job can use: the rest for the OS, the container runtime and
# SageMaker's agents (an assumption, stated with the figures).
INSTANCES = {"ml.m5.large": 8 * GIB, "ml.m5.xlarge": 16 * GIB, "ml.m5.2xlarge": 32 * GIB}
USABLE = 0.8


@dataclass
class Measure:
    seconds: float
    peak_rss: int  # bytes, the largest process of the step


def run(commands: list[list[str]], logs: Path) -> Measure:
    """Processes side by side (the hosts of one job, each on its share of the CPUs, as the local runner runs
    them): wall time until the last ends, the largest peak RSS."""
    from pipelines.executor import cpu_shares

    started = time.perf_counter()
    processes = []
    for i, (command, cpus) in enumerate(zip(commands, cpu_shares(len(commands)), strict=True)):
        with (logs / f"{Path(command[1]).stem}-{i}.log").open("w") as log:
            pin = (lambda cpus=cpus: os.sched_setaffinity(0, cpus)) if cpus else None
            processes.append(subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, preexec_fn=pin
            ))
    peak = 0
    for process, command in zip(processes, commands, strict=True):
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"error: {' '.join(command)} failed; see {logs}")
        peak = max(peak, usage.ru_maxrss * 1024)
    return Measure(time.perf_counter() - started, peak)


def preprocess(data: Path, base: Path, parts: int, logs: Path) -> Measure:
    return run([[
        sys.executable, str(PREPROCESS), "--base-dir", str(base), "--input", str(data), "--label-column", "label",
        "--feature-columns", ",".join(feature_names()), "--parts", str(parts),
    ]], logs)


def train(split: Path, work: Path, hosts: int, logs: Path) -> Measure:
    """The built-in XGBoost emulation on ``hosts`` hosts, as the local runner lays them out: the train parts
    dealt out, the validation split replicated."""
    from pipelines.definition import HYPERPARAMETER_PARAMETERS, build_pipeline
    from pipelines.local_steps.scripts import link
    from pipelines.local_steps.training import deal_files

    pipeline = build_pipeline()
    hyperparameters = {hp: str(pipeline.parameter(name).default) for hp, (name, _) in HYPERPARAMETER_PARAMETERS.items()}
    # num_class is decided by the data: Preprocess's schema holds it, as the pipeline's JsonGet reads it.
    hyperparameters["num_class"] = str(json.loads((split / "schema" / "schema.json").read_text())["num_class"])

    names = [f"algo-{i}" for i in range(1, hosts + 1)]
    commands = []
    for name, shard in zip(names, deal_files(split / "train", hosts), strict=True):
        root = work / name
        config = root / "input" / "config"
        config.mkdir(parents=True)
        (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
        (config / "inputdataconfig.json").write_text(json.dumps(
            {"train": {"ContentType": "text/csv"}, "validation": {"ContentType": "text/csv"}}))
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": name, "hosts": names}))
        for path in shard:
            link(path, root / "input" / "data" / "train")
        link(split / "validation", root / "input" / "data" / "validation")
        commands.append([sys.executable, str(TRAINER), "--ml-root", str(root), "--tracker-dir", str(work / "tracker")])
    return run(commands, logs)


@dataclass
class Size:
    rows: int
    csv_bytes: int
    steps: dict[str, Measure]


STEPS = ("Preprocess --parts 1", "Train, 1 host", "Preprocess --parts 2", "Train, 2 hosts (per host)")


def measure(rows: int) -> Size:
    # Generated in a child process: a forked child's peak RSS starts at its parent's, so this one stays small.
    subprocess.run([sys.executable, "-c", f"from bench_pipeline import dataset; dataset({rows})"], cwd=HERE,
                   check=True)
    data = dataset(rows)
    with tempfile.TemporaryDirectory(prefix="scale-", dir=DATA_DIR) as folder:
        work = Path(folder)
        logs = work / "logs"
        logs.mkdir()
        steps = {}
        for parts in (1, 2):
            split = work / f"parts-{parts}"
            progress(f"{rows:,} rows: Preprocess --parts {parts} ...")
            steps[f"Preprocess --parts {parts}"] = preprocess(data, split, parts, logs)
            label = "Train, 1 host" if parts == 1 else "Train, 2 hosts (per host)"
            progress(f"{rows:,} rows: {label} ...")
            steps[label] = train(split, work / f"train-{parts}", parts, logs)
            shutil.rmtree(split)
    return Size(rows, data.stat().st_size, steps)


@dataclass
class Fit:
    fixed: float  # bytes
    per_row: float  # bytes


def fit(sizes: list[Size], step: str) -> Fit:
    """Least squares of peak RSS on rows (one point per size; with one size, the line through the origin)."""
    x = np.array([s.rows for s in sizes], dtype=float)
    y = np.array([s.steps[step].peak_rss for s in sizes], dtype=float)
    if len(sizes) == 1:
        return Fit(0.0, float(y[0] / x[0]))
    per_row, fixed = np.polyfit(x, y, 1)
    return Fit(float(fixed), float(per_row))


def capacity(line: Fit, memory: int) -> int:
    return max(0, int((memory * USABLE - line.fixed) / line.per_row))


def millions(rows: float) -> str:
    return f"{rows / 1e6:.1f}M"


def section(sizes: list[Size], info: dict[str, str], command: str) -> tuple[str, list[str]]:
    csv_per_row = sum(s.csv_bytes for s in sizes) / sum(s.rows for s in sizes)
    fits = {step: fit(sizes, step) for step in STEPS}
    measured = table(
        ["rows", "raw CSV", *[f"{step}: s / peak RSS" for step in STEPS]],
        [[f"{s.rows:,}", f"{s.csv_bytes / MIB:,.0f} MiB",
          *[f"{s.steps[step].seconds:.1f} s / {s.steps[step].peak_rss / MIB:,.0f} MiB" for step in STEPS]]
         for s in sizes],
    )
    model = table(
        ["step", "fixed", "per row", "per GB of raw CSV"],
        [[step, f"{fits[step].fixed / MIB:,.0f} MiB", f"{fits[step].per_row:,.0f} B",
          f"{fits[step].per_row / csv_per_row:.2f} GB"] for step in STEPS],
    )
    limits = table(
        ["instance (memory)", "Preprocess (one Processing instance)", "Train, 1 instance",
         "Train, 2 instances"],
        [[f"{name} ({memory // GIB} GiB)",
          *[f"{millions(capacity(fits[step], memory))} rows, {capacity(fits[step], memory) * csv_per_row / 1e9:.1f} GB"
            for step in ("Preprocess --parts 1", "Train, 1 host", "Train, 2 hosts (per host)")]]
         for name, memory in INSTANCES.items()],
    )
    largest = sizes[-1]
    one, two = largest.steps["Train, 1 host"], largest.steps["Train, 2 hosts (per host)"]
    lines = [
        SECTION,
        "",
        "How far one instance goes. Each step runs as its own process, as in the pipeline: the Preprocess "
        "Processing script (`--parts 1` for one training instance, `--parts 2` for two) and the built-in "
        "XGBoost emulation on 1 host (the whole train split) and on 2 hosts (one part each, the validation split "
        "replicated, XGBoost's collective between them), default hyperparameters (10 rounds, max_depth 5). "
        f"Data: `make_classification`, {len(feature_names())} float features, 3 classes, "
        f"{csv_per_row:.0f} bytes of CSV per row. Peak RSS is the kernel's high-water mark (`wait4`) of the step's "
        "process (2 hosts: the larger of the two).",
        "",
        f"Command: `{command}`. Run on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "### Machine",
        "",
        *table(["", ""], [[k, v] for k, v in info.items()]),
        "",
        "### Measured",
        "",
        *measured,
        "",
        "Peak RSS as fixed + per row (least squares over the sizes above):",
        "",
        *model,
        "",
        f"### What fits (peak RSS within {USABLE:.0%} of the instance's memory)",
        "",
        *limits,
        "",
        "Reading it:",
        "",
        "- Preprocess holds the whole data set on one Processing instance whatever the training instance count "
        "(its stratified split needs every row); past the first column's figure, raise "
        "`ProcessingInstanceType`, not the count.",
        f"- Training on N instances holds 1/N of the train split per instance plus the whole validation split: "
        f"at {largest.rows:,} rows one host peaked at {one.peak_rss / MIB:,.0f} MiB, each of two at "
        f"{two.peak_rss / MIB:,.0f} MiB ({two.peak_rss / one.peak_rss:.0%}).",
        f"- Wall time: this machine has {info['CPUs (nproc)']} CPUs and the local runner pins each emulated host "
        f"to its share of them (as each instance has its own cores), so two hosts here have no more cores than "
        f"one: {one.seconds:.1f} s on one host, {two.seconds:.1f} s on two, each host training on half the rows "
        "with one histogram allreduce per tree level between them. On SageMaker, N instances bring N times the "
        "cores and memory.",
        "- The capacities extrapolate a straight-line fit beyond the largest size measured; the timings are those "
        "of a shared machine (other work was running) and vary between runs.",
        "",
    ]
    return "\n".join(lines), limits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=positive_int, nargs="+", default=list(DEFAULT_ROWS),
                        help="data set sizes, in rows (default 250000 1000000 2000000)")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite benchmarks/README.md")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    info = machine(("xgboost", "pyarrow", "numpy"))
    sizes = [measure(rows) for rows in sorted(args.rows)]
    command = "make bench-scale"
    if sorted(args.rows) != list(DEFAULT_ROWS):
        command = f".venv/bin/python benchmarks/bench_scale.py --rows {' '.join(map(str, sorted(args.rows)))}"
    text, limits = section(sizes, info, command)
    print("\n".join(limits))
    if not args.no_readme:
        write_section(SECTION, text)
        progress(f"wrote {README.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
