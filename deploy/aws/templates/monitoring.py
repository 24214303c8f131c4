"""The monitoring stack: the SNS topic alarms notify (with an email subscription), the CloudWatch alarms of the
shared rules that are not the endpoint's (those live in the endpoint stack, where rollback watches them), a
CloudWatch dashboard with the metric panels of the local dashboard (``deploy/dashboard/assets``), and the drift
function (``serving_lambdas.drift_monitor``) that publishes the drift metrics, run on an EventBridge schedule as
often as the drift alarms' period, when the served model package has baseline statistics."""

from __future__ import annotations

import json

from deploy.aws.lambda_zip import DRIFT_HANDLER
from deploy.aws.names import ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.templates.common import (
    LambdaSpec,
    arn,
    checkov_skip,
    function_runtime,
    get_att,
    lambda_function,
    log_group,
    output,
    ref,
    retention_parameter,
    role,
    statement,
    sub,
    template,
)
from deploy.aws.templates.endpoint import SAGEMAKER_NAMESPACE, alarm_logical_id, endpoint_rules
from deploy.monitoring.alarm_rules import ALARM_RULES, AWS_ONLY_RULES, LOW_LIVE_ACCURACY, AlarmRule
from serving_lambdas.drift import SIGNIFICANT_DRIFT
from serving_lambdas.metrics import NAMESPACE

DRIFT_METRICS = ("FeatureDrift", "PredictionClassDrift")
DRIFT_TIMEOUT_SECONDS = 60
DRIFT_MEMORY_MB = 256
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
    "Champion vs challenger": "the champion section of each version's evaluation report (its model statistics) "
                              "in the Model Registry, and its ChampionModelData metadata property",
}


def monitoring_rules() -> tuple[AlarmRule, ...]:
    """The shared rules this stack turns into alarms: every rule but the endpoint's, plus the AWS-only ones."""
    return tuple(rule for rule in ALARM_RULES if rule.namespace != SAGEMAKER_NAMESPACE) + AWS_ONLY_RULES


def drift_schedule() -> str:
    """How often the drift function runs: once per period of the drift alarms, so that each of their periods has
    a datapoint (a period without one would leave the alarm without data)."""
    periods = {rule.period_seconds for rule in ALARM_RULES
               if rule.namespace == NAMESPACE and rule.metric_name in DRIFT_METRICS}
    minutes = max(1, int(min(periods) // 60))
    return f"rate({minutes} minute{'' if minutes == 1 else 's'})"


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
    live_recall = _search(NAMESPACE, ("Endpoint", "Label"), "LiveRecall", names, "Minimum", 300, "Endpoint")
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
             {"stat": "Maximum", "label": "predictions"}],
        ], annotations=drift_line),
        "Live accuracy": _metric_widget("Live accuracy", [
            [NAMESPACE, "LiveAccuracy", "Endpoint", names.endpoint_name, {"stat": "Minimum", "label": "accuracy"}],
            [{"expression": live_recall, "id": "e1", "label": "recall"}],
            [NAMESPACE, "LabelledPredictions", "Endpoint", names.endpoint_name,
             {"stat": "Maximum", "label": "labelled", "yAxis": "right"}],
        ], annotations={"horizontal": [{"label": "alarm", "value": LOW_LIVE_ACCURACY}]}),
    }


