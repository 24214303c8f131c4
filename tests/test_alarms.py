"""Time series, alarm rules, the local alarm evaluator, its history and notifications (webhook and SMTP)."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import http.client
import json
import logging
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from polling import wait_for

from cloudviz.cli import main
from cloudviz.render import alarms_line as render_alarms_line
from deploy.endpoint import EndpointServer
from deploy.local_service import LocalService
from deploy.monitoring.alarm_history import AlarmHistory, Transition
from deploy.monitoring.alarm_rules import ALARM_RULES
from deploy.monitoring.alarms import AlarmEvaluator, evaluate
from deploy.monitoring.metrics import ApiMetrics, EndpointMetrics
from deploy.monitoring.notifications import EmailNotifier, EventNotifier, NotificationSettings, WebhookNotifier
from deploy.monitoring.sampler import MetricSampler, histogram_quantile, sampling_period
from pipelines.definition import build_pipeline
from pipelines.errors import UserError
from pipelines.registry import ModelRegistry
from pipelines.runner import LocalRunner
from pipelines.state import StateHome
from serving_lambdas import metrics as lambda_metrics

GROUP = "CloudVizIris"
KEY = "k" * 32
SEED = {"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5}
RULES = {rule.name: rule for rule in ALARM_RULES}
FIVE_XX = RULES["cloudviz-api-5xx-rate"]


def request(api: ApiMetrics, status: int, route: str = "/predictions", latency_ms: float = 3.0) -> None:
    api.observe_request({"resource": route, "method": "POST", "status": status, "latency_ms": latency_ms})


# -- the sampler ----------------------------------------------------------------------------------


def test_histogram_quantile_interpolates_inside_the_bucket():
    buckets = {0.1: 50.0, 0.2: 90.0, 1.0: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.15)  # 20 of the 40 between 0.1 and 0.2
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.92)
    assert histogram_quantile(0.99, {0.1: 1.0, float("inf"): 10.0}) == 0.1  # in +Inf: the largest finite bound
    assert histogram_quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None


def test_sampling_period_divides_the_alarm_period():
    assert sampling_period(None) == 10.0
    assert sampling_period(60) == 10.0
    assert sampling_period(15) == 7.5
    assert sampling_period(0.5) == 0.5


def test_samples_are_the_differences_of_each_period():
    api, endpoint = ApiMetrics(), EndpointMetrics("e")
    sampler = MetricSampler(api, endpoint, period_seconds=1.0, keep=2)
    start = time.time()
    for _ in range(8):
        request(api, 200, latency_ms=3.0)
    request(api, 400)
    request(api, 503, latency_ms=40.0)
    request(api, 200, route="/metrics")  # the gateway's own pages are not traffic
    request(api, 200, route="/dashboard/data")
    api.observe_lambda(lambda_metrics.document({"Predictions": (3, "Count")}, {"Endpoint": "e", "Label": "setosa"}))
    api.observe_lambda(lambda_metrics.document({"StoreErrors": (1, "Count")}, {"Endpoint": "e"}))
    endpoint.observe_invocation(200, 0.002)
    endpoint.observe_invocation(500, 0.5)
    first = sampler.sample(start + 1)
    assert (first.requests, first.errors_4xx, first.errors_5xx) == (10, 1, 1)
    assert 2.5 <= first.latency_p50_ms <= 5.0 and 25.0 <= first.latency_p99_ms <= 50.0
    assert (first.invocations, first.invocation_5xx_errors, first.store_errors) == (2, 1, 1)
    assert first.model_latency_p99_ms is not None and first.model_latency_p99_ms <= 2.5  # the 500 is not timed
    assert first.predictions == {"setosa": 3}
    assert (first.feature_drift, first.class_drift) == ({}, None)
    assert json.loads(json.dumps(first.to_dict()))["requests"] == 10

    api.feature_drift.labels("x3").set(0.4)
    api.prediction_class_drift.set(float("nan"))  # not enough predictions yet: no value
    second = sampler.sample(start + 2)
    assert (second.requests, second.latency_p50_ms, second.invocations, second.predictions) == (0, None, 0,
                                                                                                 {"setosa": 0})
    assert (second.seconds, second.feature_drift, second.class_drift) == (1.0, {"x3": 0.4}, None)

    request(api, 500)
    third = sampler.sample(start + 3)
    assert [s.timestamp for s in sampler.series()] == [second.timestamp, third.timestamp]  # keep=2
    both = sampler.window(2)
    assert (both.requests, both.errors_5xx, both.seconds, both.timestamp) == (1, 1, 2.0, third.timestamp)
    assert both.feature_drift == {"x3": 0.4}


# -- evaluation -----------------------------------------------------------------------------------


def test_m_of_n_with_missing_data_like_cloudwatch():
    rule = dataclasses.replace(FIVE_XX, evaluation_periods=3, datapoints_to_alarm=2)
    assert evaluate(rule, [0.5, None, 0.01], "OK")[0] == "OK"
    state, reason = evaluate(rule, [0.5, None, 1.0], "OK")
    assert state == "ALARM"
    assert reason == ("Threshold Crossed: 2 of the last 3 datapoint(s) [0.5, missing, 1] were greater than the"
                      " threshold (0.05) (minimum 2 for ALARM; missing data treated as not breaching).")
    assert evaluate(dataclasses.replace(rule, treat_missing_data="breaching"), [None, None, 1.0], "OK")[0] == "ALARM"
    missing = dataclasses.replace(rule, treat_missing_data="missing")
    assert evaluate(missing, [None, None, None], "OK") == (
        "INSUFFICIENT_DATA", "Insufficient Data: 3 datapoint(s) were unknown.")
    assert evaluate(dataclasses.replace(rule, treat_missing_data="ignore"), [None] * 3, "ALARM")[0] == "ALARM"


def test_the_same_rules_give_the_cloudwatch_alarms():
    dimensions = {"ApiName": "cloudviz", "Stage": "prod", "EndpointName": "CloudVizIris-endpoint",
                  "VariantName": "AllTraffic", "Endpoint": "CloudVizIris-endpoint"}
    alarms = {rule.name: rule.cloudwatch_properties(dimensions) for rule in ALARM_RULES}
    assert alarms[FIVE_XX.name] == {
        "AlarmName": FIVE_XX.name, "AlarmDescription": FIVE_XX.description, "Namespace": "AWS/ApiGateway",
        "MetricName": "5XXError", "Dimensions": [{"Name": "ApiName", "Value": "cloudviz"},
                                                 {"Name": "Stage", "Value": "prod"}],
        "Statistic": "Average", "Period": 60, "EvaluationPeriods": 1, "DatapointsToAlarm": 1, "Threshold": 0.05,
        "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching",
    }
    latency = alarms["cloudviz-api-latency-p99"]
    assert (latency["ExtendedStatistic"], latency["Unit"], "Statistic" in latency) == ("p99", "Milliseconds", False)
    assert {alarm["Namespace"] for alarm in alarms.values()} == {"AWS/ApiGateway", "AWS/SageMaker", "CloudViz"}
    with pytest.raises(ValueError, match="alarm cloudviz-api-5xx-rate: no value for dimension.s. Stage"):
        FIVE_XX.cloudwatch_properties({"ApiName": "cloudviz"})
    with pytest.raises(ValueError, match="give exactly one of statistic and extended_statistic"):
        dataclasses.replace(FIVE_XX, extended_statistic="p99")


def test_evaluator_records_every_change_and_notifies_alarm_changes(tmp_path: Path):
    api, endpoint = ApiMetrics(), EndpointMetrics("e")
    sampler = MetricSampler(api, endpoint, period_seconds=1.0)
    history = AlarmHistory(tmp_path / "alarms.db")
    rule = dataclasses.replace(FIVE_XX, evaluation_periods=3, datapoints_to_alarm=2)
    drift = RULES["cloudviz-feature-drift"]
    sent: list[str] = []
    evaluator = AlarmEvaluator([rule, drift], sampler, history, [EventNotifier(sent.append)], period_seconds=1.0)
    assert [s.state for s in evaluator.states()] == ["INSUFFICIENT_DATA", "INSUFFICIENT_DATA"]
    start = time.time()

    def period(ok: int, failed: int) -> list[tuple[str, str]]:
        for _ in range(ok):
            request(api, 200)
        for _ in range(failed):
            request(api, 503)
        return [(t.old_state, t.new_state) for t in evaluator.tick(start + len(sampler.series()) + 1)]

    assert period(10, 0) == [("INSUFFICIENT_DATA", "OK")]  # drift has no data: stays INSUFFICIENT_DATA
    assert period(5, 5) == []  # [missing, 0, 0.5]: 1 of 3 breaching
    assert period(0, 0) == []  # [0, 0.5, missing]: no requests is missing data, not breaching
    assert period(0, 10) == [("OK", "ALARM")]  # [0.5, missing, 1]: 2 of 3
    alarmed = evaluator.states()[0]
    assert (alarmed.state, alarmed.value, alarmed.since) == ("ALARM", 1.0, alarmed.evaluated_at)
    assert evaluator.states()[1].state == "INSUFFICIENT_DATA"
    assert sent == [f"ALARM: cloudviz-api-5xx-rate (OK -> ALARM): {alarmed.reason}"]  # INSUFFICIENT_DATA -> OK is not

    # A restarted serve continues from the recorded states, and resolves the alarm it left firing.
    evaluator = AlarmEvaluator([rule, drift], MetricSampler(api, endpoint, 1.0), history,
                               [EventNotifier(sent.append)], period_seconds=1.0)
    assert evaluator.states()[0] == dataclasses.replace(alarmed, threshold=rule.threshold)
    assert period(10, 0) == [("ALARM", "OK")]
    assert sent[1].startswith("OK again: cloudviz-api-5xx-rate (ALARM -> OK): Threshold not crossed: 0 of the last 3")
    recorded = history.transitions()
    assert [(t.alarm, t.old_state, t.new_state) for t in recorded] == [
        (rule.name, "ALARM", "OK"), (rule.name, "OK", "ALARM"), (rule.name, "INSUFFICIENT_DATA", "OK")]
    assert history.transitions(rule.name, limit=1) == recorded[:1]
    assert history.states()[rule.name].state == "OK"
    assert history.states()[drift.name].reason == "Insufficient Data: 1 datapoint(s) was unknown."


def test_a_rule_period_spans_several_samples(tmp_path: Path):
    api, endpoint = ApiMetrics(), EndpointMetrics("e")
    sampler = MetricSampler(api, endpoint, period_seconds=1.0)
    evaluator = AlarmEvaluator([FIVE_XX], sampler, AlarmHistory(tmp_path / "alarms.db"), period_seconds=2.0)
    start = time.time()
    request(api, 503)
    assert evaluator.tick(start + 1) == []
    assert evaluator.states()[0].reason == "not evaluated yet"  # its first period is half over
    for _ in range(19):
        request(api, 200)
    (change,) = evaluator.tick(start + 2)  # 1 of 20 requests over the two samples: 5%, not above
    assert (change.new_state, change.value) == ("OK", 0.05)


# -- notification channels --------------------------------------------------------------------------


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records every JSON POST and answers the first ones with ``refusals``."""

    def __init__(self, refusals: tuple[int, ...] = ()) -> None:
        self.refusals = list(refusals)
        self.attempts: list[dict] = []
        self.accepted: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert self.headers["Content-Type"] == "application/json"
                receiver.attempts.append(body)
                status = receiver.refusals.pop(0) if receiver.refusals else 200
                if status == 200:
                    receiver.accepted.append(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alarms"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """An aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def webhook():
    receiver = WebhookReceiver(refusals=(503,))  # the first delivery is retried
    yield receiver
    receiver.close()


@pytest.fixture
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.mark.parametrize(("options", "environ", "error"), [
    ({"webhook_url": "ftp://example.com/x"}, {}, "--alarm-webhook: expected an http:// or https:// URL, got 'ftp"),
    ({}, {"CLOUDVIZ_ALARM_WEBHOOK": "localhost:9000"}, "CLOUDVIZ_ALARM_WEBHOOK: expected an http:// or https:// URL"),
    ({"webhook_url": "http://127.0.0.1:99999/"}, {}, "--alarm-webhook: the port of 'http://127.0.0.1:99999/' is not"),
    ({"smtp_from": "a@b.c"}, {}, "--smtp-from is set but no SMTP host is: set --smtp-host or CLOUDVIZ_SMTP_HOST"),
    ({"smtp_host": "mail"}, {"CLOUDVIZ_SMTP_TO": "x@y.z"},
     "--smtp-host is set: email notifications also need --smtp-from or CLOUDVIZ_SMTP_FROM"),
    ({"smtp_host": "mail", "smtp_from": "a@b.c", "smtp_to": "x@y.z"}, {"CLOUDVIZ_SMTP_PORT": "smtp"},
     "CLOUDVIZ_SMTP_PORT: expected a port number 1-65535, got 'smtp'"),
    ({"smtp_host": "mail", "smtp_from": "a@b.c", "smtp_to": "x@y.z, oncall"}, {},
     "--smtp-to: expected an email address such as oncall@example.com, got 'oncall'"),
    ({"smtp_host": "mail", "smtp_from": "a@b.c", "smtp_to": " , "}, {}, "--smtp-to: expected at least one email"),
])
def test_notification_settings_are_validated_naming_the_flag_or_variable(options, environ, error):
    with pytest.raises(UserError, match=f"^{error}"):
        NotificationSettings.resolve(**options, environ=environ)


def test_notification_flags_win_over_environment_variables():
    environ = {"CLOUDVIZ_ALARM_WEBHOOK": "http://env/hook", "CLOUDVIZ_SMTP_HOST": "env-mail",
               "CLOUDVIZ_SMTP_FROM": "cloudviz@example.com", "CLOUDVIZ_SMTP_TO": "a@example.com,b@example.com"}
    settings = NotificationSettings.resolve(webhook_url="https://flag/hook", smtp_port="2525", environ=environ)
    assert settings.webhook_url == "https://flag/hook"
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.recipients) == (
        "env-mail", 2525, ("a@example.com", "b@example.com"))
    assert [n.channel for n in settings.notifiers()] == ["webhook", "email"]
    assert NotificationSettings.resolve(environ={}).notifiers() == []


