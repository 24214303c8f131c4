"""The smoke test of a stage's deployment, and its record on the model package (boto3 + the standard library only).

Run when the endpoint stack finished a creation or update (and by ``cloudviz deploy aws``): the API called as a client
would, the result recorded on the package (``RESULT_KEY``, ``TIME_KEY``) for ``cloudviz promote``, a failure sent to
the alarm topic. Environment: ``STAGE``, ``ENDPOINT_STACK``, ``API_STACK``, ``TOPIC_ARN``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3

logger = logging.getLogger()
logger.setLevel(logging.INFO)

RESULT_KEY = "cloudviz:smoke-test:{stage}"
TIME_KEY = "cloudviz:smoke-test-at:{stage}"
PASSED = "passed"
FAILED_PREFIX = "failed: "
IRIS_EXAMPLE = {"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5}  # the seed API's documented example
# A CustomerMetadataProperties value: at most 256 characters of letters, separators, digits and _.:/=+-@
# (the SageMaker API's pattern ^([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)$).
VALUE_LIMIT = 256
VALUE_PUNCTUATION = "_.:/=+-@"
REQUEST_TIMEOUT_SECONDS = 20
POLL_SECONDS = 3  # between two POSTs answered by the previous version
VERSION_MARGIN_SECONDS = 5  # waited past the API's version TTL (a request in flight when the stack finished)
AWS_CALLS_SECONDS = 20  # the AWS calls around the API's (stacks, package, statistics, key, record, topic)
TTL_PARAMETER = "ModelVersionTtlSeconds"  # the api stack's parameter: how long a version read is trusted


def longest_run_seconds(ttl_seconds: float) -> float:
    """The longest a smoke test of an API trusting a version read for ``ttl_seconds`` takes: the wait for the new
    version, one more poll and POST, the GET, and the AWS calls around them (the function's timeout covers it)."""
    return ttl_seconds + VERSION_MARGIN_SECONDS + POLL_SECONDS + 2 * REQUEST_TIMEOUT_SECONDS + AWS_CALLS_SECONDS


@dataclass(frozen=True)
class SmokeTest:
    """The recorded smoke test of one model package in one stage."""

    stage: str
    passed: bool
    detail: str  # "" when it passed; the reason it failed otherwise
    at: str  # when it ran, ISO-8601 UTC


def metadata_value(text: str) -> str:
    """``text`` as a CustomerMetadataProperties value: characters the API refuses become spaces, runs of spaces
    one, cut to the API's length limit."""
    kept = "".join(c if unicodedata.category(c)[0] in "LZN" or c in VALUE_PUNCTUATION else " " for c in text)
    return " ".join(kept.split())[:VALUE_LIMIT]


def record_smoke_test(sagemaker: Any, package_arn: str, stage: str, passed: bool, detail: str) -> SmokeTest:
    """Record the result on the package (the two keys of ``stage``; the package's other properties are kept)."""
    at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    value = PASSED if passed else metadata_value(FAILED_PREFIX + (detail or "no reason given"))
    sagemaker.update_model_package(ModelPackageArn=package_arn, CustomerMetadataProperties={
        RESULT_KEY.format(stage=stage): value, TIME_KEY.format(stage=stage): at})
    return SmokeTest(stage, passed, "" if passed else value.removeprefix(FAILED_PREFIX), at)


def recorded_smoke_test(sagemaker: Any, package_arn: str, stage: str) -> SmokeTest | None:
    """The smoke test recorded on the package for ``stage``; None when none ran there."""
    package = sagemaker.describe_model_package(ModelPackageName=package_arn)
    properties = package.get("CustomerMetadataProperties") or {}
    value = properties.get(RESULT_KEY.format(stage=stage))
    if value is None:
        return None
    passed = value == PASSED
    return SmokeTest(stage, passed, "" if passed else value.removeprefix(FAILED_PREFIX).strip(),
                     properties.get(TIME_KEY.format(stage=stage), ""))


def example_row(features: Sequence[str], statistics: dict | None) -> dict[str, float]:
    """The row the smoke test sends: iris's seed example for iris's features, else each feature's median."""
    if list(features) == list(IRIS_EXAMPLE):
        return dict(IRIS_EXAMPLE)
    described = (statistics or {}).get("features", {})
    missing = [name for name in features if "p50" not in described.get(name, {}).get("quantiles", {})]
    if missing:
        raise ValueError(f"the baseline statistics have no median of {', '.join(missing)}")
    return {name: float(described[name]["quantiles"]["p50"]) for name in features}


def _call(method: str, url: str, api_key: str, body: dict | None = None) -> tuple[int, Any]:
    """One API call: its status and its JSON body (``None`` when the body is not JSON)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "x-api-key": api_key, "Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:  # noqa: S310 (https URL)
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, None


def _failed(call: str, status: int, body: Any) -> str:
    """``<call> answered <status>: <the API's message>``."""
    message = str(body.get("message") or body.get("error") or "")[:80] if isinstance(body, dict) else ""
    return f"{call} answered {status}: {message}" if message else f"{call} answered {status}"


def run_smoke_test(api_url: str, api_key: str, example: dict[str, float], *, classes: Sequence[str] = (),
                   version: int | None = None, wait_seconds: float = 0.0,
                   poll_seconds: float = POLL_SECONDS) -> tuple[bool, str]:
    """Call the API as a client would: POST the example, then GET the prediction by its id. Passed when both
    answer 200, the prediction is a number, a class of the model (``classes``, when given; none for regression),
    made by ``version`` (when given), and the stored prediction is the one answered; the detail says what was seen
    or what went wrong. A POST answered by another version is sent again every ``poll_seconds`` for
    ``wait_seconds`` (the API's version cache may still name the previous one), then fails."""
    base = api_url.rstrip("/")
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            status, answer = _call("POST", f"{base}/predictions", api_key, example)
            if status != 200 or not isinstance(answer, dict):
                return False, _failed("POST /predictions", status, answer)
            label, prediction, served = answer.get("label"), answer.get("prediction"), answer.get("model_version")
            if isinstance(prediction, bool) or not isinstance(prediction, int | float):
                return False, f"POST /predictions answered prediction {prediction!r}, not a number"
            if classes and (label not in classes or prediction != list(classes).index(label)):
                return False, f"POST /predictions answered class {prediction} {label}, not one of {','.join(classes)}"
            if version is None or served == version:
                break
            if time.monotonic() >= deadline:
                waited = f" (asked again for {wait_seconds:g} s)" if wait_seconds else ""
                return False, f"POST /predictions was answered by model version {served}, not {version}{waited}"
            logger.info("POST /predictions was answered by model version %s, not yet %s: asking again in %g s",
                        served, version, poll_seconds)
            time.sleep(poll_seconds)
        by_id = f"GET /predictions/{answer.get('id')}"
        status, stored = _call("GET", f"{base}/predictions/{answer.get('id')}", api_key)
        if status != 200 or not isinstance(stored, dict):
            return False, _failed(by_id, status, stored)
        if (stored.get("id"), stored.get("prediction")) != (answer.get("id"), prediction):
            return False, f"{by_id} answered prediction {stored.get('prediction')}, not {prediction}"
    except (OSError, urllib.error.URLError) as error:
        return False, f"the API could not be reached: {error}"
    shown = label if label is not None else prediction  # a regression model answers a value, no label
    return True, f"version {served} predicted {shown} for the example; {by_id} read it back"


def handler(event: dict, context: Any, clients: dict[str, Any] | None = None) -> dict:
    """Run the smoke test of the stage on the stack status change ``event`` and record its result."""
    status = (event.get("detail") or {}).get("status-details", {}).get("status", "")
    return smoke_test_stage(clients or {}, os.environ["STAGE"], os.environ["ENDPOINT_STACK"], os.environ["API_STACK"],
                            os.environ["TOPIC_ARN"], after=status or "an update")


def smoke_test_stage(clients: dict[str, Any], stage: str, endpoint_stack: str, api_stack: str, topic_arn: str, *,
                     after: str = "an update") -> dict:
    """Smoke-test the package ``endpoint_stack`` serves through ``api_stack``'s API, record the result on the
    package for ``stage`` and publish a failure to ``topic_arn``; the result. ``clients`` are boto3 clients by
    service name (the default client for one not given). An AWS error is raised, not recorded: the caller says
    it (the function's failure destination, the command's error line)."""

    def client(name: str) -> Any:
        return clients.get(name) or boto3.client(name)

    cloudformation = client("cloudformation")
    endpoint = cloudformation.describe_stacks(StackName=endpoint_stack)["Stacks"][0]
    served = {p["ParameterKey"]: p.get("ParameterValue", "") for p in endpoint.get("Parameters", [])}
    package_arn, version = served["ModelPackageArn"], int(served["ModelVersion"])
    api = cloudformation.describe_stacks(StackName=api_stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in api.get("Outputs", [])}
    settings = {p["ParameterKey"]: p.get("ParameterValue", "") for p in api.get("Parameters", [])}
    sagemaker = client("sagemaker")
    try:
        features = stack_value(settings, "FeatureNames", api_stack).split(",")
        # A regression model answers a value: it has no classes to check the answer against.
        regression = settings.get("ModelTask") == "regression"
        classes = () if regression else stack_value(settings, "ClassNames", api_stack).split(",")
        wait_seconds = float(stack_value(settings, TTL_PARAMETER, api_stack)) + VERSION_MARGIN_SECONDS
        example = example_row(features, baseline_statistics(sagemaker, client("s3"), package_arn))
        api_key = client("apigateway").get_api_key(apiKey=stack_value(outputs, "ApiKeyId", api_stack),
                                                   includeValue=True)["value"]
        passed, detail = run_smoke_test(stack_value(outputs, "ApiUrl", api_stack), api_key, example,
                                        classes=classes, version=version, wait_seconds=wait_seconds)
    except ValueError as error:
        passed, detail = False, str(error)
    record = record_smoke_test(sagemaker, package_arn, stage, passed, detail)
    line = f"smoke test of {stage} after {after}: version {version} {'passed' if passed else 'failed'}: {detail}"
    if passed:
        logger.info(line)
    else:
        logger.error(line)
        client("sns").publish(TopicArn=topic_arn, Subject=f"CloudViz {stage}: smoke test failed",
                              Message=f"{line}\nModel package: {package_arn}\nPromotion is refused until it passes.")
    return {"stage": stage, "modelPackageArn": package_arn, "modelVersion": version, "passed": record.passed,
            "detail": detail, "at": record.at}


def stack_value(values: dict[str, str], key: str, stack: str) -> str:
    """A stack's parameter or output; a ValueError naming it when the stack has none (or an empty one)."""
    if not values.get(key):
        raise ValueError(f"stack {stack} has no {key}")
    return values[key]


def baseline_statistics(sagemaker: Any, s3: Any, package_arn: str) -> dict | None:
    """The package's baseline statistics (its ModelDataQuality statistics in S3); None when it has none."""
    package = sagemaker.describe_model_package(ModelPackageName=package_arn)
    uri = package.get("ModelMetrics", {}).get("ModelDataQuality", {}).get("Statistics", {}).get("S3Uri", "")
    if not uri:
        return None
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
