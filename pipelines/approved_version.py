"""The live model of a SageMaker model package group: its highest-numbered Approved version. One rule for what an
endpoint deploys and for the champion a retraining run is compared with (the command line and the retrain
function alike; standard library only, as that function packs it).

By ``ModelPackageVersion`` over every page, not by creation time: a version approved late, or re-approved after a
rejection, keeps its number, and one page may not hold them all.
"""

from __future__ import annotations

from typing import NamedTuple

APPROVED = "Approved"
# Below the artifact prefix: the object a run without a champion reads as its champion (a Processing input needs an
# existing object; the pipeline upsert stages it).
NO_CHAMPION_KEY = "cloudviz/no-champion/README.json"


def newest_approved(sagemaker_client: object, group: str) -> tuple[str, int] | None:
    """The ARN and version of ``group``'s highest-numbered Approved package; None when it has none."""
    pages = sagemaker_client.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group, ModelApprovalStatus=APPROVED
    )
    newest = max(
        ((summary["ModelPackageVersion"], summary["ModelPackageArn"])
         for page in pages for summary in page["ModelPackageSummaryList"]
         if summary.get("ModelApprovalStatus", APPROVED) == APPROVED),
        default=None,
    )
    if newest is None:
        return None
    version, arn = newest
    return arn, int(version)


class Champion(NamedTuple):
    """What Evaluate needs of a group's live model: its artifact and the data schema it registered ("" if none)."""

    model_data: str
    data_schema: str


def live_champion(sagemaker_client: object, group: str) -> Champion | None:
    """The model artifact (ModelDataUrl) and DataSchema metadata of ``group``'s newest Approved version, the champion
    a retraining run is compared with; None when the group has none."""
    newest = newest_approved(sagemaker_client, group)
    if newest is None:
        return None
    package = sagemaker_client.describe_model_package(ModelPackageName=newest[0])
    return Champion(package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"],
                    (package.get("CustomerMetadataProperties") or {}).get("DataSchema", ""))
