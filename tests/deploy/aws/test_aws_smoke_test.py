"""The smoke-test function against a real prediction API on 127.0.0.1: passed and failed runs recorded on the
model package (within SageMaker's metadata pattern), an answer from the previous version asked again, a
regression's answer, and the example row it sends."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import threading
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from automation_versions import IRIS_CLASSES, IRIS_FEATURES, register
from aws_stage import scheduled_rules_take_no_events, validated_requests  # noqa: F401  (fixtures)
from moto_cloudformation import cloudformation_like_aws  # noqa: F401  (a fixture)
from moto_sagemaker import model_packages_like_sagemaker  # noqa: F401  (a fixture)

from deploy.aws.functions.smoke_test import (
    IRIS_EXAMPLE,
    SmokeTest,
    example_row,
    record_smoke_test,
    recorded_smoke_test,
    run_smoke_test,
)
from deploy.local_service import LocalService
from pipelines.registry import ModelRegistry
from pipelines.state import StateHome

pytestmark = [
    pytest.mark.usefixtures("validated_requests", "scheduled_rules_take_no_events", "aws",
                            "cloudformation_like_aws", "model_packages_like_sagemaker"),
    pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto"),
]

KEY = "k" * 32


# --- the smoke test ------------------------------------------------------------------------------------------------

@pytest.fixture
def local_api(two_versions: Path, tmp_path: Path) -> Iterator[LocalService]:
    """The prediction API on 127.0.0.1: the serving handlers, the endpoint server and version 1 of the model."""
    root = tmp_path / "served"
    shutil.copytree(two_versions, root, symlinks=True)
    ModelRegistry(StateHome(root).registry_db).update_approval("CloudVizIris", 1, "Approved", "test")
    with LocalService(StateHome(root), "CloudVizIris", KEY).start() as service:
        yield service


def metadata_pattern_holds(value: str) -> bool:
    """SageMaker's pattern for a metadata value, ^([\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@]*)$, at most 256 characters."""
    return len(value) <= 256 and all(unicodedata.category(c)[0] in "LZN" or c in "_.:/=+-@" for c in value)


def test_the_smoke_test_passes_on_a_served_version_and_is_recorded(local_api):
    arn, _ = register("Approved")
    passed, detail = run_smoke_test(local_api.api.url, KEY, IRIS_EXAMPLE, classes=IRIS_CLASSES, version=1)
    assert passed and re.fullmatch(r"version 1 predicted virginica for the example; GET /predictions/\S+ read it back",
                                   detail), detail
    sagemaker = boto3.client("sagemaker")
    assert recorded_smoke_test(sagemaker, arn, "dev") is None
    record = record_smoke_test(sagemaker, arn, "dev", passed, detail)
    assert recorded_smoke_test(sagemaker, arn, "dev") == record == SmokeTest("dev", True, "", record.at)
    assert recorded_smoke_test(sagemaker, arn, "prod") is None
    properties = sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    assert properties["cloudviz:smoke-test:dev"] == "passed"
    assert properties["cloudviz:smoke-test-at:dev"] == record.at and record.at.endswith("Z")
    assert properties["DataSchema"].endswith("/schema.json")  # the registered properties are kept
    assert sagemaker.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == "Approved"


def test_the_smoke_test_fails_when_the_endpoint_answers_errors_and_is_recorded(local_api):
    arn, _ = register("Approved")
    sagemaker = boto3.client("sagemaker")
    record_smoke_test(sagemaker, arn, "dev", True, "")
    wrong_version = run_smoke_test(local_api.api.url, KEY, IRIS_EXAMPLE, classes=IRIS_CLASSES, version=2)
    assert wrong_version == (False, "POST /predictions was answered by model version 1, not 2")
    local_api.endpoint_server.close()  # the endpoint is down: the API answers an error
    passed, detail = run_smoke_test(local_api.api.url, KEY, IRIS_EXAMPLE, classes=IRIS_CLASSES, version=1)
    assert not passed and detail.startswith("POST /predictions answered 5"), detail
    record = record_smoke_test(sagemaker, arn, "dev", passed, f"{detail} (on {{'x1': 6.7}})")
    recorded = recorded_smoke_test(sagemaker, arn, "dev")
    assert recorded == record and not recorded.passed and recorded.detail.startswith("POST /predictions answered 5")
    value = sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"][
        "cloudviz:smoke-test:dev"]
    assert value.startswith("failed: POST /predictions answered 5") and metadata_pattern_holds(value)
    unreachable = run_smoke_test("http://127.0.0.1:9", KEY, IRIS_EXAMPLE)
    assert unreachable[0] is False and unreachable[1].startswith("the API could not be reached")


