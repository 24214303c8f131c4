"""Generated data sets, one per objective family, with column names other than iris's (no downloads).

Each is learnable by the pipeline's default hyperparameters well past the default gate (0.9), from a fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class DataSet:
    """A CSV and the pipeline parameters that train on it."""

    path: Path
    label: str
    features: tuple[str, ...]
    objective: str
    classes: tuple[str, ...] = ()

    def parameters(self, **extra: str) -> dict[str, str]:
        return {"InputData": str(self.path), "LabelColumn": self.label, "FeatureColumns": ",".join(self.features),
                "ClassNames": "", "Objective": self.objective, **extra}


def write(path: Path, header: list[str], columns: list[np.ndarray | list[str]]) -> None:
    rows = zip(*columns, strict=True)
    lines = [",".join(header)] + [",".join(v if isinstance(v, str) else f"{v:.4f}" for v in row) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def two_classes(folder: Path, rows: int = 240) -> DataSet:
    """churn = yes exactly when tenure is below 0.4 (no row between 0.4 and 0.6); monthly is noise."""
    rng = np.random.default_rng(7)
    churn = rng.random(rows) < 0.4
    tenure = np.where(churn, rng.uniform(0, 0.4, rows), rng.uniform(0.6, 1, rows))
    monthly = rng.uniform(20, 120, rows)
    path = folder / "churn.csv"
    write(path, ["customer", "monthly", "tenure", "churn"],
          [[f"c{i}" for i in range(rows)], monthly, tenure, ["yes" if c else "no" for c in churn]])
    return DataSet(path, "churn", ("tenure", "monthly"), "binary:logistic", ("no", "yes"))


def five_classes(folder: Path, per_class: int = 50) -> DataSet:
    """Five well separated clusters along two of three measurements; the label column comes first."""
    rng = np.random.default_rng(11)
    names = ["alder", "birch", "cedar", "elm", "fir"]
    kind = np.repeat(np.arange(5), per_class)
    order = rng.permutation(kind.size)
    kind = kind[order]
    leaf = kind * 4 + rng.normal(0, 0.4, kind.size)
    bark = (4 - kind) * 3 + rng.normal(0, 0.4, kind.size)
    height = rng.uniform(2, 30, kind.size)
    path = folder / "trees.csv"
    write(path, ["tree", "leaf_mm", "bark_mm", "height_m"], [[names[k] for k in kind], leaf, bark, height])
    return DataSet(path, "tree", ("leaf_mm", "bark_mm", "height_m"), "multi:softprob", tuple(names))


def regression(folder: Path, rows: int = 300) -> DataSet:
    """price = 3 area + 2 rooms (+ small noise); age is noise."""
    rng = np.random.default_rng(5)
    area = rng.uniform(1, 10, rows)
    rooms = rng.integers(1, 6, rows).astype(float)
    age = rng.uniform(0, 50, rows)
    price = 3 * area + 2 * rooms + rng.normal(0, 0.3, rows)
    path = folder / "houses.csv"
    write(path, ["area", "rooms", "age", "price"], [area, rooms, age, price])
    return DataSet(path, "price", ("area", "rooms", "age"), "reg:squarederror")
