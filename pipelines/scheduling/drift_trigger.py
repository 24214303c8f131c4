"""Drift-triggered retraining (off unless asked for): when the serve's feature-drift alarm goes to ALARM and the
group's data set has a version newer than the one its newest successful run trained on, start one run; then a
cool-down (default 24 h) during which further alarms start nothing. It listens as one more alarm notifier, so it
sees exactly the changes into ALARM that the webhook and email see."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from deploy.monitoring.alarm_history import ALARM, Transition
from deploy.monitoring.alarm_rules import ALARM_RULES, AlarmRule
from pipelines.data.versions import local_dataset_store
from pipelines.definition import DEFAULT_GROUP
from pipelines.errors import UserError
from pipelines.retraining import drift_run_decision
from pipelines.runs import SUCCEEDED, RunStore
from pipelines.scheduling.history import STARTING, HistoryEntry, ScheduleHistory
from pipelines.scheduling.launcher import (
    DATASET_PARAMETER,
    BackgroundRuns,
    Clock,
    RunStarter,
    local_run_starter,
    newest_version,
    utc_now,
)
from pipelines.state import StateHome

logger = logging.getLogger(__name__)
DEFAULT_COOLDOWN = timedelta(hours=24)
FEATURE_DRIFT_ALARM = next(rule.name for rule in ALARM_RULES if rule.metric_name == "FeatureDrift")
DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str, name: str = "cool-down") -> timedelta:
    """``90s``, ``30m``, ``24h``, ``2d``; a UserError naming ``name`` otherwise."""
    match = DURATION.fullmatch(text.strip())
    if not match:
        raise UserError(f"{name} {text!r}: expected a number and a unit s, m, h or d, such as 24h or 30m")
    return timedelta(**{UNITS[match.group(2)]: float(match.group(1))})


def dataset_of_group(home: StateHome, group: str) -> str | None:
    """The data set whose versions train ``group`` (their ModelPackageGroupName); the bundled iris for the default
    group."""
    store = local_dataset_store(home)
    for name in store.names():
        newest = store.newest(name)
        if newest is not None and newest.group == group:
            return name
    return "iris" if group == DEFAULT_GROUP else None


def last_trained_version(runs: Path, group: str) -> str | None:
    """The data set version the group's newest successful run trained on (None: none, or not on a data set)."""
    for record in RunStore(runs).list():
        if record.status == SUCCEEDED and record.parameters.get("ModelPackageGroupName") == group:
            return record.parameters.get(DATASET_PARAMETER) or None
    return None


class DriftTrigger:
    """An alarm notifier of a serve of ``group`` that starts the drift-triggered runs (their history entries are
    under ``drift:<group>``, shared by every serve of the state home, and so is the cool-down)."""

    channel = "retrain"

    def __init__(self, home: StateHome, group: str, cooldown: timedelta = DEFAULT_COOLDOWN, clock: Clock = utc_now,
                 start_run: RunStarter | None = None, on_event: Callable[[str], None] = lambda message: None) -> None:
        self.home = home
        self.group = group
        self.cooldown = cooldown
        self.clock = clock
        self.on_event = on_event
        self.key = f"drift:{group}"
        self.destination = f"a pipeline run of {group} on {FEATURE_DRIFT_ALARM} (cool-down {cooldown})"
        self.history = ScheduleHistory(home.schedules_db)
        self.runs = BackgroundRuns(self.history, start_run or local_run_starter(home), clock)

    def notify(self, transition: Transition, rule: AlarmRule) -> None:
        if transition.alarm != FEATURE_DRIFT_ALARM or transition.new_state != ALARM:
            return
        try:
            self.on_alarm()
        except Exception:  # a notifier never raises into the alarm evaluator
            logger.exception("drift-triggered retraining of %s failed", self.group)

    def on_alarm(self, now: datetime | None = None) -> HistoryEntry:
        """The feature-drift alarm went to ALARM at ``now`` (default the clock's time): start a run or say why
        not."""
        now = now or self.clock()
        dataset = dataset_of_group(self.home, self.group)
        newest = newest_version(self.home, dataset) if dataset else None
        last_trained = last_trained_version(self.home.runs, self.group)
        entry = self.history.claim_drift(
            self.key, now, lambda last_run_at: drift_run_decision(now, last_run_at, self.cooldown, newest,
                                                                  last_trained))
        if entry.status == STARTING:
            entry = self.history.update(entry.id, dataset_version=newest)
            self.runs.launch(entry, {"ModelPackageGroupName": self.group})
            self.on_event(f"drift-triggered retraining of {self.group} started: {entry.reason}")
        else:
            self.on_event(f"drift-triggered retraining of {self.group} skipped: {entry.reason}")
        return entry

    def close(self, timeout: float = 5.0) -> None:
        """Give a run that is executing ``timeout`` seconds to end (a serve that stops ends it)."""
        self.runs.wait(timeout)
