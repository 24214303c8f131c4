"""The smoke test of a local stage: one prediction through the stage's own prediction API, as a client makes it.

The model-level check (``deploy.endpoint.slot.smoke_test``) proves an artifact loads and predicts; this one
proves the stage answers: the API takes the example row with the key, the endpoint predicts, the store keeps
the prediction (``POST /predictions``) and gives it back (``GET /predictions/{id}``), the answer is one of the
model's classes, and it names the version the stage serves. Its result, recorded in the stage's deployment
history, is what a promotion to the next stage checks. The calls, the checks and the example row are those of
the AWS smoke-test function (``deploy.aws.functions.smoke_test``): only where the statistics come from and where
the result is recorded differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deploy.aws.functions import smoke_test
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
    ``package`` (from its run's baseline statistics); UserError when they cannot be found."""
    if list(features) == list(smoke_test.IRIS_EXAMPLE):
        return dict(smoke_test.IRIS_EXAMPLE)
    name = f"{package.group} version {package.version}"
    run_id = package.lineage.get("run_id")
    if not run_id:
        raise UserError(f"no example row for {name}: it names no training run, so its feature medians are unknown")
    try:
        statistics = runs.load(run_id).output_json("baseline", "statistics.json")
        return smoke_test.example_row(features, statistics)
    except (UserError, ValueError) as error:
        raise UserError(f"no example row for {name}: {error}") from None


def smoke_test_api(
    api_url: str, api_key: str, example: Mapping[str, float], classes: Sequence[str], version: int
) -> SmokeTest:
    """POST ``example`` to ``api_url``/predictions, GET it back by id, and check the answer names a class of
    ``classes`` and ``version``; never raises: a failure is a result that says what went wrong."""
    passed, detail = smoke_test.run_smoke_test(api_url, api_key, dict(example), classes=classes, version=version)
    return SmokeTest(version, passed, detail)
