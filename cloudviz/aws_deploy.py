"""``cloudviz deploy aws`` and ``cloudviz destroy aws``: the four CloudFormation stacks of a stage.

``deploy aws --synth DIR`` only writes the templates and Lambda zips (no AWS). Otherwise, with the default
credential chain: the newest Approved model package of the registry group is chosen, the Lambda zips are uploaded
to the artifact bucket, and the endpoint, api, monitoring and automation stacks are deployed in that order
through change sets (``--dry-run`` shows each change set and executes none).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from deploy.aws.names import STAGES, ResourceNames
from pipelines.errors import UserError

BUCKET_ENV = "CLOUDVIZ_BUCKET"
ALARM_EMAIL_ENV = "CLOUDVIZ_ALARM_EMAIL"
ALARM_EMAIL_PARAMETER = "AlarmEmail"  # the monitoring stack's parameter


def stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def add_commands(deploy_actions: argparse._SubParsersAction, destroy_actions: argparse._SubParsersAction) -> None:
    """``deploy aws`` under the existing ``deploy`` group and ``destroy aws`` under the new ``destroy`` group."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    deploy = deploy_actions.add_parser(
        "aws", help="deploy a stage's CloudFormation stacks to AWS (or --synth them to files)",
        description="Deploy the endpoint, api, monitoring and automation stacks of a stage, in that order, through "
        "CloudFormation change sets, serving the newest Approved model package of the registry group; the Lambda "
        "zips go to the artifact bucket first. --dry-run prints each change set and executes none; --synth DIR "
        "only writes the templates and zips (no AWS call). Uses the default AWS credential chain.",
        epilog="Progress goes to stderr; the summary (the API URL and how to fetch the key) to stdout.",
    )
    destroy = destroy_actions.add_parser(
        "aws", help="delete a stage's CloudFormation stacks from AWS",
        description="Delete the automation, monitoring, api and endpoint stacks of a stage (in that order), and, "
        "with --bucket, the templates the deployer uploaded for them. The model registry, the Lambda packages "
        "(shared by the stages) and captured data stay in the bucket.",
    )
    for parser in (deploy, destroy):
        parser.add_argument("--stage", choices=STAGES, required=True, help="the stage (dev or prod)")
        parser.add_argument("--region", default=region, help="AWS region (default $AWS_REGION or $AWS_DEFAULT_REGION)")
        parser.add_argument("--bucket", default=os.environ.get(BUCKET_ENV),
                            help=f"artifact bucket for the Lambda zips and large templates (default ${BUCKET_ENV})")
        parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    deploy.add_argument("--dry-run", action="store_true", help="create and print each change set, execute none")
    deploy.add_argument("--synth", metavar="DIR", help="only write the templates (JSON) and Lambda zips to DIR")
    deploy.add_argument("--alarm-email", metavar="ADDRESS", default=os.environ.get(ALARM_EMAIL_ENV),
                        help=f"subscribe this address to the alarm topic (default ${ALARM_EMAIL_ENV}, else the "
                        "address of the previous deploy; '' for none)")
    deploy.add_argument("--retrain-schedule", metavar="EXPRESSION",
                        help="retrain on this EventBridge Scheduler expression, e.g. 'cron(0 3 ? * MON *)' or "
                        "'rate(7 days)', in UTC ('' turns it off; default: as the previous deploy left it, else off)")
    deploy.set_defaults(handler=with_aws_errors(deploy_command))
    destroy.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    destroy.set_defaults(handler=with_aws_errors(destroy_command))


def with_aws_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """AWS refusing a call (credentials, permissions, limits) is a one-line error, as a user error is."""

    def handler(args: argparse.Namespace) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return command(args)
        except (BotoCoreError, ClientError) as error:
            raise UserError(f"AWS: {error}") from None

    return handler


