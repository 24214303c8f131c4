"""``cloudviz pipeline definition | upsert | start --target aws``: the SageMaker side of the pipeline commands.

``definition`` is offline (no credentials, no network); ``upsert`` and ``start`` call AWS with the default
credential chain. A compiled definition runs one objective family (``--objective``: the multi:* objectives, which
send num_class, or binary:logistic and reg:squarederror, which do not; see ``pipelines.definition``), and its data
parameters default to the staged iris data's: ``start`` with the user's own InputData sends the empty values of
those not given (taken from the data) and needs a ModelPackageGroupName.
"""

from __future__ import annotations

import argparse
import json
import os

from pipelines.definition import MULTICLASS_OBJECTIVES, TASKS, build_pipeline, data_parameters
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


def build_definition(target: AwsTarget, objective: str) -> dict:
    return definition(target.region, target.role_arn, target.bucket, target.prefix, target.input_data_uri,
                      objective)


def definition_command(args: argparse.Namespace) -> int:
    target, _ = aws_target(args)
    print(json.dumps(build_definition(target, args.objective), indent=2))
    return 0


def upsert_command(args: argparse.Namespace) -> int:
    import boto3

    from pipelines.sagemaker.deployment import upsert

    target, files = aws_target(args)
    document = build_definition(target, args.objective)
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
    arn = start(boto3.client("sagemaker", region_name=args.region), build_pipeline(), execution_overrides(overrides))
    print(json.dumps({"pipeline_execution_arn": arn}, indent=2) if args.json else f"started {arn}")
    return 0


def execution_overrides(overrides: dict[str, str]) -> dict[str, str]:
    """The parameters an execution is started with. The definition's data parameters are the staged iris data's:
    with the user's own InputData, those not given are sent with their declared (empty: from the data) values, and
    the ModelPackageGroupName must be given. An empty InputData is left out: the definition's, iris."""
    if "InputData" in overrides and not overrides["InputData"].strip():
        overrides = {name: value for name, value in overrides.items() if name != "InputData"}
    if "InputData" not in overrides:
        return overrides
    dag = build_pipeline()
    given = {p.name for p in dag.parameters for name in overrides if name in (p.name, *p.aliases)}
    values = {**dag.defaults(), "InputData": overrides["InputData"]}
    return {**{name: str(value) for name, value in data_parameters(values, given).items()}, **overrides}
