"""The automation stack on moto: approvals reach dev only, through an SQS queue the redeploy function reads as
Lambda's event source mapping does; a busy stack's message is retried until the stack is free and lands in the
dead-letter queue after the queue's receive limit; the redeploy keeps the drift baseline with the model and refuses
a version whose features or classes differ from the API's.
The smoke test: test_aws_smoke_test.py; roles: test_aws_role_escalation.py.

moto's gaps are closed by patching moto, each documented: change sets (tests/moto_cloudformation.py),
UpdateModelPackage (tests/moto_sagemaker.py), scheduled rules (moto sends every event put to a rule without an
event pattern, such as the drift function's schedule; EventBridge sends a scheduled rule only its schedule's
events), and the event source mapping: moto hands a message to the function
once, when it is sent, and ignores ``batchItemFailures``; the test detaches that and polls the queue as Lambda's
poller does (receive a batch of the mapping's size, invoke, delete the messages not reported failed), with the
queue's visibility timeout set to 0 so that a failed message is received again at once. Every request sent
through boto3 during a test is checked with botocore's ParamValidator against the service model.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from automation_versions import IRIS_CLASSES, IRIS_FEATURES, register
from aws_stage import Stage, scheduled_rules_take_no_events, validated_requests  # noqa: F401  (fixtures)
from deployer_account import ACCOUNT, BUCKET, NAMES, REGION, cli_error, cli_json
from moto.cloudformation.models import cloudformation_backends
from moto.sqs.models import sqs_backends
from moto_cloudformation import cloudformation_like_aws  # noqa: F401  (a fixture)
from moto_sagemaker import approve_and_announce as approve
from moto_sagemaker import model_packages_like_sagemaker  # noqa: F401  (a fixture)

from deploy.aws.deployer import deploy_stack
from deploy.aws.lambda_zip import lambda_zips
from deploy.aws.names import ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.stacks import synthesize
from deploy.aws.templates.automation import MAX_RECEIVE_COUNT, RETRY_WINDOW_SECONDS, VISIBILITY_TIMEOUT_SECONDS
from deploy.aws.templates.endpoint import MAX_DEPLOYMENT_SECONDS

pytestmark = [
    pytest.mark.usefixtures("validated_requests", "scheduled_rules_take_no_events", "aws",
                            "cloudformation_like_aws", "model_packages_like_sagemaker"),
    pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto"),
]


# --- the stage on moto --------------------------------------------------------------------------------------------


def moto_stack(name: str) -> object:
    return next(stack for stack in cloudformation_backends[ACCOUNT][REGION].stacks.values()
                if stack.name == name and stack.status != "DELETE_COMPLETE")


def parameters(stack_name: str) -> dict[str, str]:
    stack = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    return {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}


def function_module(module: str, function_name: str, directory: Path, monkeypatch: pytest.MonkeyPatch):
    """A function's module as deployed: imported from the zip CloudFormation gave it, with its environment."""
    functions = boto3.client("lambda")
    configuration = functions.get_function_configuration(FunctionName=function_name)
    (package,) = [p for p in lambda_zips() if p.name == "automation"]
    data = boto3.client("s3").get_object(Bucket=BUCKET, Key=package.key)["Body"].read()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(directory)
    for name, value in configuration["Environment"]["Variables"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(directory))
    monkeypatch.delitem(sys.modules, module, raising=False)
    return importlib.import_module(module)


@pytest.fixture
def stage(home, monkeypatch, capsys, tmp_path) -> Stage:
    """dev deployed by `cloudviz deploy aws` serving version 1 (iris); the queue polled by the test only."""
    monkeypatch.setenv("CLOUDVIZ_BUCKET", BUCKET)
    monkeypatch.delenv("CLOUDVIZ_ALARM_EMAIL", raising=False)
    v1, _ = register("Approved")
    cli_json(capsys, "deploy", "aws", "--stage", "dev")
    queue = sqs_backends[ACCOUNT][REGION].queues[NAMES.redeploy_queue_name]
    assert queue.lambda_event_source_mappings  # the stack's mapping, which moto would push to on send
    queue.lambda_event_source_mappings.clear()
    sqs = boto3.client("sqs")
    sqs.set_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=NAMES.redeploy_queue_name)["QueueUrl"],
                             Attributes={"VisibilityTimeout": "0"})
    module = function_module("redeploy", NAMES.redeploy_function, tmp_path / "automation", monkeypatch)
    return Stage(NAMES, module.handler, v1)


