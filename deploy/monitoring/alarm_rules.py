"""The alarm rules, declared once: ``cloudviz serve`` evaluates them, the AWS stacks make CloudWatch alarms of them.

A rule's local ``measure`` is the number its CloudWatch ``statistic`` gives (API Gateway's 5XXError Average: 5xx rate).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from deploy.monitoring.sampler import PeriodSample
from serving_lambdas.drift import SIGNIFICANT_DRIFT
from serving_lambdas.live_accuracy import DEFAULT_LABELLED_WINDOW, DEFAULT_MIN_LABELLED
from serving_lambdas.metrics import NAMESPACE as CLOUDVIZ_NAMESPACE

COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str, str]] = {
    # CloudWatch ComparisonOperator -> (test, words, symbol)
    "GreaterThanThreshold": (operator.gt, "greater than", ">"),
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to", ">="),
    "LessThanThreshold": (operator.lt, "less than", "<"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to", "<="),
}
TREAT_MISSING_DATA = ("notBreaching", "breaching", "missing", "ignore")
STATISTICS = ("Average", "Sum", "Minimum", "Maximum", "SampleCount")
DEFAULT_PERIOD_SECONDS = 60.0
LOW_LIVE_ACCURACY = 0.8


@dataclass(frozen=True)
class AlarmRule:
    """One alarm. ``local_metric`` says in words what ``measure`` computes from a period's sample (None: no data
    in that period). ``dimensions`` are names only; the deployment that creates the alarm supplies the values."""

    name: str
    description: str
    local_metric: str
    measure: Callable[[PeriodSample], float | None]
    threshold: float
    comparison: str
    namespace: str
    metric_name: str
    dimensions: tuple[str, ...]
    statistic: str | None = None
    extended_statistic: str | None = None  # a percentile such as "p99", instead of ``statistic``
    unit: str | None = None
    period_seconds: float = DEFAULT_PERIOD_SECONDS
    evaluation_periods: int = 1
    datapoints_to_alarm: int = 1
    treat_missing_data: str = "notBreaching"
    aws_unit_scale: float = 1.0  # the AWS metric's units per unit of the local measure (1000: ms -> microseconds)

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(f"alarm {self.name}: comparison {self.comparison!r} is not one of "
                             f"{', '.join(COMPARISONS)}")
        if self.treat_missing_data not in TREAT_MISSING_DATA:
            raise ValueError(f"alarm {self.name}: treat_missing_data {self.treat_missing_data!r} is not one of "
                             f"{', '.join(TREAT_MISSING_DATA)}")
        if (self.statistic is None) == (self.extended_statistic is None):
            raise ValueError(f"alarm {self.name}: give exactly one of statistic and extended_statistic")
        if self.statistic is not None and self.statistic not in STATISTICS:
            raise ValueError(f"alarm {self.name}: statistic {self.statistic!r} is not one of {', '.join(STATISTICS)}")
        if self.period_seconds <= 0:
            raise ValueError(f"alarm {self.name}: period_seconds must be positive, got {self.period_seconds}")
        if not 1 <= self.datapoints_to_alarm <= self.evaluation_periods:
            raise ValueError(f"alarm {self.name}: datapoints_to_alarm must be 1..evaluation_periods "
                             f"({self.evaluation_periods}), got {self.datapoints_to_alarm}")

    def breaches(self, value: float) -> bool:
        return COMPARISONS[self.comparison][0](value, self.threshold)

    @property
    def condition(self) -> str:
        """The rule in one line, e.g. ``errors_5xx / requests > 0.05 for 1 of 1 periods of 60 s``."""
        symbol = COMPARISONS[self.comparison][2]
        return (f"{self.local_metric} {symbol} {self.threshold:g} for {self.datapoints_to_alarm} of "
                f"{self.evaluation_periods} periods of {self.period_seconds:g} s")

    def cloudwatch_properties(self, dimension_values: Mapping[str, str]) -> dict:
        """The properties of the ``AWS::CloudWatch::Alarm`` for this rule (without actions), with the values of
        its dimensions (e.g. ``{"ApiName": "cloudviz-api", "Stage": "prod"}``)."""
        missing = [name for name in self.dimensions if name not in dimension_values]
        if missing:
            raise ValueError(f"alarm {self.name}: no value for dimension(s) {', '.join(missing)}")
        properties = {
            "AlarmName": self.name,
            "AlarmDescription": self.description,
            "Namespace": self.namespace,
            "MetricName": self.metric_name,
            "Dimensions": [{"Name": name, "Value": dimension_values[name]} for name in self.dimensions],
            "Period": int(self.period_seconds),
            "EvaluationPeriods": self.evaluation_periods,
            "DatapointsToAlarm": self.datapoints_to_alarm,
            "Threshold": self.threshold * self.aws_unit_scale,
            "ComparisonOperator": self.comparison,
            "TreatMissingData": self.treat_missing_data,
        }
        if self.statistic is not None:
            properties["Statistic"] = self.statistic
        else:
            properties["ExtendedStatistic"] = self.extended_statistic
        if self.unit is not None:
            properties["Unit"] = self.unit
        return properties


def error_rate_5xx(sample: PeriodSample) -> float | None:
    return sample.errors_5xx / sample.requests if sample.requests else None


def not_measured_locally(sample: PeriodSample) -> None:
    """The measure of an AWS-only rule: the local service has nothing that corresponds to it."""
    return None


def largest_feature_drift(sample: PeriodSample) -> float | None:
    return max(sample.feature_drift.values()) if sample.feature_drift else None


ALARM_RULES: tuple[AlarmRule, ...] = (
    AlarmRule(
        name="cloudviz-api-5xx-rate",
        description="More than 5% of the prediction API's requests failed with a 5xx (endpoint or store down).",
        local_metric="errors_5xx / requests",
        measure=error_rate_5xx,
        threshold=0.05,
        comparison="GreaterThanThreshold",
        namespace="AWS/ApiGateway",
        metric_name="5XXError",
        dimensions=("ApiName", "Stage"),
        statistic="Average",
    ),
    AlarmRule(
        name="cloudviz-api-latency-p99",
        description="The prediction API's p99 latency stayed above 1 s for three periods in a row.",
        local_metric="latency_p99_ms",
        measure=lambda sample: sample.latency_p99_ms,
        threshold=1000.0,
        comparison="GreaterThanThreshold",
        namespace="AWS/ApiGateway",
        metric_name="Latency",
        dimensions=("ApiName", "Stage"),
        extended_statistic="p99",
        unit="Milliseconds",
        evaluation_periods=3,
        datapoints_to_alarm=3,
    ),
    AlarmRule(
        name="cloudviz-endpoint-5xx-errors",
        description="The model endpoint answered invocations with a 5xx (the model failed).",
        local_metric="invocation_5xx_errors",
        measure=lambda sample: sample.invocation_5xx_errors,
        threshold=0.0,
        comparison="GreaterThanThreshold",
        namespace="AWS/SageMaker",
        metric_name="Invocation5XXErrors",
        dimensions=("EndpointName", "VariantName"),
        statistic="Sum",
    ),
    AlarmRule(
        name="cloudviz-endpoint-model-latency-p99",
        description="The model's p99 latency inside the endpoint stayed above 500 ms for three periods in a row.",
        local_metric="model_latency_p99_ms",
        measure=lambda sample: sample.model_latency_p99_ms,
        threshold=500.0,
        comparison="GreaterThanThreshold",
        namespace="AWS/SageMaker",
        metric_name="ModelLatency",
        dimensions=("EndpointName", "VariantName"),
        extended_statistic="p99",
        unit="Microseconds",  # SageMaker reports ModelLatency in microseconds; the local measure is milliseconds
        evaluation_periods=3,
        datapoints_to_alarm=3,
        aws_unit_scale=1000.0,
    ),
    AlarmRule(
        name="cloudviz-store-errors",
        description="Predictions could not be written to the prediction store (answered 503, not stored).",
        local_metric="store_errors",
        measure=lambda sample: sample.store_errors,
        threshold=0.0,
        comparison="GreaterThanThreshold",
        namespace=CLOUDVIZ_NAMESPACE,
        metric_name="StoreErrors",
        dimensions=("Endpoint",),
        statistic="Sum",
    ),
    AlarmRule(
        name="cloudviz-prediction-class-drift",
        description=f"The predictions drifted from the training labels (PSI above {SIGNIFICANT_DRIFT:g} of the "
        "predicted classes against the training class shares, or of a regression's predicted values against the "
        "training target): the inputs, or the model, changed.",
        local_metric="class_drift",
        measure=lambda sample: sample.class_drift,
        threshold=SIGNIFICANT_DRIFT,
        comparison="GreaterThanThreshold",
        namespace=CLOUDVIZ_NAMESPACE,
        metric_name="PredictionClassDrift",
        dimensions=("Endpoint",),
        statistic="Maximum",
        treat_missing_data="missing",
    ),
    AlarmRule(
        name="cloudviz-feature-drift",
        description=f"A feature of the live requests drifted from the training data (PSI above "
        f"{SIGNIFICANT_DRIFT:g}): the model sees data unlike what it learned from.",
        local_metric="max(feature_drift)",
        measure=largest_feature_drift,
        threshold=SIGNIFICANT_DRIFT,
        comparison="GreaterThanThreshold",
        namespace=CLOUDVIZ_NAMESPACE,
        metric_name="FeatureDrift",  # on AWS: the largest feature's PSI, published with the Endpoint dimension
        dimensions=("Endpoint",),
        statistic="Maximum",
        treat_missing_data="missing",
    ),
    AlarmRule(
        name="cloudviz-live-accuracy",
        description=f"Fewer than {LOW_LIVE_ACCURACY:.0%} of the newest (up to {DEFAULT_LABELLED_WINDOW}) "
        "predictions with a recorded true label were right: the model got worse on live data. No value (not "
        f"breaching) before {DEFAULT_MIN_LABELLED} predictions are labelled, or for a regression model.",
        local_metric="live_accuracy",
        measure=lambda sample: sample.live_accuracy,
        threshold=LOW_LIVE_ACCURACY,
        comparison="LessThanThreshold",
        namespace=CLOUDVIZ_NAMESPACE,
        metric_name="LiveAccuracy",
        dimensions=("Endpoint",),
        statistic="Minimum",
    ),
)

# Rules that exist only on AWS: locally the handlers run in-process inside the gateway, so an unhandled error
# is already a 5xx of cloudviz-api-5xx-rate and nothing limits concurrency (no throttling). On AWS a Lambda
# error or throttle is worth its own alarm: it names the failing function. One alarm per serving function.
AWS_ONLY_RULES: tuple[AlarmRule, ...] = (
    AlarmRule(
        name="cloudviz-lambda-errors",
        description="A serving Lambda function failed (an unhandled error or a timeout): API Gateway answered 502.",
        local_metric="(AWS only: Lambda Errors)",
        measure=not_measured_locally,
        threshold=0.0,
        comparison="GreaterThanThreshold",
        namespace="AWS/Lambda",
        metric_name="Errors",
        dimensions=("FunctionName",),
        statistic="Sum",
    ),
    AlarmRule(
        name="cloudviz-lambda-throttles",
        description="A serving Lambda function was throttled (concurrency limit reached): requests were refused.",
        local_metric="(AWS only: Lambda Throttles)",
        measure=not_measured_locally,
        threshold=0.0,
        comparison="GreaterThanThreshold",
        namespace="AWS/Lambda",
        metric_name="Throttles",
        dimensions=("FunctionName",),
        statistic="Sum",
    ),
)
