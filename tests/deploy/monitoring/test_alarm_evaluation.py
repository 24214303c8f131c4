"""Alarm time series and rules: the sampler (quantiles, periods, differences), M-of-N evaluation with missing data
like CloudWatch's, the same rules as the CloudWatch alarms, and the evaluator's history and notifications."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from alarm_support import FIVE_XX, RULES

from deploy.monitoring.alarm_history import AlarmHistory
from deploy.monitoring.alarm_rules import ALARM_RULES
from deploy.monitoring.alarms import AlarmEvaluator, evaluate
from deploy.monitoring.metrics import ApiMetrics, EndpointMetrics
from deploy.monitoring.notifications import EventNotifier
from deploy.monitoring.sampler import MetricSampler, histogram_quantile, sampling_period
from serving_lambdas import metrics as lambda_metrics


def request(api: ApiMetrics, status: int, route: str = "/predictions", latency_ms: float = 3.0) -> None:
    api.observe_request({"resource": route, "method": "POST", "status": status, "latency_ms": latency_ms})


# -- the sampler ----------------------------------------------------------------------------------


def test_histogram_quantile_interpolates_inside_the_bucket():
    buckets = {0.1: 50.0, 0.2: 90.0, 1.0: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.15)  # 20 of the 40 between 0.1 and 0.2
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.92)
    assert histogram_quantile(0.99, {0.1: 1.0, float("inf"): 10.0}) == 0.1  # in +Inf: the largest finite bound
    assert histogram_quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None


def test_sampling_period_divides_the_alarm_period():
    assert sampling_period(None) == 10.0
    assert sampling_period(60) == 10.0
    assert sampling_period(15) == 7.5
    assert sampling_period(0.5) == 0.5


def test_samples_are_the_differences_of_each_period():
    api, endpoint = ApiMetrics(), EndpointMetrics("e")
    sampler = MetricSampler(api, endpoint, period_seconds=1.0, keep=2)
    start = time.time()
    for _ in range(8):
        request(api, 200, latency_ms=3.0)
    request(api, 400)
    request(api, 503, latency_ms=40.0)
    request(api, 200, route="/metrics")  # the gateway's own pages are not traffic
    request(api, 200, route="/dashboard/data")
    api.observe_lambda(lambda_metrics.document({"Predictions": (3, "Count")}, {"Endpoint": "e", "Label": "setosa"}))
    api.observe_lambda(lambda_metrics.document({"StoreErrors": (1, "Count")}, {"Endpoint": "e"}))
    endpoint.observe_invocation(200, 0.002)
    endpoint.observe_invocation(500, 0.5)
    first = sampler.sample(start + 1)
    assert (first.requests, first.errors_4xx, first.errors_5xx) == (10, 1, 1)
    assert 2.5 <= first.latency_p50_ms <= 5.0 and 25.0 <= first.latency_p99_ms <= 50.0
    assert (first.invocations, first.invocation_5xx_errors, first.store_errors) == (2, 1, 1)
    assert first.model_latency_p99_ms is not None and first.model_latency_p99_ms <= 2.5  # the 500 is not timed
    assert first.predictions == {"setosa": 3}
    assert (first.feature_drift, first.class_drift) == ({}, None)
    assert json.loads(json.dumps(first.to_dict()))["requests"] == 10

    api.feature_drift.labels("x3").set(0.4)
    api.prediction_class_drift.set(float("nan"))  # not enough predictions yet: no value
    second = sampler.sample(start + 2)
    assert (second.requests, second.latency_p50_ms, second.invocations, second.predictions) == (0, None, 0,
                                                                                                 {"setosa": 0})
    assert (second.seconds, second.feature_drift, second.class_drift) == (1.0, {"x3": 0.4}, None)

    request(api, 500)
    third = sampler.sample(start + 3)
    assert [s.timestamp for s in sampler.series()] == [second.timestamp, third.timestamp]  # keep=2
    both = sampler.window(2)
    assert (both.requests, both.errors_5xx, both.seconds, both.timestamp) == (1, 1, 2.0, third.timestamp)
    assert both.feature_drift == {"x3": 0.4}


# -- evaluation -----------------------------------------------------------------------------------


def test_m_of_n_with_missing_data_like_cloudwatch():
    rule = dataclasses.replace(FIVE_XX, evaluation_periods=3, datapoints_to_alarm=2)
    assert evaluate(rule, [0.5, None, 0.01], "OK")[0] == "OK"
    state, reason = evaluate(rule, [0.5, None, 1.0], "OK")
    assert state == "ALARM"
    assert reason == ("Threshold Crossed: 2 of the last 3 datapoint(s) [0.5, missing, 1] were greater than the"
                      " threshold (0.05) (minimum 2 for ALARM; missing data treated as not breaching).")
    assert evaluate(dataclasses.replace(rule, treat_missing_data="breaching"), [None, None, 1.0], "OK")[0] == "ALARM"
    missing = dataclasses.replace(rule, treat_missing_data="missing")
    assert evaluate(missing, [None, None, None], "OK") == (
        "INSUFFICIENT_DATA", "Insufficient Data: 3 datapoint(s) were unknown.")
    assert evaluate(dataclasses.replace(rule, treat_missing_data="ignore"), [None] * 3, "ALARM")[0] == "ALARM"


def test_the_same_rules_give_the_cloudwatch_alarms():
    dimensions = {"ApiName": "cloudviz", "Stage": "prod", "EndpointName": "CloudVizIris-endpoint",
                  "VariantName": "AllTraffic", "Endpoint": "CloudVizIris-endpoint"}
    alarms = {rule.name: rule.cloudwatch_properties(dimensions) for rule in ALARM_RULES}
    assert alarms[FIVE_XX.name] == {
        "AlarmName": FIVE_XX.name, "AlarmDescription": FIVE_XX.description, "Namespace": "AWS/ApiGateway",
        "MetricName": "5XXError", "Dimensions": [{"Name": "ApiName", "Value": "cloudviz"},
                                                 {"Name": "Stage", "Value": "prod"}],
        "Statistic": "Average", "Period": 60, "EvaluationPeriods": 1, "DatapointsToAlarm": 1, "Threshold": 0.05,
        "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching",
    }
    latency = alarms["cloudviz-api-latency-p99"]
    assert (latency["ExtendedStatistic"], latency["Unit"], "Statistic" in latency) == ("p99", "Milliseconds", False)
    assert {alarm["Namespace"] for alarm in alarms.values()} == {"AWS/ApiGateway", "AWS/SageMaker", "CloudViz"}
    with pytest.raises(ValueError, match="alarm cloudviz-api-5xx-rate: no value for dimension.s. Stage"):
        FIVE_XX.cloudwatch_properties({"ApiName": "cloudviz"})
    with pytest.raises(ValueError, match="give exactly one of statistic and extended_statistic"):
        dataclasses.replace(FIVE_XX, extended_statistic="p99")


def test_evaluator_records_every_change_and_notifies_alarm_changes(tmp_path: Path):
    api, endpoint = ApiMetrics(), EndpointMetrics("e")
    sampler = MetricSampler(api, endpoint, period_seconds=1.0)
    history = AlarmHistory(tmp_path / "alarms.db")
    rule = dataclasses.replace(FIVE_XX, evaluation_periods=3, datapoints_to_alarm=2)
    drift = RULES["cloudviz-feature-drift"]
    sent: list[str] = []
    evaluator = AlarmEvaluator([rule, drift], sampler, history, [EventNotifier(sent.append)], period_seconds=1.0)
    assert [s.state for s in evaluator.states()] == ["INSUFFICIENT_DATA", "INSUFFICIENT_DATA"]
    start = time.time()

    def period(ok: int, failed: int) -> list[tuple[str, str]]:
        for _ in range(ok):
            request(api, 200)
        for _ in range(failed):
            request(api, 503)
        return [(t.old_state, t.new_state) for t in evaluator.tick(start + len(sampler.series()) + 1)]

    assert period(10, 0) == [("INSUFFICIENT_DATA", "OK")]  # drift has no data: stays INSUFFICIENT_DATA
    assert period(5, 5) == []  # [missing, 0, 0.5]: 1 of 3 breaching
    assert period(0, 0) == []  # [0, 0.5, missing]: no requests is missing data, not breaching
    assert period(0, 10) == [("OK", "ALARM")]  # [0.5, missing, 1]: 2 of 3
    alarmed = evaluator.states()[0]
    assert (alarmed.state, alarmed.value, alarmed.since) == ("ALARM", 1.0, alarmed.evaluated_at)
    assert evaluator.states()[1].state == "INSUFFICIENT_DATA"
    assert sent == [f"ALARM: cloudviz-api-5xx-rate (OK -> ALARM): {alarmed.reason}"]  # INSUFFICIENT_DATA -> OK is not

    # A restarted serve continues from the recorded states, and resolves the alarm it left firing.
    evaluator = AlarmEvaluator([rule, drift], MetricSampler(api, endpoint, 1.0), history,
                               [EventNotifier(sent.append)], period_seconds=1.0)
    assert evaluator.states()[0] == dataclasses.replace(alarmed, threshold=rule.threshold)
    assert period(10, 0) == [("ALARM", "OK")]
    assert sent[1].startswith("OK again: cloudviz-api-5xx-rate (ALARM -> OK): Threshold not crossed: 0 of the last 3")
    recorded = history.transitions()
    assert [(t.alarm, t.old_state, t.new_state) for t in recorded] == [
        (rule.name, "ALARM", "OK"), (rule.name, "OK", "ALARM"), (rule.name, "INSUFFICIENT_DATA", "OK")]
    assert history.transitions(rule.name, limit=1) == recorded[:1]
    assert history.states()[rule.name].state == "OK"
    assert history.states()[drift.name].reason == "Insufficient Data: 1 datapoint(s) was unknown."


def test_a_rule_period_spans_several_samples(tmp_path: Path):
    api, endpoint = ApiMetrics(), EndpointMetrics("e")
    sampler = MetricSampler(api, endpoint, period_seconds=1.0)
    evaluator = AlarmEvaluator([FIVE_XX], sampler, AlarmHistory(tmp_path / "alarms.db"), period_seconds=2.0)
    start = time.time()
    request(api, 503)
    assert evaluator.tick(start + 1) == []
    assert evaluator.states()[0].reason == "not evaluated yet"  # its first period is half over
    for _ in range(19):
        request(api, 200)
    (change,) = evaluator.tick(start + 2)  # 1 of 20 requests over the two samples: 5%, not above
    assert (change.new_state, change.value) == ("OK", 0.05)