def dashboard_body(names: ResourceNames) -> dict:
    """The dashboard's JSON body, as an ``Fn::Sub`` (the region and account are the stack's)."""
    widgets = []
    for index, widget in enumerate(dashboard_panels(names).values()):
        widgets.append({**widget, "x": (index % 2) * WIDGET_WIDTH, "y": (index // 2) * WIDGET_HEIGHT,
                        "width": WIDGET_WIDTH, "height": WIDGET_HEIGHT})
    return sub(json.dumps({"widgets": widgets}, separators=(",", ":")))


def baseline_object_arn() -> dict:
    """The statistics objects of the bucket ``BaselineStatisticsUri`` is in (``s3://BUCKET/...`` ->
    ``arn:...:s3:::BUCKET/*/statistics.json``): not the one object, so that the redeploy function's new baseline
    changes the drift function's environment only, never its role's policy (it may not rewrite policies). The URI
    is split with a ``://`` appended, so that an empty one (no drift function) still has an element 1."""
    uri = {"Fn::Join": ["", [ref("BaselineStatisticsUri"), "://"]]}
    path = {"Fn::Select": [1, {"Fn::Split": ["://", uri]}]}
    bucket = {"Fn::Select": [0, {"Fn::Split": ["/", path]}]}
    return {"Fn::Sub": ["arn:${AWS::Partition}:s3:::${BaselineBucket}/*/statistics.json", {"BaselineBucket": bucket}]}


DRIFT_FUNCTION_SKIPS = (
    ("CKV_AWS_115", "one run a minute, by its schedule; reserved concurrency would come out of the account's pool, "
                    "which a new account (quota 10) cannot spare"),
    ("CKV_AWS_116", "a failed run is replaced by the next one a minute later, on newer data: nothing to replay"),
    ("CKV_AWS_117", "calls only AWS APIs (DynamoDB, S3) over their public endpoints: no VPC resource to reach"),
    ("CKV_AWS_173", "its environment holds names and an S3 URI, no secret: Lambda's default encryption at rest"),
)


def drift_resources(names: ResourceNames) -> dict[str, dict]:
    """The drift function, its role, log group and schedule, each under the ``MeasuresDrift`` condition."""
    resources = {
        "DriftLogGroup": log_group(names.drift_log_group, ref("LogRetentionDays")),
        "DriftRole": role(
            names.drift_role_name, "lambda.amazonaws.com", "measure-drift",
            [
                statement(["dynamodb:Query"], [arn("dynamodb", f"table/{names.table_name}")], "ReadPredictions"),
                statement(["s3:GetObject"], [baseline_object_arn()], "ReadTheBaseline"),
                *function_runtime(names.drift_log_group),
            ],
            "Drift: reads the newest predictions and the served model's baseline statistics",
        ),
        "DriftFunction": checkov_skip(lambda_function(LambdaSpec(
            names.drift_function, DRIFT_HANDLER, "PSI of the newest predictions against the training data, as "
            "CloudWatch metrics", "DriftRole", "DriftLogGroup",
            {
                "ENDPOINT_NAME": names.endpoint_name,
                "PREDICTION_STORE": f"dynamodb:{names.table_name}",
                "BASELINE_STATISTICS_URI": ref("BaselineStatisticsUri"),
            },
            DRIFT_TIMEOUT_SECONDS, DRIFT_MEMORY_MB,
        )), *DRIFT_FUNCTION_SKIPS),
        "DriftSchedule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Name": names.drift_schedule_name,
                "Description": "measures drift once per period of the drift alarms",
                "ScheduleExpression": drift_schedule(),
                "State": "ENABLED",
                "Targets": [{"Id": "drift", "Arn": get_att("DriftFunction", "Arn")}],
            },
        },
        "DriftSchedulePermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": ref("DriftFunction"),
                "Principal": "events.amazonaws.com",
                "SourceArn": get_att("DriftSchedule", "Arn"),
            },
        },
    }
    return {logical_id: {**body, "Condition": "MeasuresDrift"} for logical_id, body in resources.items()}


def monitoring_template(names: ResourceNames, settings: AwsSettings) -> dict:
    """The monitoring stack's template."""
    parameters = {
        "AlarmEmail": {"Type": "String", "Default": settings.alarm_email, "AllowedPattern": r"(|[^@\s]+@[^@\s]+)",
                       "Description": "address notified of alarms (it must confirm the subscription); empty: none"},
        "BaselineStatisticsUri": {"Type": "String", "Default": settings.baseline_statistics_uri,
                                  "AllowedPattern": r"(|s3://[^/]+/.+)",
                                  "Description": "s3:// URI of the served model package's baseline statistics "
                                                 "(its ModelDataQuality statistics); empty: drift is not measured"},
        "CodeBucket": {"Type": "String", "Description": "S3 bucket holding the serving Lambdas' zip"},
        "CodeKey": {"Type": "String", "Description": "S3 key of the serving Lambdas' zip (the drift function's code)"},
        "LogRetentionDays": retention_parameter(),
    }
    conditions = {
        "HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [ref("AlarmEmail"), ""]}]},
        "MeasuresDrift": {"Fn::Not": [{"Fn::Equals": [ref("BaselineStatisticsUri"), ""]}]},
    }
    resources: dict[str, dict] = {
        "AlarmTopic": checkov_skip({
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": names.topic_name, "DisplayName": f"CloudViz {names.stage} alarms"},
        }, ("CKV_AWS_26", "carries alarm state changes only, no data; CloudWatch alarms cannot publish to a topic "
                          "under the AWS managed key (aws/sns), and a customer managed key for this costs a key "
                          "and a key policy for every publisher")),
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
    resources.update(drift_resources(names))
    outputs = {
        "AlarmTopicArn": output(ref("AlarmTopic"), "the SNS topic every CloudViz alarm notifies"),
        "DashboardUrl": output(
            sub(f"https://${{AWS::Region}}.console.aws.amazon.com/cloudwatch/home?region=${{AWS::Region}}"
                f"#dashboards:name={names.dashboard_name}"),
            "the CloudWatch dashboard",
        ),
        "DriftFunctionName": {**output(ref("DriftFunction"), "the drift function (absent without a baseline)"),
                              "Condition": "MeasuresDrift"},
    }
    return template(f"CloudViz {names.stage}: alarms, their SNS topic, the CloudWatch dashboard and the drift "
                    "function", parameters, resources, outputs, conditions)