def test_a_delivery_that_keeps_failing_is_logged_not_raised(caplog: pytest.LogCaptureFixture):
    refusing = WebhookReceiver(refusals=(400,))
    unreachable = f"http://127.0.0.1:{free_port()}/hook"
    transition = Transition(FIVE_XX.name, "OK", "ALARM", "Threshold Crossed: ...", 1.0, 0.05,
                            "2024-07-02T18:29:50.443+00:00")
    notifiers = [WebhookNotifier(refusing.url, attempts=3, backoff_seconds=0.01),
                 WebhookNotifier(unreachable, attempts=3, backoff_seconds=0.01)]
    with caplog.at_level(logging.WARNING, logger="deploy.monitoring.notifications"):
        for notifier in notifiers:
            notifier.notify(transition, FIVE_XX)  # returns at once: the worker thread delivers
        for notifier in notifiers:
            notifier.close(timeout=30)
    refusing.close()
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(refusing.attempts) == 1  # a 400 is not retried
    assert errors[0] == (f"webhook notification of {FIVE_XX.name} (OK -> ALARM) not delivered after 1 attempt(s): "
                         f"{refusing.url} answered 400 Bad Request")
    assert errors[1].startswith(f"webhook notification of {FIVE_XX.name} (OK -> ALARM) not delivered after 3 "
                                "attempt(s): URLError: <urlopen error [Errno 111] Connection refused>")
    assert sum("retrying in" in record.getMessage() for record in caplog.records) == 2


