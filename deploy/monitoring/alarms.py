"""The local alarm evaluator: CloudWatch's alarm evaluation, run on the sampled metrics inside ``cloudviz serve``.

State changes are recorded in the alarm history; those into and out of ALARM are also sent to the notifiers.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from deploy.monitoring.alarm_history import ALARM, INSUFFICIENT_DATA, OK, AlarmHistory, AlarmState, Transition
from deploy.monitoring.alarm_rules import COMPARISONS, AlarmRule
from deploy.monitoring.notifications import Notifier
from deploy.monitoring.sampler import MetricSampler, PeriodSample, iso_time

logger = logging.getLogger(__name__)
NOT_EVALUATED = "not evaluated yet"
MISSING_WORDS = {"notBreaching": "not breaching", "breaching": "breaching", "missing": "missing",
                 "ignore": "ignored"}


def _was(count: int) -> str:
    return "was" if count == 1 else "were"


def evaluate(rule: AlarmRule, datapoints: Sequence[float | None], current: str) -> tuple[str, str]:
    """(state, reason) of ``rule`` given its newest ``evaluation_periods`` datapoints, oldest first (None: missing).
    ``current`` is the state kept when every datapoint is missing and the rule ignores missing data."""
    total = len(datapoints)
    present = [value for value in datapoints if value is not None]
    missing = total - len(present)
    if missing == total and rule.treat_missing_data in ("missing", "ignore"):
        if rule.treat_missing_data == "ignore":
            return current, f"No data in the last {total} period(s): state kept (missing data ignored)."
        return INSUFFICIENT_DATA, f"Insufficient Data: {total} datapoint(s) {_was(total)} unknown."
    breaching = sum(rule.breaches(value) for value in present)
    if rule.treat_missing_data == "breaching":
        breaching += missing
    shown = ", ".join("missing" if value is None else f"{value:g}" for value in datapoints)
    note = f"; missing data treated as {MISSING_WORDS[rule.treat_missing_data]}" if missing else ""
    state = ALARM if breaching >= rule.datapoints_to_alarm else OK
    words = COMPARISONS[rule.comparison][1]
    headline = "Threshold Crossed" if state == ALARM else "Threshold not crossed"
    return state, (
        f"{headline}: {breaching} of the last {total} datapoint(s) [{shown}] {_was(breaching)} {words} the threshold"
        f" ({rule.threshold:g}) (minimum {rule.datapoints_to_alarm} for ALARM{note})."
    )


class AlarmEvaluator:
    """Evaluates ``rules`` on ``sampler``'s samples every ``sampler.period_seconds``, between ``start`` and
    ``close``. ``period_seconds`` replaces the rules' own period locally (None: keep theirs); a rule's period is
    counted in whole sampler periods (rounded, at least one). States continue from ``history``, so a restarted
    ``cloudviz serve`` resolves an alarm it left in ALARM. The evaluator closes its ``notifiers``."""

    def __init__(
        self,
        rules: Sequence[AlarmRule],
        sampler: MetricSampler,
        history: AlarmHistory,
        notifiers: Sequence[Notifier] = (),
        period_seconds: float | None = None,
        before_sample: Sequence[Callable[[], None]] = (),
    ) -> None:
        if period_seconds is not None and period_seconds <= 0:
            raise ValueError(f"period_seconds must be positive, got {period_seconds}")
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"two alarm rules share a name: {names}")
        self.rules = tuple(
            rule if period_seconds is None else dataclasses.replace(rule, period_seconds=period_seconds)
            for rule in rules
        )
        self.sampler = sampler
        self.history = history
        self.notifiers = list(notifiers)
        self.before_sample = list(before_sample)  # callbacks run before each sample (the drift refresh)
        self._periods = {rule.name: max(1, round(rule.period_seconds / sampler.period_seconds)) for rule in self.rules}
        self._datapoints: dict[str, deque[float | None]] = {
            rule.name: deque(maxlen=rule.evaluation_periods) for rule in self.rules
        }
        recorded, now = history.states(), iso_time(time.time())
        self._states = {rule.name: self._initial(rule, recorded.get(rule.name), now) for rule in self.rules}
        self._ticks = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _initial(rule: AlarmRule, recorded: AlarmState | None, now: str) -> AlarmState:
        details = {"threshold": rule.threshold, "description": rule.description, "metric": rule.local_metric,
                   "condition": rule.condition}
        if recorded is not None:
            return dataclasses.replace(recorded, **details)
        return AlarmState(rule.name, INSUFFICIENT_DATA, NOT_EVALUATED, now, value=None, **details)

    def states(self) -> list[AlarmState]:
        """Every alarm as it stands, in the order of the rules."""
        with self._lock:
            return [self._states[rule.name] for rule in self.rules]

    def tick(self, timestamp: float | None = None) -> list[Transition]:
        """One period: run the before-sample callbacks, sample (at ``timestamp``, default now), evaluate the rules
        whose period ended, record and notify. Returns the state changes."""
        for callback in list(self.before_sample):
            try:
                callback()
            except Exception:  # a failing callback costs its own metrics, not the alarms
                logger.exception("before-sample callback %s failed", getattr(callback, "__qualname__", callback))
        sample = self.sampler.sample(timestamp)
        evaluated: list[AlarmState] = []
        changes: list[tuple[Transition, AlarmRule]] = []
        with self._lock:
            self._ticks += 1
            due = [rule for rule in self.rules if not self._ticks % self._periods[rule.name]]
            # Rules over the same number of periods share one window (most rules share one period).
            windows = {periods: self.sampler.window(periods) for periods in {self._periods[rule.name] for rule in due}}
            for rule in due:
                try:
                    state, transition = self._evaluate(rule, windows[self._periods[rule.name]], sample.timestamp)
                except Exception:  # a broken rule must not silence the others
                    logger.exception("alarm %s could not be evaluated", rule.name)
                    continue
                evaluated.append(state)
                if transition is not None:
                    changes.append((transition, rule))
        try:
            self.history.save(evaluated, [transition for transition, _ in changes])
        except Exception:  # the alarm still fires: notifications matter more than the record
            logger.exception("alarm history %s could not be written", self.history.path)
        for transition, rule in changes:
            self._announce(transition, rule)
        return [transition for transition, _ in changes]

    def _evaluate(
        self, rule: AlarmRule, window: PeriodSample | None, timestamp: str
    ) -> tuple[AlarmState, Transition | None]:
        value = None if window is None else rule.measure(window)
        value = None if value is None else float(value)
        points = self._datapoints[rule.name]
        points.append(value)
        padded = [None] * (rule.evaluation_periods - len(points)) + list(points)
        current = self._states[rule.name]
        state, reason = evaluate(rule, padded, current.state)
        changed = state != current.state
        updated = dataclasses.replace(current, state=state, reason=reason, value=value, evaluated_at=timestamp,
                                      since=timestamp if changed else current.since)
        self._states[rule.name] = updated
        if not changed:
            return updated, None
        return updated, Transition(rule.name, current.state, state, reason, value, rule.threshold, timestamp)

    def _announce(self, transition: Transition, rule: AlarmRule) -> None:
        level = logging.WARNING if transition.new_state == ALARM else logging.INFO
        logger.log(level, "alarm %s: %s -> %s: %s", transition.alarm, transition.old_state, transition.new_state,
                   transition.reason, extra={"alarm": transition.alarm, "old_state": transition.old_state,
                                             "new_state": transition.new_state, "value": transition.value,
                                             "threshold": transition.threshold})
        if ALARM not in (transition.old_state, transition.new_state):
            return
        for notifier in self.notifiers:
            try:
                notifier.notify(transition, rule)
            except Exception:  # a notifier's bug must not stop the others, nor the evaluator
                logger.exception("%s notifier failed on %s", getattr(notifier, "channel", notifier), transition.alarm)

    # -- the thread -------------------------------------------------------------------------------

    def start(self) -> AlarmEvaluator:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="alarm-evaluator", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop evaluating, then let the notifiers deliver what they queued (each within ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for notifier in self.notifiers:
            notifier.close(timeout)

    def _run(self) -> None:
        period = self.sampler.period_seconds
        due = time.monotonic() + period
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            try:
                self.tick()
            except Exception:  # the next period may do better; serve keeps running either way
                logger.exception("alarm evaluation failed")
            due += period
            if due < time.monotonic():  # fell behind (a suspended laptop): skip the missed periods
                due = time.monotonic() + period
