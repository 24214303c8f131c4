"""Hyperparameter validation with the built-in XGBoost container's names, ranges and messages."""

from __future__ import annotations

import pytest

from pipelines.builtin_xgboost.hyperparameters import (
    DEFAULT_HYPERPARAMETERS,
    EVAL_METRICS,
    OBJECTIVES,
    SPECS,
    HyperparameterError,
    validate,
)

BASE = {"num_round": "10"}


def rejects(hyperparameters: dict[str, object]) -> str:
    with pytest.raises(HyperparameterError) as caught:
        validate(hyperparameters)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_are_the_original_deployment_as_strings():
    """The original's, but multi:softprob for multi:softprob (test_train_container checks they predict alike)."""
    assert DEFAULT_HYPERPARAMETERS == {
        "max_depth": "5",
        "eta": "0.2",
        "gamma": "4",
        "min_child_weight": "6",
        "objective": "multi:softprob",
        "num_class": "3",
        "num_round": "10",
    }
    assert all(isinstance(value, str) for value in DEFAULT_HYPERPARAMETERS.values()), "SageMaker passes strings"


def test_string_values_parse_to_typed_values():
    values = validate(dict(DEFAULT_HYPERPARAMETERS))
    assert values == {
        "max_depth": 5,
        "eta": 0.2,
        "gamma": 4.0,
        "min_child_weight": 6.0,
        "objective": "multi:softprob",
        "num_class": 3,
        "num_round": 10,
    }
    assert type(values["max_depth"]) is int and type(values["num_round"]) is int and type(values["num_class"]) is int
    assert type(values["eta"]) is float and type(values["gamma"]) is float and type(values["min_child_weight"]) is float


def test_validate_does_not_change_its_argument():
    given = dict(DEFAULT_HYPERPARAMETERS)
    validate(given)
    assert given == DEFAULT_HYPERPARAMETERS


def test_numbers_given_as_numbers_are_accepted():
    assert validate({"num_round": 7, "eta": 0.5, "max_depth": 3}) == {"num_round": 7, "eta": 0.5, "max_depth": 3}


def test_surrounding_whitespace_is_tolerated_as_int_and_float_do():
    assert validate({"num_round": " 12 ", "eta": " 0.3"}) == {"num_round": 12, "eta": 0.3}


def test_missing_num_round():
    assert rejects({"eta": "0.2"}) == "Missing required hyperparameter: num_round"


def test_missing_num_round_is_reported_before_an_unknown_name():
    assert rejects({"foo": "1"}) == "Missing required hyperparameter: num_round"


def test_extraneous_hyperparameter():
    assert rejects({**BASE, "foo": "1"}) == "Extraneous hyperparameter found: foo"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("eta", "abc"),
        ("eta", ""),
        ("num_round", "ten"),
        ("num_round", "10.0"),  # the container parses integers with int(): "10.0" is rejected
        ("num_round", "1e1"),
        ("max_depth", "2.5"),
        ("num_class", "three"),
        ("gamma", "1,5"),
    ],
)
def test_could_not_parse_value(name: str, value: str):
    assert rejects({**BASE, name: value}) == f"Hyperparameter {name}: could not parse value"


def test_every_value_is_parsed_before_any_range_is_checked():
    message = rejects({**BASE, "eta": "2.0", "gamma": "abc"})
    assert message == "Hyperparameter gamma: could not parse value"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("eta", "2.0", "Hyperparameter eta: 2.0 is not in [0, 1]"),
        ("eta", "-0.1", "Hyperparameter eta: -0.1 is not in [0, 1]"),
        ("num_round", "0", "Hyperparameter num_round: 0 is not in [1, +inf)"),
        ("max_depth", "-1", "Hyperparameter max_depth: -1 is not in [0, +inf)"),
        ("gamma", "-1", "Hyperparameter gamma: -1.0 is not in [0, +inf)"),
        ("subsample", "0", "Hyperparameter subsample: 0.0 is not in (0, 1]"),
        ("colsample_bytree", "1.5", "Hyperparameter colsample_bytree: 1.5 is not in (0, 1]"),
        ("sketch_eps", "1", "Hyperparameter sketch_eps: 1.0 is not in (0, 1)"),
        ("scale_pos_weight", "0", "Hyperparameter scale_pos_weight: 0.0 is not in (0, +inf)"),
        ("tweedie_variance_power", "2", "Hyperparameter tweedie_variance_power: 2.0 is not in (1, 2)"),
        ("verbosity", "4", "Hyperparameter verbosity: 4 is not in [0, 3]"),
        ("csv_weights", "2", "Hyperparameter csv_weights: 2 is not in [0, 1]"),
        ("early_stopping_rounds", "0", "Hyperparameter early_stopping_rounds: 0 is not in [1, +inf)"),
        ("seed", "2147483647", "Hyperparameter seed: 2147483647 is not in (-2147483648, 2147483647)"),
        ("seed", "-2147483648", "Hyperparameter seed: -2147483648 is not in (-2147483648, 2147483647)"),
    ],
)
def test_value_out_of_range(name: str, value: str, message: str):
    assert rejects({**BASE, name: value}) == message


def test_num_class_below_two():
    message = rejects({**BASE, "objective": "multi:softmax", "num_class": "1"})
    assert message == "Hyperparameter num_class: 1 is not in [2, +inf)"


