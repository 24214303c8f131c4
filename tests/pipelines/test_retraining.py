from datetime import UTC, datetime, timedelta

from pipelines.retraining import drift_run_decision, scheduled_run_decision

NOW = datetime(2024, 5, 3, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def test_a_scheduled_run_starts_on_a_new_data_version():
    assert scheduled_run_decision("iris@3", "iris@2").start
    assert scheduled_run_decision("iris@1", None).start


def test_a_scheduled_run_skips_without_new_data_naming_the_run_and_version():
    decision = scheduled_run_decision("iris@3", "iris@3", "20240503-0300-abc")
    assert not decision.start
    assert decision.reason == "no new data version since run 20240503-0300-abc: iris@3"


def test_a_scheduled_run_skips_when_the_data_set_has_no_version():
    decision = scheduled_run_decision(None, None)
    assert not decision.start and "no version" in decision.reason


def test_a_drift_run_waits_out_its_cooldown():
    last = NOW - timedelta(hours=23)
    decision = drift_run_decision(NOW, last, DAY, "iris@4", "iris@3")
    assert not decision.start and "cool-down" in decision.reason
    assert drift_run_decision(last + DAY, last, DAY, "iris@4", "iris@3").start


def test_a_drift_run_needs_grown_data():
    decision = drift_run_decision(NOW, None, DAY, "iris@3", "iris@3")
    assert not decision.start and "not grown" in decision.reason
    assert drift_run_decision(NOW, None, DAY, "iris@4", "iris@3").start
