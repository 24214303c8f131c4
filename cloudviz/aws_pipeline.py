"""``cloudviz pipeline definition | upsert | start --target aws``: the SageMaker side of the pipeline commands.

``definition`` is offline (no credentials, no network); ``upsert`` and ``start`` call AWS with the default
credential chain.
"""

from __future__ import annotations

import argparse
import json
import os

from pipelines.definition import build_pipeline
from pipelines.errors import UserError
from pipelines.sagemaker import AwsTarget, definition
from pipelines.state import StateHome

ROLE_ENV = "CLOUDVIZ_SAGEMAKER_ROLE_ARN"
BUCKET_ENV = "CLOUDVIZ_BUCKET"


def add_aws_options(parser: argparse.ArgumentParser) -> None:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    parser.add_argument("--region", default=region, help="AWS region (default $AWS_REGION or $AWS_DEFAULT_REGION)")
    parser.add_argument("--role", default=os.environ.get(ROLE_ENV),
                        help=f"ARN of the SageMaker execution role the jobs run as (default ${ROLE_ENV})")
    parser.add_argument("--bucket", default=os.environ.get(BUCKET_ENV),
                        help=f"S3 bucket for code, data and artifacts (default ${BUCKET_ENV})")
    parser.add_argument("--prefix", default="cloudviz", help="S3 key prefix in the bucket (default cloudviz)")


def aws_target(args: argparse.Namespace) -> tuple[AwsTarget, list]:
    """The target named by the options (each missing one named), and the files ``upsert`` stages."""
    for option, value, source in (("--region", args.region, "AWS_REGION"), ("--role", args.role, ROLE_ENV),
                                  ("--bucket", args.bucket, BUCKET_ENV)):
        if not value:
            raise UserError(f"{option} is required (or set ${source})")
    if not args.role.startswith("arn:aws"):
        raise UserError(f"--role must be an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME), not {args.role!r}")
    from pipelines.datasets import iris_csv
    from pipelines.sagemaker.deployment import staged_files
    from pipelines.sagemaker.staging import staged

    iris = iris_csv(StateHome.from_env().data)
    target = AwsTarget(args.region, args.role, args.bucket, args.prefix,
                       staged(iris, args.bucket, args.prefix, "data").uri)
    return target, staged_files(build_pipeline(), target, iris)


def build_definition(target: AwsTarget) -> dict:
    return definition(target.region, target.role_arn, target.bucket, target.prefix, target.input_data_uri)


def definition_command(args: argparse.Namespace) -> int:
    target, _ = aws_target(args)
    print(json.dumps(build_definition(target), indent=2))
    return 0


def upsert_command(args: argparse.Namespace) -> int:
    import boto3

    from pipelines.sagemaker.deployment import upsert

    target, files = aws_target(args)
    document = build_definition(target)
    result = upsert(boto3.client("sagemaker", region_name=target.region), boto3.client("s3", region_name=target.region),
                    build_pipeline(), document, target, files, "CloudViz: preprocess, train, evaluate, gate, register")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        verb = "created" if result.created else "updated"
        print(f"{verb} {result.pipeline_arn}; uploaded {len(result.uploaded)} file(s)")
    return 0


def start_command(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    import boto3

    from pipelines.sagemaker.deployment import start

    if not args.region:
        raise UserError("--region is required (or set $AWS_REGION)")
    arn = start(boto3.client("sagemaker", region_name=args.region), build_pipeline(), overrides)
    print(json.dumps({"pipeline_execution_arn": arn}, indent=2) if args.json else f"started {arn}")
    return 0
