"""Which model package a stage serves on AWS, and deploying, promoting and deleting a stage's four stacks: the
AWS twin of ``deploy.release``, shared by ``cloudviz deploy|promote|destroy aws`` and ``cloudviz.aws``.

dev serves the newest Approved version of the registry group (approvals then redeploy it through its automation
stack); prod only a package promoted to it from dev, once dev's recorded smoke test of that package passed. A
deployment uploads the Lambda zips, then deploys the endpoint, api, monitoring and automation stacks in that order
through change sets (a dry run shows each and executes none). Errors of AWS itself (botocore's) are raised as is.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

from deploy.aws import stacks
from deploy.aws.deployer import (
    TEMPLATE_PREFIX,
    DeployResult,
    Progress,
    deploy_stack,
    describe_stack,
    destroy_stacks,
    quiet,
    stack_parameter,
)
from deploy.aws.names import DEFAULT_GROUP, STAGES, ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.stage_config import StageConfig, load_stage_configs
from pipelines.errors import UserError

ALARM_EMAIL_PARAMETER = "AlarmEmail"  # the monitoring stack's parameter
PACKAGE_PARAMETER = "ModelPackageArn"  # the endpoint stack's parameter: the package a stage serves
PROMOTED_KEY = "cloudviz:promoted:{stage}"  # CustomerMetadataProperties key: when the package was promoted there


def group_option(group: str) -> str:
    """The ``--group`` option a command for ``group`` takes (none for the default group)."""
    return "" if group == DEFAULT_GROUP else f" --group {group}"


def stage_config(path: str | None, stage: str, alarm_email: str | None = None,
                 retrain_schedule: str | None = None, artifact_prefix: str | None = None) -> StageConfig:
    """The stage's settings from the config file (default ./cloudviz.toml), with the given values over them."""
    config = load_stage_configs(path)[stage]
    overrides = {key: value for key, value in (("alarm_email", alarm_email), ("retrain_schedule", retrain_schedule),
                                               ("artifact_prefix", artifact_prefix)) if value is not None}
    return replace(config, **overrides)


def schedule_settings(expression: str) -> dict:
    """The retraining schedule's settings: on with ``expression``, off when it is empty."""
    from deploy.aws.templates.automation import SCHEDULE_PATTERN

    if not expression:
        return {"schedule_enabled": False}
    if not re.fullmatch(SCHEDULE_PATTERN, expression.strip()):
        raise UserError(f"--retrain-schedule {expression!r}: expected cron(...), rate(...) or at(...), "
                        "e.g. 'cron(0 3 ? * MON *)'")
    return {"schedule_expression": expression.strip(), "schedule_enabled": True}


def aws_settings(region: str, account_id: str, bucket: str, config: StageConfig, alarm_email: str, schedule: str,
                 **package: object) -> AwsSettings:
    """The templates' settings of a stage: its config, the resolved alarm email and schedule, the package."""
    return AwsSettings(region=region, account_id=account_id, artifact_bucket=bucket, alarm_email=alarm_email,
                       cors_origins=config.cors_origins, instance_type=config.instance_type,
                       instance_count=config.instance_count, **config.retraining_settings(), **config.api_settings(),
                       **schedule_settings(schedule), **package)


def stage_package(session: object, stage: str, group: str = DEFAULT_GROUP) -> tuple[str, int]:
    """The ARN and version ``deploy`` serves on ``stage`` for ``group``: dev the group's newest Approved one, a
    later stage the one it serves already (a package reaches it only by promotion)."""
    from deploy.aws.registry import latest_approved_package

    names = ResourceNames(stage, group)
    sagemaker = session.client("sagemaker")
    if stage == STAGES[0]:
        return latest_approved_package(sagemaker, names.model_package_group)
    package_arn = stack_parameter(session.client("cloudformation"), names.endpoint_stack, PACKAGE_PARAMETER)
    if not package_arn:
        raise UserError(f"{stage} has no endpoint stack ({names.endpoint_stack}) in {session.region_name}: a model "
                        f"reaches {stage} only by promotion, once dev's smoke test of it passed: cloudviz promote "
                        f"aws --from dev --to {stage}{group_option(group)}")
    return package_arn, int(sagemaker.describe_model_package(ModelPackageName=package_arn)["ModelPackageVersion"])


