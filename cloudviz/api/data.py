"""``project.data`` on both targets: one implementation over a :class:`DatasetStore` (a state home's folder, or the
artifact bucket's prefix), the targets differing only in where the store and the prediction stores are."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cloudviz.api.base import Datasets
from deploy.feedback_export import export_feedback, local_prediction_stores
from pipelines.data.versions import DatasetStore, DatasetVersion, local_dataset_store
from pipelines.state import StateHome

if TYPE_CHECKING:  # the store package imports boto3, which the command line loads only for AWS
    from serving_lambdas.store.base import PredictionStore


class StoredDatasets(Datasets):
    @abstractmethod
    def store(self) -> DatasetStore: ...

    @abstractmethod
    def prediction_stores(self, group: str) -> dict[str, PredictionStore]:
        """The group's prediction store on each stage it is served on, by stage."""

    def add(self, path: str | Path, dataset: str = "iris", label_column: str | None = None, task: str | None = None,
            group: str | None = None, *, feature_columns: Sequence[str] | None = None) -> DatasetVersion:
        return self.store().add(dataset, path, label_column, task, group, feature_columns=feature_columns)

    def list(self, dataset: str | None = None) -> list[DatasetVersion]:
        store = self.store()
        return [version for name in ([dataset] if dataset else store.names()) for version in store.versions(name)]

    def show(self, ref: str = "iris") -> DatasetVersion:
        return self.store().resolve(ref)

    def export_feedback(self, dataset: str = "iris", group: str | None = None) -> DatasetVersion | None:
        store = self.store()
        group = group or store.resolve(dataset).group
        return export_feedback(store, dataset, group, self.prediction_stores(group))


class LocalDatasets(StoredDatasets):
    def __init__(self, home: StateHome) -> None:
        self.home = home

    def store(self) -> DatasetStore:
        return local_dataset_store(self.home)

    def prediction_stores(self, group: str) -> dict[str, PredictionStore]:
        """Each local endpoint's SQLite file the group's predictions are in."""
        return local_prediction_stores(self.home, group)