@pytest.mark.parametrize(
    ("name", "value"),
    [("eta", "0"), ("eta", "1"), ("subsample", "1"), ("max_depth", "0"), ("seed", "-2147483647"), ("seed", "0")],
)
def test_interval_bounds_are_open_or_closed_as_the_container_declares(name: str, value: str):
    assert name in validate({**BASE, name: value})


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("booster", "gbforest", ["gbtree", "gblinear", "dart"]),
        ("tree_method", "fast", ["auto", "exact", "approx", "hist"]),
        ("grow_policy", "widthwise", ["depthwise", "lossguide"]),
        ("objective", "multi:softmaxx", list(OBJECTIVES)),
    ],
)
def test_categorical_value_out_of_range(name: str, value: str, allowed: list[str]):
    assert rejects({**BASE, name: value}) == f"Hyperparameter {name}: {value} is not in {allowed}"


def test_categorical_values_are_case_sensitive():
    assert rejects({**BASE, "booster": "GBTree"}).startswith("Hyperparameter booster: GBTree is not in [")


@pytest.mark.parametrize("objective", ["multi:softmax", "multi:softprob"])
def test_multiclass_objective_needs_num_class(objective: str):
    message = rejects({**BASE, "objective": objective})
    assert message == "Require input for parameter 'num_class' for multi-classification"


@pytest.mark.parametrize("objective", ["binary:logistic", "reg:squarederror"])
def test_num_class_with_another_objective_passes_the_containers_validation(objective: str):
    """sagemaker_xgboost_container/algorithm_mode/hyperparameter_validation.py, ``objective_validator``: its
    "Do not need to setup parameter 'num_class'" branch needs ``value is None`` (no objective), and
    sagemaker_algorithm_toolkit/hyperparameter_validation.py, ``Hyperparameters.validate``, calls a dependency
    validator only for a hyperparameter that is given: with an objective, num_class always passes. XGBoost fails
    later, in training (see test_train_container): why the pipeline sends num_class with multi:* only."""
    assert validate({**BASE, "objective": objective, "num_class": "2"})["num_class"] == 2


def test_without_an_objective_num_class_is_not_questioned_either():
    assert validate({**BASE, "num_class": "3"})["num_class"] == 3


def test_eval_metric_is_a_comma_separated_list():
    values = validate({**BASE, "objective": "multi:softprob", "num_class": "3", "eval_metric": "merror,mlogloss"})
    assert values["eval_metric"] == ["merror", "mlogloss"]


def test_a_single_eval_metric_is_a_list_too():
    assert validate({**BASE, "eval_metric": "rmse"})["eval_metric"] == ["rmse"]


def test_eval_metric_with_an_unknown_item():
    message = rejects({**BASE, "eval_metric": "merror,accuracyy"})
    assert message == f"Hyperparameter eval_metric: value ['merror', 'accuracyy'] not in range {list(EVAL_METRICS)}"


def test_eval_metric_items_are_not_stripped_as_in_the_container():
    message = rejects({**BASE, "eval_metric": "merror, mlogloss"})
    assert message.startswith("Hyperparameter eval_metric: value ['merror', ' mlogloss'] not in range [")


@pytest.mark.parametrize("metric", ["error@0.7", "ndcg@5", "map@3", "error@ 0.2"])
def test_eval_metric_with_a_threshold(metric: str):
    assert validate({**BASE, "eval_metric": f"logloss,{metric}"})["eval_metric"] == ["logloss", metric]


def test_eval_metric_threshold_on_an_unsupported_metric():
    message = rejects({**BASE, "eval_metric": "rmse@0.5"})
    assert message == (
        "Metric 'rmse@0.5' is not supported. Parameter 'eval_metric' with customized threshold should "
        "be one of these options: 'error', 'ndcg', 'map'."
    )


def test_a_threshold_error_wins_over_an_unknown_metric_before_it():
    """The container checks every item before it reports an unknown one."""
    assert rejects({**BASE, "eval_metric": "foo,rmse@0.5"}).startswith("Metric 'rmse@0.5' is not supported.")


def test_eval_metric_threshold_that_is_not_a_number():
    assert rejects({**BASE, "eval_metric": "error@high"}) == "Threshold value 't' in 'error@t' expects float input."


def test_auc_needs_a_binary_or_ranking_objective():
    message = rejects({**BASE, "objective": "multi:softprob", "num_class": "3", "eval_metric": "auc"})
    assert message == "Metric 'auc' can only be applied for classification and ranking problems."
    assert validate({**BASE, "objective": "binary:logistic", "eval_metric": "auc"})["eval_metric"] == ["auc"]


@pytest.mark.parametrize(
    ("alias", "name", "value"),
    [("learning_rate", "eta", 0.3), ("min_split_loss", "gamma", 2.0), ("reg_lambda", "lambda", 1.5),
     ("reg_alpha", "alpha", 0.5)],
)
def test_the_container_aliases_stand_for_their_hyperparameter(alias: str, name: str, value: float):
    values = validate({**BASE, alias: str(value)})
    assert values == {"num_round": 10, name: value}


def test_an_alias_is_checked_under_its_hyperparameter_name():
    assert rejects({**BASE, "learning_rate": "2"}) == "Hyperparameter eta: 2.0 is not in [0, 1]"


def test_every_default_has_a_spec():
    assert set(DEFAULT_HYPERPARAMETERS) <= set(SPECS)


def test_errors_are_value_errors():
    assert issubclass(HyperparameterError, ValueError)
