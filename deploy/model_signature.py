"""A registered model's contract with API consumers (its features, classes and task), from its registered schema."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from pipelines.artifacts import artifact_json
from pipelines.errors import UserError
from pipelines.registry import ModelPackage
from pipelines.runs import RunStore


@dataclass(frozen=True)
class Signature:
    """What API consumers depend on: a model with other features, classes or task needs a restart, not a swap."""

    features: tuple[str, ...]
    classes: tuple[str, ...]  # in class-index order; () for regression
    task: str = "multiclass"  # "multiclass", "binary" or "regression" (MODEL_TASK)

    @classmethod
    def of(cls, package: ModelPackage, runs: RunStore | None = None) -> Signature:
        """The contract of ``package`` from its registered schema (``task``, ``features`` and ``classes``); a version
        registered before schemas said their task is a multiclass model of its lineage's feature columns."""
        schema = registered_schema(package, runs)
        if "features" in schema:
            features = tuple(feature["name"] for feature in schema["features"])
        else:
            features = tuple(schema.get("feature_columns", ()))
        return cls(features, tuple(schema.get("classes") or ()), schema.get("task", "multiclass"))


def registered_schema(package: ModelPackage, runs: RunStore | None = None) -> dict:
    """The first schema that states its task: the lineage's own (``schema``, or the ``data`` the registry copied from
    schema.json), else the registered schema.json; else the lineage's ``data`` as registered before tasks."""
    data = package.lineage.get("data", {})
    candidates = [package.lineage.get("schema") or {}, data]
    if runs is not None and not any("task" in schema for schema in candidates):
        with contextlib.suppress(UserError):  # a copied state home, deleted runs: the lineage is all there is
            candidates.append(artifact_json(package, "schema", runs))
    return next((schema for schema in candidates if "task" in schema), data)
