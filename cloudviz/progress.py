"""Live progress of a pipeline run: a redrawn line per step on a terminal, plain lines otherwise.

A redrawn line never reaches the terminal's last column (a wrapped line would break the redraw), and is coloured
unless ``NO_COLOR`` is set (https://no-color.org); ``TERM=dumb`` gets plain lines, with no escape sequence at all.
"""

from __future__ import annotations

import os
import shutil
import time
import unicodedata
from typing import TextIO

from pipelines.runs import EXECUTING, FAILED, PENDING, SKIPPED, SUCCEEDED, RunRecord, StepRecord

SYMBOLS = {PENDING: "·", SUCCEEDED: "✓", FAILED: "✗", SKIPPED: "↷"}
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
COLORS = {SUCCEEDED: "32", FAILED: "31", SKIPPED: "90", PENDING: "90", EXECUTING: "36"}
ELLIPSIS = "…"
UNPRINTABLE = "\ufffd"  # shown for a control or format character a step's output put into a failure reason


def step_note(step: StepRecord) -> str:
    """What is worth knowing about a step beyond its status: cache use, retries, outcome."""
    notes = []
    if step.cached_from:
        notes.append(f"cached, from run {step.cached_from}")
    if step.attempts > 1:
        notes.append(f"{step.attempts} attempts")
    if "outcome" in step.properties:
        p = step.properties
        compared = f"{p['left']:.4g} {p['comparison']} {p['right']:.4g}" if numbers(p["left"], p["right"]) else (
            "condition")  # a flag such as the evaluation's gate.passed: its detail is in the evaluation
        notes.append(f"{compared}: {str(p['outcome']).lower()}")
    if "version" in step.properties:
        notes.append(f"{step.properties['model_package_group']} v{step.properties['version']}")
    if step.status == FAILED and step.failure_reason:
        notes.append(step.failure_reason)
    return printable("; ".join(notes))


def printable(text: str) -> str:
    """``text`` on one line, without the control characters (escape sequences, bidi overrides) that a script's
    message or a data value could smuggle onto the user's terminal."""
    return "".join(
        " " if char in "\t\r\n" else UNPRINTABLE if unicodedata.category(char) in ("Cc", "Cf") else char
        for char in text
    )


def cells(text: str) -> int:
    """The terminal columns ``text`` takes: wide (East Asian) characters two, combining marks none."""
    return sum(char_cells(char) for char in text)


def char_cells(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def fit(text: str, columns: int) -> str:
    """``text`` cut to at most ``columns`` terminal columns, ending in an ellipsis where it was cut."""
    if cells(text) <= columns:
        return text
    kept, used = [], cells(ELLIPSIS)
    for char in text:
        used += char_cells(char)
        if used > columns:
            break
        kept.append(char)
    return "".join(kept) + ELLIPSIS if columns >= cells(ELLIPSIS) else ""


def pad(text: str, columns: int) -> str:
    """``text`` fitted into exactly ``columns`` terminal columns."""
    fitted = fit(text, columns)
    return fitted + " " * (columns - cells(fitted))


def terminal_columns(stream: TextIO) -> int:
    """The width of the terminal ``stream`` shows on: ``$COLUMNS`` when set, as ``shutil.get_terminal_size`` reads
    it; else the stream's own terminal (progress goes to stderr, whose terminal stays when stdout is piped); else
    ``shutil``'s answer (stdout's terminal, or 80)."""
    if os.environ.get("COLUMNS", "").strip().isdigit() and int(os.environ["COLUMNS"]) > 0:
        return int(os.environ["COLUMNS"])
    try:
        return os.get_terminal_size(stream.fileno()).columns or shutil.get_terminal_size().columns
    except (AttributeError, OSError, ValueError):  # not a file (io.UnsupportedOperation is both), or no terminal
        return shutil.get_terminal_size().columns


def no_color() -> bool:
    """Whether the user asked for no colour: ``NO_COLOR`` set to anything but the empty string."""
    return bool(os.environ.get("NO_COLOR"))


def numbers(*values: object) -> bool:
    return all(isinstance(value, int | float) and not isinstance(value, bool) for value in values)


def elapsed(step: StepRecord, now: float, started: dict[str, float]) -> str:
    if step.duration_seconds is not None and step.status != EXECUTING:
        return f"{step.duration_seconds:6.2f}s"
    if step.status == EXECUTING:
        return f"{now - started.setdefault(step.name, now):6.1f}s"
    return " " * 7


class ProgressDisplay:
    """A RunObserver: redraws in place on a terminal (``interactive``, unless ``TERM=dumb``); prints each status
    change otherwise, in full (a log keeps the whole failure reason)."""

    def __init__(self, stream: TextIO, interactive: bool) -> None:
        self.stream = stream
        self.interactive = interactive and os.environ.get("TERM") != "dumb"
        self.color = not no_color()
        self.drawn = 0
        self.last_draw = 0.0
        self.started: dict[str, float] = {}
        self.reported: dict[str, str] = {}

    def run_changed(self, record: RunRecord) -> None:
        if self.interactive:
            self._redraw(record)
        else:
            self._report_changes(record)

    def _report_changes(self, record: RunRecord) -> None:
        for step in record.steps.values():
            if self.reported.get(step.name, PENDING) == step.status:
                continue
            self.reported[step.name] = step.status
            line = f"{step.name}: {step.status}"
            if step.status != EXECUTING and step.duration_seconds is not None:
                line += f" in {step.duration_seconds:.2f}s"
            note = step_note(step)
            print(f"{line}{f' ({note})' if note else ''}", file=self.stream, flush=True)

    def _redraw(self, record: RunRecord) -> None:
        now = time.monotonic()
        changed = any(self.reported.get(s.name) != s.status for s in record.steps.values())
        if not changed and now - self.last_draw < 0.1:
            return
        self.reported = {s.name: s.status for s in record.steps.values()}
        self.last_draw = now
        columns = terminal_columns(self.stream) - 1  # a character in the last column wraps on some terminals
        names = min(max(cells(name) for name in record.steps), max(10, columns * 2 // 5))  # room left for notes
        lines = []
        for step in record.steps.values():
            symbol = SPINNER[int(now * 10) % len(SPINNER)] if step.status == EXECUTING else SYMBOLS[step.status]
            head = f"{symbol} {pad(printable(step.name), names)} {step.status:<10}"
            line = fit(f"  {head} {elapsed(step, now, self.started)}  {step_note(step)}".rstrip(), columns)
            lines.append(self._colored(line, 2, 2 + len(head), step.status))
        up = f"\x1b[{self.drawn}F" if self.drawn else ""
        self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.stream.flush()
        self.drawn = len(lines)

    def _colored(self, line: str, start: int, end: int, status: str) -> str:
        """``line`` with its characters ``start:end`` in the status's colour, unless ``NO_COLOR``."""
        if not self.color or start >= len(line):
            return line
        return f"{line[:start]}\x1b[{COLORS[status]}m{line[start:end]}\x1b[0m{line[end:]}"
