"""Hyperparameter validation of SageMaker's built-in XGBoost algorithm (image 3.0-5).

Same names, types, ranges and error messages as the container's ``algorithm_mode``
validation, for the hyperparameters a tabular classifier or regressor uses. SageMaker hands
hyperparameters to the container as strings; so does the local trainer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Defaults of the original deployment (DESIGN.md: the compatibility contract), but for the objective:
# multi:softprob grows the same trees as the original's multi:softmax (the two differ only in what
# predict returns), and its endpoint answers per-class probabilities, which the prediction API
# reports; the API's prediction is their argmax, the class index multi:softmax would answer.
DEFAULT_HYPERPARAMETERS: dict[str, str] = {
    "max_depth": "5",
    "eta": "0.2",
    "gamma": "4",
    "min_child_weight": "6",
    "objective": "multi:softprob",
    "num_class": "3",
    "num_round": "10",
}

OBJECTIVES = (
    "binary:logistic", "binary:logitraw", "binary:hinge", "count:poisson", "multi:softmax", "multi:softprob",
    "rank:pairwise", "rank:ndcg", "rank:map", "reg:linear", "reg:squarederror", "reg:logistic", "reg:gamma",
    "reg:pseudohubererror", "reg:squaredlogerror", "reg:tweedie", "survival:aft", "survival:cox",
)
EVAL_METRICS = (
    "rmse", "rmsle", "mae", "mape", "mphe", "logloss", "error", "merror", "mlogloss", "auc", "aucpr",
    "ndcg", "map", "poisson-nloglik", "gamma-nloglik", "cox-nloglik", "gamma-deviance",
    "tweedie-nloglik", "aft-nloglik", "interval-regression-accuracy",
)


class HyperparameterError(ValueError):
    """A hyperparameter the built-in algorithm would reject; the message is the container's."""