def alarm_topic_messages() -> Callable[[], list[str]]:
    """What the alarm topic publishes from now on, through an SQS subscription."""
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    url = sqs.create_queue(QueueName="alarm-topic-reader")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:{NAMES.topic_name}"
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})

    def read() -> list[str]:
        return [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])]

    return read


# --- approvals deploy dev only ----------------------------------------------------------------------------------

def test_the_approval_rule_is_in_dev_only():
    settings = AwsSettings(artifact_bucket=BUCKET)
    for stage, rule in (("dev", True), ("prod", False)):
        (automation,) = [spec for spec in synthesize(stage, settings) if spec.name.endswith("-automation")]
        rules = {body["Properties"]["Name"] for body in automation.template["Resources"].values()
                 if body["Type"] == "AWS::Events::Rule"}
        assert (ResourceNames(stage).approval_rule_name in rules) is rule, stage


def test_an_approval_reaches_the_dev_queue_only(stage):
    # prod serving version 1, as a promotion leaves it (its stacks, deployed as `cloudviz deploy aws` does).
    settings = AwsSettings(region=REGION, account_id=ACCOUNT, artifact_bucket=BUCKET, model_package_arn=stage.v1)
    cloudformation, s3 = boto3.client("cloudformation"), boto3.client("s3")
    for spec in synthesize("prod", settings):
        assert deploy_stack(cloudformation, s3, spec, BUCKET, False, poll_seconds=0).status == "created"
    prod = ResourceNames("prod")
    v2, _ = register("PendingManualApproval", run="run2")
    approve(v2)
    assert stage.waiting(NAMES.redeploy_queue_name) == 1
    assert not [queue for queue in sqs_backends[ACCOUNT][REGION].queues if queue.startswith(prod.prefix)]  # none
    assert stage.poll() == {"batchItemFailures": []}
    assert parameters(NAMES.endpoint_stack)["ModelVersion"] == "2"
    assert parameters(prod.endpoint_stack)["ModelVersion"] == "1"


# --- a busy stack: retried, not lost ----------------------------------------------------------------------------

def test_a_busy_stack_is_retried_until_it_is_free_and_the_baseline_follows(stage, caplog, validated_requests):  # noqa: F811
    caplog.set_level(logging.INFO)
    v2, baseline = register("PendingManualApproval", run="run2")
    approve(v2)
    endpoint = moto_stack(NAMES.endpoint_stack)
    endpoint.status = "UPDATE_IN_PROGRESS"  # e.g. a blue/green update still baking
    for attempt in (1, 2):
        result = stage.poll()
        assert len(result["batchItemFailures"]) == 1, attempt
        assert stage.waiting(NAMES.redeploy_queue_name) == 1
    busy = f"stack {NAMES.endpoint_stack} is UPDATE_IN_PROGRESS; version 2 will be retried"
    assert [record.getMessage() for record in caplog.records].count(busy) == 2
    assert parameters(NAMES.endpoint_stack)["ModelVersion"] == "1"
    endpoint.status = "UPDATE_COMPLETE"
    before = len(validated_requests)
    assert stage.poll() == {"batchItemFailures": []}
    assert validated_requests[before:].count("UpdateStack") == 2  # the function's (endpoint, monitoring), validated
    assert stage.waiting(NAMES.redeploy_queue_name) == 0
    served = parameters(NAMES.endpoint_stack)
    assert (served["ModelPackageArn"], served["ModelVersion"]) == (v2, "2")
    # The schema GET /model describes v2 from: the endpoint configuration's cloudviz:data-schema tag.
    assert served["DataSchemaUri"] == f"s3://{BUCKET}/cloudviz/executions/run2/Preprocess/schema/schema.json"
    assert parameters(NAMES.monitoring_stack)["BaselineStatisticsUri"] == baseline
    drift = boto3.client("lambda").get_function_configuration(FunctionName=NAMES.drift_function)
    assert drift["Environment"]["Variables"]["BASELINE_STATISTICS_URI"] == baseline
    role = boto3.client("cloudformation").describe_stacks(StackName=NAMES.endpoint_stack)["Stacks"][0]["RoleARN"]
    assert role == f"arn:aws:iam::{ACCOUNT}:role/{NAMES.endpoint_deploy_role_name}"
    # The same approval again, and an older one: nothing to do, and the log says why.
    approve(v2)
    approve(stage.v1)
    assert stage.poll() == stage.poll() == {"batchItemFailures": []}
    messages = [record.getMessage() for record in caplog.records]
    assert "nothing to do: version 2 is already deployed" in messages
    assert "nothing to do: version 1 is older than the deployed version 2" in messages


