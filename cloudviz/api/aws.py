"""``cloudviz.aws()``: the Python API over an AWS account (SageMaker Pipelines, the SageMaker Model Registry, the
stage stacks and their API Gateway), through the same modules ``cloudviz ... aws`` uses. AWS refusing a call is an
``AwsError`` carrying AWS's message; a missing execution or model package a ``NotFoundError``."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from cloudviz.api.base import LATEST, Models, Pipeline, Project, Runs
from cloudviz.api.data import StoredDatasets
from cloudviz.api.prediction_api import PredictionApi, Serving
from cloudviz.api.schedules import AwsSchedules
from cloudviz.api.types import AWS, Deployment, ModelVersion, Parameter, Promotion, Run, StepRun
from deploy.aws.names import DEFAULT_GROUP, PROJECT, STAGES, ResourceNames
from deploy.feedback_export import dynamodb_prediction_stores
from pipelines.data.versions import DatasetStore, s3_dataset_store
from pipelines.definition import PIPELINE_NAME, TASKS, build_pipeline
from pipelines.errors import AwsError, NotFoundError, UserError
from pipelines.model_quality import scalar_metrics
from pipelines.registry import APPROVAL_STATUSES, approval_status
from pipelines.sagemaker.target import BUCKET_ENV, DEFAULT_OBJECTIVE, ROLE_ENV

if TYPE_CHECKING:  # the store package imports boto3, loaded only when AWS is called
    from serving_lambdas.store.base import PredictionStore

T = TypeVar("T", bound=Callable)
NOT_FOUND_CODES = ("ResourceNotFound", "ResourceNotFoundException", "NotFoundException")
# A stage's endpoint stack: the default group's cloudviz-<stage>-endpoint, another's cloudviz-<group>-<stage>-endpoint.
ENDPOINT_STACK = re.compile(rf"{PROJECT}-(?:[a-z0-9-]+-)?(?P<stage>{'|'.join(STAGES)})-endpoint")
logger = logging.getLogger("cloudviz")  # deploy and promote report their progress here (INFO)


def aws_errors(method: T) -> T:
    """botocore's errors as ``AwsError`` (``NotFoundError`` for a resource AWS does not have), AWS's message in."""

    @functools.wraps(method)
    def calling(*args: object, **kwargs: object) -> object:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(*args, **kwargs)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in NOT_FOUND_CODES:
                raise NotFoundError(f"AWS: {error}") from None
            raise AwsError(f"AWS: {error}") from None
        except BotoCoreError as error:
            raise AwsError(f"AWS: {error}") from None

    return calling  # type: ignore[return-value]


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def s3_json(s3: object, uri: str) -> dict:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def requested_version(version: int | str) -> int | None:
    """``version`` as a number; None for ``latest``."""
    if isinstance(version, int) or str(version).isdigit():
        return int(version)
    if version == LATEST:
        return None
    raise UserError(f"version {version!r}: expected a version number or {LATEST!r}")


class Account:
    """The boto3 session and the settings every part of an AWS project shares."""

    def __init__(self, region: str | None, bucket: str | None, role_arn: str | None, prefix: str,
                 config: str | Path | None, session: object | None) -> None:
        import boto3

        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or (
            getattr(session, "region_name", None))
        if not region:
            raise UserError("region: give cloudviz.aws(region=...) or set $AWS_REGION")
        self.session = session if session is not None else boto3.Session(region_name=region)
        self.region = region
        self.bucket = bucket or os.environ.get(BUCKET_ENV) or None
        self.role_arn = role_arn or os.environ.get(ROLE_ENV) or None
        self.prefix = prefix
        self.config = None if config is None else str(config)
        self._clients: dict[str, object] = {}

    def client(self, name: str) -> object:
        if name not in self._clients:
            self._clients[name] = self.session.client(name, region_name=self.region)
        return self._clients[name]

    def required_bucket(self) -> str:
        if not self.bucket:
            raise UserError(f"bucket: give cloudviz.aws(bucket=...) or set ${BUCKET_ENV} (the artifact bucket)")
        return self.bucket

    def required_role(self) -> str:
        if not self.role_arn:
            raise UserError(f"role_arn: give cloudviz.aws(role_arn=...) or set ${ROLE_ENV} (the SageMaker execution "
                            "role the jobs run as)")
        if not self.role_arn.startswith("arn:aws"):
            raise UserError(f"role_arn must be an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME), not {self.role_arn!r}")
        return self.role_arn


class AwsPipeline(Pipeline):
    def __init__(self, account: Account, runs: AwsRuns) -> None:
        self.account = account
        self.runs = runs

    def parameters(self) -> list[Parameter]:
        """The pipeline's parameters, then those that say where its SageMaker jobs run (``targets`` ``("aws",)``)."""
        from pipelines.sagemaker import AWS_PARAMETERS

        return [*(Parameter(p.name, p.type, p.default, p.description) for p in build_pipeline().parameters),
                *(Parameter(p.name, p.type, p.default, p.description, (AWS,)) for p in AWS_PARAMETERS)]

    @aws_errors
    def start(self, parameters: dict[str, object] | None = None, data: str | Path | None = None,
              use_cache: bool = True, dataset: str | None = None) -> Run:
        """Upsert the pipeline (stage its scripts and the iris CSV in the bucket, create or update the definition
        for the Objective's family), then start an execution with these values (checked against the declaration)
        and ``data`` (an s3:// URI: InputData) or ``dataset`` (a data set version in the bucket, its manifest the
        InputData: DataSetVersion, resolved to ``NAME@N`` before the start). The run returned is as SageMaker
        reports it: ``.wait()`` polls it. As ``cloudviz pipeline upsert`` then ``cloudviz pipeline start --target
        aws``."""
        from pipelines.data.versions import s3_dataset_store
        from pipelines.sagemaker.deployment import start
        from pipelines.sagemaker.target import aws_target, execution_overrides, upsert_pipeline, with_champion

        if not use_cache:
            raise UserError("use_cache=False: on AWS, step caching is part of the pipeline definition (each step's "
                            "CacheConfig); change a parameter to rerun the steps it feeds")
        overrides = {name: str(value) for name, value in (parameters or {}).items()}
        if data is not None:
            if not str(data).startswith("s3://"):
                raise UserError(f"data {str(data)!r}: on AWS, the s3:// URI of a CSV the SageMaker jobs can read")
            overrides["InputData"] = str(data)
        if dataset is not None:
            overrides["DataSetVersion"] = dataset
        objective = overrides.get("Objective", DEFAULT_OBJECTIVE)
        if objective not in TASKS:
            raise UserError(f"parameter Objective: {objective!r} is not one of {', '.join(TASKS)}")
        target, files = aws_target(self.account.region, self.account.required_role(), self.account.required_bucket(),
                                   self.account.prefix)
        sagemaker, s3 = self.account.client("sagemaker"), self.account.client("s3")
        values = execution_overrides(overrides, s3_dataset_store(s3, target.bucket, target.prefix))
        upsert_pipeline(sagemaker, s3, target, files, objective)
        arn = start(sagemaker, build_pipeline(), with_champion(sagemaker, values))
        return self.runs.get(arn)


