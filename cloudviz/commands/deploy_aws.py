"""``cloudviz deploy aws``, ``cloudviz promote aws`` and ``cloudviz destroy aws``: their arguments and output over
:mod:`deploy.aws.stage_release`, which deploys, promotes and deletes a stage's four CloudFormation stacks.
``deploy aws --synth DIR`` only writes the templates, their parameter files and the Lambda zips (no AWS call).

Settings, highest precedence first: a flag (``--alarm-email`` or ``$CLOUDVIZ_ALARM_EMAIL``, ``--retrain-schedule``),
the config file (:mod:`deploy.aws.stage_config`), what the previous deploy of the stage set, the default.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cloudviz.api.aws import aws_errors
from cloudviz.commands.arguments import Actions, add_json
from cloudviz.commands.output import emit
from deploy.aws.names import DEFAULT_GROUP, STAGES, ResourceNames
from deploy.aws.stage_config import DEFAULT_ARTIFACT_PREFIX
from pipelines.errors import UserError
from pipelines.sagemaker.target import BUCKET_ENV

if TYPE_CHECKING:
    from deploy.aws.stage_config import StageConfig

ALARM_EMAIL_ENV = "CLOUDVIZ_ALARM_EMAIL"
VERSIONED_PACKAGE = re.compile(r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:model-package/([^/]+)/([0-9]+)")
GROUP_HELP = (f"the model package group whose stage this is (default {DEFAULT_GROUP}, the bundled iris data's); "
              f"another group's stacks are cloudviz-<group>-<stage>-*, next to {DEFAULT_GROUP}'s cloudviz-<stage>-*")
CONFIG_HELP = ("per-stage settings file (default ./cloudviz.toml when it exists): [stages.dev]/[stages.prod] "
               "tables of instance_type, instance_count, retrain_schedule, alarm_email, cors_origins, "
               "retrain_on_drift, retrain_cooldown_hours, api_reserved_concurrency, prediction_retention_days")
APIGW_LOGGING_HELP = ("first deploy the stack cloudviz-apigw-logging: an IAM role with AWS's "
                      "AmazonAPIGatewayPushToCloudWatchLogs policy, set as API Gateway's CloudWatch Logs role. That "
                      "role is an account setting (one per account and region, used by every API there, not only "
                      "CloudViz's), hence only on request; the stage's access log needs it. Without this flag the "
                      "command stops before any change when the region has none. Both are kept if the stack is "
                      "deleted")
SCHEDULES_HELP = ("schedule definitions file (default ./cloudviz.schedules.json when it exists, as `cloudviz "
                  "schedule add` writes it): each schedule whose stages include this one becomes an EventBridge "
                  "Scheduler schedule of the automation stack")


def stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def register(deploy_actions: Actions, destroy_actions: Actions, promote_actions: Actions) -> None:
    """``deploy aws``, ``destroy aws`` and ``promote aws`` under the ``deploy``, ``destroy`` and ``promote``
    groups."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    deploy = deploy_actions.add_parser(
        "aws", help="deploy a stage's CloudFormation stacks to AWS (or --synth them to files)",
        description="Deploy the endpoint, api, monitoring and automation stacks of a stage, in that order, through "
        "CloudFormation change sets; the Lambda zips go to the artifact bucket first. dev serves the newest "
        "Approved model package of the registry group; prod keeps the package it serves (a package reaches prod "
        "only by `cloudviz promote aws --from dev --to prod`); dev is then smoke-tested and the result recorded on "
        "the package (promotion needs it passed). --dry-run prints each change set and executes "
        "none; --synth DIR only writes the templates, their parameter files and the zips (no AWS call). Uses the "
        "default AWS credential chain.",
        epilog="Settings, highest precedence first: a flag (--alarm-email or $CLOUDVIZ_ALARM_EMAIL, "
        "--retrain-schedule), the config file, the previous deploy (alarm email, schedule), the default. Progress "
        "goes to stderr; the summary (the API URL and how to fetch the key) to stdout.",
    )
    destroy = destroy_actions.add_parser(
        "aws", help="delete a stage's CloudFormation stacks from AWS",
        description="Delete the monitoring, api, endpoint and automation stacks of a stage (in that order: the "
        "automation stack holds, in dev, the role CloudFormation deletes the endpoint stack through), and, "
        "with --bucket, the templates the deployer uploaded for them. The model registry, the Lambda packages "
        "(shared by the stages) and captured data stay in the bucket.",
    )
    promote = promote_actions.add_parser(
        "aws", help="deploy the model package dev serves to prod, once dev's smoke test of it passed",
        description="Read the model package the --from stage's endpoint stack serves, require the smoke test "
        "recorded on it for that stage (model package metadata cloudviz:smoke-test:<stage>) to have passed, "
        "then deploy the --to stage's four stacks serving that same package (its settings from the config "
        "file) and record the promotion on the package (cloudviz:promoted:<stage>, shown in SageMaker "
        "Studio). --dry-run checks the gate and prints each change set, executing and recording nothing.",
        epilog="Settings, highest precedence first: $CLOUDVIZ_ALARM_EMAIL, the config file, the previous "
        "deploy (alarm email, schedule), the default.",
    )
    promote.add_argument("--from", dest="source", choices=STAGES, required=True, help="the stage promoted from")
    promote.add_argument("--to", dest="target", choices=STAGES, required=True, help="the stage promoted to")
    promote.add_argument("--dry-run", action="store_true", help="check, create and print each change set, "
                         "execute none")
    promote.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    promote.add_argument("--schedules", metavar="PATH", help=SCHEDULES_HELP)
    promote.set_defaults(handler=aws_errors(promote_command), alarm_email=os.environ.get(ALARM_EMAIL_ENV),
                         retrain_schedule=None)
    for parser in (deploy, destroy):
        parser.add_argument("--stage", choices=STAGES, required=True, help="the stage (dev or prod)")
    for parser in (deploy, destroy, promote):
        parser.add_argument("--region", default=region, help="AWS region (default $AWS_REGION or $AWS_DEFAULT_REGION)")
        parser.add_argument("--bucket", default=os.environ.get(BUCKET_ENV),
                            help=f"artifact bucket for the Lambda zips and large templates (default ${BUCKET_ENV})")
        parser.add_argument("--group", default=DEFAULT_GROUP, help=GROUP_HELP)
        add_json(parser)
    for parser in (deploy, promote):
        parser.add_argument("--prefix", default=DEFAULT_ARTIFACT_PREFIX,
                            help="the S3 key prefix `pipeline` and `data --target aws` use: the retrain function "
                                 f"reads the data sets below it (default {DEFAULT_ARTIFACT_PREFIX})")
    for parser in (deploy, promote):
        parser.add_argument("--create-apigw-logging-role", action="store_true", help=APIGW_LOGGING_HELP)
    deploy.add_argument("--dry-run", action="store_true", help="create and print each change set, execute none")
    deploy.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    deploy.add_argument("--schedules", metavar="PATH", help=SCHEDULES_HELP)
    deploy.add_argument("--synth", metavar="DIR", help="only write the templates (JSON), their parameter files and "
                        "the Lambda zips to DIR (needs --model-package-arn)")
    deploy.add_argument("--model-package-arn", metavar="ARN", help="with --synth: the model package version the "
                        "endpoint stack's parameter file names (its ModelPackageArn has no default)")
    deploy.add_argument("--alarm-email", metavar="ADDRESS", default=os.environ.get(ALARM_EMAIL_ENV),
                        help=f"subscribe this address to the alarm topic (default ${ALARM_EMAIL_ENV}, else the "
                        "config file's alarm_email, else the address of the previous deploy; '' for none)")
    deploy.add_argument("--retrain-schedule", metavar="EXPRESSION",
                        help="retrain on this EventBridge Scheduler expression, e.g. 'cron(0 3 ? * MON *)' or "
                        "'rate(7 days)', in UTC ('' turns it off; default: the config file's retrain_schedule, else "
                        "as the previous deploy left it, else off)")
    deploy.set_defaults(handler=aws_errors(deploy_command))
    destroy.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    destroy.set_defaults(handler=aws_errors(destroy_command))