def test_a_message_busy_for_the_whole_retry_window_goes_to_the_dead_letter_queue(stage):
    v2, _ = register("PendingManualApproval", run="run2")
    approve(v2)
    moto_stack(NAMES.monitoring_stack).status = "UPDATE_ROLLBACK_IN_PROGRESS"
    for _ in range(MAX_RECEIVE_COUNT):
        assert len(stage.poll()["batchItemFailures"]) == 1
    assert stage.poll() is None  # the next receive moved it to the dead-letter queue
    assert stage.waiting(NAMES.redeploy_queue_name) == 0
    url = stage.queue_url(NAMES.redeploy_dead_letter_queue_name)
    (dead,) = boto3.client("sqs").receive_message(QueueUrl=url)["Messages"]
    assert json.loads(dead["Body"])["detail"]["ModelPackageArn"] == v2
    assert parameters(NAMES.endpoint_stack)["ModelVersion"] == "1"


def test_the_retry_window_covers_a_blue_green_update_and_its_rollback():
    assert RETRY_WINDOW_SECONDS >= 2 * MAX_DEPLOYMENT_SECONDS
    assert MAX_RECEIVE_COUNT * VISIBILITY_TIMEOUT_SECONDS == RETRY_WINDOW_SECONDS
    (automation,) = [spec for spec in synthesize("dev", AwsSettings(artifact_bucket=BUCKET))
                     if spec.name == NAMES.automation_stack]
    resources = automation.template["Resources"]
    function_timeout = resources["RedeployFunction"]["Properties"]["Timeout"]
    assert 6 * function_timeout <= VISIBILITY_TIMEOUT_SECONDS  # what AWS asks of a queue a function reads
    queue = resources["RedeployQueue"]["Properties"]
    assert queue["MessageRetentionPeriod"] > RETRY_WINDOW_SECONDS and queue["SqsManagedSseEnabled"] is True
    alarm = resources["RedeployDeadLetterAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "ApproximateNumberOfMessagesVisible", 0, "GreaterThanThreshold")
    assert alarm["AlarmActions"] == [{"Fn::Sub": f"arn:${{AWS::Partition}}:sns:${{AWS::Region}}:"
                                                 f"${{AWS::AccountId}}:{NAMES.topic_name}"}]
    (statement,) = resources["RedeployQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["ApprovalRule", "Arn"]}}}


# --- the API's features and classes -------------------------------------------------------------------------------

def test_a_version_with_other_features_is_refused_and_said_on_the_alarm_topic(stage, caplog, validated_requests):  # noqa: F811
    published = alarm_topic_messages()
    v2, _ = register("PendingManualApproval", features=["a", "b"], run="run2")
    approve(v2)
    before = len(validated_requests)
    assert stage.poll() == {"batchItemFailures": []}  # refused for good: not retried
    assert "Publish" in validated_requests[before:] and "UpdateStack" not in validated_requests[before:]
    assert stage.waiting(NAMES.redeploy_queue_name) == 0
    assert parameters(NAMES.endpoint_stack)["ModelVersion"] == "1"
    (message,) = published()
    assert message == (f"version 2 is a multiclass model with features a,b and classes {','.join(IRIS_CLASSES)}; "
                       f"the {NAMES.api_stack} API serves a multiclass model with features {','.join(IRIS_FEATURES)} "
                       f"and classes {','.join(IRIS_CLASSES)}, which its consumers depend on. Deploy it with "
                       "`cloudviz deploy aws`.")
    # `cloudviz deploy aws` is the way: it gives the API the package's features.
    api = parameters(NAMES.api_stack)
    assert (api["FeatureNames"], api["ClassNames"]) == (",".join(IRIS_FEATURES), ",".join(IRIS_CLASSES))


def test_deploy_aws_gives_the_api_the_packages_features_and_classes(home, monkeypatch, capsys):
    monkeypatch.setenv("CLOUDVIZ_BUCKET", BUCKET)
    register("Approved", features=["petal", "sepal"], classes=["small", "large"])
    document = cli_json(capsys, "deploy", "aws", "--stage", "dev")
    assert document["stacks"][1]["status"] == "created"
    api = parameters(NAMES.api_stack)
    assert (api["FeatureNames"], api["ClassNames"]) == ("petal,sepal", "small,large")
    inference = boto3.client("lambda").get_function_configuration(FunctionName=NAMES.inference_function)
    variables = inference["Environment"]["Variables"]
    assert (variables["FEATURE_NAMES"], variables["CLASS_NAMES"], variables["FEATURE_ALIASES"]) == (
        "petal,sepal", "small,large", "")


def test_a_version_of_another_task_is_refused_and_said_on_the_alarm_topic(stage):
    """Same features, but a value instead of a class: the API's consumers would get another answer's shape."""
    published = alarm_topic_messages()
    v2, _ = register("PendingManualApproval", classes=[], run="run2", task="regression")
    approve(v2)
    assert stage.poll() == {"batchItemFailures": []}  # refused for good: not retried
    assert stage.waiting(NAMES.redeploy_queue_name) == 0
    assert parameters(NAMES.endpoint_stack)["ModelVersion"] == "1"
    assert parameters(NAMES.api_stack)["ModelTask"] == "multiclass"  # version 1's schema has no task: multiclass
    (message,) = published()
    assert message.startswith(f"version 2 is a regression model with features {','.join(IRIS_FEATURES)} and "
                              f"classes (none); the {NAMES.api_stack} API serves a multiclass model with "), message
    # The same contract, its task now recorded (a schema without one is a multiclass model's): redeployed.
    v3, _ = register("PendingManualApproval", run="run3", task="multiclass")
    approve(v3)
    assert stage.poll()["batchItemFailures"] == [] and parameters(NAMES.endpoint_stack)["ModelVersion"] == "3"


def test_deploy_aws_gives_the_api_a_regression_packages_task_and_no_classes(home, monkeypatch, capsys):
    monkeypatch.setenv("CLOUDVIZ_BUCKET", BUCKET)
    register("Approved", features=["rooms", "age"], classes=[], task="regression")
    document = cli_json(capsys, "deploy", "aws", "--stage", "dev")
    assert document["stacks"][1]["status"] == "created"
    api = parameters(NAMES.api_stack)
    assert (api["ModelTask"], api["FeatureNames"], api["ClassNames"]) == ("regression", "rooms,age", "")
    inference = boto3.client("lambda").get_function_configuration(FunctionName=NAMES.inference_function)
    variables = inference["Environment"]["Variables"]
    assert (variables["MODEL_TASK"], variables["FEATURE_NAMES"], variables.get("CLASS_NAMES", "")) == (
        "regression", "rooms,age", "")
    # The smoke test reads no classes of a regression API: it gets as far as the key, which moto's CloudFormation
    # leaves empty here (tests/promotion_account.py completes it to call the API end to end).
    assert document["smoke_test"]["detail"] == f"stack {NAMES.api_stack} has no ApiKeyId"


@pytest.mark.parametrize(("task", "classes", "error"), [
    ("regression", ["low", "high"], "task regression needs no classes, its classes are low,high"),
    ("binary", ["a", "b", "c"], "task binary needs 2 classes, its classes are a,b,c"),
    ("multiclass", [], "task multiclass needs classes, its classes are (none)"),
    ("ranking", ["a", "b"], "task 'ranking' is none of multiclass, binary, regression"),
])
def test_deploy_aws_refuses_a_schema_whose_classes_do_not_fit_its_task(task, classes, error, home, monkeypatch,
                                                                        capsys):
    monkeypatch.setenv("CLOUDVIZ_BUCKET", BUCKET)
    register("Approved", classes=classes, task=task)
    *progress, last = cli_error(capsys, "deploy", "aws", "--stage", "dev").strip().splitlines()
    assert last.endswith(f"/schema.json: the data schema's {error}"), last
    assert not [line for line in progress if "Traceback" in line or "error" in line.lower()], progress
    assert not boto3.client("cloudformation").list_stacks()["StackSummaries"]  # refused before any stack
