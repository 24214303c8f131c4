"""``cloudviz deploy aws``, ``cloudviz promote aws`` and ``cloudviz destroy aws``: the four CloudFormation stacks
of a stage.

Which model package a stage serves: ``dev`` the newest Approved version of the registry group (approvals then
redeploy it through its automation stack); ``prod`` only a package promoted to it (``promote aws --from dev --to
prod``, which requires dev's recorded smoke test of that package to have passed); ``deploy aws --stage prod``
keeps the package prod serves and updates everything else. Then, with the default credential chain, the Lambda
zips are uploaded to the artifact bucket and the endpoint, api, monitoring and automation stacks are deployed in
that order through change sets (``--dry-run`` shows each change set and executes none). Then dev is smoke-tested
(the smoke-test function's own code, run here: its rule, in the automation stack, never sees the endpoint stack's
creation) and the result recorded on the package, so the first deployment can be promoted. ``deploy aws --synth
DIR`` only writes the templates, their complete parameter files and the Lambda zips (no AWS call).

Per-stage settings come from ``cloudviz.toml`` (:mod:`deploy.aws.stage_config`). Precedence, highest first: a
command-line flag (``--alarm-email``, ``--retrain-schedule``; ``$CLOUDVIZ_ALARM_EMAIL`` counts as the flag), the
config file's key, what the previous deploy of the stage set (alarm email and schedule only), the default.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cloudviz.aws_pipeline import BUCKET_ENV
from deploy.aws.names import STAGES, ResourceNames
from pipelines.errors import UserError

if TYPE_CHECKING:
    from deploy.aws.deployer import DeployResult
    from deploy.aws.settings import AwsSettings
    from deploy.aws.stage_config import StageConfig

ALARM_EMAIL_ENV = "CLOUDVIZ_ALARM_EMAIL"
ALARM_EMAIL_PARAMETER = "AlarmEmail"  # the monitoring stack's parameter
PACKAGE_PARAMETER = "ModelPackageArn"  # the endpoint stack's parameter: the package a stage serves
PROMOTED_KEY = "cloudviz:promoted:{stage}"  # CustomerMetadataProperties key: when the package was promoted there
VERSIONED_PACKAGE = re.compile(r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:model-package/[^/]+/([0-9]+)")
CONFIG_HELP = ("per-stage settings file (default ./cloudviz.toml when it exists): [stages.dev]/[stages.prod] "
               "tables of instance_type, instance_count, retrain_schedule, alarm_email, allowed_origin")


def stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def add_commands(
    deploy_actions: argparse._SubParsersAction,
    destroy_actions: argparse._SubParsersAction,
    promote_actions: argparse._SubParsersAction | None = None,
) -> None:
    """``deploy aws``, ``destroy aws`` and ``promote aws`` under the ``deploy``, ``destroy`` and ``promote``
    groups (no ``promote aws`` without that group)."""
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
    parsers = [deploy, destroy]
    if promote_actions is not None:
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
        promote.set_defaults(handler=with_aws_errors(promote_command), alarm_email=os.environ.get(ALARM_EMAIL_ENV),
                             retrain_schedule=None)
        parsers.append(promote)
    for parser in (deploy, destroy):
        parser.add_argument("--stage", choices=STAGES, required=True, help="the stage (dev or prod)")
    for parser in parsers:
        parser.add_argument("--region", default=region, help="AWS region (default $AWS_REGION or $AWS_DEFAULT_REGION)")
        parser.add_argument("--bucket", default=os.environ.get(BUCKET_ENV),
                            help=f"artifact bucket for the Lambda zips and large templates (default ${BUCKET_ENV})")
        parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    deploy.add_argument("--dry-run", action="store_true", help="create and print each change set, execute none")
    deploy.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
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


def stage_config(args: argparse.Namespace, stage: str) -> StageConfig:
    """The stage's settings from the config file, with the command line's flags over them."""
    from deploy.aws.stage_config import load_stage_configs

    config = load_stage_configs(args.config)[stage]
    overrides = {key: value for key, value in (("alarm_email", args.alarm_email),
                                               ("retrain_schedule", args.retrain_schedule)) if value is not None}
    return replace(config, **overrides)


def deploy_command(args: argparse.Namespace) -> int:
    config = stage_config(args, args.stage)
    if args.synth:
        return synth_command(args, config)
    if args.model_package_arn:
        raise UserError("--model-package-arn goes with --synth: `deploy aws` serves dev the newest Approved version "
                        "and keeps the one prod serves (`cloudviz promote aws` changes it)")
    region, bucket = required_options(args)

    import boto3

    from deploy.aws.deployer import stack_parameter
    from deploy.aws.registry import latest_approved_package

    names = ResourceNames(args.stage)
    session = boto3.Session(region_name=region)
    sagemaker = session.client("sagemaker")
    if args.stage == "dev":
        package_arn, version = latest_approved_package(sagemaker, names.model_package_group)
    else:
        package_arn = stack_parameter(session.client("cloudformation"), names.endpoint_stack, PACKAGE_PARAMETER)
        if not package_arn:
            raise UserError(f"{args.stage} has no endpoint stack ({names.endpoint_stack}) in {region}: a model reaches "
                            f"{args.stage} only by promotion, once dev's smoke test of it passed: cloudviz promote "
                            f"aws --from dev --to {args.stage}")
        version = int(sagemaker.describe_model_package(ModelPackageName=package_arn)["ModelPackageVersion"])
    document, lines = deploy_stage(args, session, args.stage, config, package_arn, version)
    emit(args, document, "\n".join(lines))
    return 0


def synth_command(args: argparse.Namespace, config: StageConfig) -> int:
    """Write the stage's templates, complete parameter files and zips: no AWS call."""
    from deploy.aws.stacks import write_synth

    if not args.bucket:
        raise UserError(f"--bucket is required: the templates name the artifact bucket (or set ${BUCKET_ENV})")
    if not args.model_package_arn:
        raise UserError("--synth needs --model-package-arn ARN: the endpoint stack's ModelPackageArn parameter has "
                        "no default (aws sagemaker list-model-packages --model-package-group-name GROUP)")
    match = VERSIONED_PACKAGE.fullmatch(args.model_package_arn)
    if match is None:
        raise UserError(f"--model-package-arn {args.model_package_arn!r}: expected the ARN of a model package "
                        "version, arn:aws:sagemaker:REGION:ACCOUNT:model-package/GROUP/VERSION")
    settings = aws_settings(args.region or "us-east-1", "123456789012", args.bucket, config, config.alarm_email or "",
                            config.retrain_schedule or "", model_package_arn=args.model_package_arn,
                            model_version=int(match.group(1)))
    written = write_synth(Path(args.synth), args.stage, settings)
    document = {"stage": args.stage, "model_package_arn": args.model_package_arn,
                "written": [str(path) for path in written]}
    emit(args, document, f"Wrote {len(written)} file(s) to {args.synth}:\n"
         + "\n".join(f"  {path.name}" for path in written))
    return 0


