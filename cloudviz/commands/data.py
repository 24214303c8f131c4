"""``cloudviz data add | list | show | export-feedback``: data sets and their versions, here (``--target local``,
below the state home) or in the artifact bucket (``--target aws``), through ``project.data``."""

from __future__ import annotations

import argparse

from cloudviz import render
from cloudviz.api.base import Project
from cloudviz.commands.arguments import Actions, actions_of, add_command
from cloudviz.commands.output import emit
from cloudviz.commands.pipeline_aws import add_aws_options
from pipelines.data.validation import TASKS
from pipelines.data.versions import IRIS, DatasetVersion
from pipelines.errors import NotFoundError, UserError
from pipelines.sagemaker.target import BUCKET_ENV

REF_HELP = "NAME (its newest version) or NAME@N"


def project_of(args: argparse.Namespace) -> Project:
    if args.target == "local":
        from cloudviz.api.local import LocalProject

        return LocalProject()
    from cloudviz.api.targets import aws

    for option, value, source in (("--region", args.region, "AWS_REGION"), ("--bucket", args.bucket, BUCKET_ENV)):
        if not value:
            raise UserError(f"{option} is required with --target aws (or set ${source})")
    return aws(region=args.region, bucket=args.bucket, role_arn=args.role, prefix=args.prefix)


def column_names(text: str) -> list[str]:
    """``--feature-columns a,b,c``: the names, without the spaces around them."""
    return [name.strip() for name in text.split(",") if name.strip()]


def data_add(args: argparse.Namespace) -> int:
    project = project_of(args)
    try:
        before = project.data.show(args.dataset).version
    except NotFoundError:
        before = None
    version = project.data.add(args.file, args.dataset, args.label_column, args.task, args.group,
                               feature_columns=args.feature_columns)
    added = version.version != before
    if added:
        part = version.parts[-1]
        text = (f"{version.ref}: added {part.rows} rows from {args.file} ({version.rows} rows in {len(version.parts)} "
                f"part(s), id {version.id})\n  train on it: cloudviz pipeline run --dataset {version.ref}")
    else:
        text = f"no new version: the content of {args.file} is in {version.ref} already"
    emit(args, {"added": added, **version.to_dict()}, text)
    return 0


def data_list(args: argparse.Namespace) -> int:
    versions = project_of(args).data.list(args.dataset)
    rows = [[version.ref, version.id, str(version.rows), str(len(version.parts)), version.group, version.created_at,
             version.origin] for version in versions]
    text = (render.table(["VERSION", "ID", "ROWS", "PARTS", "GROUP", "CREATED", "ORIGIN"], rows) if rows
            else f"No versions of {args.dataset}.")
    emit(args, [version.to_dict() for version in versions], text)
    return 0


def data_show(args: argparse.Namespace) -> int:
    version = project_of(args).data.show(args.ref)
    emit(args, version.to_dict(), version_detail(version))
    return 0


def data_export_feedback(args: argparse.Namespace) -> int:
    version = project_of(args).data.export_feedback(args.dataset, args.group)
    if version is None:
        text = f"nothing to export: no labelled predictions that {args.dataset} does not hold already"
    else:
        text = (f"{version.ref}: added {version.parts[-1].rows} labelled prediction(s) ({version.rows} rows in "
                f"{len(version.parts)} part(s))\n  train on it: cloudviz pipeline run --dataset {version.ref}")
    emit(args, version.to_dict() if version else None, text)
    return 0


def version_detail(version: DatasetVersion) -> str:
    schema = version.schema
    classes = f"; classes {', '.join(schema['classes'])}" if schema["task"] == "classification" else ""
    lines = [
        f"{version.ref} (id {version.id}): {version.rows} rows in {len(version.parts)} part(s), {version.origin}, "
        f"created {version.created_at}",
        f"Task: {schema['task']}; label {schema['label_column']}; features {', '.join(schema['feature_columns'])}"
        f"{classes}",
        f"Group: {version.group}",
        f"Manifest: {version.manifest_uri}",
        render.table(["PART", "ROWS", "BYTES", "SOURCE"],
                     [[part.sha256[:16], str(part.rows), str(part.bytes), part.source] for part in version.parts]),
    ]
    if version.exported_predictions:
        lines.append(f"Exported predictions: {len(version.exported_predictions)}")
    return "\n".join(lines)


def add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", choices=("local", "aws"), default="local",
                        help="local: below the state home (default); aws: below s3://BUCKET/PREFIX/datasets/")
    add_aws_options(parser)


def add_dataset(parser: argparse.ArgumentParser, default: str | None = IRIS) -> None:
    text = f"the data set (default {default})" if default else "only this data set"
    parser.add_argument("--dataset", default=default, help=text)


def register(groups: Actions) -> None:
    data = actions_of(groups, "data", "data sets and their versions")
    add = add_command(
        data, "add", data_add, "check a CSV file against a data set and add it as a new version", "FILE",
        description="Check FILE against the data set's schema (same columns, known labels, numeric features) and "
        "record it as a new immutable version: the previous version's parts plus FILE. Content a version holds "
        "already adds nothing.",
        epilog="A new data set takes its columns from FILE: name its label column (--label-column); every other "
        "column is a numeric feature unless --feature-columns names the features (an id or text column is then kept "
        "as it is, unchecked).",
    )
    add_dataset(add)
    add.add_argument("--label-column", help="the label column (required for a new data set)")
    add.add_argument("--task", choices=TASKS, help="a new data set's task (default classification)")
    add.add_argument("--feature-columns", type=column_names, metavar="A,B,C",
                     help="a new data set's feature columns, in model order (default every column but the label)")
    add.add_argument("--group", help="the model package group a new data set's runs register into (default from "
                     "its name: my-data -> MyData)")
    add_target(add)
    listing = add_command(data, "list", data_list, "the versions of every data set (or of one), oldest first")
    add_dataset(listing, None)
    add_target(listing)
    show = add_command(data, "show", data_show, "one version: parts, rows, schema, manifest", "REF")
    show.epilog = f"REF: {REF_HELP}."
    add_target(show)
    export = add_command(
        data, "export-feedback", data_export_feedback,
        "add the labelled predictions not exported yet as a new version",
        description="Turn the predictions whose true label was recorded (POST /predictions/{id}/feedback) into a "
        "new version of the data set; each prediction is exported once.",
    )
    add_dataset(export)
    export.add_argument("--group", help="whose predictions (default the data set's group)")
    add_target(export)
