"""What the tests of a deployed stage's automation share (tests/deploy/aws/: test_aws_redeploy.py,
test_aws_promotion.py): every boto3 request validated against its service model, EventBridge's scheduled rules
taking no put events, and the redeploy queue polled as Lambda's event source mapping polls it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import boto3
import pytest
from botocore.validate import ParamValidator
from moto.events.models import Rule

from deploy.aws.names import ResourceNames

REGION = "us-east-1"  # the tests' region


@pytest.fixture
def validated_requests(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every request sent through a boto3 session created during the test (the functions', and the CLI's own
    sessions) validated by botocore's ParamValidator against the service model; the operations sent, in order.
    The check is registered on each session as it is created: moto's ``mock_aws`` replaces boto3's default
    session, so one registered on it beforehand would see nothing."""
    sent: list[str] = []
    errors: list[str] = []

    def validate(params: dict, model: object, **_: object) -> None:
        sent.append(model.name)
        report = ParamValidator().validate(params, model.input_shape)
        if report.has_errors():
            errors.append(f"{model.name}: {report.generate_report()}")

    original = boto3.session.Session.__init__

    def init(self: boto3.session.Session, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        self.events.register("before-parameter-build", validate)

    monkeypatch.setattr(boto3.session.Session, "__init__", init)
    yield sent
    assert sent and errors == []


@pytest.fixture
def scheduled_rules_take_no_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events put to EventBridge reach the rules with a matching pattern only, not the scheduled ones (moto sends
    them to every rule without an event pattern)."""
    original = Rule.send_to_targets

    def send(self: Rule, event: dict, *args: object, **kwargs: object) -> None:
        if self.scheduled_expression and not self.event_pattern.get_pattern():
            return
        original(self, event, *args, **kwargs)

    monkeypatch.setattr(Rule, "send_to_targets", send)


@dataclass
class Stage:
    """The deployed dev stage, its queues, and the redeploy function behind Lambda's SQS poller."""

    names: ResourceNames
    handler: Callable
    v1: str

    def queue_url(self, name: str) -> str:
        return boto3.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]

    def waiting(self, name: str) -> int:
        attributes = boto3.client("sqs").get_queue_attributes(
            QueueUrl=self.queue_url(name), AttributeNames=["ApproximateNumberOfMessages",
                                                           "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def poll(self) -> dict | None:
        """One poll of the event source mapping: receive a batch, invoke, delete what was not reported failed."""
        functions, sqs = boto3.client("lambda"), boto3.client("sqs")
        (mapping,) = functions.list_event_source_mappings(FunctionName=self.names.redeploy_function)[
            "EventSourceMappings"]
        url = self.queue_url(self.names.redeploy_queue_name)
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=mapping["BatchSize"],
                                       MessageSystemAttributeNames=["All"]).get("Messages", [])
        if not messages:
            return None
        event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                              "attributes": m["Attributes"], "eventSource": "aws:sqs",
                              "eventSourceARN": mapping["EventSourceArn"], "awsRegion": REGION}
                             for m in messages]}
        result = self.handler(event, None)
        failed = {failure["itemIdentifier"] for failure in result["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return result