class AwsRuns(Runs):
    """Executions of the SageMaker pipeline, newest first."""

    def __init__(self, account: Account, models: AwsModels) -> None:
        self.account = account
        self.models = models

    @aws_errors
    def list(self, limit: int = 20) -> list[Run]:
        return [self._run(arn) for arn in self._execution_arns(limit)]

    @aws_errors
    def get(self, run_id: str = LATEST) -> Run:
        """An execution by ARN, or the newest (``latest``)."""
        if run_id == LATEST:
            newest = self._execution_arns(1)
            if not newest:
                raise NotFoundError(f"pipeline {PIPELINE_NAME} has no execution in {self.account.region} yet: "
                                    "start one with project.pipeline.start()")
            run_id = newest[0]
        if ":pipeline/" not in run_id:
            raise UserError(f"run_id {run_id!r}: on AWS, a pipeline execution ARN (or {LATEST!r})")
        return self._run(run_id)

    def _execution_arns(self, limit: int) -> list[str]:
        from pipelines.sagemaker.deployment import exists

        sagemaker = self.account.client("sagemaker")
        if not exists(sagemaker, PIPELINE_NAME):
            return []
        summaries: list[dict] = []
        arguments = {"PipelineName": PIPELINE_NAME, "SortBy": "CreationTime", "SortOrder": "Descending",
                     "MaxResults": max(1, min(limit, 100))}
        while len(summaries) < limit:
            page = sagemaker.list_pipeline_executions(**arguments)
            summaries += page.get("PipelineExecutionSummaries", [])
            if not page.get("NextToken"):
                break
            arguments["NextToken"] = page["NextToken"]
        newest_first = sorted(summaries, key=lambda item: item["StartTime"], reverse=True)  # whatever the page order
        return [item["PipelineExecutionArn"] for item in newest_first[:limit]]

    def _run(self, arn: str) -> Run:
        sagemaker = self.account.client("sagemaker")
        execution = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
        parameters = {p["Name"]: p["Value"] for p in pages(sagemaker.list_pipeline_parameters_for_execution,
                                                            "PipelineParameters", PipelineExecutionArn=arn)}
        steps = pages(sagemaker.list_pipeline_execution_steps, "PipelineExecutionSteps", PipelineExecutionArn=arn,
                      SortOrder="Ascending")
        registered = next((step["Metadata"]["RegisterModel"]["Arn"] for step in steps
                           if "RegisterModel" in step.get("Metadata", {})), None)
        model = self.models.by_arn(registered) if registered else None
        status = execution["PipelineExecutionStatus"]
        return Run(
            id=arn, target=AWS, status=status, parameters=parameters, started_at=iso(execution.get("CreationTime")),
            ended_at=iso(execution.get("LastModifiedTime")) if status in ("Succeeded", "Failed", "Stopped") else None,
            failure_reason=execution.get("FailureReason") or None,
            steps=[StepRun(step["StepName"], step["StepStatus"], iso(step.get("StartTime")), iso(step.get("EndTime")),
                           step.get("FailureReason") or None) for step in steps],
            metrics=scalar_metrics(model.evaluation) if model else {},
            model=model.ref if model else None,
            _reload=lambda: self.get(arn),
        )