def deploy_command(args: argparse.Namespace) -> int:
    from deploy.aws.stacks import AwsSettings, synthesize, write_synth  # boto3 and the templates: only here

    names = ResourceNames(args.stage)
    if args.synth:
        if not args.bucket:
            raise UserError(f"--bucket is required: the templates name the artifact bucket (or set ${BUCKET_ENV})")
        settings = AwsSettings(region=args.region or AwsSettings.region, artifact_bucket=args.bucket,
                               alarm_email=args.alarm_email or "", **schedule_settings(args.retrain_schedule or ""))
        written = write_synth(Path(args.synth), args.stage, settings)
        document = {"stage": args.stage, "written": [str(path) for path in written]}
        emit(args, document, f"Wrote {len(written)} file(s) to {args.synth}:\n"
             + "\n".join(f"  {path.name}" for path in written))
        return 0
    region, bucket = required_options(args)

    import boto3

    from deploy.aws.deployer import deploy_stack, stack_parameter
    from deploy.aws.lambda_zip import lambda_zips
    from deploy.aws.registry import baseline_statistics_uri, latest_approved_package
    from pipelines.sagemaker.staging import upload_if_missing

    session = boto3.Session(region_name=region)
    account_id = session.client("sts").get_caller_identity()["Account"]
    sagemaker = session.client("sagemaker")
    package_arn, version = latest_approved_package(sagemaker, names.model_package_group)
    stderr_line(f"model: {names.model_package_group} version {version} ({package_arn})")
    baseline = baseline_statistics_uri(sagemaker, package_arn)
    stderr_line(f"drift baseline: {baseline}" if baseline else f"drift: version {version} was registered without "
                "baseline statistics (ModelDataQuality), so drift is not measured on AWS")
    cloudformation = session.client("cloudformation")
    alarm_email = args.alarm_email
    if alarm_email is None:  # not given: keep the subscription a previous deploy made
        alarm_email = stack_parameter(cloudformation, names.monitoring_stack, ALARM_EMAIL_PARAMETER)
    schedule = args.retrain_schedule
    if schedule is None:  # not given: keep what a previous deploy set
        enabled = stack_parameter(cloudformation, names.automation_stack, "ScheduleState") == "ENABLED"
        schedule = stack_parameter(cloudformation, names.automation_stack, "ScheduleExpression") if enabled else ""
    settings = AwsSettings(region=region, account_id=account_id, artifact_bucket=bucket, alarm_email=alarm_email,
                           model_package_arn=package_arn, model_version=version, baseline_statistics_uri=baseline,
                           **schedule_settings(schedule))
    s3 = session.client("s3")
    packages = lambda_zips()
    for package in packages:
        if args.dry_run:
            stderr_line(f"dry run: would upload s3://{bucket}/{package.key}")
        elif upload_if_missing(s3, bucket, package.key, package.data):
            stderr_line(f"uploaded s3://{bucket}/{package.key}")
    results = [deploy_stack(cloudformation, s3, spec, bucket, args.dry_run, progress=stderr_line)
               for spec in synthesize(args.stage, settings, packages)]
    api = next(result for result in results if result.stack_name == names.api_stack)
    document = {"stage": args.stage, "region": region, "model_package_arn": package_arn, "model_version": version,
                "baseline_statistics_uri": baseline, "dry_run": args.dry_run,
                "stacks": [result.to_dict() for result in results],
                "api_url": api.outputs.get("ApiUrl"), "api_key_id": api.outputs.get("ApiKeyId")}
    lines = [f"{result.stack_name}: {result.status}" for result in results]
    if args.dry_run:
        lines.append("Dry run: every change set was shown and deleted; nothing was changed.")
    if document["api_url"]:
        lines.append(f"API: {document['api_url']}")
    if document["api_key_id"]:
        lines.append(f"API key: aws apigateway get-api-key --api-key {document['api_key_id']} --include-value "
                     f"--query value --output text --region {region}")
    if not args.dry_run:
        lines.append(f"Serving {names.model_package_group} version {version} on endpoint {names.endpoint_name}.")
    emit(args, document, "\n".join(lines))
    return 0


def schedule_settings(expression: str) -> dict:
    """The retraining schedule's settings: on with ``expression``, off when it is empty."""
    from deploy.aws.templates.automation import SCHEDULE_PATTERN

    if not expression:
        return {"schedule_enabled": False}
    if not re.fullmatch(SCHEDULE_PATTERN, expression.strip()):
        raise UserError(f"--retrain-schedule {expression!r}: expected cron(...), rate(...) or at(...), "
                        "e.g. 'cron(0 3 ? * MON *)'")
    return {"schedule_expression": expression.strip(), "schedule_enabled": True}


def destroy_command(args: argparse.Namespace) -> int:
    from deploy.aws.deployer import TEMPLATE_PREFIX, delete_retained_role, describe_stack, destroy_stacks

    names = ResourceNames(args.stage)
    region, _ = required_options(args, bucket=False)

    import boto3

    session = boto3.Session(region_name=region)
    cloudformation = session.client("cloudformation")
    existing = [name for name in names.stacks if describe_stack(cloudformation, name) is not None]
    if existing and not args.yes:
        confirm(f"Delete the stacks {', '.join(reversed(existing))} in {region}?")
    removed = destroy_stacks(cloudformation, names.stacks, progress=stderr_line)
    # The endpoint stack keeps its CloudFormation service role when deleted (see its template): delete it now
    # that the stack is gone, or the next deploy could not create a role of that name.
    roles = []
    if delete_retained_role(session.client("iam"), names.endpoint_deploy_role_name):
        stderr_line(f"{names.endpoint_deploy_role_name}: deleted the role the endpoint stack retained")
        roles.append(names.endpoint_deploy_role_name)
    templates = []
    if args.bucket:
        s3 = session.client("s3")
        for name in names.stacks:
            prefix = f"{TEMPLATE_PREFIX}/{name}/"
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    s3.delete_object(Bucket=args.bucket, Key=item["Key"])
                    templates.append(f"s3://{args.bucket}/{item['Key']}")
    document = {"stage": args.stage, "region": region, "removed_stacks": removed, "removed_roles": roles,
                "removed_templates": templates}
    text = (f"Removed {len(removed)} stack(s): {', '.join(removed)}" if removed
            else f"Nothing to remove: no {args.stage} stack exists in {region}.")
    if roles:
        text += f"\nRemoved the retained role {', '.join(roles)}."
    if templates:
        text += f"\nRemoved {len(templates)} uploaded template(s) from s3://{args.bucket}/{TEMPLATE_PREFIX}/."
    emit(args, document, text)
    return 0


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


def emit(args: argparse.Namespace, document: dict, text: str) -> None:
    print(json.dumps(document, indent=2) if args.json else text)