def aws_settings(region: str, account_id: str, bucket: str, config: StageConfig, alarm_email: str, schedule: str,
                 **package: object) -> AwsSettings:
    """The templates' settings of a stage: its config, the resolved alarm email and schedule, the package."""
    from deploy.aws.settings import AwsSettings

    return AwsSettings(region=region, account_id=account_id, artifact_bucket=bucket, alarm_email=alarm_email,
                       allowed_origin=config.allowed_origin, instance_type=config.instance_type,
                       instance_count=config.instance_count, **schedule_settings(schedule), **package)


def deploy_stage(args: argparse.Namespace, session: object, stage: str, config: StageConfig, package_arn: str,
                 version: int) -> tuple[dict, list[str]]:
    """Deploy the stage's four stacks serving ``package_arn``: the JSON document and the summary lines."""
    from deploy.aws.deployer import deploy_stack, stack_parameter
    from deploy.aws.lambda_zip import lambda_zips
    from deploy.aws.registry import baseline_statistics_uri, data_schema
    from deploy.aws.stacks import referenced_packages, synthesize
    from pipelines.sagemaker.staging import upload_if_missing

    names = ResourceNames(stage)
    region, bucket = args.region, args.bucket
    account_id = session.client("sts").get_caller_identity()["Account"]
    sagemaker = session.client("sagemaker")
    stderr_line(f"model: {names.model_package_group} version {version} ({package_arn})")
    baseline = baseline_statistics_uri(sagemaker, package_arn)
    stderr_line(f"drift baseline: {baseline}" if baseline else f"drift: version {version} was registered without "
                "baseline statistics (ModelDataQuality), so drift is not measured on AWS")
    schema = data_schema(sagemaker, session.client("s3"), package_arn)
    served = {"model_task": schema.task, "feature_names": ",".join(schema.features),
              "class_names": ",".join(schema.classes), "data_schema_uri": schema.uri} if schema else {}
    stderr_line(f"{schema.task} model; features {served['feature_names']}; classes {served['class_names'] or 'none'}"
                if schema else f"schema: version {version} was registered without a DataSchema: the API takes the "
                "pipeline's default features and classes")
    cloudformation = session.client("cloudformation")
    alarm_email = config.alarm_email
    if alarm_email is None:  # neither given nor configured: keep the subscription a previous deploy made
        alarm_email = stack_parameter(cloudformation, names.monitoring_stack, ALARM_EMAIL_PARAMETER)
    schedule = config.retrain_schedule
    if schedule is None:  # neither given nor configured: keep what a previous deploy set
        enabled = stack_parameter(cloudformation, names.automation_stack, "ScheduleState") == "ENABLED"
        schedule = stack_parameter(cloudformation, names.automation_stack, "ScheduleExpression") if enabled else ""
    settings = aws_settings(region, account_id, bucket, config, alarm_email, schedule, model_package_arn=package_arn,
                            model_version=version, baseline_statistics_uri=baseline, **served)
    s3 = session.client("s3")
    packages = lambda_zips()
    specs = synthesize(stage, settings, packages)
    for package in referenced_packages(specs, packages):
        if args.dry_run:
            stderr_line(f"dry run: would upload s3://{bucket}/{package.key}")
        elif upload_if_missing(s3, bucket, package.key, package.data):
            stderr_line(f"uploaded s3://{bucket}/{package.key}")
    results = [deploy_stack(cloudformation, s3, spec, bucket, args.dry_run, progress=stderr_line) for spec in specs]
    api = next(result for result in results if result.stack_name == names.api_stack)
    smoke_test = None if args.dry_run else smoke_test_deployed(session, names, results)
    document = {"stage": stage, "region": region, "model_package_arn": package_arn, "model_version": version,
                "baseline_statistics_uri": baseline, "dry_run": args.dry_run,
                "stacks": [result.to_dict() for result in results],
                "api_url": api.outputs.get("ApiUrl"), "api_key_id": api.outputs.get("ApiKeyId"),
                "smoke_test": smoke_test}
    lines = [f"{result.stack_name}: {result.status}" for result in results]
    if smoke_test is not None:
        lines.append(f"Smoke test of {stage}: version {version} {'passed' if smoke_test['passed'] else 'failed'}: "
                     f"{smoke_test['detail']}" + ("" if smoke_test["passed"] else
                                                  "; promotion is refused until it passes"))
    if args.dry_run:
        lines.append("Dry run: every change set was shown and deleted; nothing was changed.")
    if document["api_url"]:
        lines.append(f"API: {document['api_url']}")
    if document["api_key_id"]:
        lines.append(f"API key: aws apigateway get-api-key --api-key {document['api_key_id']} --include-value "
                     f"--query value --output text --region {region}")
    if not args.dry_run:
        lines.append(f"Serving {names.model_package_group} version {version} on endpoint {names.endpoint_name}.")
    return document, lines


