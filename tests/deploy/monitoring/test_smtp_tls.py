"""Alarm mail through a server that requires TLS and a login, as SES, Office 365 and Gmail do: an aiosmtpd server on
127.0.0.1 with a certificate made for the test, requiring STARTTLS (or speaking TLS from the first byte) and AUTH
LOGIN or PLAIN. The settings are resolved as ``cloudviz serve`` resolves its flags and environment variables."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import logging
import shutil
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from alarm_support import FIVE_XX, Mailbox, free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from polling import wait_for

from cloudviz.api.local_serve import alarm_notifiers
from cloudviz.cli import main
from deploy.local_service import LocalService
from deploy.monitoring.alarm_history import Transition
from deploy.monitoring.notifications import NotificationSettings, Notifier
from pipelines.errors import UserError
from pipelines.json_logs import log_to_file
from pipelines.registry import ModelRegistry
from pipelines.state import StateHome

USER, PASSWORD = "alarms@example.com", "correct horse battery staple"
TRANSITION = Transition(FIVE_XX.name, "OK", "ALARM", "Threshold Crossed: 1 of the last 1 datapoint(s) [0.5] was"
                        " greater than the threshold (0.05) (minimum 1 for ALARM).", 0.5, 0.05,
                        "2024-07-02T18:29:50.443+00:00")
MAIL = {"smtp_host": "127.0.0.1", "smtp_from": "cloudviz@example.com", "smtp_to": "oncall@example.com"}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudviz test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("smtp-tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


@dataclass
class Server:
    """The mailbox, the port, and each login tried: (mechanism, user, password, over TLS)."""

    mailbox: Mailbox
    port: int
    logins: list[tuple[str, str, str, bool]] = field(default_factory=list)

    def authenticate(self, server: object, session: object, envelope: object, mechanism: str,
                     auth_data: object) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((mechanism, login, password, server.transport.get_extra_info("ssl_object") is not None))
        return AuthResult(success=(login, password) == (USER, PASSWORD), handled=False)  # False: aiosmtpd answers 535


def start_server(certificate: tuple[Path, Path], implicit_tls: bool = False,
                 excluded: tuple[str, ...] = ()) -> tuple[Server, Controller]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    server = Server(Mailbox(), free_port())
    # aiosmtpd's auth_require_tls knows of STARTTLS only; a server speaking TLS from the first byte is TLS anyway.
    tls = ({"ssl_context": context, "auth_require_tls": False} if implicit_tls
           else {"tls_context": context, "require_starttls": True, "auth_require_tls": True})
    controller = Controller(server.mailbox, hostname="127.0.0.1", port=server.port, auth_required=True,
                            authenticator=server.authenticate,
                            auth_exclude_mechanism=excluded, **tls)
    controller.start()
    return server, controller


@pytest.fixture
def trusted(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's certificate trusted as a private CA is: through SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "smtp-password"
    path.write_text(PASSWORD + "\n")
    return path


def send(notifiers: list[Notifier]) -> None:
    (notifier,) = notifiers
    notifier.notify(TRANSITION, FIVE_XX)
    notifier.close(timeout=20)


@pytest.fixture
def starttls_server(certificate: tuple[Path, Path]) -> Iterator[tuple[Server, Controller]]:
    server, controller = start_server(certificate)
    yield server, controller
    controller.stop()


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_alarm_mail_goes_through_starttls_and_a_login(certificate, trusted, password_file, mechanism):
    other = {"LOGIN": "PLAIN", "PLAIN": "LOGIN"}[mechanism]
    server, controller = start_server(certificate, excluded=(other,))
    try:
        notifiers = alarm_notifiers(**MAIL, smtp_port=str(server.port), smtp_user=USER,
                                    smtp_password_file=str(password_file))
        assert notifiers[0].destination == (f"email to oncall@example.com via 127.0.0.1:{server.port} with STARTTLS"
                                            f" as {USER}")  # STARTTLS by default when logging in
        send(notifiers)
    finally:
        controller.stop()
    assert server.logins == [(mechanism, USER, PASSWORD, True)]  # over TLS; the file's newline not in the password
    (to, message), = server.mailbox.messages
    assert to == ["oncall@example.com"] and message["Subject"] == f'ALARM: "{FIVE_XX.name}" in CloudViz (local)'


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # it is TLS: aiosmtpd cannot tell
def test_alarm_mail_goes_over_implicit_tls_with_the_password_from_the_environment(
        certificate, trusted, monkeypatch: pytest.MonkeyPatch):
    server, controller = start_server(certificate, implicit_tls=True)
    monkeypatch.setenv("CLOUDVIZ_SMTP_PASSWORD", PASSWORD)
    try:
        send(alarm_notifiers(**MAIL, smtp_port=str(server.port), smtp_security="tls", smtp_user=USER))
    finally:
        controller.stop()
    assert server.logins == [("PLAIN", USER, PASSWORD, True)]
    assert len(server.mailbox.messages) == 1


def test_a_wrong_password_is_logged_once_clearly_and_the_channel_keeps_working(
        starttls_server, trusted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture):
    server, _ = starttls_server
    monkeypatch.setenv("CLOUDVIZ_SMTP_PASSWORD", "wrong")
    handler = log_to_file(tmp_path / "serve.log", "deploy")  # as `cloudviz serve` logs
    try:
        (notifier,) = alarm_notifiers(**MAIL, smtp_port=str(server.port), smtp_user=USER)
        with caplog.at_level(logging.WARNING, logger="deploy.monitoring.notifications"):
            notifier.notify(TRANSITION, FIVE_XX)  # returns at once; nothing raises into the caller
            notifier.notify(TRANSITION, FIVE_XX)  # the worker still runs after the failure
            notifier.close(timeout=20)
    finally:
        logging.getLogger("deploy").removeHandler(handler)
        handler.close()
    expected = (f"email notification of {FIVE_XX.name} (OK -> ALARM) not delivered after 1 attempt(s): "
                f"127.0.0.1:{server.port} refused the login of {USER}: 535 5.7.8 Authentication credentials invalid;"
                " check --smtp-user and the password (CLOUDVIZ_SMTP_PASSWORD or --smtp-password-file)")
    assert [record.getMessage() for record in caplog.records] == [expected, expected]  # not retried: it cannot pass
    lines = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()]
    assert [(line["level"], line["message"], line["channel"]) for line in lines] == [("ERROR", expected, "email")] * 2
    assert "wrong" not in (tmp_path / "serve.log").read_text()
    # One connection per notification, smtplib trying each mechanism offered once; no retries.
    assert server.mailbox.messages == []
    assert server.logins == [("PLAIN", USER, "wrong", True), ("LOGIN", USER, "wrong", True)] * 2


def post(api_url: str) -> int:
    """The status of one prediction request (the API's key is the test's)."""
    connection = http.client.HTTPConnection(api_url.removeprefix("http://"), timeout=30)
    try:
        connection.request("POST", "/predictions", json.dumps({"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5}),
                           {"x-api-key": "k" * 32, "Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_serve_keeps_serving_and_evaluating_after_a_wrong_smtp_password(
        two_versions: Path, tmp_path: Path, starttls_server, trusted, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture):
    server, _ = starttls_server
    root = tmp_path / "home"
    shutil.copytree(two_versions, root, ignore=shutil.ignore_patterns("cache"))
    home = StateHome(root)
    ModelRegistry(home.registry_db).update_approval("CloudVizIris", 1, "Approved")
    monkeypatch.setenv("CLOUDVIZ_SMTP_PASSWORD", "wrong")
    notifiers = alarm_notifiers(**MAIL, smtp_port=str(server.port), smtp_user=USER)

    def refused() -> bool:
        return any("refused the login" in record.getMessage() for record in caplog.records)

    with (caplog.at_level(logging.ERROR, logger="deploy.monitoring.notifications"),
          LocalService(home, "CloudVizIris", "k" * 32, alarm_period_seconds=0.2, notifiers=notifiers).start()
          as service):
        service.endpoint_server.close()  # the model endpoint goes down: the API answers 503, the 5xx alarm fires
        wait_for(lambda: post(service.api.url) == 503 and refused(), "the alarm mail's refused login")
        evaluated = max(state.evaluated_at for state in service.evaluator.states())
        assert post(service.api.url) == 503  # still answering
        wait_for(lambda: max(state.evaluated_at for state in service.evaluator.states()) > evaluated,
                 "the alarms evaluated again")
    assert server.mailbox.messages == []


def test_an_untrusted_certificate_is_refused(starttls_server, password_file, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture, tmp_path: Path):
    server, _ = starttls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-ca.pem"))  # the system's CAs only
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    with caplog.at_level(logging.ERROR, logger="deploy.monitoring.notifications"):
        send(alarm_notifiers(**MAIL, smtp_port=str(server.port), smtp_user=USER,
                             smtp_password_file=str(password_file)))
    (record,) = [record for record in caplog.records if record.name == "deploy.monitoring.notifications"]
    assert f"127.0.0.1:{server.port}: its certificate is not trusted (self-signed certificate)" in record.getMessage()
    assert server.logins == []  # the password never left


def test_tls_spoken_to_a_starttls_port_says_which_to_try(starttls_server, trusted, password_file,
                                                         caplog: pytest.LogCaptureFixture):
    server, _ = starttls_server
    with caplog.at_level(logging.ERROR, logger="deploy.monitoring.notifications"):
        send(alarm_notifiers(**MAIL, smtp_port=str(server.port), smtp_security="tls", smtp_user=USER,
                             smtp_password_file=str(password_file)))
    (record,) = [record for record in caplog.records if record.name == "deploy.monitoring.notifications"]
    assert record.getMessage().endswith(f"after 1 attempt(s): 127.0.0.1:{server.port}: the TLS handshake failed"
                                        " (WRONG_VERSION_NUMBER); does the server expect --smtp-security starttls?")


@pytest.mark.parametrize(("options", "environ", "error"), [
    ({"smtp_user": USER}, {}, "--smtp-user is set: the login also needs a password, from CLOUDVIZ_SMTP_PASSWORD or"
                              " --smtp-password-file"),
    ({}, {"CLOUDVIZ_SMTP_PASSWORD": "x"}, "CLOUDVIZ_SMTP_PASSWORD is set but no SMTP user is: set --smtp-user"),
    ({"smtp_user": USER, "smtp_password_file": "/no/such/file"}, {},
     "--smtp-password-file: cannot read the SMTP password from /no/such/file: No such file or directory"),
    ({"smtp_user": USER, "smtp_security": "none"}, {"CLOUDVIZ_SMTP_PASSWORD": "x"},
     "--smtp-security: logging in to mail.example.com without TLS would send the password in clear"),
    ({}, {"CLOUDVIZ_SMTP_SECURITY": "ssl"}, "CLOUDVIZ_SMTP_SECURITY: expected one of starttls, tls, none, got 'ssl'"),
])
def test_smtp_login_settings_are_validated_naming_the_flag_or_variable(options, environ, error):
    with pytest.raises(UserError, match=f"^{error}"):
        NotificationSettings.resolve(smtp_host="mail.example.com", smtp_from="a@example.com",
                                     smtp_to="b@example.com", environ=environ, **options)


def test_smtp_user_without_host_is_named():
    with pytest.raises(UserError, match="^CLOUDVIZ_SMTP_USER is set but no SMTP host is"):
        NotificationSettings.resolve(environ={"CLOUDVIZ_SMTP_USER": USER})


@pytest.mark.parametrize(("options", "expected"), [
    ({}, ("none", 25)),
    ({"smtp_port": "465", "smtp_user": USER}, ("tls", 465)),
    ({"smtp_user": USER}, ("starttls", 587)),
    ({"smtp_security": "tls"}, ("tls", 465)),
])
def test_smtp_security_and_port_defaults(options, expected):
    smtp = NotificationSettings.resolve(smtp_host="mail.example.com", smtp_from="a@example.com",
                                        smtp_to="b@example.com", environ={"CLOUDVIZ_SMTP_PASSWORD": "secret"}
                                        if "smtp_user" in options else {}, **options).smtp
    assert (smtp.security, smtp.port) == expected
    assert "secret" not in repr(smtp)


def test_the_password_is_never_a_flag(capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--smtp-password", "hunter2"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "--smtp-password: the SMTP password is never a flag" in err and "hunter2" not in err
