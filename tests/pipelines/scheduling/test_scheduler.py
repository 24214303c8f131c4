"""The local scheduler with an injected clock: real pipeline runs, no sleeping for due times."""

from __future__ import annotations

import json
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deploy.monitoring.alarm_history import ALARM, OK, Transition
from deploy.monitoring.alarm_rules import ALARM_RULES
from pipelines.registry import ModelRegistry
from pipelines.retraining import Decision
from pipelines.scheduling.definitions import ScheduleDefinition, save_schedules
from pipelines.scheduling.drift_trigger import FEATURE_DRIFT_ALARM, DriftTrigger
from pipelines.scheduling.history import CATCH_UP, CRON, SKIPPED, STARTING, SUCCEEDED, ScheduleHistory
from pipelines.scheduling.scheduler import Scheduler, SchedulerLoop
from pipelines.state import StateHome

T0 = datetime(2024, 5, 3, 12, 0, tzinfo=UTC)  # the schedules below are due daily at 03:00 UTC


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def schedules(tmp_path: Path) -> Path:
    path = tmp_path / "cloudviz.schedules.json"
    save_schedules(path, {"nightly": ScheduleDefinition("nightly", "0 3 * * *", "iris", {"MaxDepth": "3"})})
    return path


def registered_versions(home: StateHome) -> int:
    return len(ModelRegistry(home.registry_db).list_packages())


def test_due_run_starts_once_overlap_skips_and_no_new_data_registers_nothing(home, schedules):
    clock = Clock(T0)
    scheduler = Scheduler(home, schedules, clock=clock)
    assert scheduler.tick() == []  # first sight: due times count from now
    clock.now = T0 + timedelta(days=1)
    started = scheduler.tick()
    assert [(entry.schedule, entry.trigger, entry.status) for entry in started] == [("nightly", CRON, STARTING)]
    assert started[0].due_at.startswith("2024-05-04T03:00")
    clock.now += timedelta(days=1)  # the next due time, while the first run still executes
    overlapping = scheduler.tick()
    assert overlapping[0].status == SKIPPED and "still executing" in overlapping[0].reason
    scheduler.wait()
    first = ScheduleHistory(home.schedules_db).entries("nightly")[-1]
    assert first.status == SUCCEEDED, first.reason
    assert first.dataset_version == "iris@1" and first.registered == "CloudVizIris@1"
    run = json.loads((home.runs / first.run_id / "run.json").read_text())
    assert run["parameters"]["MaxDepth"] == 3 and run["parameters"]["DataSetVersion"] == "iris@1"
    count = registered_versions(home)
    clock.now += timedelta(days=1)
    skipped = scheduler.tick()
    assert skipped[0].status == SKIPPED
    assert skipped[0].reason == f"no new data version since run {first.run_id}: iris@1"
    scheduler.wait()
    assert registered_versions(home) == count and len(list(home.runs.iterdir())) == 1


def test_downtime_over_three_due_times_catches_up_once_in_one_of_two_schedulers(home, schedules):
    first, second = Scheduler(home, schedules, clock=Clock(T0)), Scheduler(home, schedules, clock=Clock(T0))
    first.tick()
    after_downtime = T0 + timedelta(days=3, hours=1)
    handled = first.tick(after_downtime) + second.tick(after_downtime)
    assert [(entry.trigger, entry.due_at[:16]) for entry in handled] == [(CATCH_UP, "2024-05-06T03:00")]
    assert "3 due times" in handled[0].reason
    first.wait()
    assert second.tick(after_downtime + timedelta(hours=1)) == []
    entries = ScheduleHistory(home.schedules_db).entries()
    assert [entry.status for entry in entries] == [SUCCEEDED]
    assert len(list(home.runs.iterdir())) == 1


def claim(path: str, due: str) -> bool:
    return ScheduleHistory(Path(path)).claim_due("nightly", datetime.fromisoformat(due), CRON, T0) is not None


