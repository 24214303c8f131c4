"""The bundled default data: iris as a raw CSV, from scikit-learn's packaged copy (no download).

Columns follow the original deployment: x1 sepal length, x2 sepal width, x3 petal length,
x4 petal width (cm), and ``species`` holding the class name. ``IRIS_PARAMETERS`` are the pipeline parameter
values that describe it (the original contract's class order among them); they apply wherever an empty InputData
means this data set, for the parameters a user did not set.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

IRIS_COLUMNS = ("x1", "x2", "x3", "x4", "species")
# What the original deployment's x1..x4 measure: API consumers may send these names instead.
IRIS_FEATURE_DESCRIPTIONS = {"x1": "sepal_length", "x2": "sepal_width", "x3": "petal_length", "x4": "petal_width"}
IRIS_PARAMETERS = {
    "LabelColumn": IRIS_COLUMNS[-1],
    "FeatureColumns": ",".join(IRIS_COLUMNS[:-1]),
    "ClassNames": "setosa,virginica,versicolor",  # the original deployment's indices: setosa=0, virginica=1, ...
}


def iris_csv(data_dir: Path) -> Path:
    """Write ``iris.csv`` under ``data_dir`` once (atomically) and return its path."""
    path = data_dir / "iris.csv"
    if path.exists():
        return path
    from sklearn.datasets import load_iris  # imported here: a second of start-up for one call

    iris = load_iris()
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".iris.{os.getpid()}.tmp")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(IRIS_COLUMNS)
        for features, target in zip(iris.data, iris.target, strict=True):
            writer.writerow([f"{value:g}" for value in features] + [iris.target_names[target]])
    os.replace(temporary, path)
    return path