def deploy_command(args: argparse.Namespace) -> int:
    from deploy.aws.stage_config import with_schedules
    from deploy.aws.stage_release import stage_config

    config = with_schedules(
        stage_config(args.config, args.stage, args.alarm_email, args.retrain_schedule, args.prefix), args.schedules)
    if args.synth:
        return synth_command(args, config)
    if args.model_package_arn:
        raise UserError("--model-package-arn goes with --synth: `deploy aws` serves dev the newest Approved version "
                        "and keeps the one prod serves (`cloudviz promote aws` changes it)")
    region, bucket = required_options(args)

    import boto3

    from deploy.aws.deployer import apigw_logging
    from deploy.aws.stage_release import deploy_stage, stage_package

    session = boto3.Session(region_name=region)
    package_arn, version = stage_package(session, args.stage, args.group)
    account = apigw_logging(session, args.create_apigw_logging_role, bucket, args.dry_run, stderr_line)
    document = deploy_stage(session, args.stage, config, package_arn, version, bucket, args.dry_run, stderr_line,
                            args.group)
    if account is not None:
        document["stacks"].insert(0, account.to_dict())
    emit(args, document, "\n".join(summary_lines(document)))
    return 0


def synth_command(args: argparse.Namespace, config: StageConfig) -> int:
    """Write the stage's templates, complete parameter files and zips: no AWS call."""
    from deploy.aws.stacks import write_synth
    from deploy.aws.stage_release import aws_settings

    if not args.bucket:
        raise UserError(f"--bucket is required: the templates name the artifact bucket (or set ${BUCKET_ENV})")
    if not args.model_package_arn:
        raise UserError("--synth needs --model-package-arn ARN: the endpoint stack's ModelPackageArn parameter has "
                        "no default (aws sagemaker list-model-packages --model-package-group-name GROUP)")
    match = VERSIONED_PACKAGE.fullmatch(args.model_package_arn)
    if match is None:
        raise UserError(f"--model-package-arn {args.model_package_arn!r}: expected the ARN of a model package "
                        "version, arn:aws:sagemaker:REGION:ACCOUNT:model-package/GROUP/VERSION")
    if match.group(1) != args.group.lower():  # SageMaker writes the group in lower case in the ARN
        raise UserError(f"--model-package-arn {args.model_package_arn!r}: a package of another group than "
                        f"--group {args.group}")
    settings = aws_settings(args.region or "us-east-1", "123456789012", args.bucket, config, config.alarm_email or "",
                            config.retrain_schedule or "", model_package_arn=args.model_package_arn,
                            model_version=int(match.group(2)))
    written = write_synth(Path(args.synth), args.stage, settings, args.group, args.create_apigw_logging_role)
    document = {"stage": args.stage, "group": args.group, "model_package_arn": args.model_package_arn,
                "written": [str(path) for path in written]}
    emit(args, document, f"Wrote {len(written)} file(s) to {args.synth}:\n"
         + "\n".join(f"  {path.name}" for path in written))
    return 0


