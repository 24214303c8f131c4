"""The monitoring stack's alarms and dashboard, from the local alarm rules and dashboard panels, and the drift
function's schedule."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from project_root import ROOT
from template_stacks import BASELINE_URI, STAGES, resources_of, stacks

from deploy.aws.names import ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.stacks import synthesize
from deploy.aws.templates.monitoring import DRIFT_METRICS, LOCAL_ONLY_PANELS, dashboard_panels, drift_schedule
from deploy.monitoring.alarm_rules import ALARM_RULES, AWS_ONLY_RULES

DASHBOARD_HTML = ROOT / "deploy" / "dashboard" / "assets" / "dashboard.html"


# --- alarms and dashboard, from the local rules and panels -----------------------------------------------------

@pytest.mark.parametrize("stage", STAGES)
def test_alarms_are_the_shared_rules(stage):
    names = ResourceNames(stage)
    specs = stacks(stage)
    alarms = {body["Properties"]["AlarmName"]: body["Properties"]
              for kind in ("endpoint", "monitoring")
              for body in resources_of(specs[kind].template, "AWS::CloudWatch::Alarm").values()}
    expected = {names.alarm_name(rule.name): rule for rule in ALARM_RULES}
    expected |= {f"{names.alarm_name(rule.name)}-{function}": rule
                 for rule in AWS_ONLY_RULES for function in ("inference", "retrieve")}
    assert set(alarms) == set(expected)
    for name, rule in expected.items():
        alarm = alarms[name]
        assert (alarm["Namespace"], alarm["MetricName"], alarm["ComparisonOperator"]) == (
            rule.namespace, rule.metric_name, rule.comparison)
        assert [dimension["Name"] for dimension in alarm["Dimensions"]] == list(rule.dimensions)
    latency = alarms[names.alarm_name("cloudviz-endpoint-model-latency-p99")]
    assert (latency["Unit"], latency["Threshold"], latency["ExtendedStatistic"]) == ("Microseconds", 500_000.0, "p99")
    functions = {alarms[f"{names.alarm_name('cloudviz-lambda-errors')}-{suffix}"]["Dimensions"][0]["Value"]
                 for suffix in ("inference", "retrieve")}
    assert functions == {names.inference_function, names.retrieve_function}


def test_the_drift_function_runs_once_per_drift_alarm_period_when_there_is_a_baseline():
    monitoring = stacks("dev")["monitoring"].template
    drift = {key: body for key, body in monitoring["Resources"].items() if key.startswith("Drift")}
    assert {key: body["Type"] for key, body in drift.items()} == {
        "DriftLogGroup": "AWS::Logs::LogGroup", "DriftRole": "AWS::IAM::Role", "DriftFunction": "AWS::Lambda::Function",
        "DriftSchedule": "AWS::Events::Rule", "DriftSchedulePermission": "AWS::Lambda::Permission"}
    # Without baseline statistics (a package registered without them) none of it is created.
    assert all(body["Condition"] == "MeasuresDrift" for body in drift.values())
    assert monitoring["Conditions"]["MeasuresDrift"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "BaselineStatisticsUri"}, ""]}]}
    assert monitoring["Outputs"]["DriftFunctionName"]["Condition"] == "MeasuresDrift"
    assert drift["DriftFunction"]["Properties"]["Handler"] == "serving_lambdas.drift_monitor.handler"
    assert drift["DriftFunction"]["Properties"]["Code"] == {"S3Bucket": {"Ref": "CodeBucket"},
                                                            "S3Key": {"Ref": "CodeKey"}}
    schedule = drift["DriftSchedule"]["Properties"]
    assert schedule["Targets"] == [{"Id": "drift", "Arn": {"Fn::GetAtt": ["DriftFunction", "Arn"]}}]
    assert drift["DriftSchedulePermission"]["Properties"]["SourceArn"] == {"Fn::GetAtt": ["DriftSchedule", "Arn"]}
    # Each period of the drift alarms gets a datapoint: the schedule is their period.
    periods = {rule.period_seconds for rule in ALARM_RULES if rule.metric_name in DRIFT_METRICS}
    assert periods == {60.0} and schedule["ScheduleExpression"] == drift_schedule() == "rate(1 minute)"
    parameter = monitoring["Parameters"]["BaselineStatisticsUri"]
    assert parameter["Default"] == BASELINE_URI
    assert synthesize("dev", AwsSettings(artifact_bucket="b"))[2].template["Parameters"]["BaselineStatisticsUri"][
        "Default"] == ""


class _Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.titles: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._inside = tag == "h3"
        if self._inside:
            self.titles.append("")

    def handle_endtag(self, tag: str) -> None:
        self._inside = self._inside and tag != "h3"

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.titles[-1] += data


def test_dashboard_has_the_local_dashboards_metric_panels():
    parser = _Headings()
    parser.feed(DASHBOARD_HTML.read_text(encoding="utf-8"))
    local = [title.strip() for title in parser.titles]
    assert set(LOCAL_ONLY_PANELS) <= set(local)
    metric_panels = [title for title in local if title not in LOCAL_ONLY_PANELS]
    names = ResourceNames("dev")
    assert list(dashboard_panels(names)) == metric_panels
    body = stacks("dev")["monitoring"].template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(body)["widgets"]
    assert [widget["properties"]["title"] for widget in widgets] == metric_panels
    alarm_widget = next(widget for widget in widgets if widget["type"] == "alarm")
    listed = {arn.rsplit(":alarm:", 1)[1] for arn in alarm_widget["properties"]["alarms"]}
    declared = {body["Properties"]["AlarmName"] for kind in ("endpoint", "monitoring")
                for body in resources_of(stacks("dev")[kind].template, "AWS::CloudWatch::Alarm").values()}
    assert listed == declared
