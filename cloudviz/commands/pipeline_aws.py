"""``cloudviz pipeline definition | upsert | start --target aws``: the SageMaker side of the pipeline commands.

``definition`` is offline (no credentials, no network); ``upsert`` and ``start`` call AWS with the default
credential chain. A compiled definition runs one objective family (``--objective``: the multi:* objectives, which
send num_class, or binary:logistic and reg:squarederror, which do not; see ``pipelines.definition``), and its data
parameters default to the staged iris data's: ``start`` with the user's own InputData sends the empty values of
those not given (taken from the data) and needs a ModelPackageGroupName (:mod:`pipelines.sagemaker.target`).
"""

from __future__ import annotations

import argparse
import json
import os

from cloudviz.commands.output import emit
from pipelines.definition import MULTICLASS_OBJECTIVES, TASKS, build_pipeline
from pipelines.errors import UserError
from pipelines.sagemaker import AwsTarget
from pipelines.sagemaker.target import BUCKET_ENV, ROLE_ENV, build_definition, execution_overrides, with_champion


def add_aws_options(parser: argparse.ArgumentParser) -> None:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    parser.add_argument("--region", default=region, help="AWS region (default $AWS_REGION or $AWS_DEFAULT_REGION)")
    parser.add_argument("--role", default=os.environ.get(ROLE_ENV),
                        help=f"ARN of the SageMaker execution role the jobs run as (default ${ROLE_ENV})")
    parser.add_argument("--bucket", default=os.environ.get(BUCKET_ENV),
                        help=f"S3 bucket for code, data and artifacts (default ${BUCKET_ENV})")
    parser.add_argument("--prefix", default="cloudviz", help="S3 key prefix in the bucket (default cloudviz)")


def add_definition_options(parser: argparse.ArgumentParser) -> None:
    """``definition`` and ``upsert``: the AWS options and the objective family the definition is built for."""
    add_aws_options(parser)
    parser.add_argument(
        "--objective", choices=tuple(TASKS), default=MULTICLASS_OBJECTIVES[0],
        help="the Objective default of the definition, which then accepts the objectives of its family: "
        f"{' or '.join(MULTICLASS_OBJECTIVES)} (num_class sent to XGBoost), or binary:logistic or "
        f"reg:squarederror (not sent); default {MULTICLASS_OBJECTIVES[0]}. One pipeline, "
        "so upserting another family replaces the definition",
    )


def aws_target(args: argparse.Namespace) -> tuple[AwsTarget, list]:
    """The target named by the options (each missing one named), and the files ``upsert`` stages."""
    from pipelines.sagemaker.target import aws_target as target_of

    for option, value, source in (("--region", args.region, "AWS_REGION"), ("--role", args.role, ROLE_ENV),
                                  ("--bucket", args.bucket, BUCKET_ENV)):
        if not value:
            raise UserError(f"{option} is required (or set ${source})")
    if not args.role.startswith("arn:aws"):
        raise UserError(f"--role must be an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME), not {args.role!r}")
    return target_of(args.region, args.role, args.bucket, args.prefix)


def definition_command(args: argparse.Namespace) -> int:
    target, _ = aws_target(args)
    print(json.dumps(build_definition(target, args.objective), indent=2))
    return 0


def upsert_command(args: argparse.Namespace) -> int:
    import boto3

    from pipelines.sagemaker.target import upsert_pipeline

    target, files = aws_target(args)
    result = upsert_pipeline(boto3.client("sagemaker", region_name=target.region),
                             boto3.client("s3", region_name=target.region), target, files, args.objective)
    verb = "created" if result.created else "updated"
    emit(args, result.to_dict(), f"{verb} {result.pipeline_arn}; uploaded {len(result.uploaded)} file(s)")
    return 0


def start_command(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    import boto3

    from pipelines.data.versions import s3_dataset_store
    from pipelines.sagemaker.deployment import start

    if not args.region:
        raise UserError("--region is required (or set $AWS_REGION)")
    sagemaker = boto3.client("sagemaker", region_name=args.region)
    datasets = s3_dataset_store(boto3.client("s3", region_name=args.region), args.bucket, args.prefix) if (
        args.bucket) else None
    arn = start(sagemaker, build_pipeline(), with_champion(sagemaker, execution_overrides(overrides, datasets)))
    emit(args, {"pipeline_execution_arn": arn}, f"started {arn}")
    return 0
