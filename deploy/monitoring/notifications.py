"""Where alarm state changes go: a webhook (JSON POST) and email over SMTP, the local counterparts of the SNS
topic and its email subscription on AWS.

Delivery never holds up the evaluator: ``notify`` queues the message and a worker thread per channel sends it,
retrying with exponential backoff. A delivery that still fails is logged (the ``deploy`` JSON log of
``cloudviz serve``) and dropped; nothing here raises into the caller.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import smtplib
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Protocol
from urllib.parse import urlsplit

from deploy.monitoring.alarm_history import ALARM, Transition
from deploy.monitoring.alarm_rules import AlarmRule
from pipelines.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_ATTEMPTS = 5
DEFAULT_BACKOFF_SECONDS = 0.5  # then 1, 2, 4: about 8 s of retrying before a delivery is given up
MAX_BACKOFF_SECONDS = 30.0
DEFAULT_SMTP_PORT = 25
RETRIED_HTTP_STATUSES = {408, 429}  # and every 5xx; any other 4xx will not get better by asking again


class Notifier(Protocol):
    channel: str  # webhook, email, ...
    destination: str  # where it sends, in words

    def notify(self, transition: Transition, rule: AlarmRule) -> None:
        """Send (or queue) the notification of ``transition``; never raises, never blocks for long."""

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued within ``timeout`` seconds, then stop."""


class PermanentFailure(Exception):
    """A delivery the receiver refused for good (e.g. HTTP 400, SMTP 550): not retried."""


def alarm_message(transition: Transition, rule: AlarmRule) -> dict:
    """The JSON document a webhook receives: the transition and the rule it is about."""
    return {
        **transition.to_dict(),
        "description": rule.description,
        "metric": rule.local_metric,
        "condition": rule.condition,
        "comparison": rule.comparison,
        "period_seconds": rule.period_seconds,
        "evaluation_periods": rule.evaluation_periods,
        "datapoints_to_alarm": rule.datapoints_to_alarm,
        "aws_metric": f"{rule.namespace} {rule.metric_name}",
        "source": "cloudviz serve",
    }


def alarm_email(transition: Transition, rule: AlarmRule) -> tuple[str, str]:
    """(subject, plain text body), worded like the email CloudWatch sends through SNS."""
    statistic = rule.statistic or rule.extended_statistic
    value = "missing" if transition.value is None else f"{transition.value:g}"
    subject = f'{transition.new_state}: "{transition.alarm}" in CloudViz (local)'
    body = "\n".join([
        f'You are receiving this email because your CloudViz alarm "{transition.alarm}" has entered the'
        f' {transition.new_state} state, because "{transition.reason}" at "{transition.timestamp}".',
        "",
        "Alarm Details:",
        f"- Name:                       {transition.alarm}",
        f"- Description:                {rule.description}",
        f"- State Change:               {transition.old_state} -> {transition.new_state}",
        f"- Reason for State Change:    {transition.reason}",
        f"- Timestamp:                  {transition.timestamp}",
        "",
        "Threshold:",
        f"- The alarm is in the ALARM state when the metric is {rule.comparison} {rule.threshold:g} for at least"
        f" {rule.datapoints_to_alarm} of the last {rule.evaluation_periods} period(s) of {rule.period_seconds:g}"
        " seconds.",
        "",
        "Monitored Metric:",
        f"- Local metric:               {rule.local_metric}",
        f"- Newest value:               {value}",
        f"- On AWS:                     {rule.namespace} {rule.metric_name} ({statistic})",
        "",
        f"History: cloudviz alarms history --alarm {transition.alarm}",
        "",
    ])
    return subject, body