# -- inside cloudviz serve ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state home with version 1 trained and approved."""
    home = StateHome(tmp_path_factory.mktemp("trained") / "home")
    assert LocalRunner(home, build_pipeline()).start({}).status == "Succeeded"
    ModelRegistry(home.registry_db).update_approval(GROUP, 1, "Approved")
    return home.root


@pytest.fixture
def home(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateHome:
    root = tmp_path / "home"
    shutil.copytree(trained, root, ignore=shutil.ignore_patterns("cache"))
    monkeypatch.setenv("CLOUDVIZ_HOME", str(root))
    return StateHome(root)


def post(api_url: str) -> int:
    connection = http.client.HTTPConnection(api_url.removeprefix("http://"), timeout=30)
    try:
        connection.request("POST", "/predictions", json.dumps(SEED),
                           {"x-api-key": KEY, "Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def traffic_until(service: LocalService, condition: Callable[[], bool], what: str) -> set[int]:
    """Three clients post predictions until ``condition`` holds; the statuses they got."""
    statuses: set[int] = set()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            statuses.add(post(service.api.url))
            stop.wait(0.01)

    clients = [threading.Thread(target=client) for _ in range(3)]
    for thread in clients:
        thread.start()
    try:
        wait_for(condition, what)
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    return statuses


def state_of(service: LocalService, name: str) -> str:
    return next(state.state for state in service.evaluator.states() if state.name == name)


def test_5xx_alarm_fires_and_resolves_and_both_channels_hear_it(home: StateHome, webhook: WebhookReceiver, mailbox,
                                                                capsys: pytest.CaptureFixture):
    box, smtp_port = mailbox
    notifiers = [WebhookNotifier(webhook.url, backoff_seconds=0.05),
                 EmailNotifier("127.0.0.1", smtp_port, "cloudviz@localhost", ("oncall@example.com",),
                               backoff_seconds=0.05)]
    events: list[str] = []
    name = FIVE_XX.name
    with LocalService(home, GROUP, KEY, on_event=events.append, alarm_period_seconds=0.5,
                      notifiers=notifiers).start() as service:
        assert service.sampler.period_seconds == 0.5
        assert [rule.period_seconds for rule in service.evaluator.rules] == [0.5] * len(ALARM_RULES)
        assert traffic_until(service, lambda: state_of(service, name) == "OK", "OK under good traffic") == {200}

        port = service.endpoint_server.port
        service.endpoint_server.close()  # the model endpoint goes down: the API answers 503
        assert traffic_until(service, lambda: state_of(service, name) == "ALARM", "ALARM under 5xx") == {503}

        service.endpoint_server = EndpointServer(service.slot, name=service.endpoint, port=port,
                                                 metrics=service.endpoint_metrics).start()
        assert 200 in traffic_until(service, lambda: state_of(service, name) == "OK", "OK again after recovery")
        wait_for(lambda: len([b for b in webhook.accepted if b["alarm"] == name]) == 2
                 and len([m for _, m in box.messages if name in m["Subject"]]) == 2, "both notifications")
        series = service.sampler.series()
        banner = render_alarms_line(service)

    assert any(s.errors_5xx for s in series)
    assert any(s.requests and not s.errors_5xx and s.latency_p99_ms is not None for s in series)
    assert banner.startswith(f"Alarms    {len(ALARM_RULES)} rules over 0.5 s periods (cloudviz alarms list);")
    assert banner.endswith(f"POST {webhook.url}, email to oncall@example.com via 127.0.0.1:{smtp_port}, this terminal")

    # The webhook: the first delivery refused (503) and retried; each state change as one JSON document.
    accepted = [body for body in webhook.accepted if body["alarm"] == name]
    assert webhook.attempts[0] == accepted[0]
    assert [(b["old_state"], b["new_state"]) for b in accepted] == [("OK", "ALARM"), ("ALARM", "OK")]
    rate = accepted[0]["value"]
    assert accepted[0]["reason"] == (f"Threshold Crossed: 1 of the last 1 datapoint(s) [{rate:g}] was greater than"
                                     " the threshold (0.05) (minimum 1 for ALARM).")
    assert (rate > 0.05, accepted[0]["threshold"], accepted[0]["metric"]) == (True, 0.05, "errors_5xx / requests")
    assert accepted[0]["description"] == FIVE_XX.description and accepted[0]["aws_metric"] == "AWS/ApiGateway 5XXError"

    # The email, worded like CloudWatch's through SNS.
    mails = [(to, message) for to, message in box.messages if name in message["Subject"]]
    assert [message["Subject"] for _, message in mails] == [
        f'ALARM: "{name}" in CloudViz (local)', f'OK: "{name}" in CloudViz (local)']
    to, alarm_mail = mails[0]
    assert to == ["oncall@example.com"] and alarm_mail["From"] == "cloudviz@localhost"
    text = alarm_mail.get_content()
    assert f'your CloudViz alarm "{name}" has entered the ALARM state, because "Threshold Crossed' in text
    assert "- State Change:               OK -> ALARM" in text
    assert "GreaterThanThreshold 0.05 for at least 1 of the last 1 period(s) of 0.5 seconds" in text

    # The terminal of cloudviz serve, and the history that `cloudviz alarms` reads after serve stopped.
    assert [e.split(":")[0] for e in events if name in e] == ["ALARM", "OK again"]
    assert main(["alarms", "history", "--alarm", name, "--json"]) == 0
    history = json.loads(capsys.readouterr().out)
    assert [(t["old_state"], t["new_state"]) for t in history] == [
        ("ALARM", "OK"), ("OK", "ALARM"), ("INSUFFICIENT_DATA", "OK")]
    assert history[1] == {key: accepted[0][key] for key in history[1]}
    assert main(["alarms", "history", "--limit", "1"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2  # the header and one change
    assert main(["alarms", "list", "--json"]) == 0
    listed = {alarm["rule"]: alarm for alarm in json.loads(capsys.readouterr().out)}
    assert listed[name]["state"]["state"] == "OK"
    assert listed[name]["condition"] == "errors_5xx / requests > 0.05 for 1 of 1 periods of 0.5 s"  # as served
    assert main(["alarms", "list"]) == 0
    assert re.search(rf"^{name} +OK ", capsys.readouterr().out, re.MULTILINE)


def test_serve_refuses_incomplete_notification_settings_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    monkeypatch.setenv("CLOUDVIZ_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLOUDVIZ_SMTP_TO", "oncall@example.com")
    for name in ("CLOUDVIZ_ALARM_WEBHOOK", "CLOUDVIZ_SMTP_HOST", "CLOUDVIZ_SMTP_PORT", "CLOUDVIZ_SMTP_FROM"):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve", "--api-port", "0", "--endpoint-port", "0", "--smtp-host", "127.0.0.1"]) == 2
    assert capsys.readouterr().err == (
        "cloudviz: error: --smtp-host is set: email notifications also need --smtp-from or CLOUDVIZ_SMTP_FROM\n")
    with pytest.raises(SystemExit):
        main(["serve", "--alarm-period", "0"])
    assert "--alarm-period: must be a positive number of seconds, got 0" in capsys.readouterr().err