def pages(call: Callable[..., dict], key: str, **arguments: object) -> list[dict]:
    """Every item of a NextToken-paged SageMaker list call."""
    items: list[dict] = []
    while True:
        page = call(**arguments)
        items += page.get(key, [])
        if not page.get("NextToken"):
            return items
        arguments["NextToken"] = page["NextToken"]


class AwsModels(Models):
    """The SageMaker Model Registry: versions of model package groups."""

    def __init__(self, account: Account) -> None:
        self.account = account

    @aws_errors
    def list(self, group: str | None = None, status: str | None = None) -> list[ModelVersion]:
        """Versions of ``group`` (default every group), newest first; ``status`` in any letter case."""
        sagemaker = self.account.client("sagemaker")
        groups = [group] if group else [item["ModelPackageGroupName"] for item in pages(
            sagemaker.list_model_package_groups, "ModelPackageGroupSummaryList")]
        filters = {"ModelApprovalStatus": self._status(status)} if status else {}
        return [self.by_arn(summary["ModelPackageArn"]) for name in groups
                for summary in sorted(self._summaries(name, **filters), key=lambda s: -s["ModelPackageVersion"])]

    @aws_errors
    def get(self, group: str, version: int | str = LATEST) -> ModelVersion:
        return self.by_arn(self._arn(group, version))

    @aws_errors
    def set_approval(self, group: str, version: int | str, status: str, reason: str = "") -> ModelVersion:
        """Set a version's ModelApprovalStatus (any letter case), with ``reason`` as its ApprovalDescription. An
        approval redeploys dev through the automation stack, once dev's stacks exist."""
        arn = self._arn(group, version)
        self.account.client("sagemaker").update_model_package(
            ModelPackageArn=arn, ModelApprovalStatus=self._status(status), **({"ApprovalDescription": reason}
                                                                             if reason else {}))
        return self.by_arn(arn)

    def by_arn(self, arn: str) -> ModelVersion:
        """The version, its evaluation read from its ModelQuality statistics in S3."""
        package = self.account.client("sagemaker").describe_model_package(ModelPackageName=arn)
        metrics = package.get("ModelMetrics") or {}
        containers = (package.get("InferenceSpecification") or {}).get("Containers") or [{}]
        artifacts = {"model": containers[0].get("ModelDataUrl"),
                     "evaluation": metrics.get("ModelQuality", {}).get("Statistics", {}).get("S3Uri"),
                     "baseline_statistics": metrics.get("ModelDataQuality", {}).get("Statistics", {}).get("S3Uri"),
                     "schema": (package.get("CustomerMetadataProperties") or {}).get("DataSchema")}
        artifacts = {name: uri for name, uri in artifacts.items() if uri}
        evaluation = s3_json(self.account.client("s3"), artifacts["evaluation"]) if "evaluation" in artifacts else {}
        return ModelVersion(
            group=package["ModelPackageGroupName"], version=int(package["ModelPackageVersion"]), arn=arn, target=AWS,
            approval_status=package.get("ModelApprovalStatus", ""), created_at=iso(package.get("CreationTime")) or "",
            description=package.get("ModelPackageDescription", ""),
            status_reason=package.get("ApprovalDescription", ""), evaluation=evaluation, artifacts=artifacts,
            run_id=(package.get("MetadataProperties") or {}).get("GeneratedBy"),
        )

    def _summaries(self, group: str, **filters: str) -> list[dict]:
        return pages(self.account.client("sagemaker").list_model_packages, "ModelPackageSummaryList",
                     ModelPackageGroupName=group, **filters)

    def _arn(self, group: str, version: int | str) -> str:
        number = requested_version(version)
        summaries = self._summaries(group)
        if not summaries:
            raise NotFoundError(f"group {group!r} has no model package in {self.account.region}")
        if number is None:
            return max(summaries, key=lambda s: s["ModelPackageVersion"])["ModelPackageArn"]
        found = next((s["ModelPackageArn"] for s in summaries if s["ModelPackageVersion"] == number), None)
        if found is None:
            raise NotFoundError(f"{group} has no version {number} in {self.account.region}")
        return found

    @staticmethod
    def _status(text: str) -> str:
        status = approval_status(text)
        if status not in APPROVAL_STATUSES:
            raise UserError(f"status {text!r}: expected one of {', '.join(APPROVAL_STATUSES)}")
        return status


