"""What the alarm tests share: the shared alarm rules by name, a webhook receiver and an SMTP mailbox on
127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from deploy.monitoring.alarm_rules import ALARM_RULES

RULES = {rule.name: rule for rule in ALARM_RULES}
FIVE_XX = RULES["cloudviz-api-5xx-rate"]


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records every POST of an SNS notification (its JSON body, and its headers
    in ``headers``) and answers the first ones with ``refusals``."""

    def __init__(self, refusals: tuple[int, ...] = ()) -> None:
        self.refusals = list(refusals)
        self.attempts: list[dict] = []
        self.accepted: list[dict] = []
        self.headers: list[email.message.Message] = []  # names in any letter case, as HTTP's
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.headers.append(self.headers)
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


def alarm_of(notification: dict) -> dict:
    """The CloudWatch alarm state change an SNS notification carries, as a receiver on AWS reads it."""
    assert notification["Type"] == "Notification"
    return json.loads(notification["Message"])


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
