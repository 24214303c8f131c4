"""Start a retraining run of the stage's model package group on the newest version of a data set, when a schedule
fires or the feature-drift alarm goes to ALARM; or log in one JSON line why not (boto3, the standard library and
the zip's ``pipelines.retraining`` only).

The newest version is read from the data sets' S3 layout (``<prefix>/datasets/<name>/versions/<n>.json``, written
last, so a version with its json is whole) rather than through ``pipelines.data.versions``: that store makes
iris's first version from the bundled CSV when none is stored (scikit-learn and a write, neither of which this
function has) and imports most of the ``pipelines`` package.

Events: a schedule's Input, ``{"schedule": NAME, "dataset": NAME, "parameters": {...}}`` (EventBridge Scheduler),
or the "CloudWatch Alarm State Change" event of the feature-drift alarm (an EventBridge rule), which retrains the
``DRIFT_DATASET``. The runs this function starts say so in their description (``MARK`` ``trigger=... group=...
data=...``): a schedule's last successful run, the last drift-triggered one and a run still executing are found
among the pipeline's executions by it. Environment: ``PIPELINE_NAME``, ``MODEL_PACKAGE_GROUP``, ``ARTIFACT_BUCKET``,
``ARTIFACT_PREFIX``, ``STAGE``, ``DRIFT_DATASET``, ``RETRAIN_COOLDOWN_HOURS``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from pipelines.approved_version import NO_CHAMPION_KEY, live_champion
from pipelines.objectives import objective_for
from pipelines.retraining import Decision, drift_run_decision, scheduled_run_decision

logger = logging.getLogger()
logger.setLevel(logging.INFO)

MARK = "cloudviz-retrain"
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
DRIFT_TRIGGER = "drift"
SUCCEEDED = "Succeeded"
RUNNING = ("Executing", "Stopping")
DISPLAY_NAME_LENGTH = 82  # PipelineExecutionDisplayName: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,81}
FIELD = re.compile(r"(\w+)=(\S+)")
VERSION_JSON = re.compile(r"([1-9][0-9]*)\.json")


@dataclass(frozen=True)
class DatasetVersion:
    """What a run needs of a data set version: its ref (``NAME@N``), manifest and describing parameters (with the
    Objective its task needs, as a local run on it takes)."""

    ref: str
    manifest_uri: str
    parameters: dict[str, str]


def newest_version(s3: Any, bucket: str, prefix: str, dataset: str) -> DatasetVersion | None:
    """The data set's newest whole version below ``s3://bucket/prefix/datasets/``, or None."""
    folder = "/".join(filter(None, (prefix.strip("/"), "datasets", dataset, "versions"))) + "/"
    numbers = [int(match[1]) for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
               for item in page.get("Contents", []) if (match := VERSION_JSON.fullmatch(item["Key"][len(folder):]))]
    if not numbers:
        return None
    document = json.loads(s3.get_object(Bucket=bucket, Key=f"{folder}{max(numbers)}.json")["Body"].read())
    describing = {**document.get("parameters", {}), **objective_for(document.get("schema", {}))}
    return DatasetVersion(f"{dataset}@{document['version']}", document["manifest"],
                          {key: str(value) for key, value in describing.items()})


@dataclass(frozen=True)
class Trigger:
    """What asked for a run: ``schedule:<name>`` or ``drift``, the data set and the parameters it adds."""

    name: str
    dataset: str
    parameters: dict[str, str]

    @property
    def is_drift(self) -> bool:
        return self.name == DRIFT_TRIGGER


@dataclass(frozen=True)
class Execution:
    """One of the pipeline's executions this function started (its description carries the trigger)."""

    arn: str
    status: str
    started: datetime
    trigger: str
    group: str