class AwsProject(Project):
    """The project in an AWS account; see ``cloudviz.aws()``. ``deploy`` and ``promote`` report their progress
    to the ``cloudviz`` logger (INFO)."""

    target = AWS

    def __init__(self, region: str | None = None, bucket: str | None = None, role_arn: str | None = None,
                 prefix: str = "cloudviz", config: str | Path | None = None, session: object | None = None) -> None:
        self.account = Account(region, bucket, role_arn, prefix, config, session)
        self.models = AwsModels(self.account)
        self.runs = AwsRuns(self.account, self.models)
        self.pipeline = AwsPipeline(self.account, self.runs)

        self.data = AwsDatasets(self.account)
        self.schedules = AwsSchedules()

    def __repr__(self) -> str:
        return f"cloudviz.aws(region={self.account.region!r}, bucket={self.account.bucket!r})"

    @aws_errors
    def deployments(self, group: str | None = None, stage: str | None = None) -> list[Deployment]:
        """The stages whose endpoint stack serves a package: its ModelPackageArn parameter, the api stack's URL.
        Without ``group``, every group's: the stacks named as a group's endpoint stack (``cloudviz-[<group>-]<stage>-
        endpoint``) whose served package's group has that very name."""
        stages = [self._names(stage).stage] if stage else list(STAGES)
        cloudformation = self.account.client("cloudformation")
        listed = {item["StackName"]: item for item in pages(cloudformation.describe_stacks, "Stacks")
                  if item["StackStatus"] != "DELETE_COMPLETE"}
        candidates = ([self._names(name, group) for name in stages] if group is not None
                      else self._served_groups(listed, stages))
        found = []
        for names in candidates:
            stack = listed.get(names.endpoint_stack)
            parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in (stack or {}).get("Parameters", [])}
            if stack is None or not parameters.get("ModelPackageArn"):
                continue
            api = listed.get(names.api_stack) or {}
            outputs = {item["OutputKey"]: item["OutputValue"] for item in api.get("Outputs") or []}
            found.append(Deployment(
                names.model_package_group, names.stage, int(parameters["ModelVersion"]), names.endpoint_name, AWS,
                iso(stack.get("LastUpdatedTime") or stack.get("CreationTime")), outputs.get("ApiUrl"),
                {"model_package_arn": parameters["ModelPackageArn"], "endpoint_stack_status": stack["StackStatus"],
                 "api_outputs": outputs}))
        return found

    def _served_groups(self, listed: dict[str, dict], stages: list[str]) -> list[ResourceNames]:
        """The names of every group's stage among ``stages`` whose endpoint stack is in ``listed``, by group, then
        stage (the default group first)."""
        sagemaker = self.account.client("sagemaker")
        found = []
        for stack_name, stack in listed.items():
            match = ENDPOINT_STACK.fullmatch(stack_name)
            package_arn = next((p.get("ParameterValue") for p in stack.get("Parameters") or []
                                if p["ParameterKey"] == "ModelPackageArn"), None)
            if match is None or match["stage"] not in stages or not package_arn:
                continue
            group = sagemaker.describe_model_package(ModelPackageName=package_arn)["ModelPackageGroupName"]
            names = ResourceNames(match["stage"], group)
            if names.endpoint_stack == stack_name:  # not another project's stack named alike
                found.append(names)
        return sorted(found, key=lambda names: (names.group != DEFAULT_GROUP, names.group, STAGES.index(names.stage)))

    @aws_errors
    def deploy(self, group: str, version: int | None = None, stage: str = "dev", force: bool = False) -> Deployment:
        """Deploy the stage's four stacks through change sets, then (dev) smoke-test it and record the result on
        the package, as ``cloudviz deploy aws --stage STAGE``: dev serves the newest Approved version, prod keeps
        the version promoted to it. ``version``, if given, must be that version; ``force`` does not exist on AWS."""
        from deploy.aws.stage_config import with_schedules
        from deploy.aws.stage_release import deploy_stage, stage_config, stage_package

        names = self._names(stage, group)
        if force:
            raise UserError("force: on AWS a stage serves an Approved version only (approve it first)")
        bucket = self.account.required_bucket()
        config = with_schedules(  # and ./cloudviz.schedules.json
            stage_config(self.account.config, stage, artifact_prefix=self.account.prefix))
        package_arn, served = stage_package(self.account.session, stage, group)
        if version is not None and version != served:
            how = ("approve it and reject the newer Approved ones" if stage == STAGES[0]
                   else f"promote it from {STAGES[STAGES.index(stage) - 1]}")
            raise UserError(f"version {version}: on AWS {stage} serves version {served} of {group} ({how})")
        document = deploy_stage(self.account.session, stage, config, package_arn, served, bucket,
                                progress=logger.info, group=group)
        return self._deployed(names, document)

    @aws_errors
    def promote(self, group: str, source: str = "dev", target: str = "prod") -> Promotion:
        """Deploy ``target``'s stacks serving the package ``source`` serves, once the smoke test recorded on it for
        ``source`` passed, and record the promotion on the package, as ``cloudviz promote aws``."""
        from deploy.aws.stage_config import with_schedules
        from deploy.aws.stage_release import promote_stage, stage_config

        names = self._names(target, group)
        self._names(source, group)
        config = with_schedules(  # and ./cloudviz.schedules.json
            stage_config(self.account.config, target, artifact_prefix=self.account.prefix))
        deployment, promotion = promote_stage(self.account.session, source, target, config,
                                              self.account.required_bucket(), progress=logger.info, group=group)
        changed = promotion["previous_model_package_arn"] != deployment["model_package_arn"]
        return Promotion(source, target, changed, self._deployed(names, {**deployment, **promotion}),
                         promotion["smoke_test"])

    def serve(self, group: str, stage: str = "dev") -> Serving:
        """The deployed stage's API (nothing to start here; ``close()`` does nothing)."""
        return Serving(self.api(group, stage))

    @aws_errors
    def api(self, group: str, stage: str = "dev") -> PredictionApi:
        """The stage's API Gateway URL (the api stack's ApiUrl output) with the value of its API key."""
        from deploy.aws.deployer import describe_stack

        names = self._names(stage, group)
        stack = describe_stack(self.account.client("cloudformation"), names.api_stack)
        outputs = {item["OutputKey"]: item["OutputValue"] for item in (stack or {}).get("Outputs") or []}
        if not outputs.get("ApiUrl") or not outputs.get("ApiKeyId"):
            raise NotFoundError(f"{stage} is not deployed in {self.account.region}: no api stack {names.api_stack} "
                                f"with its URL and key (project.deploy({group!r}, stage={stage!r}))")
        key = self.account.client("apigateway").get_api_key(apiKey=outputs["ApiKeyId"], includeValue=True)["value"]
        return PredictionApi(outputs["ApiUrl"], key)

    @staticmethod
    def _names(stage: str, group: str = DEFAULT_GROUP) -> ResourceNames:
        if stage not in STAGES:
            raise UserError(f"stage {stage!r}: expected one of {', '.join(STAGES)}")
        return ResourceNames(stage, group)

    @staticmethod
    def _deployed(names: ResourceNames, document: dict) -> Deployment:
        return Deployment(names.model_package_group, names.stage, document["model_version"], names.endpoint_name,
                          AWS, iso(datetime.now(UTC)), document["api_url"], document)


class AwsDatasets(StoredDatasets):
    """Below ``s3://<bucket>/<prefix>/datasets/``; predictions from each stage's DynamoDB table."""

    def __init__(self, account: Account) -> None:
        self.account = account

    def store(self) -> DatasetStore:
        return s3_dataset_store(self.account.client("s3"), self.account.required_bucket(), self.account.prefix)

    def prediction_stores(self, group: str) -> dict[str, PredictionStore]:
        return dynamodb_prediction_stores(self.account.client("dynamodb"), group)

    add = aws_errors(StoredDatasets.add)
    list = aws_errors(StoredDatasets.list)
    show = aws_errors(StoredDatasets.show)
    export_feedback = aws_errors(StoredDatasets.export_feedback)