def summary_lines(document: dict) -> list[str]:
    """What a deployment's document says, line by line: each stack, the smoke test, the API and its key."""
    stage, version, region = document["stage"], document["model_version"], document["region"]
    names = ResourceNames(stage, document["group"])
    smoke_test = document["smoke_test"]
    lines = [f"{result['stack_name']}: {result['status']}" for result in document["stacks"]]
    if smoke_test is not None:
        lines.append(f"Smoke test of {stage}: version {version} {'passed' if smoke_test['passed'] else 'failed'}: "
                     f"{smoke_test['detail']}" + ("" if smoke_test["passed"] else
                                                  "; promotion is refused until it passes"))
    if document["dry_run"]:
        lines.append("Dry run: every change set was shown and deleted; nothing was changed.")
    if document["api_url"]:
        lines.append(f"API: {document['api_url']}")
    if document["api_key_id"]:
        lines.append(f"API key: aws apigateway get-api-key --api-key {document['api_key_id']} --include-value "
                     f"--query value --output text --region {region}")
    if not document["dry_run"]:
        lines.append(f"Serving {names.model_package_group} version {version} on endpoint {names.endpoint_name}.")
    return lines


def promote_command(args: argparse.Namespace) -> int:
    """Deploy the package the source stage serves to the target stage, gated on the source's smoke test."""
    from deploy.aws.stage_config import with_schedules
    from deploy.aws.stage_release import PROMOTED_KEY, promote_stage, stage_config

    config = with_schedules(
        stage_config(args.config, args.target, args.alarm_email, args.retrain_schedule, args.prefix), args.schedules)
    region, bucket = required_options(args)

    import boto3

    from deploy.aws.deployer import apigw_logging

    session = boto3.Session(region_name=region)
    ResourceNames(args.target, args.group)  # a group AWS could not name is refused before any AWS call
    account = apigw_logging(session, args.create_apigw_logging_role, bucket, args.dry_run, stderr_line)
    deployment, promotion = promote_stage(session, args.source, args.target, config, bucket, args.dry_run,
                                          stderr_line, args.group)
    if account is not None:
        deployment["stacks"].insert(0, account.to_dict())
    lines = summary_lines(deployment)
    if promotion["promoted_at"]:
        lines.append(f"Promoted version {deployment['model_version']} from {args.source} to {args.target} (recorded "
                     f"on the package as {PROMOTED_KEY.format(stage=args.target)}).")
    emit(args, {**deployment, **promotion}, "\n".join(lines))
    return 0


