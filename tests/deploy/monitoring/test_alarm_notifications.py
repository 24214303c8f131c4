"""Alarm notification settings (flags and environment variables, validated naming the flag or variable) and a
delivery that keeps failing."""

from __future__ import annotations

import logging

import pytest
from alarm_support import FIVE_XX, WebhookReceiver, free_port

from deploy.monitoring.alarm_history import Transition
from deploy.monitoring.notifications import NotificationSettings, WebhookNotifier
from pipelines.errors import UserError

# -- notification channels --------------------------------------------------------------------------


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
