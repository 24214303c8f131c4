"""The evaluation tests' iris split (a few test rows mislabelled) and a multi:softmax model trained on it."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb
from evaluation_runs import iris_contract_order, train


@pytest.fixture(scope="module")
def iris_split() -> dict[str, np.ndarray]:
    x, y = iris_contract_order()
    test = np.arange(len(y)) % 3 == 0
    test_y = y[test].copy()
    # Mislabel a few test rows so that every metric is below 1 and classes differ from one another.
    test_y[[0, 5, 20]] = (test_y[[0, 5, 20]] + 1) % 3
    return {"train_x": x[~test], "train_y": y[~test], "test_x": x[test], "test_y": test_y}


@pytest.fixture(scope="module")
def softmax(iris_split: dict[str, np.ndarray]) -> xgb.Booster:
    return train(iris_split, "multi:softmax")
