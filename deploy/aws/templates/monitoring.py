"""The monitoring stack: the SNS topic alarms notify (with an email subscription), the CloudWatch alarms of the
shared rules that are not the endpoint's (those live in the endpoint stack, where rollback watches them), and
a CloudWatch dashboard with the metric panels of the local dashboard (``deploy/dashboard/assets``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from deploy.aws.names import ResourceNames
from deploy.aws.templates.common import output, ref, sub, template
from deploy.aws.templates.endpoint import SAGEMAKER_NAMESPACE, alarm_logical_id, endpoint_rules
from deploy.monitoring.alarm_rules import ALARM_RULES, AWS_ONLY_RULES, AlarmRule
from deploy.monitoring.drift import SIGNIFICANT_DRIFT
from serving_lambdas.metrics import NAMESPACE

if TYPE_CHECKING:
    from deploy.aws.stacks import AwsSettings

WIDGET_WIDTH = 12
WIDGET_HEIGHT = 6
PERIOD_SECONDS = 60
# Panels of the local dashboard that are not CloudWatch metrics, and where their content is on AWS.
LOCAL_ONLY_PANELS = {
    "Evaluation": "the evaluation report of each version is in the SageMaker Model Registry (Studio)",
    "Confusion matrix": "part of the evaluation report in the SageMaker Model Registry (Studio)",
    "Feature importance": "read from the model artifact; the Model Registry (Studio) shows its report",
    "Pipeline runs": "SageMaker Pipelines' execution graph and step timings (Studio, or list-pipeline-executions)",
    "Registry versions": "the SageMaker Model Registry's model package group (Studio, or list-model-packages)",
}


def monitoring_rules() -> tuple[AlarmRule, ...]:
    """The shared rules this stack turns into alarms: every rule but the endpoint's, plus the AWS-only ones."""
    return tuple(rule for rule in ALARM_RULES if rule.namespace != SAGEMAKER_NAMESPACE) + AWS_ONLY_RULES


def _functions(names: ResourceNames) -> dict[str, str]:
    """The serving functions an AWS-only Lambda rule is instantiated for: suffix -> function name."""
    return {"inference": names.inference_function, "retrieve": names.retrieve_function}


def alarms(names: ResourceNames) -> dict[str, dict]:
    """Logical id -> alarm properties (without actions), for every alarm of this stack."""
    values = {"ApiName": names.api_name, "Stage": names.api_stage_name, "Endpoint": names.endpoint_name}
    found: dict[str, dict] = {}
    for rule in monitoring_rules():
        if "FunctionName" in rule.dimensions:
            for suffix, function in _functions(names).items():
                properties = rule.cloudwatch_properties({**values, "FunctionName": function})
                properties["AlarmName"] = f"{names.alarm_name(rule.name)}-{suffix}"
                found[alarm_logical_id(rule).removesuffix("Alarm") + suffix.title() + "Alarm"] = properties
        else:
            properties = rule.cloudwatch_properties(values)
            properties["AlarmName"] = names.alarm_name(rule.name)
            found[alarm_logical_id(rule)] = properties
    return found


def all_alarm_names(names: ResourceNames) -> list[str]:
    """Every CloudViz alarm of the stage, this stack's and the endpoint stack's."""
    return [names.alarm_name(rule.name) for rule in endpoint_rules()] + [
        properties["AlarmName"] for properties in alarms(names).values()
    ]


def _search(namespace: str, dimensions: tuple[str, ...], metric: str, names: ResourceNames, statistic: str,
            period: int, dimension_filter: str) -> str:
    schema = ",".join((namespace, *dimensions))
    return (f"SEARCH('{{{schema}}} MetricName=\"{metric}\" {dimension_filter}=\"{names.endpoint_name}\"', "
            f"'{statistic}', {period})")


def _metric_widget(title: str, metrics: list, view: str = "timeSeries", **extra: object) -> dict:
    properties = {"title": title, "view": view, "region": "${AWS::Region}", "period": PERIOD_SECONDS,
                  "metrics": metrics, **extra}
    return {"type": "metric", "properties": properties}


