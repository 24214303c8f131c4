"""When a retraining run starts: the decisions both targets take (the local scheduler and drift trigger, the AWS
``retrain`` Lambda), as pure functions of what they looked up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Decision:
    start: bool
    reason: str


def scheduled_run_decision(newest: str | None, last_trained: str | None, last_run: str | None = None) -> Decision:
    """Start when the data set has a version the schedule's last successful run (``last_run``, its id when known)
    did not train on (``last_trained``, a ``NAME@N`` ref); a run on the same data would register the same model."""
    if newest is None:
        return Decision(False, "the data set has no version yet: add one with `cloudviz data add`")
    if newest == last_trained:
        since = f"run {last_run}" if last_run else "the last successful run"
        return Decision(False, f"no new data version since {since}: {newest}")
    if last_trained is None:
        return Decision(True, f"first successful run wanted: trains on {newest}")
    return Decision(True, f"new data version {newest} (the last successful run trained on {last_trained})")


def drift_run_decision(now: datetime, last_drift_run_at: datetime | None, cooldown: timedelta,
                       newest: str | None, last_trained: str | None) -> Decision:
    """Start once per ``cooldown`` after the feature-drift alarm went to ALARM, and only when the labelled data grew
    since the data the group's model was last trained on."""
    if last_drift_run_at is not None and now < last_drift_run_at + cooldown:
        return Decision(False, f"cool-down: the last drift-triggered run started at {last_drift_run_at.isoformat()};"
                               f" the next may start from {(last_drift_run_at + cooldown).isoformat()}")
    data = scheduled_run_decision(newest, last_trained)
    if not data.start:
        return Decision(False, f"the labelled data has not grown: {data.reason}")
    return Decision(True, f"feature drift, and {data.reason}")