def deploy_stage(session: object, stage: str, config: StageConfig, package_arn: str, version: int, bucket: str,
                 dry_run: bool = False, progress: Progress = quiet, group: str = DEFAULT_GROUP) -> dict:
    """Deploy the four stacks of ``group``'s stage serving ``package_arn`` (Lambda zips uploaded first), then
    smoke-test it where stages are smoke-tested: what was deployed, as the JSON document of ``cloudviz deploy
    aws``."""
    from deploy.aws.lambda_zip import lambda_zips
    from deploy.aws.registry import baseline_statistics_uri, data_schema
    from pipelines.sagemaker.staging import upload_if_missing

    names = ResourceNames(stage, group)
    region = session.region_name
    account_id = session.client("sts").get_caller_identity()["Account"]
    sagemaker = session.client("sagemaker")
    progress(f"model: {names.model_package_group} version {version} ({package_arn})")
    baseline = baseline_statistics_uri(sagemaker, package_arn)
    progress(f"drift baseline: {baseline}" if baseline else f"drift: version {version} was registered without "
             "baseline statistics (ModelDataQuality), so drift is not measured on AWS")
    schema = data_schema(sagemaker, session.client("s3"), package_arn)
    served = {"model_task": schema.task, "feature_names": ",".join(schema.features),
              "class_names": ",".join(schema.classes), "data_schema_uri": schema.uri} if schema else {}
    progress(f"{schema.task} model; features {served['feature_names']}; classes {served['class_names'] or 'none'}"
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
    specs = stacks.synthesize(stage, settings, packages, group)
    for package in stacks.referenced_packages(specs, packages):
        if dry_run:
            progress(f"dry run: would upload s3://{bucket}/{package.key}")
        elif upload_if_missing(s3, bucket, package.key, package.data):
            progress(f"uploaded s3://{bucket}/{package.key}")
    results = [deploy_stack(cloudformation, s3, spec, bucket, dry_run, progress=progress) for spec in specs]
    api = next(result for result in results if result.stack_name == names.api_stack)
    smoke_test = None if dry_run else smoke_test_deployed(session, names, results, progress)
    return {"stage": stage, "group": group, "region": region, "model_package_arn": package_arn,
            "model_version": version, "baseline_statistics_uri": baseline, "dry_run": dry_run,
            "stacks": [result.to_dict() for result in results],
            "api_url": api.outputs.get("ApiUrl"), "api_key_id": api.outputs.get("ApiKeyId"),
            "smoke_test": smoke_test}


def smoke_test_deployed(session: object, names: ResourceNames, results: list[DeployResult],
                        progress: Progress = quiet) -> dict | None:
    """Run the stage's smoke test on what was just deployed and record it on the package (the stages smoke-tested
    after each deployment only): the result. The rule that runs it after each endpoint update lives in the
    automation stack, deployed last, so it never sees the stage's first deployment."""
    from botocore.exceptions import BotoCoreError, ClientError

    from deploy.aws.functions.smoke_test import smoke_test_stage
    from deploy.aws.templates.automation import SMOKE_TESTED_STAGES

    if names.stage not in SMOKE_TESTED_STAGES:
        return None
    topic = next(result.outputs["AlarmTopicArn"] for result in results if result.stack_name == names.monitoring_stack)
    progress(f"smoke test of {names.stage}: POST /predictions, then GET it by id (an answer from the previous "
             "version is asked again until the API's version cache expired)")
    clients = {name: session.client(name) for name in ("cloudformation", "sagemaker", "s3", "apigateway", "sns")}
    try:
        result = smoke_test_stage(clients, names.stage, names.endpoint_stack, names.api_stack, topic,
                                  after="cloudviz deploy aws")
    except (BotoCoreError, ClientError) as error:
        raise UserError(f"{names.stage}'s stacks are deployed, but its smoke test could not run: AWS: {error} "
                        f"(deploy again to run it)") from None
    return {key: result[key] for key in ("stage", "passed", "detail", "at")}


def promote_stage(session: object, source: str, target: str, config: StageConfig, bucket: str,
                  dry_run: bool = False, progress: Progress = quiet,
                  group: str = DEFAULT_GROUP) -> tuple[dict, dict]:
    """Deploy the package ``group``'s ``source`` stage serves to its ``target`` stage, once its smoke test on
    ``source`` passed, and record
    the promotion on the package: the deployment's document (:func:`deploy_stage`) and the promotion's: ``from``,
    ``to``, the package ``target`` served before, that smoke test and ``promoted_at`` (None in a dry run)."""
    from deploy.aws.functions.smoke_test import recorded_smoke_test
    from pipelines.approved_version import APPROVED

    if STAGES.index(source) >= STAGES.index(target):
        raise UserError(f"--from {source} --to {target}: a promotion goes to a later stage ({' -> '.join(STAGES)})")
    source_names, target_names = ResourceNames(source, group), ResourceNames(target, group)
    region = session.region_name
    cloudformation, sagemaker = session.client("cloudformation"), session.client("sagemaker")
    stack = describe_stack(cloudformation, source_names.endpoint_stack)
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in (stack or {}).get("Parameters") or []}
    if stack is None or stack["StackStatus"] == "ROLLBACK_COMPLETE" or not parameters.get(PACKAGE_PARAMETER):
        raise UserError(f"{source} is not deployed: no endpoint stack {source_names.endpoint_stack} in {region} "
                        f"(cloudviz deploy aws --stage {source}{group_option(group)})")
    if stack["StackStatus"].endswith("_IN_PROGRESS"):
        raise UserError(f"{source}'s endpoint stack is busy ({stack['StackStatus']}): promote once it is done "
                        "and its smoke test has run")
    package_arn = parameters[PACKAGE_PARAMETER]
    package = sagemaker.describe_model_package(ModelPackageName=package_arn)
    version = int(package["ModelPackageVersion"])
    what = f"{source} serves version {version} ({package_arn})"
    smoke_test = recorded_smoke_test(sagemaker, package_arn, source)
    if smoke_test is None:
        raise UserError(f"{what}, never smoke-tested in {source}: its smoke test runs after each update of "
                        f"{source_names.endpoint_stack}; promotion needs it passed")
    if not smoke_test.passed:
        raise UserError(f"{what}, whose smoke test failed at {smoke_test.at}: {smoke_test.detail}")
    if package.get("ModelApprovalStatus") != APPROVED:
        raise UserError(f"{what}, which is {package.get('ModelApprovalStatus')} now: only an Approved package is "
                        "promoted")
    previous = stack_parameter(cloudformation, target_names.endpoint_stack, PACKAGE_PARAMETER)
    progress(f"{what}: smoke test passed at {smoke_test.at}; {target} serves {previous or 'nothing yet'}")
    document = deploy_stage(session, target, config, package_arn, version, bucket, dry_run, progress, group)
    promoted_at = None
    if not dry_run:
        promoted_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        sagemaker.update_model_package(ModelPackageArn=package_arn, CustomerMetadataProperties={
            PROMOTED_KEY.format(stage=target): promoted_at})
    return document, {"from": source, "to": target, "previous_model_package_arn": previous or None,
            "smoke_test": {"stage": smoke_test.stage, "passed": True, "at": smoke_test.at},
            "promoted_at": promoted_at}