def trigger_of(event: dict) -> Trigger | None:
    """The trigger ``event`` names, or None for an alarm event that is not a change to ALARM."""
    if event.get("detail-type") == ALARM_STATE_CHANGE:
        if (event.get("detail") or {}).get("state", {}).get("value") != "ALARM":
            return None
        return Trigger(DRIFT_TRIGGER, os.environ["DRIFT_DATASET"], {})
    if not event.get("schedule") or not event.get("dataset"):
        raise ValueError(f"expected a schedule's input (schedule, dataset, parameters) or a {ALARM_STATE_CHANGE} "
                         f"event, got the keys {sorted(event)}")
    parameters = {str(key): str(value) for key, value in (event.get("parameters") or {}).items()}
    return Trigger(f"schedule:{event['schedule']}", event["dataset"], parameters)


def description(trigger: Trigger, group: str, ref: str, reason: str) -> str:
    return f"{MARK} trigger={trigger.name} group={group} data={ref} stage={os.environ['STAGE']}: {reason}"


def display_name(trigger: Trigger, now: datetime) -> str:
    words = re.sub(r"[^a-zA-Z0-9]+", "-", f"{trigger.name} {now:%Y%m%dT%H%M%S}")
    return words.strip("-")[:DISPLAY_NAME_LENGTH].rstrip("-")


def execution_of(summary: dict) -> Execution | None:
    """The execution a summary describes, when this function started it."""
    text = summary.get("PipelineExecutionDescription") or ""
    if not text.startswith(MARK + " "):
        return None
    fields = dict(FIELD.findall(text.partition(": ")[0]))
    return Execution(summary["PipelineExecutionArn"], summary.get("PipelineExecutionStatus", ""),
                     summary["StartTime"], fields.get("trigger", ""), fields.get("group", ""))


class Pipeline:
    """The pipeline, the registry and the data sets as the function reads and starts them."""

    def __init__(self, clients: dict[str, Any]) -> None:
        self.sagemaker = clients.get("sagemaker") or boto3.client("sagemaker")
        self.s3 = clients.get("s3") or boto3.client("s3")
        self.name = os.environ["PIPELINE_NAME"]
        self.group = os.environ["MODEL_PACKAGE_GROUP"]
        self.bucket = os.environ["ARTIFACT_BUCKET"]
        self.prefix = os.environ["ARTIFACT_PREFIX"]

    def newest(self, dataset: str) -> DatasetVersion | None:
        return newest_version(self.s3, self.bucket, self.prefix, dataset)

    def executions(self) -> Iterator[Execution]:
        """This group's executions this function started, newest first."""
        arguments = {"PipelineName": self.name, "SortBy": "CreationTime", "SortOrder": "Descending",
                     "MaxResults": 100}
        while True:
            page = self.sagemaker.list_pipeline_executions(**arguments)
            summaries = sorted(page.get("PipelineExecutionSummaries", []), key=lambda s: s["StartTime"],
                               reverse=True)
            for execution in filter(None, map(execution_of, summaries)):
                if execution.group == self.group:
                    yield execution
            if not page.get("NextToken"):
                return
            arguments["NextToken"] = page["NextToken"]

    def trained_on(self, execution: Execution) -> str | None:
        """The DataSetVersion an execution was started with."""
        arguments = {"PipelineExecutionArn": execution.arn}
        while True:
            page = self.sagemaker.list_pipeline_parameters_for_execution(**arguments)
            for parameter in page.get("PipelineParameters", []):
                if parameter["Name"] == "DataSetVersion":
                    return parameter["Value"] or None
            if not page.get("NextToken"):
                return None
            arguments["NextToken"] = page["NextToken"]

    def champion(self) -> dict[str, str]:
        """ChampionModelData and ChampionDataSchema: the newest Approved package's model artifact and registered data
        schema, or the no-champion object."""
        none = f"s3://{self.bucket}/{self.prefix}/{NO_CHAMPION_KEY}"
        champion = live_champion(self.sagemaker, self.group)
        return {"ChampionModelData": champion.model_data if champion else none,
                "ChampionDataSchema": (champion.data_schema if champion else "") or none}

    def start(self, trigger: Trigger, version: DatasetVersion, reason: str, token: str, now: datetime) -> str:
        parameters = {
            **version.parameters,
            **trigger.parameters,
            "InputData": version.manifest_uri,
            "InputDataType": "ManifestFile",
            "DataSetVersion": version.ref,
            **self.champion(),
            "ModelPackageGroupName": self.group,
        }
        return self.sagemaker.start_pipeline_execution(
            PipelineName=self.name,
            PipelineExecutionDisplayName=display_name(trigger, now),
            PipelineExecutionDescription=description(trigger, self.group, version.ref, reason),
            PipelineParameters=[{"Name": name, "Value": value} for name, value in parameters.items()],
            ClientRequestToken=token,
        )["PipelineExecutionArn"]


