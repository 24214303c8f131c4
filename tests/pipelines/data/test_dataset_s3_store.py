"""Data sets in S3 (moto): the same layout as the local target's below ``s3://bucket/prefix/datasets/``, and the
manifest a SageMaker ManifestFile input reads."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from pipelines.data.manifest import parse_manifest
from pipelines.data.storage import S3Storage
from pipelines.data.versions import local_dataset_store, s3_dataset_store
from pipelines.state import StateHome

REGION = "us-east-1"
BUCKET = "cloudviz-artifacts"


@pytest.fixture
def s3() -> object:
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


def keys(s3: object) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_versions_in_s3_have_the_local_layout_and_an_s3_manifest(s3: object, tmp_path: Path) -> None:
    store = s3_dataset_store(s3, BUCKET, "cloudviz")
    more = tmp_path / "more.csv"
    more.write_text("x1,x2,x3,x4,species\n5.1,3.5,1.4,0.2,setosa\n", encoding="utf-8")
    version = store.add("iris", more)
    assert version.ref == "iris@2" and version.rows == 151
    base = "cloudviz/datasets/iris/"
    first = store.resolve("iris@1")
    manifests = [f"{base}versions/1-{first.id}.manifest", f"{base}versions/2-{version.id}.manifest"]
    assert keys(s3) == sorted([*(f"{base}{part.key}" for part in version.parts), f"{base}versions/1.json",
                               f"{base}versions/2.json", *manifests])
    assert version.manifest_uri == f"s3://{BUCKET}/{manifests[1]}"
    manifest = parse_manifest(s3.get_object(Bucket=BUCKET, Key=manifests[1])["Body"].read(), "s3")
    assert manifest.prefix == f"s3://{BUCKET}/{base}"
    assert manifest.keys == tuple(part.key for part in version.parts)
    document = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{base}versions/2.json")["Body"].read())
    assert document["manifest"] == version.manifest_uri and document["parameters"]["ModelPackageGroupName"] == \
        "CloudVizIris"

    # The same content again adds nothing; another reader sees the same versions.
    assert store.add("iris", more) == version
    assert len(keys(s3)) == 6
    assert s3_dataset_store(s3, BUCKET, "/cloudviz/").resolve("iris@2") == version

    # The parts are the local target's, byte for byte: the same ids on both targets.
    local = local_dataset_store(StateHome(tmp_path / "home"))
    assert local.add("iris", more).id == version.id


def test_s3_storage_writes_only_what_is_absent(s3: object) -> None:
    storage = S3Storage(s3, BUCKET, "p")
    assert storage.write_if_absent("a/b.json", b"first") is True
    assert storage.write_if_absent("a/b.json", b"second") is False
    assert storage.read("a/b.json") == b"first"
    assert storage.read("a/none") is None
    assert storage.list("a/") == ["a/b.json"] and storage.list("b/") == []
    assert storage.uri("a/b.json") == f"s3://{BUCKET}/p/a/b.json"


def test_a_conditional_put_conflict_is_retried(s3: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 answers 409 ConditionalRequestConflict to an If-None-Match PUT racing another PUT of the key; the S3
    docs say to retry it. The first PUT here gets that answer, the retry reaches moto."""
    from botocore.awsrequest import AWSResponse

    import pipelines.data.storage as storage

    monkeypatch.setattr(storage, "CONFLICT_PAUSE_SECONDS", 0)
    conflicts = []

    def conflict_once(params: dict, **_: object) -> tuple | None:  # answers before the request reaches moto
        if conflicts:
            return None
        conflicts.append(params["headers"]["If-None-Match"])
        error = {"Code": "ConditionalRequestConflict", "Message": "A conflicting operation occurred"}
        return AWSResponse("", 409, {}, None), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 409}}

    s3.meta.events.register_first("before-call.s3.PutObject", conflict_once)
    assert S3Storage(s3, BUCKET, "p").write_if_absent("a/b.json", b"first") is True
    assert conflicts == ["*"]
    assert S3Storage(s3, BUCKET, "p").write_if_absent("a/b.json", b"second") is False
    assert s3.get_object(Bucket=BUCKET, Key="p/a/b.json")["Body"].read() == b"first"


def test_an_interrupted_add_blocks_no_later_one(s3: object, tmp_path: Path) -> None:
    """An add that wrote its manifest and stopped before its version record (the commit point) leaves a manifest
    nothing names; so does an older release's `2.manifest` without its `2.json`. The next add commits version 2."""
    store = s3_dataset_store(s3, BUCKET, "cloudviz")
    store.resolve("iris")
    for orphan in ("2.manifest", "2-0123456789abcdef.manifest"):
        s3.put_object(Bucket=BUCKET, Key=f"cloudviz/datasets/iris/versions/{orphan}", Body=b"[]")
    more = tmp_path / "more.csv"
    more.write_text("x1,x2,x3,x4,species\n5.1,3.5,1.4,0.2,setosa\n", encoding="utf-8")
    version = store.add("iris", more)
    assert (version.ref, store.resolve("iris").ref) == ("iris@2", "iris@2")
    written = s3.get_object(Bucket=BUCKET, Key=version.manifest_uri.split("/", 3)[3])["Body"].read()
    assert parse_manifest(written, "s3").keys == tuple(part.key for part in version.parts)