def destroy_command(args: argparse.Namespace) -> int:
    from deploy.aws.deployer import TEMPLATE_PREFIX
    from deploy.aws.stage_release import destroy_stage, existing_stacks

    region, _ = required_options(args, bucket=False)

    import boto3

    session = boto3.Session(region_name=region)
    existing = existing_stacks(session, args.stage, args.group)
    if existing and not args.yes:
        confirm(f"Delete the stacks {', '.join(existing)} in {region}?")
    document = destroy_stage(session, args.stage, args.bucket, stderr_line, args.group)
    removed, templates = document["removed_stacks"], document["removed_templates"]
    text = (f"Removed {len(removed)} stack(s): {', '.join(removed)}" if removed
            else f"Nothing to remove: no {args.stage} stack{group_of(args.group)} exists in {region}.")
    if "retained_table" in document:
        table = document["retained_table"]
        text += (f"\nKept the prediction table {table} (its DeletionPolicy is Retain): deploying "
                 f"{args.stage} again needs that name free; export what you need, then `aws dynamodb delete-table "
                 f"--table-name {table} --region {region}`.")
    if templates:
        text += f"\nRemoved {len(templates)} uploaded template(s) from s3://{args.bucket}/{TEMPLATE_PREFIX}/."
    emit(args, document, text)
    return 0


def group_of(group: str) -> str:
    """`` of GROUP`` in a sentence about a stage (nothing for the default group)."""
    return "" if group == DEFAULT_GROUP else f" of {group}"


def required_options(args: argparse.Namespace, bucket: bool = True) -> tuple[str, str]:
    if not args.region:
        raise UserError("--region is required (or set $AWS_REGION)")
    if bucket and not args.bucket:
        raise UserError(f"--bucket is required: the Lambda zips are uploaded there (or set ${BUCKET_ENV})")
    return args.region, args.bucket


def confirm(question: str) -> None:
    if not sys.stdin.isatty():
        raise UserError(f"{question} Not asking without a terminal: add --yes")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise UserError("not confirmed: nothing was deleted")

