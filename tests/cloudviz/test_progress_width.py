"""The progress display fits the terminal (a wrapped line breaks the redraw in place) and honours NO_COLOR."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import unicodedata
from pathlib import Path

import pytest
from terminal import read_until_closed

from cloudviz.api.types import Run
from cloudviz.progress import ProgressDisplay
from cloudviz.render import run_summary
from pipelines.runs import RunRecord, StepRecord

CURSOR = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # the redraw's own sequences: colour, erase line, cursor up
SGR = re.compile(r"\x1b\[[0-9;]*m")
LONG_NAME = "PreprocessEveryPartOfTheDataSetVersionGivenOnTheCommandLine"


def columns_of(line: str) -> int:
    """Terminal columns, counted independently of the module under test."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in line)


def record(tmp_path: Path, reason: str = "x") -> RunRecord:
    """A run mid-way: a long-named step done, one executing, one failed with ``reason``, one pending."""
    steps = {
        LONG_NAME: StepRecord(LONG_NAME, "Succeeded", duration_seconds=2.25, cached_from="20261205-120000-abcdef"),
        "Train": StepRecord("Train", "Executing", attempts=2),
        "Evaluate": StepRecord("Evaluate", "Failed", duration_seconds=0.1, failure_reason=reason),
        "Register": StepRecord("Register"),
    }
    return RunRecord("20261205-130000-123456", "CloudVizIris", {}, tmp_path, steps=steps)


LONG_REASON = ("exited with status 1 (ValueError: could not convert string to float: 'n/a' in column x3 of "
               "/data/partition-0007.csv); log: /home/user/.cloudviz/runs/20261205/steps/Evaluate/attempt-1.log")


def drawn_lines(text: str) -> list[str]:
    return [line for line in CURSOR.sub("", text).replace("\r\n", "\n").split("\n") if line]


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")


@pytest.mark.parametrize("width", [40, 80, 132])
def test_redrawn_lines_fit_the_terminal_and_say_where_they_were_cut(tmp_path, monkeypatch, width: int):
    monkeypatch.setenv("COLUMNS", str(width))
    stream = io.StringIO()
    ProgressDisplay(stream, interactive=True).run_changed(record(tmp_path, LONG_REASON))
    lines = drawn_lines(stream.getvalue())
    assert len(lines) == 4
    assert max(columns_of(line) for line in lines) < width  # the last column left free: it wraps on some terminals
    assert lines[0].startswith(f"  ✓ {LONG_NAME[:14]}") and LONG_NAME not in lines[0]
    assert "Train " in lines[1] and "Executing" in lines[1]  # the status column survives a long name
    failed = lines[2]
    assert failed.startswith("  ✗ Evaluate ") and failed.endswith("…")
    if width > 100:
        assert "0.10s  exited with status 1" in failed


def test_wide_characters_count_twice(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    stream = io.StringIO()
    ProgressDisplay(stream, interactive=True).run_changed(record(tmp_path, "列 x3 の値が数値ではありません" * 4))
    assert max(columns_of(line) for line in drawn_lines(stream.getvalue())) < 80


def test_the_width_is_the_terminal_progress_is_drawn_on(tmp_path):
    """stderr's own terminal, 50 columns, with no $COLUMNS (stdout may be piped elsewhere)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 50, 0, 0))
    with os.fdopen(follower, "w", encoding="utf-8") as stream:
        ProgressDisplay(stream, interactive=True).run_changed(record(tmp_path, LONG_REASON))
        screen = os.read(leader, 65536).decode()
    os.close(leader)
    lines = drawn_lines(screen)
    assert len(lines) == 4 and max(columns_of(line) for line in lines) < 50


def test_no_color_drops_the_colours_and_keeps_the_redraw(tmp_path, monkeypatch):
    """no-color.org: NO_COLOR set to any non-empty value means no colour; moving the cursor is not colour."""
    coloured = io.StringIO()
    ProgressDisplay(coloured, interactive=True).run_changed(record(tmp_path))
    assert SGR.search(coloured.getvalue())
    monkeypatch.setenv("NO_COLOR", "0")
    plain = io.StringIO()
    ProgressDisplay(plain, interactive=True).run_changed(record(tmp_path))
    assert not SGR.search(plain.getvalue())
    assert "\x1b[2K" in plain.getvalue() and "✗ Evaluate" in plain.getvalue()
    monkeypatch.setenv("NO_COLOR", "")  # empty: as if unset
    empty = io.StringIO()
    ProgressDisplay(empty, interactive=True).run_changed(record(tmp_path))
    assert SGR.search(empty.getvalue())


@pytest.mark.parametrize(("interactive", "term"), [(False, "xterm"), (True, "dumb")])
def test_plain_lines_carry_no_escape_sequence_even_from_a_scripts_message(tmp_path, monkeypatch, interactive, term):
    """Not a terminal (or TERM=dumb): plain lines, in full; a failure reason's own escapes and newlines are shown
    inert, so a data value cannot drive the user's terminal."""
    monkeypatch.setenv("TERM", term)
    monkeypatch.setenv("COLUMNS", "40")
    stream = io.StringIO()
    hostile = "\x1b]0;owned\x07bad value\x1b[2J\nline two\u202eevil"
    ProgressDisplay(stream, interactive=interactive).run_changed(record(tmp_path, hostile + " " + LONG_REASON))
    text = stream.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "Evaluate: Failed in 0.10s (�]0;owned�bad value�[2J line two�evil exited with status 1" in text
    assert LONG_REASON in text  # a log keeps the whole reason: no cut without a terminal
    assert len(text.splitlines()) == 3  # one per step that left Pending


def test_the_run_summary_shows_a_failure_reason_inert():
    failed = Run("20261205-130000-123456", "local", "Failed", {}, None,
                 failure_reason="Evaluate: \x1b]0;owned\x07bad\x1b[2J\nvalue")
    summary = run_summary(failed)
    assert "\x1b" not in summary and "\x07" not in summary
    assert "\nFailed: Evaluate: �]0;owned�bad�[2J value\n" in summary + "\n"


def test_a_run_on_a_narrow_terminal_draws_no_line_wider_than_it(home):
    """The real command on a 60-column terminal with stdout piped; NO_COLOR set."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
    environment = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    process = subprocess.Popen(
        [sys.executable, "-m", "cloudviz", "pipeline", "run", "--param", "AccuracyThreshold=0.999"],
        stdout=subprocess.PIPE, stderr=follower, env={**environment, "TERM": "xterm", "NO_COLOR": "1"},
    )
    os.close(follower)
    screen = read_until_closed(leader)
    summary = process.communicate()[0].decode()
    assert process.wait() == 1
    os.close(leader)
    text = screen.decode()
    assert "\x1b[6F" in text and not SGR.search(text)
    lines = drawn_lines(text)
    assert max(columns_of(line) for line in lines) < 60
    assert any(line.startswith("  ✗ AccuracyBelowThreshold Failed") and line.endswith("…") for line in lines)
    assert "is below the threshold 0.999" in summary  # the summary on stdout keeps the whole reason
