"""Reading what a child process drew on a pseudo-terminal."""

from __future__ import annotations

import os


def read_until_closed(leader: int) -> bytes:
    """Everything written to the pty's follower side until the last writer closes it (Linux raises EIO then)."""
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            return screen
        if not chunk:
            return screen
        screen += chunk