def test_one_of_many_processes_claims_a_due_time(home):
    ScheduleHistory(home.schedules_db).set_baseline("nightly", T0)
    due = (T0 + timedelta(hours=15)).isoformat()
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        claimed = pool.starmap(claim, [(str(home.schedules_db), due)] * 8)
    assert sum(claimed) == 1


def test_paused_schedule_starts_nothing(home, tmp_path):
    path = tmp_path / "paused.json"
    save_schedules(path, {"nightly": ScheduleDefinition("nightly", "0 3 * * *", paused=True)})
    scheduler = Scheduler(home, path, clock=Clock(T0))
    assert scheduler.tick() == [] and scheduler.tick(T0 + timedelta(days=2)) == []


def test_drift_alarm_starts_one_run_within_its_cooldown(home):
    clock = Clock(T0)
    trigger = DriftTrigger(home, "CloudVizIris", timedelta(hours=24), clock=clock)
    rule = next(rule for rule in ALARM_RULES if rule.name == FEATURE_DRIFT_ALARM)
    trigger.notify(Transition(FEATURE_DRIFT_ALARM, OK, ALARM, "drifted", 0.4, rule.threshold, T0.isoformat()), rule)
    history = ScheduleHistory(home.schedules_db)
    [started] = history.entries("drift:CloudVizIris")
    assert started.status in (STARTING, "executing") and started.dataset_version == "iris@1"
    clock.now = T0 + timedelta(hours=2)
    assert "cool-down" in trigger.on_alarm().reason
    trigger.notify(Transition(FEATURE_DRIFT_ALARM, ALARM, OK, "back", 0.1, rule.threshold, T0.isoformat()), rule)
    trigger.runs.wait()
    entries = history.entries("drift:CloudVizIris")
    assert [entry.status for entry in entries] == [SKIPPED, SUCCEEDED], entries[-1].reason
    clock.now = T0 + timedelta(hours=25)  # the cool-down is over, but the data has not grown since
    late = trigger.on_alarm()
    assert late.status == SKIPPED and "not grown" in late.reason
    assert len(list(home.runs.iterdir())) == 1


def start(last_run_at: datetime | None) -> Decision:  # a drift decision with no cool-down
    return Decision(True, "feature drift")


def test_a_drift_run_whose_process_ended_is_failed_and_a_live_one_is_not_overlapped(home):
    history = ScheduleHistory(home.schedules_db)
    live = history.claim_drift("drift:G", T0, start)
    assert live.status == STARTING
    overlapping = history.claim_drift("drift:G", T0 + timedelta(minutes=1), start)
    assert overlapping.status == SKIPPED and overlapping.reason == "previous run (being started by process " \
        f"{live.pid}) still executing"
    ended = multiprocessing.get_context("spawn").Process(target=print)
    ended.start()
    ended.join()
    history.update(live.id, status="executing", run_id="r1", pid=ended.pid)
    assert history.claim_drift("drift:G", T0 + timedelta(minutes=2), start).status == STARTING
    failed = history.get(live.id)
    assert failed.status == "failed" and "cloudviz pipeline resume r1" in failed.reason


def test_the_loop_reports_a_broken_file_once_keeps_ticking_and_stops(home, tmp_path):
    path = tmp_path / "cloudviz.schedules.json"
    path.write_text("{not json")
    events: list[str] = []
    ticks = threading.Semaphore(0)

    class Counted(Scheduler):
        def tick(self, now=None):
            ticks.release()
            return super().tick(now)

    loop = SchedulerLoop(Counted(home, path, clock=Clock(T0)), 0.01, events.append).start()
    for _ in range(5):
        assert ticks.acquire(timeout=10), events
    loop.stop()
    assert len(events) == 1, events  # said once, not on each of the 5 ticks
    assert events[0].startswith(f"scheduler: {path}: not JSON")
