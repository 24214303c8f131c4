"""Starting a local serve for ``LocalProject.serve``: one serve per endpoint, ports checked free first (a taken one
named with the serve of the state home that holds it), and the serve record ``cloudviz dashboard`` and
``Project.api()`` find it by."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cloudviz.api.prediction_api import PredictionApi, Serving
from pipelines.errors import UserError
from pipelines.json_logs import log_to_file

if TYPE_CHECKING:
    from deploy.dashboard.serve_file import ServeRecord
    from deploy.endpoint_state import EndpointFiles
    from deploy.local_service import LocalService
    from deploy.monitoring.notifications import Notifier
    from pipelines.state import StateHome


class ServeRefused(UserError):
    """``serve()`` refused before starting anything: ``reason`` says why, the message adds what to do instead."""

    def __init__(self, reason: str, remedy: str) -> None:
        super().__init__(f"{reason}{remedy}")
        self.reason = reason


class AlreadyServed(ServeRefused):
    """A serve of the endpoint runs on this state home already."""


class PortTaken(ServeRefused):
    """A port asked for is taken (by another serve of this state home, when ``reason`` names one)."""


@dataclass
class LocalServing(Serving):
    """A serve started in this process: ``service`` is the running endpoint and API, ``record`` what
    ``cloudviz dashboard`` reads."""

    service: LocalService | None = field(default=None, repr=False)
    record: ServeRecord | None = None


def alarm_notifiers(webhook: str | None = None, smtp_host: str | None = None, smtp_port: str | None = None,
                    smtp_from: str | None = None, smtp_to: str | None = None, *, smtp_security: str | None = None,
                    smtp_user: str | None = None, smtp_password_file: str | None = None) -> list[Notifier]:
    """Where a serve sends its alarms' changes: a webhook and/or email, each argument falling back to its
    environment variable (CLOUDVIZ_ALARM_WEBHOOK, CLOUDVIZ_SMTP_HOST/PORT/FROM/TO/SECURITY/USER/PASSWORD_FILE). The
    SMTP password is read from ``smtp_password_file``, else CLOUDVIZ_SMTP_PASSWORD: never an argument."""
    from deploy.monitoring.notifications import NotificationSettings

    return NotificationSettings.resolve(webhook, smtp_host, smtp_port, smtp_from, smtp_to, smtp_security=smtp_security,
                                        smtp_user=smtp_user, smtp_password_file=smtp_password_file).notifiers()


def serve_of(files: EndpointFiles) -> ServeRecord | None:
    """The serve running the endpoint of ``files`` (as ``cloudviz dashboard`` finds it), if any."""
    from deploy.dashboard.serve_file import serve_if_running

    return serve_if_running(files.serve_file)


def check_port_free(home: StateHome, group: str, port: int, role: str) -> None:
    """Refuse a taken port, naming the serve of this state home that holds it if one does (0: any free port)."""
    from deploy.endpoint_state import every_endpoint

    if port == 0:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no obstacle
        try:
            probe.bind(("127.0.0.1", port))
            return
        except OSError as error:
            reason = error.strerror or str(error)
    holders = [f", by the serve of {files.endpoint} (process {record.pid})" for files in every_endpoint(home)
               if (record := serve_of(files)) and port in (urlsplit(record.api_url).port,
                                                           urlsplit(record.endpoint_url).port)]
    raise PortTaken(f"cannot listen on 127.0.0.1:{port} (the {role} port): {reason}{''.join(holders[:1])}",
                    f"; serve {group} on other ports with api_port=N, endpoint_port=M (0: any free port)")


def start_serve(home: StateHome, files: EndpointFiles, group: str, stage: str, *, api_port: int,
                endpoint_port: int, alarm_period_seconds: float | None, notifiers: Sequence[Notifier],
                on_event: Callable[[str], None] | None, forget: Callable[[], None],
                cors_origins: Sequence[str] = (), max_connections: int | None = None,
                lambda_workers: int = 0, endpoint_process: bool = False) -> LocalServing:
    """Check, start and record the serve; closing it stops the service, forgets the record, then calls
    ``forget``. OSError when a port cannot be listened on after all."""
    from deploy.api_key import api_key
    from deploy.dashboard.serve_file import ServeRecord, forget_serve, record_serve
    from deploy.gateway.policy import checked_origins
    from deploy.local_service import LocalService

    try:
        cors_origins = checked_origins(cors_origins)
    except ValueError as error:
        raise UserError(f"cors_origins: {error}") from None

    running = serve_of(files)
    if running is not None:
        raise AlreadyServed(f"{files.endpoint} is served already, by process {running.pid} at {running.api_url}",
                            f": call it with project.api({group!r}, {stage!r})")
    for port, role in ((endpoint_port, "endpoint"), (api_port, "API")):
        check_port_free(home, group, port, role)
    key = api_key(home.api_key_file)
    log_to_file(files.serve_log, "deploy", "serving_lambdas")
    service = LocalService(home, group, key, api_port, endpoint_port, alarm_period_seconds=alarm_period_seconds,
                           notifiers=notifiers, stage=stage, smoke_test=True, cors_origins=cors_origins,
                           max_connections=max_connections, lambda_workers=lambda_workers,
                           endpoint_process=endpoint_process,
                           **({"on_event": on_event} if on_event is not None else {}))
    service.start()
    record = ServeRecord(service.api.url, service.endpoint_server.url, os.getpid(), group)
    record_serve(files.serve_file, record)

    def stop() -> None:
        forget()
        try:
            forget_serve(files.serve_file, record)
        finally:
            service.close()

    return LocalServing(PredictionApi(service.api.url, key), stop, service, record)