class SwitchingApi(http.server.ThreadingHTTPServer):
    """An API on 127.0.0.1 whose first ``old_answers`` POSTs are answered by version 1, the later ones by version
    2, as an inference function's version cache does for its TTL after an update; it counts the calls."""

    def __init__(self, old_answers: int, answer: dict | None = None) -> None:
        self.old_answers, self.posts, self.gets = old_answers, 0, 0
        self.answer = answer or {"prediction": 1, "label": "virginica"}  # what the model predicts
        self.stored: dict[str, dict] = {}
        super().__init__(("127.0.0.1", 0), SwitchingApiHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class SwitchingApiHandler(http.server.BaseHTTPRequestHandler):
    server: SwitchingApi

    def answer(self, document: dict) -> None:
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts += 1
        version = 1 if self.server.posts <= self.server.old_answers else 2
        prediction = {"id": f"p{self.server.posts}", **self.server.answer, "model_version": version}
        self.server.stored[prediction["id"]] = prediction
        self.answer(prediction)

    def do_GET(self) -> None:  # noqa: N802
        self.server.gets += 1
        self.answer(self.server.stored[self.path.rsplit("/", 1)[1]])

    def log_message(self, *args: object) -> None:
        return None


def test_an_answer_from_the_previous_version_is_asked_again_until_the_wait_is_over():
    """Right after an update the API may still name the previous version (its version cache): the smoke test asks
    again, every poll, for the wait it is given (the api stack's TTL and a margin), and fails only after it."""
    with SwitchingApi(old_answers=2) as api:
        passed, detail = run_smoke_test(api.url, KEY, IRIS_EXAMPLE, classes=IRIS_CLASSES, version=2,
                                        wait_seconds=600, poll_seconds=0)
        assert passed and re.fullmatch(r"version 2 predicted virginica for the example; "
                                       r"GET /predictions/\S+ read it back", detail), detail
        assert (api.posts, api.gets) == (3, 1)
    with SwitchingApi(old_answers=10**9) as api:  # the new version never answers: a failure once the wait is over
        assert run_smoke_test(api.url, KEY, IRIS_EXAMPLE, classes=IRIS_CLASSES, version=2, wait_seconds=0.2,
                              poll_seconds=0.01) == (
            False, "POST /predictions was answered by model version 1, not 2 (asked again for 0.2 s)")
        assert api.gets == 0
    with SwitchingApi(old_answers=2) as api:  # no wait: the first answer decides
        assert run_smoke_test(api.url, KEY, IRIS_EXAMPLE, classes=IRIS_CLASSES, version=2) == (
            False, "POST /predictions was answered by model version 1, not 2")
        assert (api.posts, api.gets) == (1, 0)


def test_a_regression_answer_passes_without_classes_and_must_be_a_number():
    with SwitchingApi(old_answers=0, answer={"prediction": 12.3}) as api:
        assert run_smoke_test(api.url, KEY, {"rooms": 3.0}, version=2) == (
            True, "version 2 predicted 12.3 for the example; GET /predictions/p1 read it back")
    for answer in ({"prediction": None}, {"prediction": "12.3"}, {"prediction": True}):
        with SwitchingApi(old_answers=0, answer=answer) as api:
            assert run_smoke_test(api.url, KEY, {"rooms": 3.0}, version=2) == (
                False, f"POST /predictions answered prediction {answer['prediction']!r}, not a number")


def test_the_example_row_is_the_seed_example_for_iris_else_the_training_medians():
    assert example_row(IRIS_FEATURES, None) == IRIS_EXAMPLE
    statistics = {"features": {"a": {"quantiles": {"p50": 2.5}}, "b": {"quantiles": {"p50": -1.0}}}}
    assert example_row(["a", "b"], statistics) == {"a": 2.5, "b": -1.0}
    with pytest.raises(ValueError, match="no median of c"):
        example_row(["a", "c"], statistics)
