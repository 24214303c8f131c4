"""The automation stack on moto: approvals reach dev only, through an SQS queue the redeploy function reads as
Lambda's event source mapping does; a busy stack's message is retried until the stack is free and lands in the
dead-letter queue after the queue's receive limit; the redeploy keeps the drift baseline with the model and refuses
a version whose features or classes differ from the API's; the smoke test calls a real API on 127.0.0.1 and records
its result on the model package; no role can modify itself or a role that can become it.

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

import http.server
import importlib
import io
import json
import logging
import re
import shutil
import sys
import threading
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from aws_stage import Stage, scheduled_rules_take_no_events, validated_requests  # noqa: F401  (fixtures)
from moto.cloudformation.models import cloudformation_backends
from moto.sqs.models import sqs_backends
from moto_cloudformation import cloudformation_like_aws  # noqa: F401  (a fixture)
from moto_sagemaker import approve_and_announce as approve
from moto_sagemaker import model_packages_like_sagemaker  # noqa: F401  (a fixture)
from test_aws_deployer import ACCOUNT, BUCKET, NAMES, REGION, cli_error, cli_json
from test_aws_deployer import aws as moto_account  # noqa: F401  (the `aws` fixture)

from deploy.aws.deployer import deploy_stack
from deploy.aws.functions.smoke_test import (
    IRIS_EXAMPLE,
    SmokeTest,
    example_row,
    record_smoke_test,
    recorded_smoke_test,
    run_smoke_test,
)
from deploy.aws.lambda_zip import lambda_zips
from deploy.aws.names import ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.stacks import synthesize
from deploy.aws.templates.automation import MAX_RECEIVE_COUNT, RETRY_WINDOW_SECONDS, VISIBILITY_TIMEOUT_SECONDS
from deploy.aws.templates.endpoint import MAX_DEPLOYMENT_SECONDS
from deploy.local_service import LocalService
from pipelines.registry import ModelRegistry
from pipelines.state import StateHome

pytestmark = [
    pytest.mark.usefixtures("validated_requests", "scheduled_rules_take_no_events", "moto_account",
                            "cloudformation_like_aws", "model_packages_like_sagemaker"),
    pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto"),
]

IRIS_FEATURES = list(IRIS_EXAMPLE)
IRIS_CLASSES = ["setosa", "virginica", "versicolor"]
KEY = "k" * 32
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"


# --- the stage on moto --------------------------------------------------------------------------------------------

def put_json(key: str, document: dict) -> str:
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=json.dumps(document).encode())
    return f"s3://{BUCKET}/{key}"


def register(status: str, features: list[str] = IRIS_FEATURES, classes: list[str] = IRIS_CLASSES,
             run: str = "run1", task: str | None = None) -> tuple[str, str]:
    """A version registered as the pipeline registers it: its data schema and baseline statistics in S3. No
    ``task``: a schema as written before tasks were recorded (a multiclass model's)."""
    schema = put_json(f"cloudviz/executions/{run}/Preprocess/schema/schema.json",
                      {"feature_columns": features, "classes": classes, **({"task": task} if task else {})})
    statistics = {"features": {name: {"quantiles": {"p50": 1.5 + index}} for index, name in enumerate(features)}}
    baseline = put_json(f"cloudviz/executions/{run}/Preprocess/baseline/statistics.json", statistics)
    sagemaker = boto3.client("sagemaker")
    groups = sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"]
    if not groups:
        sagemaker.create_model_package_group(ModelPackageGroupName=NAMES.model_package_group)
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=NAMES.model_package_group, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": IMAGE}], "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]},
        ModelMetrics={"ModelDataQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": baseline}}},
        CustomerMetadataProperties={"DataSchema": schema},
    )["ModelPackageArn"]
    return arn, baseline


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
    # leaves empty here (tests/test_aws_promotion.py completes it to call the API end to end).
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


# --- the smoke test ------------------------------------------------------------------------------------------------

@pytest.fixture
def local_api(two_versions: Path, tmp_path: Path) -> Iterator[LocalService]:
    """The prediction API on 127.0.0.1: the serving handlers, the endpoint server and version 1 of the model."""
    root = tmp_path / "served"
    shutil.copytree(two_versions, root, symlinks=True)
    ModelRegistry(StateHome(root).registry_db).update_approval("CloudVizIris", 1, "Approved", "test")
    with LocalService(StateHome(root), "CloudVizIris", KEY).start() as service:
        yield service


def metadata_pattern_holds(value: str) -> bool:
    """SageMaker's pattern for a metadata value, ^([\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@]*)$, at most 256 characters."""
    return len(value) <= 256 and all(unicodedata.category(c)[0] in "LZN" or c in "_.:/=+-@" for c in value)


