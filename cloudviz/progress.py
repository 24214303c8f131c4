"""Live progress of a pipeline run: a redrawn line per step on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from typing import TextIO

from pipelines.runs import EXECUTING, FAILED, PENDING, SKIPPED, SUCCEEDED, RunRecord, StepRecord

SYMBOLS = {PENDING: "·", SUCCEEDED: "✓", FAILED: "✗", SKIPPED: "↷"}
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
COLORS = {SUCCEEDED: "32", FAILED: "31", SKIPPED: "90", PENDING: "90", EXECUTING: "36"}


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
    return "; ".join(notes)


def numbers(*values: object) -> bool:
    return all(isinstance(value, int | float) and not isinstance(value, bool) for value in values)


def elapsed(step: StepRecord, now: float, started: dict[str, float]) -> str:
    if step.duration_seconds is not None and step.status != EXECUTING:
        return f"{step.duration_seconds:6.2f}s"
    if step.status == EXECUTING:
        return f"{now - started.setdefault(step.name, now):6.1f}s"
    return " " * 7


class ProgressDisplay:
    """A RunObserver: redraws in place on a terminal; prints each status change otherwise."""

    def __init__(self, stream: TextIO, interactive: bool) -> None:
        self.stream = stream
        self.interactive = interactive
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
        width = max(len(name) for name in record.steps)
        lines = []
        for step in record.steps.values():
            symbol = SPINNER[int(now * 10) % len(SPINNER)] if step.status == EXECUTING else SYMBOLS[step.status]
            status = f"\x1b[{COLORS[step.status]}m{symbol} {step.name:<{width}} {step.status:<10}\x1b[0m"
            lines.append(f"  {status} {elapsed(step, now, self.started)}  {step_note(step)}")
        up = f"\x1b[{self.drawn}F" if self.drawn else ""
        self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.stream.flush()
        self.drawn = len(lines)