def smoke_test_deployed(session: object, names: ResourceNames, results: list[DeployResult]) -> dict | None:
    """Run the stage's smoke test on what was just deployed and record it on the package (the stages smoke-tested
    after each deployment only): the result. The rule that runs it after each endpoint update lives in the
    automation stack, deployed last, so it never sees the stage's first deployment."""
    from botocore.exceptions import BotoCoreError, ClientError

    from deploy.aws.functions.smoke_test import smoke_test_stage
    from deploy.aws.templates.automation import SMOKE_TESTED_STAGES

    if names.stage not in SMOKE_TESTED_STAGES:
        return None
    topic = next(result.outputs["AlarmTopicArn"] for result in results if result.stack_name == names.monitoring_stack)
    stderr_line(f"smoke test of {names.stage}: POST /predictions, then GET it by id (an answer from the previous "
                "version is asked again until the API's version cache expired)")
    clients = {name: session.client(name) for name in ("cloudformation", "sagemaker", "s3", "apigateway", "sns")}
    try:
        result = smoke_test_stage(clients, names.stage, names.endpoint_stack, names.api_stack, topic,
                                  after="cloudviz deploy aws")
    except (BotoCoreError, ClientError) as error:
        raise UserError(f"{names.stage}'s stacks are deployed, but its smoke test could not run: AWS: {error} "
                        f"(deploy again to run it)") from None
    return {key: result[key] for key in ("stage", "passed", "detail", "at")}


