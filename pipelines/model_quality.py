"""Reading an evaluation report (``evaluation.json``) whatever its model family: SageMaker's model-quality sections
``multiclass_classification_metrics``, ``binary_classification_metrics`` or ``regression_metrics``."""

from __future__ import annotations

from collections.abc import Mapping

# The metrics a run or version is judged by, in the order they are shown when present.
HEADLINE_METRICS = ("accuracy", "macro_f1", "weighted_f1", "f1", "auc", "rmse", "mae", "r2")


def scalar_metrics(evaluation: Mapping) -> dict[str, float]:
    """Every scalar metric of the report by name, without the confusion matrix or the per-class scores."""
    return {
        name: entry["value"]
        for section, entries in evaluation.items() if section.endswith("_metrics") and isinstance(entries, Mapping)
        for name, entry in entries.items()
        if isinstance(entry, Mapping) and isinstance(entry.get("value"), int | float)
    }


def headline_metrics(evaluation: Mapping) -> dict[str, float]:
    """The headline metrics the report has, in ``HEADLINE_METRICS`` order."""
    metrics = scalar_metrics(evaluation)
    return {name: metrics[name] for name in HEADLINE_METRICS if name in metrics}


def confusion_matrix(evaluation: Mapping) -> Mapping | None:
    """``{actual: {predicted: count}}`` of a classifier's report; None for a regression."""
    return next((entries["confusion_matrix"] for section, entries in evaluation.items()
                 if section.endswith("_metrics") and isinstance(entries, Mapping) and "confusion_matrix" in entries),
                None)