class QueuedNotifier:
    """A channel whose ``deliver`` runs on a worker thread (started on first use), retried with exponential
    backoff on any error but ``PermanentFailure``."""

    channel = "queued"

    def __init__(
        self,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
        timeout_seconds: float = 10.0,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be 1 or more, got {attempts}")
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds  # of one attempt
        self._queue: queue.Queue[tuple[Transition, AlarmRule] | None] = queue.Queue()
        self._giving_up = threading.Event()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def deliver(self, transition: Transition, rule: AlarmRule) -> None:
        raise NotImplementedError

    def notify(self, transition: Transition, rule: AlarmRule) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name=f"notify-{self.channel}", daemon=True)
                self._worker.start()
        self._queue.put((transition, rule))

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is None:
            return
        self._queue.put(None)
        worker.join(timeout)
        if worker.is_alive():  # the worker logs what it drops, as soon as its current attempt ends
            self._giving_up.set()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            transition, rule = item
            if self._giving_up.is_set():
                self._failed(transition, 0, "cloudviz serve stopped before it was sent")
            else:
                self._send(transition, rule)

    def _send(self, transition: Transition, rule: AlarmRule) -> None:
        delay = self.backoff_seconds
        for attempt in range(1, self.attempts + 1):
            try:
                self.deliver(transition, rule)
            except PermanentFailure as error:
                self._failed(transition, attempt, str(error))
                return
            except Exception as error:  # network, protocol, receiver errors: worth another attempt
                if attempt == self.attempts:
                    self._failed(transition, attempt, describe(error))
                    return
                logger.warning("%s notification of %s failed (attempt %d of %d), retrying in %gs: %s",
                               self.channel, transition.alarm, attempt, self.attempts, delay, describe(error),
                               extra=self._fields(transition, attempt))
                if self._giving_up.wait(delay):
                    self._failed(transition, attempt, "cloudviz serve stopped while retrying")
                    return
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
            else:
                logger.info("%s notification of %s (%s -> %s) delivered", self.channel, transition.alarm,
                            transition.old_state, transition.new_state, extra=self._fields(transition, attempt))
                return

    def _failed(self, transition: Transition, attempts: int, error: str) -> None:
        logger.error("%s notification of %s (%s -> %s) not delivered after %d attempt(s): %s", self.channel,
                     transition.alarm, transition.old_state, transition.new_state, attempts, error,
                     extra=self._fields(transition, attempts))

    def _fields(self, transition: Transition, attempts: int) -> dict:
        return {"channel": self.channel, "alarm": transition.alarm, "new_state": transition.new_state,
                "attempts": attempts}


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class WebhookNotifier(QueuedNotifier):
    """POSTs ``alarm_message`` as JSON to ``url``; a 2xx answer is a delivery, a 5xx, 408 or 429 is retried."""

    channel = "webhook"

    def __init__(self, url: str, **options: float) -> None:
        super().__init__(**options)
        self.url = url
        self.destination = f"POST {url}"

    def deliver(self, transition: Transition, rule: AlarmRule) -> None:
        body = json.dumps(alarm_message(transition, rule)).encode()
        request = urllib.request.Request(
            self.url, body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "cloudviz-alarms"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                response.read()
        except urllib.error.HTTPError as error:
            if error.code < 500 and error.code not in RETRIED_HTTP_STATUSES:
                raise PermanentFailure(f"{self.url} answered {error.code} {error.reason}") from None
            raise


class EmailNotifier(QueuedNotifier):
    """Sends ``alarm_email`` over SMTP (plain, no login: a local relay or a test server)."""

    channel = "email"

    def __init__(self, host: str, port: int, sender: str, recipients: tuple[str, ...], **options: float) -> None:
        super().__init__(**options)
        self.host, self.port, self.sender, self.recipients = host, port, sender, recipients
        self.destination = f"email to {', '.join(recipients)} via {host}:{port}"

    def deliver(self, transition: Transition, rule: AlarmRule) -> None:
        subject, body = alarm_email(transition, rule)
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message.set_content(body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds) as smtp:
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            raise PermanentFailure(f"{self.host}:{self.port} refused {', '.join(error.recipients)}") from None
        except smtplib.SMTPResponseException as error:
            if error.smtp_code >= 500:
                raise PermanentFailure(f"{self.host}:{self.port} answered {error.smtp_code} "
                                       f"{error.smtp_error.decode(errors='replace')}") from None
            raise


class EventNotifier:
    """Hands each notification to ``callback`` as one line (the terminal of ``cloudviz serve``)."""

    channel = "events"
    destination = "this terminal"

    def __init__(self, callback: Callable[[str], None]) -> None:
        self.callback = callback

    def notify(self, transition: Transition, rule: AlarmRule) -> None:
        word = "ALARM" if transition.new_state == ALARM else f"{transition.new_state} again"
        self.callback(f"{word}: {transition.alarm} ({transition.old_state} -> {transition.new_state}):"
                      f" {transition.reason}")

    def close(self, timeout: float = 5.0) -> None:
        """Nothing is queued."""


# -- configuration -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class NotificationSettings:
    """The channels ``cloudviz serve`` notifies: flags first, then ``CLOUDVIZ_ALARM_WEBHOOK`` and
    ``CLOUDVIZ_SMTP_HOST``/``_PORT``/``_FROM``/``_TO`` (recipients separated by commas)."""

    webhook_url: str | None = None
    smtp: SmtpSettings | None = None

    @classmethod
    def resolve(
        cls,
        webhook_url: str | None = None,
        smtp_host: str | None = None,
        smtp_port: int | str | None = None,
        smtp_from: str | None = None,
        smtp_to: str | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> NotificationSettings:
        """Validated settings; a UserError names the flag or variable at fault."""
        webhook = _setting(webhook_url, "--alarm-webhook", "CLOUDVIZ_ALARM_WEBHOOK", environ)
        host = _setting(smtp_host, "--smtp-host", "CLOUDVIZ_SMTP_HOST", environ)
        port = _setting(smtp_port, "--smtp-port", "CLOUDVIZ_SMTP_PORT", environ)
        sender = _setting(smtp_from, "--smtp-from", "CLOUDVIZ_SMTP_FROM", environ)
        to = _setting(smtp_to, "--smtp-to", "CLOUDVIZ_SMTP_TO", environ)
        if webhook is not None:
            _check_url(*webhook)
        smtp = None
        if host is None:
            given = next((option for option in (port, sender, to) if option is not None), None)
            if given is not None:
                raise UserError(f"{given[1]} is set but no SMTP host is: set --smtp-host or CLOUDVIZ_SMTP_HOST")
        else:
            if not host[0].strip() or any(c.isspace() for c in host[0]):
                raise UserError(f"{host[1]}: expected a host name, got {host[0]!r}")
            for option, flag, variable in ((sender, "--smtp-from", "CLOUDVIZ_SMTP_FROM"),
                                           (to, "--smtp-to", "CLOUDVIZ_SMTP_TO")):
                if option is None:
                    raise UserError(f"{host[1]} is set: email notifications also need {flag} or {variable}")
            recipients = tuple(_address(part, to[1]) for part in to[0].split(",") if part.strip())
            if not recipients:
                raise UserError(f"{to[1]}: expected at least one email address")
            smtp = SmtpSettings(
                host=host[0].strip(),
                port=_port(*port) if port is not None else DEFAULT_SMTP_PORT,
                sender=_address(*sender),
                recipients=recipients,
            )
        return cls(webhook[0] if webhook is not None else None, smtp)

    def notifiers(self, **options: float) -> list[Notifier]:
        """One notifier per configured channel (``options``: attempts, backoff_seconds, timeout_seconds)."""
        channels: list[Notifier] = []
        if self.webhook_url is not None:
            channels.append(WebhookNotifier(self.webhook_url, **options))
        if self.smtp is not None:
            smtp = self.smtp
            channels.append(EmailNotifier(smtp.host, smtp.port, smtp.sender, smtp.recipients, **options))
        return channels


def _setting(
    value: object, flag: str, variable: str, environ: Mapping[str, str]
) -> tuple[str, str] | None:
    """(value, where it came from) of a flag falling back to its environment variable; None when neither is set."""
    if value is not None:
        return str(value), flag
    if environ.get(variable, "") != "":
        return environ[variable], variable
    return None


def _check_url(url: str, source: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{source}: expected an http:// or https:// URL, got {url!r}")
    try:
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        raise UserError(f"{source}: the port of {url!r} is not a number 0-65535") from None


def _port(text: str, source: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise UserError(f"{source}: expected a port number 1-65535, got {text!r}")
    return int(text)


def _address(text: str, source: str) -> str:
    _, address = parseaddr(text.strip())
    local, at, domain = address.partition("@")
    if not (local and at and domain) or any(c.isspace() for c in address):
        raise UserError(f"{source}: expected an email address such as oncall@example.com, got {text.strip()!r}")
    return text.strip()
