"""The smoke test of a local stage: one prediction through the stage's own prediction API, as a client makes it.

The AWS smoke-test function's calls, checks and example row; its result, in the deployment history, gates a promotion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deploy.aws.functions import smoke_test
from pipelines.artifacts import artifact_json
from pipelines.errors import UserError
from pipelines.registry import ModelPackage
from pipelines.runs import RunStore


@dataclass(frozen=True)
class SmokeTest:
    version: int
    passed: bool
    detail: str


def example_row(package: ModelPackage, features: Sequence[str], runs: RunStore) -> dict[str, float]:
    """The row the smoke test sends: the seed example for iris's features, else the training medians of
    ``package`` (from its registered baseline statistics); UserError when they cannot be found."""
    if list(features) == list(smoke_test.IRIS_EXAMPLE):
        return dict(smoke_test.IRIS_EXAMPLE)
    try:
        return smoke_test.example_row(features, artifact_json(package, "baseline_statistics", runs))
    except (UserError, ValueError) as error:
        raise UserError(f"no example row for {package.group} version {package.version}: {error}") from None


def smoke_test_api(
    api_url: str, api_key: str, example: Mapping[str, float], classes: Sequence[str], version: int
) -> SmokeTest:
    """POST ``example`` to ``api_url``/predictions, GET it back by id, and check the answer names a class of
    ``classes`` and ``version``; never raises: a failure is a result that says what went wrong."""
    passed, detail = smoke_test.run_smoke_test(api_url, api_key, dict(example), classes=classes, version=version)
    return SmokeTest(version, passed, detail)