def test_the_smoke_test_passes_on_a_served_version_and_is_recorded(local_api):
    arn, _ = register("Approved")
    passed, detail = run_smoke_test(local_api.api.url, KEY, IRIS_EXAMPLE, classes=IRIS_CLASSES, version=1)
    assert passed and re.fullmatch(r"version 1 predicted virginica for the example; GET /predictions/\S+ read it back",
                                   detail), detail
    sagemaker = boto3.client("sagemaker")
    assert recorded_smoke_test(sagemaker, arn, "dev") is None
    record = record_smoke_test(sagemaker, arn, "dev", passed, detail)
    assert recorded_smoke_test(sagemaker, arn, "dev") == record == SmokeTest("dev", True, "", record.at)
    assert recorded_smoke_test(sagemaker, arn, "prod") is None
    properties = sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    assert properties["cloudviz:smoke-test:dev"] == "passed"
    assert properties["cloudviz:smoke-test-at:dev"] == record.at and record.at.endswith("Z")
    assert properties["DataSchema"].endswith("/schema.json")  # the registered properties are kept
    assert sagemaker.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == "Approved"


def test_the_smoke_test_fails_when_the_endpoint_answers_errors_and_is_recorded(local_api):
    arn, _ = register("Approved")
    sagemaker = boto3.client("sagemaker")
    record_smoke_test(sagemaker, arn, "dev", True, "")
    wrong_version = run_smoke_test(local_api.api.url, KEY, IRIS_EXAMPLE, classes=IRIS_CLASSES, version=2)
    assert wrong_version == (False, "POST /predictions was answered by model version 1, not 2")
    local_api.endpoint_server.close()  # the endpoint is down: the API answers an error
    passed, detail = run_smoke_test(local_api.api.url, KEY, IRIS_EXAMPLE, classes=IRIS_CLASSES, version=1)
    assert not passed and detail.startswith("POST /predictions answered 5"), detail
    record = record_smoke_test(sagemaker, arn, "dev", passed, f"{detail} (on {{'x1': 6.7}})")
    recorded = recorded_smoke_test(sagemaker, arn, "dev")
    assert recorded == record and not recorded.passed and recorded.detail.startswith("POST /predictions answered 5")
    value = sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"][
        "cloudviz:smoke-test:dev"]
    assert value.startswith("failed: POST /predictions answered 5") and metadata_pattern_holds(value)
    unreachable = run_smoke_test("http://127.0.0.1:9", KEY, IRIS_EXAMPLE)
    assert unreachable[0] is False and unreachable[1].startswith("the API could not be reached")


