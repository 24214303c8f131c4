"""Where alarm state changes go: a webhook and email over SMTP, the local counterparts of the SNS topic and its
subscriptions on AWS. The webhook receives what SNS POSTs to an HTTP subscription of a CloudWatch alarm's topic (an
SNS notification whose ``Message`` is CloudWatch's alarm state change, JSON-encoded), so one receiver serves both.

Delivery never holds up the evaluator: ``notify`` queues the message and a worker thread per channel sends it,
retrying with exponential backoff. A delivery that still fails is logged (the ``deploy`` JSON log of
``cloudviz serve``) and dropped; nothing here raises into the caller.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import queue
import smtplib
import ssl
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from deploy.monitoring.alarm_history import ALARM, Transition
from deploy.monitoring.alarm_rules import AlarmRule
from pipelines.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_ATTEMPTS = 5
DEFAULT_BACKOFF_SECONDS = 0.5  # then 1, 2, 4: about 8 s of retrying before a delivery is given up
MAX_BACKOFF_SECONDS = 30.0
STARTTLS, TLS, NO_TLS = "starttls", "tls", "none"
SMTP_SECURITIES = (STARTTLS, TLS, NO_TLS)
DEFAULT_SMTP_PORTS = {STARTTLS: 587, TLS: 465, NO_TLS: 25}  # submission, submissions (implicit TLS), relay
PASSWORD_SOURCES = "CLOUDVIZ_SMTP_PASSWORD or --smtp-password-file"
# In the shape of AWS's ARNs, with the placeholder region and account of the local endpoint's (deploy.endpoint.control).
LOCAL_REGION, LOCAL_ACCOUNT = "local", "000000000000"
TOPIC_ARN = f"arn:aws:sns:{LOCAL_REGION}:{LOCAL_ACCOUNT}:cloudviz-alarms"
SNS_SUBJECT_LIMIT = 100  # characters: SNS refuses longer subjects, and CloudWatch cuts its own to fit
SNS_CONTENT_TYPE = "text/plain; charset=UTF-8"  # what SNS sends to HTTP subscriptions, JSON body notwithstanding
CLOUDWATCH_STATISTICS = {"SampleCount": "SAMPLE_COUNT"}  # else upper case: Average -> AVERAGE
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
    """The alarm state change as CloudWatch words it for SNS: its ``Trigger`` is the AWS alarm's metric and
    threshold (in AWS units; no ``Dimensions`` locally), ``NewStateReason`` has the local value."""
    trigger: dict[str, object] = {"MetricName": rule.metric_name, "Namespace": rule.namespace}
    if rule.statistic is not None:
        trigger |= {"StatisticType": "Statistic",
                    "Statistic": CLOUDWATCH_STATISTICS.get(rule.statistic, rule.statistic.upper())}
    else:
        trigger |= {"StatisticType": "ExtendedStatistic", "ExtendedStatistic": rule.extended_statistic}
    trigger |= {
        "Unit": rule.unit,
        "Period": max(1, round(rule.period_seconds)),  # whole seconds, as CloudWatch's; a local 0.5 s reads 1
        "EvaluationPeriods": rule.evaluation_periods,
        "DatapointsToAlarm": rule.datapoints_to_alarm,
        "ComparisonOperator": rule.comparison,
        "Threshold": rule.threshold * rule.aws_unit_scale,
        "TreatMissingData": rule.treat_missing_data,
        "EvaluateLowSampleCountPercentile": "",
    }
    return {
        "AlarmName": transition.alarm,
        "AlarmDescription": rule.description,
        "AWSAccountId": LOCAL_ACCOUNT,
        "NewStateValue": transition.new_state,
        "NewStateReason": transition.reason,
        "StateChangeTime": _utc(transition.timestamp).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000",
        "Region": LOCAL_REGION,
        "AlarmArn": f"arn:aws:cloudwatch:{LOCAL_REGION}:{LOCAL_ACCOUNT}:alarm:{transition.alarm}",
        "OldStateValue": transition.old_state,
        "OKActions": [TOPIC_ARN],
        "AlarmActions": [TOPIC_ARN],
        "InsufficientDataActions": [],
        "Trigger": trigger,
    }


def sns_notification(transition: Transition, rule: AlarmRule) -> dict:
    """What SNS POSTs to an HTTP subscription of the alarms' topic, unsigned (no ``Signature``, ``SigningCertURL``
    or ``UnsubscribeURL``: only SNS can sign). Every attempt of one state change sends the same document, as SNS
    does on its retries (same ``MessageId``; ``Timestamp``, the publication, is the change's), so a receiver can
    drop a repeat."""
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{TOPIC_ARN}/{transition.alarm}/{transition.timestamp}/"
                                                        f"{transition.new_state}")),
        "TopicArn": TOPIC_ARN,
        "Subject": alarm_email(transition, rule)[0][:SNS_SUBJECT_LIMIT],
        "Message": json.dumps(alarm_message(transition, rule)),
        "Timestamp": _utc(transition.timestamp).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
    }


def _utc(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp).astimezone(UTC)


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
    """POSTs ``sns_notification`` to ``url`` with SNS's headers; a 2xx answer is a delivery, a 5xx, 408 or 429 is
    retried."""

    channel = "webhook"

    def __init__(self, url: str, **options: float) -> None:
        super().__init__(**options)
        self.url = url
        self.destination = f"POST {url}"

    def deliver(self, transition: Transition, rule: AlarmRule) -> None:
        notification = sns_notification(transition, rule)
        request = urllib.request.Request(
            self.url, json.dumps(notification).encode(), method="POST",
            headers={"Content-Type": SNS_CONTENT_TYPE, "User-Agent": "cloudviz-alarms",
                     "x-amz-sns-message-type": notification["Type"], "x-amz-sns-message-id": notification["MessageId"],
                     "x-amz-sns-topic-arn": TOPIC_ARN},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                response.read()
        except urllib.error.HTTPError as error:
            if error.code < 500 and error.code not in RETRIED_HTTP_STATUSES:
                raise PermanentFailure(f"{self.url} answered {error.code} {error.reason}") from None
            raise


@dataclass(frozen=True)
class SmtpSettings:
    """Where alarm mail goes. ``security``: ``starttls`` (upgrade a plain connection, port 587), ``tls`` (TLS from
    the first byte, port 465) or ``none``; the server's certificate is verified against the system's CAs (or
    ``SSL_CERT_FILE``). With a ``user``, the connection logs in with ``password`` before sending."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    security: str = NO_TLS
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def destination(self) -> str:
        """Where it sends, in words (never the password)."""
        how = "" if self.security == NO_TLS else f" with {'STARTTLS' if self.security == STARTTLS else 'TLS'}"
        login = f" as {self.user}" if self.user else ""
        return f"email to {', '.join(self.recipients)} via {self.host}:{self.port}{how}{login}"


class EmailNotifier(QueuedNotifier):
    """Sends ``alarm_email`` over SMTP as ``settings`` say: TLS (STARTTLS or implicit) and a login when asked for,
    as SES, Office 365 and Gmail require; plain to a local relay or a test server."""

    channel = "email"

    def __init__(self, settings: SmtpSettings, **options: float) -> None:
        super().__init__(**options)
        self.settings = settings
        self.destination = settings.destination

    def deliver(self, transition: Transition, rule: AlarmRule) -> None:
        smtp = self.settings
        subject, body = alarm_email(transition, rule)
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = smtp.sender
        message["To"] = ", ".join(smtp.recipients)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message.set_content(body)
        server = f"{smtp.host}:{smtp.port}"
        try:
            with self._connect() as connection:
                if smtp.security == STARTTLS:
                    connection.starttls(context=ssl.create_default_context())
                if smtp.user is not None:
                    connection.login(smtp.user, smtp.password or "")
                connection.send_message(message)
        except ssl.SSLCertVerificationError as error:
            raise PermanentFailure(f"{server}: its certificate is not trusted ({error.verify_message}); a private CA's"
                                   " certificate can be named in SSL_CERT_FILE") from None
        except ssl.SSLError as error:  # e.g. TLS spoken to a port that expects STARTTLS, or the other way round
            raise PermanentFailure(f"{server}: the TLS handshake failed ({error.reason or error}); does the server"
                                   f" expect --smtp-security {STARTTLS if smtp.security == TLS else TLS}?") from None
        except smtplib.SMTPNotSupportedError as error:  # no STARTTLS or no AUTH offered: asking again will not help
            raise PermanentFailure(f"{server}: {error} (see --smtp-security and --smtp-user)") from None
        except smtplib.SMTPRecipientsRefused as error:
            raise PermanentFailure(f"{server} refused {', '.join(error.recipients)}") from None
        except smtplib.SMTPResponseException as error:
            if error.smtp_code < 500:
                raise
            answer = f"{error.smtp_code} {error.smtp_error.decode(errors='replace')}"
            if isinstance(error, smtplib.SMTPAuthenticationError):
                raise PermanentFailure(f"{server} refused the login of {smtp.user}: {answer}; check --smtp-user and"
                                       f" the password ({PASSWORD_SOURCES})") from None
            raise PermanentFailure(f"{server} answered {answer}") from None

    def _connect(self) -> smtplib.SMTP:
        smtp = self.settings
        if smtp.security == TLS:
            return smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=self.timeout_seconds,
                                    context=ssl.create_default_context())
        return smtplib.SMTP(smtp.host, smtp.port, timeout=self.timeout_seconds)


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
class NotificationSettings:
    """The channels ``cloudviz serve`` notifies: flags first, then ``CLOUDVIZ_ALARM_WEBHOOK`` and
    ``CLOUDVIZ_SMTP_HOST``/``_PORT``/``_FROM``/``_TO`` (recipients separated by commas)/``_SECURITY``/``_USER``/
    ``_PASSWORD_FILE``. The SMTP password is never a flag (it would show in ``ps`` and the shell's history): it is
    read from the file ``--smtp-password-file`` names, else from ``CLOUDVIZ_SMTP_PASSWORD``."""

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
        *,
        smtp_security: str | None = None,
        smtp_user: str | None = None,
        smtp_password_file: str | Path | None = None,
    ) -> NotificationSettings:
        """Validated settings; a UserError names the flag or variable at fault."""
        webhook = _setting(webhook_url, "--alarm-webhook", "CLOUDVIZ_ALARM_WEBHOOK", environ)
        if webhook is not None:
            _check_url(*webhook)
        options = {
            "host": _setting(smtp_host, "--smtp-host", "CLOUDVIZ_SMTP_HOST", environ),
            "port": _setting(smtp_port, "--smtp-port", "CLOUDVIZ_SMTP_PORT", environ),
            "sender": _setting(smtp_from, "--smtp-from", "CLOUDVIZ_SMTP_FROM", environ),
            "to": _setting(smtp_to, "--smtp-to", "CLOUDVIZ_SMTP_TO", environ),
            "security": _setting(smtp_security, "--smtp-security", "CLOUDVIZ_SMTP_SECURITY", environ),
            "user": _setting(smtp_user, "--smtp-user", "CLOUDVIZ_SMTP_USER", environ),
            "password": _password(
                _setting(smtp_password_file, "--smtp-password-file", "CLOUDVIZ_SMTP_PASSWORD_FILE", environ), environ),
        }
        return cls(webhook[0] if webhook is not None else None, _smtp_settings(**options))

    def notifiers(self, **options: float) -> list[Notifier]:
        """One notifier per configured channel (``options``: attempts, backoff_seconds, timeout_seconds)."""
        channels: list[Notifier] = []
        if self.webhook_url is not None:
            channels.append(WebhookNotifier(self.webhook_url, **options))
        if self.smtp is not None:
            channels.append(EmailNotifier(self.smtp, **options))
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


