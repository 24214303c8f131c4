"""Scheduled and drift-triggered retraining on AWS: the automation stack's retrain function, its schedules (one per
definition of the stage, from ``cloudviz.schedules.json``) and its drift rule, cfn-lint clean for every mix; and
the function itself against moto, with the data set versions written by ``pipelines.data`` and every request it
sends validated by botocore's service model. Its role grants exactly the actions it calls."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.validate import ParamValidator
from cfnlint.api import lint
from deployer_account import BUCKET, REGION
from template_stacks import SETTINGS, STAGES
from test_aws_templates import JUSTIFIED_WARNINGS, LINT_REGIONS

from deploy.aws.functions import retrain
from deploy.aws.names import ResourceNames
from deploy.aws.stacks import synthesize
from deploy.aws.templates.automation import FEATURE_DRIFT_RULE
from pipelines.data.versions import s3_dataset_store
from pipelines.definition import DEFAULT_GROUP, PIPELINE_NAME
from pipelines.errors import UserError
from pipelines.scheduling.definitions import ScheduleDefinition

NIGHTLY = ScheduleDefinition("nightly", "0 3 * * *", "iris", {"Eta": "0.2"}, False, ("dev", "prod"))
WEEKLY = ScheduleDefinition("weekly_churn", "30 4 * * MON", "churn", {}, True, ("dev",))
PREFIX = "cloudviz"
IRIS_HEADER = "x1,x2,x3,x4,species\n"


def automation(stage: str, schedules: tuple[ScheduleDefinition, ...] = (), drift: bool = False,
               group: str = DEFAULT_GROUP) -> dict:
    settings = replace(SETTINGS, schedules=schedules, retrain_on_drift=drift)
    return synthesize(stage, settings, group=group)[3].template


def of_type(template: dict, kind: str) -> dict[str, dict]:
    return {key: body["Properties"] for key, body in template["Resources"].items() if body["Type"] == kind}


# --- templates -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("schedules", [(), (NIGHTLY,), (NIGHTLY, replace(WEEKLY, stages=("dev", "prod")))])
@pytest.mark.parametrize("drift", [False, True])
def test_the_automation_template_passes_cfn_lint_with_any_schedules_and_drift(stage, schedules, drift):
    findings = [match for match in lint(json.dumps(automation(stage, schedules, drift)), regions=LINT_REGIONS)
                if match.rule.id not in JUSTIFIED_WARNINGS]
    assert findings == [], "\n".join(str(match) for match in findings)


def test_each_definition_of_the_stage_is_a_schedule_invoking_the_retrain_function():
    names = ResourceNames("dev")
    template = automation("dev", (NIGHTLY, WEEKLY, replace(NIGHTLY, name="prod-only", stages=("prod",))))
    schedules = of_type(template, "AWS::Scheduler::Schedule")
    assert set(schedules) == {"RetrainSchedule", "ScheduleNightly", "ScheduleWeeklyChurn"}
    nightly, weekly = schedules["ScheduleNightly"], schedules["ScheduleWeeklyChurn"]
    assert (nightly["Name"], nightly["ScheduleExpression"], nightly["State"]) == (
        f"{names.prefix}-retrain-nightly", "cron(0 3 * * ? *)", "ENABLED")
    assert (weekly["ScheduleExpression"], weekly["State"]) == ("cron(30 4 ? * 2 *)", "DISABLED")  # paused
    assert json.loads(nightly["Target"]["Input"]) == {"schedule": "nightly", "dataset": "iris",
                                                      "parameters": {"Eta": "0.2"}}
    for schedule in schedules.values():
        assert schedule["Target"]["Arn"] == {"Fn::GetAtt": ["RetrainFunction", "Arn"]}
        assert schedule["Target"]["RoleArn"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    (scheduler,) = template["Resources"]["SchedulerRole"]["Properties"]["Policies"]
    assert scheduler["PolicyDocument"]["Statement"] == [{
        "Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Sid": "InvokeTheRetrainFunction",
        "Resource": [{"Fn::GetAtt": ["RetrainFunction", "Arn"]}]}]
    # The legacy retrain_schedule: the same schedule as before, now through the function on the group's data set.
    legacy = schedules["RetrainSchedule"]
    assert (legacy["Name"], legacy["State"]) == (names.schedule_name, {"Ref": "ScheduleState"})
    assert json.loads(legacy["Target"]["Input"]["Fn::Sub"])["dataset"] == "iris"
    assert "DriftRetrainRule" not in template["Resources"]  # off unless the stage enables it


def test_a_schedule_goes_to_the_stacks_of_the_group_it_names_only():
    churn = replace(NIGHTLY, name="churn", dataset="churn", parameters={"ModelPackageGroupName": "Churn"})
    assert "ScheduleChurn" not in automation("dev", (NIGHTLY, churn))["Resources"]
    resources = automation("dev", (NIGHTLY, churn), group="Churn")["Resources"]
    assert "ScheduleChurn" in resources and "ScheduleNightly" not in resources
    assert resources["RetrainFunction"]["Properties"]["Environment"]["Variables"]["DRIFT_DATASET"] == "churn"


def test_a_schedule_whose_names_aws_would_refuse_is_named():
    with pytest.raises(UserError, match="schedule 'x{40}': its EventBridge Scheduler schedule .* over AWS's limit"):
        automation("dev", (replace(NIGHTLY, name="x" * 40, parameters={"ModelPackageGroupName": "Customer-Churn"}),),
                   group="Customer-Churn")
    twins = (replace(NIGHTLY, name="a-b"), replace(NIGHTLY, name="a_b"))
    with pytest.raises(UserError, match="schedule 'a_b': its resource ScheduleAB is another schedule's too"):
        automation("dev", twins)


def test_drift_retraining_is_a_rule_on_the_feature_drift_alarm_going_to_alarm():
    names = ResourceNames("prod")
    template = automation("prod", drift=True)
    rule = template["Resources"]["DriftRetrainRule"]["Properties"]
    alarm = names.alarm_name(FEATURE_DRIFT_RULE.name)
    assert (rule["Name"], alarm) == (names.drift_retrain_rule_name, "cloudviz-prod-feature-drift")
    assert rule["EventPattern"] == {
        "source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
        "resources": [{"Fn::Sub": f"arn:${{AWS::Partition}}:cloudwatch:${{AWS::Region}}:${{AWS::AccountId}}:alarm:"
                                  f"{alarm}"}],
        "detail": {"state": {"value": ["ALARM"]}}}
    assert rule["Targets"] == [{"Id": "retrain", "Arn": {"Fn::GetAtt": ["RetrainFunction", "Arn"]}}]
    permission = template["Resources"]["DriftRetrainRulePermission"]["Properties"]
    assert permission["SourceArn"] == {"Fn::GetAtt": ["DriftRetrainRule", "Arn"]}
    environment = template["Resources"]["RetrainFunction"]["Properties"]["Environment"]["Variables"]
    assert environment["RETRAIN_COOLDOWN_HOURS"] == "24"


def test_the_retrain_function_logs_with_retention_and_reports_failures_on_the_alarm_topic():
    names = ResourceNames("prod")
    resources = automation("prod")["Resources"]
    assert resources["RetrainLogGroup"]["Properties"] == {"LogGroupName": names.retrain_log_group,
                                                          "RetentionInDays": {"Ref": "LogRetentionDays"}}
    destination = resources["RetrainInvokeConfig"]["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
    assert destination["Fn::Sub"].endswith(f":sns:${{AWS::Region}}:${{AWS::AccountId}}:{names.topic_name}")


# --- the function against moto ---------------------------------------------------------------------------------

# The IAM action each request the function sends needs (S3's ListObjectsV2 is authorized as s3:ListBucket).
IAM_ACTIONS = {"ListObjectsV2": "s3:ListBucket", "GetObject": "s3:GetObject"}


class Account:
    """moto's account with the pipeline, the registry group and the data sets; the function's clients, whose every
    request is validated against its service model and recorded."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cooldown_hours: int = 24) -> None:
        self.tmp_path = tmp_path
        self.sent: list[str] = []
        self.errors: list[str] = []
        session = boto3.Session(region_name=REGION)
        session.events.register("before-parameter-build", self.validate)
        self.clients = {"sagemaker": session.client("sagemaker"), "s3": session.client("s3")}
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sagemaker.create_pipeline(
            PipelineName=PIPELINE_NAME, RoleArn="arn:aws:iam::123456789012:role/cloudviz-sagemaker",
            PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}))
        self.sagemaker.create_model_package_group(ModelPackageGroupName=DEFAULT_GROUP)
        self.store = s3_dataset_store(self.s3, BUCKET, PREFIX)
        for name, value in {"PIPELINE_NAME": PIPELINE_NAME, "MODEL_PACKAGE_GROUP": DEFAULT_GROUP,
                            "ARTIFACT_BUCKET": BUCKET, "ARTIFACT_PREFIX": PREFIX, "STAGE": "dev",
                            "DRIFT_DATASET": "iris", "RETRAIN_COOLDOWN_HOURS": str(cooldown_hours)}.items():
            monkeypatch.setenv(name, value)

    def validate(self, params: dict, model: object, **_: object) -> None:
        self.sent.append(model.name)
        report = ParamValidator().validate(params, model.input_shape)
        if report.has_errors():
            self.errors.append(f"{model.name}: {report.generate_report()}")

    def add_rows(self, rows: list[str]) -> str:
        path = self.tmp_path / f"rows-{len(self.store.versions('iris'))}.csv"
        path.write_text(IRIS_HEADER + "".join(f"{row}\n" for row in rows))
        return self.store.add("iris", path).ref

    def approve(self, model_data: str, data_schema: str | None = None) -> None:
        metadata = {"CustomerMetadataProperties": {"DataSchema": data_schema}} if data_schema else {}
        self.sagemaker.create_model_package(
            ModelPackageGroupName=DEFAULT_GROUP, ModelApprovalStatus="Approved", **metadata,
            InferenceSpecification={"Containers": [{"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/xgb:1",
                                                    "ModelDataUrl": model_data}],
                                    "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]})

    def run(self, event: dict, now: datetime | None = None) -> dict:
        return retrain.handler(event, None, self.clients, now)

    def executions(self) -> list[dict]:
        return self.sagemaker.list_pipeline_executions(PipelineName=PIPELINE_NAME)["PipelineExecutionSummaries"]

    def parameters(self, arn: str) -> dict[str, str]:
        found = self.sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
        return {item["Name"]: item["Value"] for item in found}


@pytest.fixture
def account(aws, tmp_path, monkeypatch) -> Account:
    return Account(tmp_path, monkeypatch)


SCHEDULE = {"schedule": "nightly", "dataset": "iris", "parameters": {"Eta": "0.2"}}
DRIFT = {"source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change",
         "detail": {"alarmName": "cloudviz-dev-feature-drift", "state": {"value": "ALARM"}}}


def test_a_schedule_with_a_new_data_version_starts_one_run_with_it_and_the_champion(account, caplog):
    ref = account.add_rows(["5.1,3.5,1.4,0.2,setosa"])
    version = account.store.resolve(ref)
    account.approve("s3://models/champion/model.tar.gz", "s3://models/champion/schema.json")
    outcome = account.run(SCHEDULE)
    assert outcome["started"] and ref == "iris@2"  # iris@1 is the bundled data, iris@2 adds the row
    (execution,) = account.executions()
    assert execution["PipelineExecutionArn"] == outcome["execution"]
    assert execution["PipelineExecutionDescription"].startswith(
        f"cloudviz-retrain trigger=schedule:nightly group={DEFAULT_GROUP} data=iris@2 stage=dev: ")
    parameters = account.parameters(outcome["execution"])
    assert parameters == {**version.parameters, "Eta": "0.2", "InputData": version.manifest_uri,
                          "InputDataType": "ManifestFile", "DataSetVersion": "iris@2",
                          "ChampionModelData": "s3://models/champion/model.tar.gz",
                          "ChampionDataSchema": "s3://models/champion/schema.json",
                          "ModelPackageGroupName": DEFAULT_GROUP}
    assert version.manifest_uri.startswith(f"s3://{BUCKET}/{PREFIX}/datasets/iris/")
    assert json.loads(caplog.records[-1].getMessage())["started"] is True
    assert account.errors == []


def test_a_schedule_without_a_new_data_version_skips_and_starts_nothing(account, caplog):
    account.add_rows(["5.1,3.5,1.4,0.2,setosa"])
    first = account.run(SCHEDULE)["execution"]  # moto's executions succeed at once
    outcome = account.run(SCHEDULE)
    assert not outcome["started"] and len(account.executions()) == 1
    assert outcome["reason"] == f"no new data version since run {first}: iris@2"
    assert json.loads(caplog.records[-1].getMessage()) == {
        "started": False, "trigger": "schedule:nightly", "dataset": "iris", "data": "iris@2",
        "reason": outcome["reason"]}
    # Another schedule has its own last run; a new version starts this one again, without a champion.
    assert account.run({**SCHEDULE, "schedule": "weekly"})["started"]
    account.add_rows(["6.3,3.3,6.0,2.5,virginica"])
    again = account.run(SCHEDULE)
    started = account.parameters(again["execution"])
    assert again["started"] and started["ChampionModelData"] == started["ChampionDataSchema"] == (
        f"s3://{BUCKET}/{PREFIX}/cloudviz/no-champion/README.json")
    assert account.errors == []


def test_a_run_still_executing_is_not_started_twice(account):
    from moto.sagemaker.models import sagemaker_backends

    account.add_rows(["5.1,3.5,1.4,0.2,setosa"])
    arn = account.run(SCHEDULE)["execution"]
    pipeline = sagemaker_backends["123456789012"][REGION].pipelines[PIPELINE_NAME]
    pipeline.pipeline_executions[arn].pipeline_execution_status = "Executing"
    account.add_rows(["6.3,3.3,6.0,2.5,virginica"])
    outcome = account.run(SCHEDULE)
    assert not outcome["started"] and outcome["reason"] == f"a run of schedule:nightly is still executing: {arn}"


def test_a_data_set_without_a_version_skips(account):
    outcome = account.run({"schedule": "churn", "dataset": "churn", "parameters": {}})
    assert not outcome["started"] and "no version" in outcome["reason"] and account.executions() == []


def test_drift_starts_once_within_its_cooldown_and_again_only_when_the_data_grew(account):
    now = datetime.now(UTC)
    account.add_rows(["5.1,3.5,1.4,0.2,setosa"])
    assert account.run(DRIFT, now)["started"]
    account.add_rows(["6.3,3.3,6.0,2.5,virginica"])
    within = account.run(DRIFT, now + timedelta(hours=23))
    assert not within["started"] and within["reason"].startswith("cool-down: ")
    assert len(account.executions()) == 1
    after = now + timedelta(hours=25)
    assert account.run(DRIFT, after)["started"]  # iris@3 is newer than the run's iris@2
    assert account.run(DRIFT, after + timedelta(hours=25))["reason"].startswith("the labelled data has not grown")
    back_to_ok = {**DRIFT, "detail": {**DRIFT["detail"], "state": {"value": "OK"}}}
    assert not account.run(back_to_ok, after + timedelta(days=9))["started"]
    assert len(account.executions()) == 2 and account.errors == []


def test_drift_does_not_retrain_data_a_schedule_already_trained_on(account):
    account.add_rows(["5.1,3.5,1.4,0.2,setosa"])
    assert account.run(SCHEDULE)["started"]
    outcome = account.run(DRIFT)
    assert not outcome["started"] and outcome["reason"].startswith("the labelled data has not grown")


def test_a_data_set_of_another_group_is_not_retrained_into_this_one(account):
    path = account.tmp_path / "churn.csv"
    path.write_text("tenure,charges,churned\n1,20.5,yes\n30,80.1,no\n")
    account.store.add("churn", path, label_column="churned", group="Churn")
    outcome = account.run({"schedule": "churn", "dataset": "churn", "parameters": {}})
    assert not outcome["started"] and "registers into group Churn" in outcome["reason"]


def test_the_role_grants_exactly_what_the_function_calls(account):
    account.add_rows(["5.1,3.5,1.4,0.2,setosa"])
    account.approve("s3://models/champion/model.tar.gz")
    account.run(SCHEDULE)
    account.run(SCHEDULE)  # reads the last run's parameters
    called = {IAM_ACTIONS.get(operation, f"sagemaker:{operation}") for operation in account.sent}
    role = automation("dev")["Resources"]["RetrainRole"]["Properties"]
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    granted = {action for statement in statements for action in statement["Action"]
               if statement["Sid"] not in ("OwnLogGroup", "Tracing", "ReportFailures")}  # the runtime's, destination
    assert called == granted
    by_sid = {statement["Sid"]: statement for statement in statements}
    assert by_sid["ReadAndStartThePipeline"]["Resource"] == [{"Fn::Sub": (
        f"arn:${{AWS::Partition}}:sagemaker:${{AWS::Region}}:${{AWS::AccountId}}:pipeline/{PIPELINE_NAME.lower()}")}]
    assert by_sid["ListDataSets"]["Condition"] == {"StringLike": {"s3:prefix": [f"{PREFIX}/datasets/*"]}}
    assert by_sid["ReadDataSets"]["Resource"] == [
        {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::${{ArtifactBucket}}/{PREFIX}/datasets/*"}]
    assert account.errors == []


def test_the_stage_settings_turn_drift_retraining_on_and_a_bad_cooldown_is_named(tmp_path):
    from deploy.aws.stage_config import load_stage_configs, with_schedules

    path = tmp_path / "cloudviz.toml"
    path.write_text("[stages.prod]\nretrain_on_drift = true\nretrain_cooldown_hours = 6\n")
    schedules = tmp_path / "cloudviz.schedules.json"
    schedules.write_text(json.dumps({"schedules": {"nightly": {"cron": "0 3 * * *", "stages": ["prod"]}}}))
    config = with_schedules(load_stage_configs(path)["prod"], schedules)
    template = synthesize("prod", replace(SETTINGS, **config.retraining_settings()))[3].template
    assert {"DriftRetrainRule", "ScheduleNightly"} <= set(template["Resources"])
    assert template["Resources"]["RetrainFunction"]["Properties"]["Environment"]["Variables"][
        "RETRAIN_COOLDOWN_HOURS"] == "6"
    path.write_text("[stages.prod]\nretrain_cooldown_hours = 0\n")
    with pytest.raises(UserError, match=r"\[stages.prod\] retrain_cooldown_hours: 0 must be from 1 to 8784 hours"):
        load_stage_configs(path)
    with pytest.raises(UserError, match="--schedules .*nowhere.json: no such file"):
        with_schedules(config, tmp_path / "nowhere.json")


@pytest.mark.parametrize(("header", "rows", "options", "objective"), [
    ("tenure,charges,churned\n", ["1,20.5,yes", "30,80.0,no", "12,45.0,no"], {"label_column": "churned"},
     "binary:logistic"),
    ("rooms,area,price\n", ["3,70.0,210000", "5,120.5,390000", "2,45.0,150000"],
     {"label_column": "price", "task": "regression"}, "reg:squarederror"),
])
def test_a_scheduled_run_trains_a_data_set_with_the_objective_its_task_needs(account, monkeypatch, header, rows,
                                                                             options, objective):
    """As a local run on the version does: a two-class or regression data set cannot train as multi:softprob."""
    monkeypatch.setenv("MODEL_PACKAGE_GROUP", "Own")  # the group's own automation stack
    path = account.tmp_path / "own.csv"
    path.write_text(header + "".join(f"{row}\n" for row in rows))
    version = account.store.add("own", path, group="Own", **options)
    account.sagemaker.create_model_package_group(ModelPackageGroupName="Own")
    outcome = account.run({"schedule": "nightly-own", "dataset": "own", "parameters": {}})
    assert outcome["started"], outcome
    parameters = account.parameters(outcome["execution"])
    assert (parameters["Objective"], parameters["ModelPackageGroupName"]) == (objective, "Own")
    assert parameters["LabelColumn"] == version.parameters["LabelColumn"]
    assert account.errors == []