class SwitchingApi(http.server.ThreadingHTTPServer):
    """An API on 127.0.0.1 whose first ``old_answers`` POSTs are answered by version 1, the later ones by version
    2, as an inference function's version cache does for its TTL after an update; it counts the calls."""

    def __init__(self, old_answers: int, answer: dict | None = None) -> None:
        self.old_answers, self.posts, self.gets = old_answers, 0, 0
        self.answer = answer or {"prediction": 1, "label": "virginica"}  # what the model predicts
        self.stored: dict[str, dict] = {}
        super().__init__(("127.0.0.1", 0), SwitchingApiHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class SwitchingApiHandler(http.server.BaseHTTPRequestHandler):
    server: SwitchingApi

    def answer(self, document: dict) -> None:
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts += 1
        version = 1 if self.server.posts <= self.server.old_answers else 2
        prediction = {"id": f"p{self.server.posts}", **self.server.answer, "model_version": version}
        self.server.stored[prediction["id"]] = prediction
        self.answer(prediction)

    def do_GET(self) -> None:  # noqa: N802
        self.server.gets += 1
        self.answer(self.server.stored[self.path.rsplit("/", 1)[1]])

    def log_message(self, *args: object) -> None:
        return None


def test_an_answer_from_the_previous_version_is_asked_again_until_the_wait_is_over():
    """Right after an update the API may still name the previous version (its version cache): the smoke test asks
    again, every poll, for the wait it is given (the api stack's TTL and a margin), and fails only after it."""
    with SwitchingApi(old_answers=2) as api:
        passed, detail = run_smoke_test(api.url, KEY, IRIS_EXAMPLE, classes=IRIS_CLASSES, version=2,
                                        wait_seconds=600, poll_seconds=0)
        assert passed and re.fullmatch(r"version 2 predicted virginica for the example; "
                                       r"GET /predictions/\S+ read it back", detail), detail
        assert (api.posts, api.gets) == (3, 1)
    with SwitchingApi(old_answers=10**9) as api:  # the new version never answers: a failure once the wait is over
        assert run_smoke_test(api.url, KEY, IRIS_EXAMPLE, classes=IRIS_CLASSES, version=2, wait_seconds=0.2,
                              poll_seconds=0.01) == (
            False, "POST /predictions was answered by model version 1, not 2 (asked again for 0.2 s)")
        assert api.gets == 0
    with SwitchingApi(old_answers=2) as api:  # no wait: the first answer decides
        assert run_smoke_test(api.url, KEY, IRIS_EXAMPLE, classes=IRIS_CLASSES, version=2) == (
            False, "POST /predictions was answered by model version 1, not 2")
        assert (api.posts, api.gets) == (1, 0)


def test_a_regression_answer_passes_without_classes_and_must_be_a_number():
    with SwitchingApi(old_answers=0, answer={"prediction": 12.3}) as api:
        assert run_smoke_test(api.url, KEY, {"rooms": 3.0}, version=2) == (
            True, "version 2 predicted 12.3 for the example; GET /predictions/p1 read it back")
    for answer in ({"prediction": None}, {"prediction": "12.3"}, {"prediction": True}):
        with SwitchingApi(old_answers=0, answer=answer) as api:
            assert run_smoke_test(api.url, KEY, {"rooms": 3.0}, version=2) == (
                False, f"POST /predictions answered prediction {answer['prediction']!r}, not a number")


def test_the_example_row_is_the_seed_example_for_iris_else_the_training_medians():
    assert example_row(IRIS_FEATURES, None) == IRIS_EXAMPLE
    statistics = {"features": {"a": {"quantiles": {"p50": 2.5}}, "b": {"quantiles": {"p50": -1.0}}}}
    assert example_row(["a", "b"], statistics) == {"a": 2.5, "b": -1.0}
    with pytest.raises(ValueError, match="no median of c"):
        example_row(["a", "c"], statistics)


# --- no role can escalate through another ------------------------------------------------------------------------

READ_ONLY_IAM = ("iam:Get", "iam:List", "iam:PassRole")


def resource_role_names(resource: object) -> list[str]:
    """The role names (or patterns) an IAM statement's resource names: ``...:role/NAME`` or ``*``."""
    text = resource if isinstance(resource, str) else json.dumps(resource)
    if text == "*":
        return ["*"]
    return [part.split('"')[0].split(",")[0] for part in text.split(":role/")[1:]]


def role_graph(templates: list[dict]) -> dict[str, tuple[set[str], set[str]]]:
    """Role name -> (roles it may modify, roles it may become: pass to a service, or assume)."""
    graph = {}
    for template in templates:
        for body in template["Resources"].values():
            if body["Type"] != "AWS::IAM::Role":
                continue
            modifies, becomes = set(), set()
            for policy in body["Properties"].get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
                    targets = {name for resource in statement["Resource"] for name in resource_role_names(resource)}
                    if any(a in ("iam:PassRole", "sts:AssumeRole", "iam:*", "*") for a in actions):
                        becomes |= targets
                    if any(a.startswith("iam:") and not a.startswith(READ_ONLY_IAM) or a == "*" for a in actions):
                        modifies |= targets
            graph[body["Properties"]["RoleName"]] = (modifies, becomes)
    return graph


def escalations(graph: dict[str, tuple[set[str], set[str]]]) -> list[str]:
    """Every role that may modify a role able to become it (itself included): its holder could widen its own
    rights through the other's."""
    def reach(start: str) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for target in graph.get(todo.pop(), (set(), set()))[1]:
                matched = set(graph) if target == "*" else {target}
                todo += [name for name in matched - seen]
                seen |= matched
        return seen

    found = []
    for name, (modifies, _) in graph.items():
        for target in modifies:
            for victim in (set(graph) if target == "*" else {target}):
                if name in reach(victim):
                    found.append(f"{name} may modify {victim}, which can become {name}")
    return found


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_no_role_may_modify_itself_or_a_role_that_can_become_it(stage):
    templates = [spec.template for spec in synthesize(stage, AwsSettings(artifact_bucket=BUCKET))]
    graph = role_graph(templates)
    names = ResourceNames(stage)
    assert escalations(graph) == []
    if stage == "prod":  # no redeploy there: neither its role nor the endpoint stack's service role
        assert not {names.redeploy_role_name, names.endpoint_deploy_role_name} & set(graph)
        return
    assert names.endpoint_deploy_role_name in graph[names.redeploy_role_name][1]  # the walk sees the passing
    assert names.model_role_name in graph[names.endpoint_deploy_role_name][0]  # and the managing
    # The walk finds the escalation the endpoint stack's role had: PutRolePolicy on itself.
    automation = next(t for t in templates if "EndpointDeployRole" in t["Resources"])
    policy = automation["Resources"]["EndpointDeployRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    policy["Statement"].append({"Effect": "Allow", "Action": ["iam:PutRolePolicy"], "Resource": [
        {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{names.endpoint_deploy_role_name}"}]})
    assert escalations(role_graph(templates)) == [
        f"{names.endpoint_deploy_role_name} may modify {names.endpoint_deploy_role_name}, which can become "
        f"{names.endpoint_deploy_role_name}"]
    # ... and the one through a role that can become it: the redeploy role passes the CloudFormation role.
    policy["Statement"][-1]["Resource"] = [
        {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{names.redeploy_role_name}"}]
    assert escalations(role_graph(templates)) == [
        f"{names.endpoint_deploy_role_name} may modify {names.redeploy_role_name}, which can become "
        f"{names.endpoint_deploy_role_name}"]
