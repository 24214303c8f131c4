"""The SageMaker manifest format (S3DataType ManifestFile): read back as written, bad ones refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.data.manifest import manifest_of, parse_manifest
from pipelines.errors import UserError


def test_a_manifest_is_a_prefix_then_keys_below_it(tmp_path: Path) -> None:
    manifest = manifest_of("s3://bucket/p/datasets/iris", ["parts/a.csv", "parts/b.csv"])
    document = json.loads(manifest.to_bytes())
    assert document == [{"prefix": "s3://bucket/p/datasets/iris/"}, "parts/a.csv", "parts/b.csv"]
    assert parse_manifest(manifest.to_bytes(), "m") == manifest
    assert manifest.uris() == ["s3://bucket/p/datasets/iris/parts/a.csv", "s3://bucket/p/datasets/iris/parts/b.csv"]
    with pytest.raises(UserError, match="reads file:// manifests"):
        manifest.local_files()
    local = manifest_of((tmp_path / "with space").as_uri(), ["parts/a.csv"])
    assert local.local_files() == [("parts/a.csv", tmp_path / "with space" / "parts/a.csv")]


@pytest.mark.parametrize(("text", "expected"), [
    ("{", "not JSON"),
    ('["parts/a.csv"]', "expected"),
    ('[{"prefix": "s3://b/no-slash"}]', "expected"),
    ('[{"prefix": "s3://b/"}, "../x.csv"]', "not '../x.csv'"),
    ('[{"prefix": "s3://b/"}, 3]', "not 3"),
])
def test_a_bad_manifest_is_refused_naming_its_source(text: str, expected: str) -> None:
    with pytest.raises(UserError, match=r"^where.json: ") as caught:
        parse_manifest(text, "where.json")
    assert expected in str(caught.value)
