"""Alarms inside `cloudviz serve`: the 5xx alarm fires and resolves on real traffic and both notification channels
hear it; incomplete notification settings are refused before starting."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from alarm_support import FIVE_XX, WebhookReceiver, alarm_of
from polling import wait_for

from cloudviz.cli import main
from cloudviz.render import alarms_line as render_alarms_line
from deploy.local_service import LocalService
from deploy.monitoring.alarm_rules import ALARM_RULES
from deploy.monitoring.notifications import EmailNotifier, SmtpSettings, WebhookNotifier
from pipelines.definition import build_pipeline
from pipelines.registry import ModelRegistry
from pipelines.runner import LocalRunner
from pipelines.state import StateHome

GROUP = "CloudVizIris"
KEY = "k" * 32
SEED = {"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5}


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


@pytest.mark.parametrize("endpoint_process", [False, True], ids=["endpoint in-process", "endpoint process"])
def test_5xx_alarm_fires_and_resolves_and_both_channels_hear_it(home: StateHome, webhook: WebhookReceiver, mailbox,
                                                                capsys: pytest.CaptureFixture, endpoint_process: bool):
    box, smtp_port = mailbox
    notifiers = [WebhookNotifier(webhook.url, backoff_seconds=0.05),
                 EmailNotifier(SmtpSettings("127.0.0.1", smtp_port, "cloudviz@localhost", ("oncall@example.com",)),
                               backoff_seconds=0.05)]
    events: list[str] = []
    name = FIVE_XX.name
    with LocalService(home, GROUP, KEY, on_event=events.append, alarm_period_seconds=0.5,
                      notifiers=notifiers, endpoint_process=endpoint_process).start() as service:
        assert service.sampler.period_seconds == 0.5
        assert [rule.period_seconds for rule in service.evaluator.rules] == [0.5] * len(ALARM_RULES)
        # OK, and a period of good traffic sampled: the rule can turn OK on a period before the first request
        assert traffic_until(service, lambda: state_of(service, name) == "OK" and any(
            s.requests and not s.errors_5xx and s.latency_p99_ms is not None for s in service.sampler.series()),
            "OK under good traffic") == {200}

        service.endpoint_server.close()  # the model endpoint goes down: the API answers 503
        assert traffic_until(service, lambda: state_of(service, name) == "ALARM", "ALARM under 5xx") == {503}

        service.endpoint_server.start()  # the same model, on the same port
        assert 200 in traffic_until(service, lambda: state_of(service, name) == "OK", "OK again after recovery")
        wait_for(lambda: len([b for b in webhook.accepted if alarm_of(b)["AlarmName"] == name]) == 2
                 and len([m for _, m in box.messages if name in m["Subject"]]) == 2, "both notifications")
        series = service.sampler.series()
        banner = render_alarms_line(service)

    assert any(s.errors_5xx for s in series)
    assert any(s.requests and not s.errors_5xx and s.latency_p99_ms is not None for s in series)
    assert banner.startswith(f"Alarms    {len(ALARM_RULES)} rules over 0.5 s periods (cloudviz alarms list);")
    assert banner.endswith(f"POST {webhook.url}, email to oncall@example.com via 127.0.0.1:{smtp_port}, this terminal")

    # The webhook: the first delivery refused (503) and retried as SNS retries (the same message); each state change
    # as one SNS notification of CloudWatch's alarm state change.
    accepted = [alarm_of(body) for body in webhook.accepted if alarm_of(body)["AlarmName"] == name]
    assert webhook.attempts[0] == webhook.accepted[0]
    assert [(a["OldStateValue"], a["NewStateValue"]) for a in accepted] == [("OK", "ALARM"), ("ALARM", "OK")]
    rate = float(re.search(r"\[(.+?)\]", accepted[0]["NewStateReason"])[1])
    assert accepted[0]["NewStateReason"] == (f"Threshold Crossed: 1 of the last 1 datapoint(s) [{rate:g}] was greater"
                                             " than the threshold (0.05) (minimum 1 for ALARM).")
    assert rate > 0.05 and accepted[0]["AlarmDescription"] == FIVE_XX.description
    assert {key: accepted[0]["Trigger"][key] for key in ("Namespace", "MetricName", "Statistic", "Threshold")} == {
        "Namespace": "AWS/ApiGateway", "MetricName": "5XXError", "Statistic": "AVERAGE", "Threshold": 0.05}

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
    assert (history[1]["alarm"], history[1]["reason"]) == (name, accepted[0]["NewStateReason"])
    assert f"{history[1]['value']:g}" == f"{rate:g}"
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