def decide(trigger: Trigger, pipeline: Pipeline, newest: DatasetVersion | None, now: datetime) -> Decision:
    """Skip while a run executes (a schedule: its own; drift: any of the group's); else :mod:`pipelines.retraining`
    decides, from the last successful run (a schedule: its own; drift: the group's, whatever started it, as the
    labelled data must have grown since the model was trained) and the last drift-triggered run's start."""
    succeeded, last_drift = None, None
    for execution in pipeline.executions():
        if not trigger.is_drift and execution.trigger != trigger.name:
            continue
        if execution.status in RUNNING:
            return Decision(False, f"a run of {execution.trigger} is still {execution.status.lower()}: "
                                   f"{execution.arn}")
        if last_drift is None and execution.trigger == DRIFT_TRIGGER:
            last_drift = execution.started
        if succeeded is None and execution.status == SUCCEEDED:
            succeeded = execution
        if succeeded is not None and (last_drift is not None or not trigger.is_drift):
            break
    last_trained = pipeline.trained_on(succeeded) if succeeded else None
    ref = newest.ref if newest else None
    if not trigger.is_drift:
        return scheduled_run_decision(ref, last_trained, succeeded.arn if succeeded else None)
    cooldown = timedelta(hours=float(os.environ["RETRAIN_COOLDOWN_HOURS"]))
    return drift_run_decision(now, last_drift, cooldown, ref, last_trained)


def log_line(**fields: object) -> None:
    logger.info(json.dumps(fields, default=str))


def handle(event: dict, pipeline: Pipeline, now: datetime, request_id: str = "") -> dict:
    """One trigger: the run started, or why none was."""
    trigger = trigger_of(event)
    if trigger is None:
        outcome = {"started": False, "trigger": DRIFT_TRIGGER, "reason": "the alarm's new state is not ALARM"}
        log_line(**outcome)
        return outcome
    newest = pipeline.newest(trigger.dataset)
    group = (trigger.parameters.get("ModelPackageGroupName")
             or (newest.parameters.get("ModelPackageGroupName") if newest else None) or pipeline.group)
    if group != pipeline.group:
        decision = Decision(False, f"{newest.ref} registers into group {group}; this function retrains "
                                   f"{pipeline.group} (name the group in the schedule's parameters)")
    else:
        decision = decide(trigger, pipeline, newest, now)
    outcome: dict[str, object] = {"started": decision.start, "trigger": trigger.name, "dataset": trigger.dataset,
                                  "data": newest.ref if newest else None, "reason": decision.reason}
    if decision.start:
        token = hashlib.sha256(f"{trigger.name}|{newest.ref}|{request_id or now.isoformat()}".encode()).hexdigest()
        outcome["execution"] = pipeline.start(trigger, newest, decision.reason, token, now)
    log_line(**outcome)
    return outcome


def handler(event: dict, context: Any, clients: dict[str, Any] | None = None,
            now: datetime | None = None) -> dict:
    return handle(event, Pipeline(clients or {}), now or datetime.now(UTC),
                  getattr(context, "aws_request_id", "") or "")