def existing_stacks(session: object, stage: str, group: str = DEFAULT_GROUP) -> list[str]:
    """The stacks of ``group``'s stage that exist, in deletion order."""
    cloudformation = session.client("cloudformation")
    return [name for name in ResourceNames(stage, group).destroy_order
            if describe_stack(cloudformation, name) is not None]


def destroy_stage(session: object, stage: str, bucket: str | None = None, progress: Progress = quiet,
                  group: str = DEFAULT_GROUP) -> dict:
    """Delete the stacks of ``group``'s stage and, with ``bucket``, the templates the deployer uploaded for them:
    what was removed (and ``retained_table`` when the api stack's table outlives it)."""
    from deploy.aws.templates.api import table_retained

    names = ResourceNames(stage, group)
    removed = destroy_stacks(session.client("cloudformation"), names.destroy_order, progress=progress)
    templates = []
    if bucket:
        s3 = session.client("s3")
        for name in names.stacks:
            prefix = f"{TEMPLATE_PREFIX}/{name}/"
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    s3.delete_object(Bucket=bucket, Key=item["Key"])
                    templates.append(f"s3://{bucket}/{item['Key']}")
    document = {"stage": stage, "group": group, "region": session.region_name, "removed_stacks": removed,
                "removed_templates": templates}
    if names.api_stack in removed and table_retained(names):
        document["retained_table"] = names.table_name
    return document
