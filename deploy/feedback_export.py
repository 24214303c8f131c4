"""Labelled predictions back into training data: the predictions whose true label was recorded
(``POST /predictions/{id}/feedback``) become a new version of the data set, as rows of its columns (the model's
features named as the data set's feature columns, the true label in its label column, its other columns - an id, a
text - empty). Each version made so records the ids it holds, so a prediction is exported once: a second export with
no new labels adds nothing.

Predictions are read from the group's stores on every stage (locally each endpoint's SQLite file, on AWS each
stage's DynamoDB table), through the store interface: Queries, never a Scan."""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.aws.names import STAGES, ResourceNames
from pipelines.data.validation import DatasetSchema
from pipelines.data.versions import DatasetStore, DatasetVersion
from pipelines.errors import NotFoundError, UserError
from pipelines.state import StateHome
from serving_lambdas.records import PredictionRecord

if TYPE_CHECKING:  # the store package imports boto3, which the command line loads only for AWS
    from serving_lambdas.store.base import PredictionStore

PAGE_ROWS = 1000
EXPORT_ORIGIN = "export-feedback"


def export_feedback(datasets: DatasetStore, name: str, group: str,
                    stores: Mapping[str, PredictionStore]) -> DatasetVersion | None:
    """A new version of data set ``name`` with the labelled predictions of ``group``'s ``stores`` (by stage) that
    no version holds yet; None when there are none."""
    newest = datasets.resolve(name)
    schema = DatasetSchema.from_dict(newest.schema)
    exported = datasets.exported_predictions(newest.dataset)
    records = [record for store in stores.values() for record in labelled_predictions(store)
               if record.id not in exported]
    if not records:
        return None
    records.sort(key=lambda record: record.id)
    with tempfile.TemporaryDirectory(prefix="cloudviz-feedback-") as folder:
        moment = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = Path(folder) / f"feedback-{group}-{moment}.csv"
        write_rows(path, schema, records, group)
        return datasets.add(newest.dataset, path, origin=EXPORT_ORIGIN,
                            exported_predictions=tuple(record.id for record in records))


def labelled_predictions(store: PredictionStore) -> Iterator[PredictionRecord]:
    """Every stored prediction with a recorded true label, newest first, page by page."""
    before = "~"
    while True:
        page = store.page(PAGE_ROWS, before=before)
        yield from (record for record in page.records if record.feedback is not None)
        if page.resume_before is not None:
            before = page.resume_before
        elif len(page.records) == PAGE_ROWS:
            before = page.records[-1].id
        else:
            return


def write_rows(path: Path, schema: DatasetSchema, records: list[PredictionRecord], group: str) -> None:
    """The records as a CSV of the data set's columns (empty cells in those neither feature nor label); a UserError
    naming the data set's feature columns the model's predictions lack."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(schema.columns)
        for record in records:
            missing = [name for name in schema.feature_columns if name not in record.features]
            if missing:
                raise UserError(
                    f"the predictions of {group} lack the data set's feature column(s) {', '.join(missing)} (the "
                    f"model's features: {', '.join(record.features)}): export into the data set of that model "
                    "(--dataset)")
            values = {**{name: record.features[name] for name in schema.feature_columns},
                      schema.label_column: record.feedback.label}
            writer.writerow([_cell(values[name]) if name in values else "" for name in schema.columns])


def local_prediction_stores(home: StateHome, group: str) -> dict[str, PredictionStore]:
    """The SQLite prediction store of each stage the group has been served on locally, by stage."""
    from deploy.endpoint_state import EndpointFiles
    from serving_lambdas.store.sqlite import SqliteStore

    files = {stage: EndpointFiles.of(home, group, stage).predictions_db for stage in STAGES}
    stores = {stage: SqliteStore(path) for stage, path in files.items() if path.exists()}
    if not stores:
        raise NotFoundError(f"--group {group}: no predictions on this state home ({home.root}); serve the group's "
                            f"model first (cloudviz serve --group {group})")
    return stores


def dynamodb_prediction_stores(client: Any, group: str) -> dict[str, PredictionStore]:
    """The DynamoDB prediction table of each stage whose stacks exist for the group, by stage."""
    from serving_lambdas.store.dynamodb import DynamoDbStore

    stores = {}
    for stage in STAGES:
        table = ResourceNames(stage, group).table_name
        try:
            client.describe_table(TableName=table)
        except client.exceptions.ResourceNotFoundException:
            continue
        stores[stage] = DynamoDbStore(table, client)
    if not stores:
        raise NotFoundError(f"--group {group}: no prediction table on any stage ({', '.join(STAGES)}); deploy the "
                            f"group first (cloudviz deploy aws --group {group})")
    return stores


def _cell(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)
