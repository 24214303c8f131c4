"""Runs of preprocessing/preprocess.py on written CSV files, and readers of what it wrote or said."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris

from preprocessing import preprocess

SCRIPT = Path(preprocess.__file__)
FEATURES = ["x1", "x2", "x3", "x4"]
CONTRACT_CLASSES = ["setosa", "virginica", "versicolor"]  # DESIGN.md: setosa=0, virginica=1, versicolor=2
SPLIT_FILES = ("train/train.csv", "validation/validation.csv", "test/test.csv")
OUTPUT_FILES = (*SPLIT_FILES, "schema/schema.json", "baseline/statistics.json")


def write_iris(path: Path) -> Path:
    """Iris as the raw CSV users give: a header, features x1..x4, then the species name."""
    iris = load_iris()
    lines = ["x1,x2,x3,x4,species"]
    for row, target in zip(iris.data, iris.target, strict=True):
        lines.append(",".join(repr(float(v)) for v in row) + f",{iris.target_names[target]}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def iris_species_by_features() -> dict[tuple[float, ...], str]:
    iris = load_iris()
    pairs = zip(iris.data, iris.target, strict=True)
    return {tuple(float(v) for v in row): str(iris.target_names[t]) for row, t in pairs}


def run(
    base: Path, source: Path | None, *extra: str, label: str = "species", features: str = "x1,x2,x3,x4",
    objective: str = "multi:softprob",
) -> int:
    argv = ["--base-dir", str(base), "--label-column", label, "--feature-columns", features,
            "--objective", objective, *extra]
    if source is not None:
        argv += ["--input", str(source)]
    return preprocess.main(argv)


def run_iris(tmp_path: Path, base: str = "out", *extra: str) -> Path:
    source = tmp_path / "iris.csv"
    if not source.exists():
        write_iris(source)
    out = tmp_path / base
    assert run(out, source, "--class-names", ",".join(CONTRACT_CLASSES), *extra) == 0
    return out


def read_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(path, delimiter=",", ndmin=2)
    return data[:, 0], data[:, 1:]


def error_of(capsys: pytest.CaptureFixture[str]) -> str:
    """The single ``error:`` line the script wrote on stderr (no traceback, nothing else)."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0].removeprefix("error: ")


def fails(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *extra: str, **kwargs: str) -> str:
    """Write ``text`` as data.csv, run the script on it, expect exit status 2 and return the message."""
    source = tmp_path / "data.csv"
    source.write_text(text, encoding="utf-8")
    code = run(tmp_path / "out", source, *extra, **kwargs)
    message = error_of(capsys)
    assert code == 2
    assert not (tmp_path / "out" / "train").exists(), "nothing is written for bad input"
    return message


def rows(label: str, count: int, start: int = 0) -> str:
    return "".join(f"{start + i}.5,{i % 7}.25,{label}\n" for i in range(count))
