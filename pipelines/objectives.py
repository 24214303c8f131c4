"""The XGBoost objective a data set's task needs: one rule for a local run, `pipeline start --target aws` and the
AWS retrain function (standard library only, as that function packs it)."""

from __future__ import annotations

from collections.abc import Mapping

MULTICLASS_OBJECTIVES = ("multi:softprob", "multi:softmax")
BINARY_OBJECTIVE, REGRESSION_OBJECTIVE = "binary:logistic", "reg:squarederror"


def objective_for(schema: Mapping) -> dict[str, str]:
    """The Objective a data set's task needs when the default (multi:softprob: three classes or more) cannot train
    it: reg:squarederror for regression, binary:logistic for two classes; none otherwise."""
    if schema.get("task") == "regression":
        return {"Objective": REGRESSION_OBJECTIVE}
    return {"Objective": BINARY_OBJECTIVE} if len(schema.get("classes") or ()) == 2 else {}