def promote_command(args: argparse.Namespace) -> int:
    """Deploy the package the source stage serves to the target stage, gated on the source's smoke test."""
    if STAGES.index(args.source) >= STAGES.index(args.target):
        raise UserError(f"--from {args.source} --to {args.target}: a promotion goes to a later stage "
                        f"({' -> '.join(STAGES)})")
    config = stage_config(args, args.target)
    region, _ = required_options(args)

    import boto3

    from deploy.aws.deployer import describe_stack, stack_parameter
    from deploy.aws.functions.smoke_test import recorded_smoke_test
    from deploy.aws.registry import APPROVED

    source, target = ResourceNames(args.source), ResourceNames(args.target)
    session = boto3.Session(region_name=region)
    cloudformation, sagemaker = session.client("cloudformation"), session.client("sagemaker")
    stack = describe_stack(cloudformation, source.endpoint_stack)
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in (stack or {}).get("Parameters") or []}
    if stack is None or stack["StackStatus"] == "ROLLBACK_COMPLETE" or not parameters.get(PACKAGE_PARAMETER):
        raise UserError(f"{args.source} is not deployed: no endpoint stack {source.endpoint_stack} in {region} "
                        f"(cloudviz deploy aws --stage {args.source})")
    if stack["StackStatus"].endswith("_IN_PROGRESS"):
        raise UserError(f"{args.source}'s endpoint stack is busy ({stack['StackStatus']}): promote once it is done "
                        "and its smoke test has run")
    package_arn = parameters[PACKAGE_PARAMETER]
    package = sagemaker.describe_model_package(ModelPackageName=package_arn)
    version = int(package["ModelPackageVersion"])
    what = f"{args.source} serves version {version} ({package_arn})"
    smoke_test = recorded_smoke_test(sagemaker, package_arn, args.source)
    if smoke_test is None:
        raise UserError(f"{what}, never smoke-tested in {args.source}: its smoke test runs after each update of "
                        f"{source.endpoint_stack}; promotion needs it passed")
    if not smoke_test.passed:
        raise UserError(f"{what}, whose smoke test failed at {smoke_test.at}: {smoke_test.detail}")
    if package.get("ModelApprovalStatus") != APPROVED:
        raise UserError(f"{what}, which is {package.get('ModelApprovalStatus')} now: only an Approved package is "
                        "promoted")
    previous = stack_parameter(cloudformation, target.endpoint_stack, PACKAGE_PARAMETER)
    stderr_line(f"{what}: smoke test passed at {smoke_test.at}; {args.target} serves "
                f"{previous or 'nothing yet'}")
    document, lines = deploy_stage(args, session, args.target, config, package_arn, version)
    promoted_at = None
    if not args.dry_run:
        promoted_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        sagemaker.update_model_package(ModelPackageArn=package_arn, CustomerMetadataProperties={
            PROMOTED_KEY.format(stage=args.target): promoted_at})
        lines.append(f"Promoted version {version} from {args.source} to {args.target} (recorded on the package as "
                     f"{PROMOTED_KEY.format(stage=args.target)}).")
    document.update({"from": args.source, "to": args.target, "previous_model_package_arn": previous or None,
                     "smoke_test": {"stage": smoke_test.stage, "passed": True, "at": smoke_test.at},
                     "promoted_at": promoted_at})
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
    from deploy.aws.deployer import TEMPLATE_PREFIX, describe_stack, destroy_stacks
    from deploy.aws.templates.api import table_retained

    names = ResourceNames(args.stage)
    region, _ = required_options(args, bucket=False)

    import boto3

    session = boto3.Session(region_name=region)
    cloudformation = session.client("cloudformation")
    existing = [name for name in names.destroy_order if describe_stack(cloudformation, name) is not None]
    if existing and not args.yes:
        confirm(f"Delete the stacks {', '.join(existing)} in {region}?")
    removed = destroy_stacks(cloudformation, names.destroy_order, progress=stderr_line)
    templates = []
    if args.bucket:
        s3 = session.client("s3")
        for name in names.stacks:
            prefix = f"{TEMPLATE_PREFIX}/{name}/"
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    s3.delete_object(Bucket=args.bucket, Key=item["Key"])
                    templates.append(f"s3://{args.bucket}/{item['Key']}")
    document = {"stage": args.stage, "region": region, "removed_stacks": removed, "removed_templates": templates}
    text = (f"Removed {len(removed)} stack(s): {', '.join(removed)}" if removed
            else f"Nothing to remove: no {args.stage} stack exists in {region}.")
    if names.api_stack in removed and table_retained(names):
        document["retained_table"] = names.table_name
        text += (f"\nKept the prediction table {names.table_name} (its DeletionPolicy is Retain): deploying "
                 f"{args.stage} again needs that name free; export what you need, then `aws dynamodb delete-table "
                 f"--table-name {names.table_name} --region {region}`.")
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
