"""The alarm webhook receives what SNS POSTs to an HTTP subscription of a CloudWatch alarm's topic, so one receiver
works locally and on AWS. The oracles are AWS's: the body and headers moto's SNS posts to the same receiver, and
the CloudWatch alarm message of AWS's own example (aws/aws-lambda-go, events/testdata/
cloudwatch-alarm-sns-payload-single-metric.json)."""

from __future__ import annotations

import json
import re

import boto3
import pytest
from alarm_support import FIVE_XX, RULES, WebhookReceiver, alarm_of
from moto import mock_aws

from deploy.monitoring.alarm_history import Transition
from deploy.monitoring.notifications import WebhookNotifier, alarm_message

# The Message of AWS's example, as SNS carries it (the Trigger's odd TreatMissingData text is AWS's own).
AWS_EXAMPLE_MESSAGE = json.loads(
    '{"AlarmName": "EXAMPLE","AlarmDescription": "EXAMPLE","AWSAccountId": "123456789012","NewStateValue": "ALARM",'
    '"NewStateReason": "Threshold Crossed: 1 out of the last 1 datapoints [1234.0 (06/03/15 17:43:27)] was greater than'
    ' the threshold (0.0) (minimum 1 datapoint for OK -> ALARM transition).","StateChangeTime":'
    ' "2015-06-03T17:43:27.123+0000","Region": "EXAMPLE","AlarmArn": "arn:aws:cloudwatch:REGION:ACCOUNT_NUMBER:alarm:'
    'EXAMPLE","OldStateValue": "INSUFFICIENT_DATA","Trigger": {"MetricName": "NetworkOut","Namespace": "AWS/EC2",'
    '"StatisticType": "Statistic","Statistic": "AVERAGE","Unit": "Bytes","Dimensions": [{"value": "TestInstance",'
    '"name": "InstanceId"}],"Period": 60,"EvaluationPeriods": 1,"ComparisonOperator": "GreaterThanThreshold",'
    '"Threshold": 0.0,"TreatMissingData": "- TreatMissingData:                    missing",'
    '"EvaluateLowSampleCountPercentile": ""}}')
SIGNATURE_FIELDS = {"SignatureVersion", "Signature", "SigningCertURL", "UnsubscribeURL"}  # only SNS can sign
TRANSITION = Transition(FIVE_XX.name, "OK", "ALARM", "Threshold Crossed: 1 of the last 1 datapoint(s) [0.5] was"
                        " greater than the threshold (0.05) (minimum 1 for ALARM).", 0.5, 0.05,
                        "2024-07-02T20:29:50.443+02:00")


def kinds(document: dict) -> dict[str, str]:
    """Each key's JSON type (a number is a number, int or float alike; null goes with anything)."""
    def kind(value: object) -> str:
        return "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__
    return {key: kind(value) for key, value in document.items() if value is not None}


@pytest.fixture
def receiver():
    box = WebhookReceiver(refusals=(503,))  # the first attempt is refused, so the retry is seen too
    yield box
    box.close()


def test_the_webhook_posts_what_sns_posts_to_an_http_subscription(receiver: WebhookReceiver,
                                                                   monkeypatch: pytest.MonkeyPatch):
    notifier = WebhookNotifier(receiver.url, backoff_seconds=0.01)
    notifier.notify(TRANSITION, FIVE_XX)
    notifier.close(timeout=10)
    ours, our_headers = receiver.accepted[0], receiver.headers[-1]

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        topic = sns.create_topic(Name="cloudviz-dev-alarms")["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=receiver.url)
        sns.publish(TopicArn=topic, Message=ours["Message"], Subject=ours["Subject"])
    from_sns, sns_headers = receiver.accepted[1], receiver.headers[-1]

    assert set(ours) == set(from_sns) - SIGNATURE_FIELDS
    assert kinds(ours) == {key: kind for key, kind in kinds(from_sns).items() if key not in SIGNATURE_FIELDS}
    assert our_headers["Content-Type"] == sns_headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ours["Timestamp"]) and re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", from_sns["Timestamp"])
    assert (our_headers["x-amz-sns-message-type"], our_headers["x-amz-sns-message-id"],
            our_headers["x-amz-sns-topic-arn"]) == ("Notification", ours["MessageId"], ours["TopicArn"])
    # A retry is the same message, as SNS's retries are: a receiver can drop the repeat by MessageId.
    assert receiver.attempts[0] == ours
    # One receiver, both sources: the alarm read the same way from each.
    assert alarm_of(ours) == alarm_of(from_sns)
    assert ours["Subject"] == f'ALARM: "{FIVE_XX.name}" in CloudViz (local)'


def test_the_message_is_cloudwatchs_alarm_state_change():
    message = alarm_message(TRANSITION, FIVE_XX)
    example_trigger = {key: value for key, value in AWS_EXAMPLE_MESSAGE["Trigger"].items() if key != "Dimensions"}
    for ours, aws in ((message, AWS_EXAMPLE_MESSAGE), (message["Trigger"], example_trigger)):
        assert set(ours) >= set(aws)  # every field of AWS's, of its type (a null Unit as in AWS's other messages)
        assert {key: kind for key, kind in kinds(ours).items() if key in aws} == {
            key: kind for key, kind in kinds(aws).items() if ours[key] is not None}
    assert {key: message[key] for key in ("AlarmName", "OldStateValue", "NewStateValue", "NewStateReason",
                                          "StateChangeTime")} == {
        "AlarmName": FIVE_XX.name, "OldStateValue": "OK", "NewStateValue": "ALARM",
        "NewStateReason": TRANSITION.reason, "StateChangeTime": "2024-07-02T18:29:50.443+0000"}  # UTC, CloudWatch's
    assert message["Trigger"]["Statistic"] == "AVERAGE" and message["AlarmActions"] == message["OKActions"]


def test_a_percentile_alarm_says_so_in_aws_units():
    rule = RULES["cloudviz-endpoint-model-latency-p99"]
    trigger = alarm_message(TRANSITION, rule)["Trigger"]
    assert (trigger["StatisticType"], trigger["ExtendedStatistic"], trigger["Threshold"], trigger["Unit"]) == (
        "ExtendedStatistic", "p99", 500_000.0, "Microseconds")  # ModelLatency is in microseconds on AWS
    assert "Statistic" not in trigger
