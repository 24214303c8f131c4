"""The notification channels the alarm tests deliver to: a webhook receiver and an SMTP server on 127.0.0.1."""

from __future__ import annotations

import pytest
from aiosmtpd.controller import Controller
from alarm_support import Mailbox, WebhookReceiver, free_port


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