@dataclass(frozen=True)
class Interval:
    """A numeric range written as the container writes it, e.g. ``[0, 1]`` or ``(0, +inf)``."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        low = "(-inf" if self.low == -math.inf else f"{'(' if self.low_open else '['}{self.low}"
        high = "+inf)" if self.high == math.inf else f"{self.high}{')' if self.high_open else ']'}"
        return f"{low}, {high}"


@dataclass(frozen=True)
class Spec:
    kind: type | str  # int, float, "categorical" or "list"
    allowed: Interval | tuple[str, ...]


AT_LEAST_0 = Interval(0)
AT_LEAST_1 = Interval(1)
ZERO_ONE = Interval(0, 1)
FRACTION = Interval(0, 1, low_open=True)

SPECS: dict[str, Spec] = {
    "num_round": Spec(int, AT_LEAST_1),
    "early_stopping_rounds": Spec(int, AT_LEAST_1),
    "csv_weights": Spec(int, ZERO_ONE),
    "booster": Spec("categorical", ("gbtree", "gblinear", "dart")),
    "verbosity": Spec(int, Interval(0, 3)),
    "nthread": Spec(int, AT_LEAST_1),
    "eta": Spec(float, ZERO_ONE),
    "gamma": Spec(float, AT_LEAST_0),
    "max_depth": Spec(int, AT_LEAST_0),
    "min_child_weight": Spec(float, AT_LEAST_0),
    "max_delta_step": Spec(float, AT_LEAST_0),
    "subsample": Spec(float, FRACTION),
    "colsample_bytree": Spec(float, FRACTION),
    "colsample_bylevel": Spec(float, FRACTION),
    "colsample_bynode": Spec(float, FRACTION),
    "lambda": Spec(float, AT_LEAST_0),
    "alpha": Spec(float, AT_LEAST_0),
    "tree_method": Spec("categorical", ("auto", "exact", "approx", "hist")),
    "sketch_eps": Spec(float, Interval(0, 1, low_open=True, high_open=True)),
    "scale_pos_weight": Spec(float, Interval(0, low_open=True)),
    "grow_policy": Spec("categorical", ("depthwise", "lossguide")),
    "max_leaves": Spec(int, AT_LEAST_0),
    "max_bin": Spec(int, AT_LEAST_0),
    "num_parallel_tree": Spec(int, AT_LEAST_1),
    "objective": Spec("categorical", OBJECTIVES),
    "num_class": Spec(int, Interval(2)),
    "base_score": Spec(float, AT_LEAST_0),
    "eval_metric": Spec("list", EVAL_METRICS),
    "seed": Spec(int, Interval(-(2**31), 2**31 - 1, low_open=True, high_open=True)),
    "tweedie_variance_power": Spec(float, Interval(1, 2, low_open=True, high_open=True)),
}
REQUIRED = ("num_round",)
# Other names the container accepts, validated (and passed to XGBoost) as the hyperparameter they stand for.
ALIASES = {"learning_rate": "eta", "min_split_loss": "gamma", "reg_lambda": "lambda", "reg_alpha": "alpha"}
THRESHOLD_METRICS = ("error", "ndcg", "map")


def parse_value(name: str, spec: Spec, raw: object) -> object:
    text = str(raw).strip()
    try:
        if spec.kind is int:
            return int(text)  # as the container parses: "10.0" and "1e3" are not integers
        if spec.kind is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
            return value
    except ValueError:
        raise HyperparameterError(f"Hyperparameter {name}: could not parse value") from None
    if spec.kind == "list":
        return text.split(",")  # no stripping: the container rejects "merror, mlogloss"
    return text


def check_metric(metric: str) -> bool:
    """Whether the container takes an ``eval_metric`` item, e.g. ``mlogloss`` or ``error@0.7``."""
    if "@" not in metric:
        return metric in EVAL_METRICS
    name, threshold = (part.strip() for part in metric.split("@")[:2])
    if name not in THRESHOLD_METRICS:
        raise HyperparameterError(
            f"Metric '{metric}' is not supported. Parameter 'eval_metric' with customized threshold should "
            "be one of these options: 'error', 'ndcg', 'map'."
        )
    try:
        float(threshold)
    except ValueError:
        raise HyperparameterError(f"Threshold value 't' in '{name}@t' expects float input.") from None
    return True


def check_range(name: str, spec: Spec, value: object) -> None:
    if spec.kind == "list":
        if not all([check_metric(item) for item in value]):  # every item checked, as the container does
            raise HyperparameterError(f"Hyperparameter {name}: value {value} not in range {list(spec.allowed)}")
        return
    allowed = list(spec.allowed) if isinstance(spec.allowed, tuple) else spec.allowed
    if value not in spec.allowed:
        raise HyperparameterError(f"Hyperparameter {name}: {value} is not in {allowed}")


def check_dependencies(values: dict[str, object]) -> None:
    """The container's dependency validators, which sagemaker_algorithm_toolkit's ``Hyperparameters.validate``
    runs only for the hyperparameters given. Its ``objective_validator`` (algorithm_mode/
    hyperparameter_validation.py) requires num_class for multi:* objectives; its other branch ("Do not need to
    setup parameter 'num_class' ...") fires only when the objective is absent, so never: num_class with a
    binary or regression objective passes validation, and XGBoost then fails on the label shape in training."""
    objective = values.get("objective")
    if objective in ("multi:softmax", "multi:softprob") and values.get("num_class") is None:
        raise HyperparameterError("Require input for parameter 'num_class' for multi-classification")
    if "auc" in values.get("eval_metric", []) and not str(objective).startswith(("binary:", "rank:")):
        raise HyperparameterError("Metric 'auc' can only be applied for classification and ranking problems.")


def stand_in(name: str) -> str:
    """The smallest value the container accepts for an integer hyperparameter (num_class: 2): stands in for a
    value decided by the data, so that the others can be checked before the data is read."""
    allowed = SPECS[ALIASES.get(name, name)].allowed
    assert isinstance(allowed, Interval) and math.isfinite(allowed.low), f"no stand-in for {name}"
    return str(int(allowed.low))


def validate(hyperparameters: dict[str, object]) -> dict[str, object]:
    """Parse string hyperparameters into typed values, or raise the container's error message."""
    hyperparameters = {ALIASES.get(name, name): raw for name, raw in hyperparameters.items()}
    for name in REQUIRED:
        if name not in hyperparameters:
            raise HyperparameterError(f"Missing required hyperparameter: {name}")
    values: dict[str, object] = {}
    for name, raw in hyperparameters.items():  # the container parses every value before it checks any range
        spec = SPECS.get(name)
        if spec is None:
            raise HyperparameterError(f"Extraneous hyperparameter found: {name}")
        values[name] = parse_value(name, spec, raw)
    for name, value in values.items():
        check_range(name, SPECS[name], value)
    check_dependencies(values)
    return values