Setting = tuple[str, str] | None  # (value, the flag or variable it came from)


def _smtp_settings(host: Setting, port: Setting, sender: Setting, to: Setting, security: Setting, user: Setting,
                   password: Setting) -> SmtpSettings | None:
    """The SMTP channel, None when no host is set; a UserError names the flag or variable at fault. Security
    defaults to TLS on port 465, else STARTTLS when logging in (a password never goes out in clear), else none."""
    if host is None:
        given = next((option for option in (port, sender, to, security, user, password) if option is not None), None)
        if given is not None:
            raise UserError(f"{given[1]} is set but no SMTP host is: set --smtp-host or CLOUDVIZ_SMTP_HOST")
        return None
    name = host[0].strip()
    if not name or any(c.isspace() for c in host[0]):
        raise UserError(f"{host[1]}: expected a host name, got {host[0]!r}")
    for option, flag, variable in ((sender, "--smtp-from", "CLOUDVIZ_SMTP_FROM"),
                                   (to, "--smtp-to", "CLOUDVIZ_SMTP_TO")):
        if option is None:
            raise UserError(f"{host[1]} is set: email notifications also need {flag} or {variable}")
    recipients = tuple(_address(part, to[1]) for part in to[0].split(",") if part.strip())
    if not recipients:
        raise UserError(f"{to[1]}: expected at least one email address")
    if user is not None and password is None:
        raise UserError(f"{user[1]} is set: the login also needs a password, from {PASSWORD_SOURCES}")
    if password is not None and user is None:
        raise UserError(f"{password[1]} is set but no SMTP user is: set --smtp-user or CLOUDVIZ_SMTP_USER")
    number = _port(*port) if port is not None else None
    if security is not None:
        chosen = security[0].strip().lower()
        if chosen not in SMTP_SECURITIES:
            raise UserError(f"{security[1]}: expected one of {', '.join(SMTP_SECURITIES)}, got {security[0]!r}")
    else:
        chosen = TLS if number == DEFAULT_SMTP_PORTS[TLS] else STARTTLS if user is not None else NO_TLS
    if chosen == NO_TLS and user is not None and not _is_loopback(name):
        raise UserError(f"{security[1] if security else user[1]}: logging in to {name} without TLS would send the"
                        " password in clear: use --smtp-security starttls (port 587) or tls (port 465)")
    return SmtpSettings(host=name, port=number or DEFAULT_SMTP_PORTS[chosen], sender=_address(*sender),
                        recipients=recipients, security=chosen, user=user[0] if user else None,
                        password=password[0] if password else None)


def _password(file: Setting, environ: Mapping[str, str]) -> Setting:
    """The password in the file named (its first line: a trailing newline is not part of it), else
    ``CLOUDVIZ_SMTP_PASSWORD``; with where it came from."""
    if file is None:
        return _setting(None, "", "CLOUDVIZ_SMTP_PASSWORD", environ)
    path, source = file
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{source}: cannot read the SMTP password from {path}: "
                        f"{getattr(error, 'strerror', None) or error}") from None
    password = text.splitlines()[0] if text.strip() else ""
    if not password:
        raise UserError(f"{source}: {path} holds no password")
    return password, source


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


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