def dashboard_panels(names: ResourceNames) -> dict[str, dict]:
    """The local dashboard's metric panels as CloudWatch widgets, by panel title."""
    api = ["ApiName", names.api_name, "Stage", names.api_stage_name]
    arns = [f"arn:${{AWS::Partition}}:cloudwatch:${{AWS::Region}}:${{AWS::AccountId}}:alarm:{name}"
            for name in all_alarm_names(names)]
    predictions = _search(NAMESPACE, ("Endpoint", "Label"), "Predictions", names, "Sum", 300, "Endpoint")
    feature_drift = _search(NAMESPACE, ("Endpoint", "Feature"), "FeatureDrift", names, "Maximum", 300, "Endpoint")
    model_latency = _search(SAGEMAKER_NAMESPACE, ("EndpointName", "VariantName"), "ModelLatency", names, "p99",
                            PERIOD_SECONDS, "EndpointName")
    drift_line = {"horizontal": [{"label": "significant drift", "value": SIGNIFICANT_DRIFT}]}
    return {
        "Alarm states": {"type": "alarm", "properties": {"title": "Alarm states", "alarms": arns}},
        "Request rate": _metric_widget("Request rate", [
            [{"expression": "m1 / PERIOD(m1)", "label": "requests/s", "id": "e1"}],
            ["AWS/ApiGateway", "Count", *api, {"id": "m1", "stat": "Sum", "visible": False}],
        ]),
        "Error rate": _metric_widget("Error rate", [
            [{"expression": "100 * m1", "label": "5xx %", "id": "e1"}],
            [{"expression": "100 * m2", "label": "4xx %", "id": "e2"}],
            ["AWS/ApiGateway", "5XXError", *api, {"id": "m1", "stat": "Average", "visible": False}],
            ["AWS/ApiGateway", "4XXError", *api, {"id": "m2", "stat": "Average", "visible": False}],
        ], yAxis={"left": {"min": 0, "label": "%"}}),
        "Latency": _metric_widget("Latency", [
            ["AWS/ApiGateway", "Latency", *api, {"stat": "p50", "label": "API p50"}],
            ["AWS/ApiGateway", "Latency", *api, {"stat": "p90", "label": "API p90"}],
            ["AWS/ApiGateway", "Latency", *api, {"stat": "p99", "label": "API p99"}],
            [{"expression": model_latency, "id": "s1", "visible": False}],
            # SageMaker's ModelLatency is in microseconds; the panel is in milliseconds.
            [{"expression": "s1 / 1000", "label": "model p99", "id": "e1"}],
        ], yAxis={"left": {"min": 0, "label": "ms"}}),
        "Predictions over time, by class": _metric_widget("Predictions over time, by class", [
            [{"expression": predictions, "id": "e1"}],
        ], stacked=True, period=300),
        "Class distribution": _metric_widget("Class distribution", [
            [{"expression": predictions, "id": "e1"}],
        ], view="pie", setPeriodToTimeRange=True),
        "Drift per feature": _metric_widget("Drift per feature", [
            [{"expression": feature_drift, "id": "e1"}],
        ], view="bar", annotations=drift_line),
        "Drift over time": _metric_widget("Drift over time", [
            [{"expression": feature_drift, "id": "e1"}],
            [NAMESPACE, "PredictionClassDrift", "Endpoint", names.endpoint_name,
             {"stat": "Maximum", "label": "classes"}],
        ], annotations=drift_line),
    }


def dashboard_body(names: ResourceNames) -> dict:
    """The dashboard's JSON body, as an ``Fn::Sub`` (the region and account are the stack's)."""
    widgets = []
    for index, widget in enumerate(dashboard_panels(names).values()):
        widgets.append({**widget, "x": (index % 2) * WIDGET_WIDTH, "y": (index // 2) * WIDGET_HEIGHT,
                        "width": WIDGET_WIDTH, "height": WIDGET_HEIGHT})
    return sub(json.dumps({"widgets": widgets}, separators=(",", ":")))


def monitoring_template(names: ResourceNames, settings: AwsSettings) -> dict:
    """The monitoring stack's template."""
    parameters = {
        "AlarmEmail": {"Type": "String", "Default": settings.alarm_email, "AllowedPattern": r"(|[^@\s]+@[^@\s]+)",
                       "Description": "address notified of alarms (it must confirm the subscription); empty: none"},
    }
    conditions = {"HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [ref("AlarmEmail"), ""]}]}}
    resources: dict[str, dict] = {
        "AlarmTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": names.topic_name, "DisplayName": f"CloudViz {names.stage} alarms"},
        },
        "AlarmEmailSubscription": {
            "Type": "AWS::SNS::Subscription",
            "Condition": "HasAlarmEmail",
            "Properties": {"TopicArn": ref("AlarmTopic"), "Protocol": "email", "Endpoint": ref("AlarmEmail")},
        },
    }
    for logical_id, properties in alarms(names).items():
        actions = {"AlarmActions": [ref("AlarmTopic")], "OKActions": [ref("AlarmTopic")]}
        resources[logical_id] = {"Type": "AWS::CloudWatch::Alarm", "Properties": {**properties, **actions}}
    resources["Dashboard"] = {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {"DashboardName": names.dashboard_name, "DashboardBody": dashboard_body(names)},
    }
    outputs = {
        "AlarmTopicArn": output(ref("AlarmTopic"), "the SNS topic every CloudViz alarm notifies"),
        "DashboardUrl": output(
            sub(f"https://${{AWS::Region}}.console.aws.amazon.com/cloudwatch/home?region=${{AWS::Region}}"
                f"#dashboards:name={names.dashboard_name}"),
            "the CloudWatch dashboard",
        ),
    }
    return template(f"CloudViz {names.stage}: alarms, their SNS topic and the CloudWatch dashboard", parameters,
                    resources, outputs, conditions)
