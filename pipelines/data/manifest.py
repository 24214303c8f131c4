"""SageMaker manifest files (S3DataType ``ManifestFile``): ``[{"prefix": BASE}, "key", ...]``, a JSON array whose
first element names the base URI (ending in ``/``) and whose others are keys below it. SageMaker downloads each key
to ``<local_path>/<key>``; the local runner links each one there alike."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from pipelines.errors import UserError


@dataclass(frozen=True)
class Manifest:
    prefix: str  # the base URI, ending in "/": file:///abs/path/ or s3://bucket/prefix/
    keys: tuple[str, ...]

    def document(self) -> list:
        return [{"prefix": self.prefix}, *self.keys]

    def to_bytes(self) -> bytes:
        return (json.dumps(self.document(), indent=1) + "\n").encode("utf-8")

    def uris(self) -> list[str]:
        return [self.prefix + key for key in self.keys]

    def local_files(self) -> list[tuple[str, Path]]:
        """Each key with the local file it names (a ``file://`` prefix only)."""
        if not self.prefix.startswith("file://"):
            raise UserError(f"manifest prefix {self.prefix!r}: the local target reads file:// manifests")
        folder = Path(unquote(urlparse(self.prefix).path))
        return [(key, folder / key) for key in self.keys]


def manifest_of(prefix: str, keys: Sequence[str]) -> Manifest:
    return Manifest(prefix if prefix.endswith("/") else prefix + "/", tuple(keys))


def parse_manifest(data: bytes | str, source: str) -> Manifest:
    """A manifest file's contents, checked; a UserError naming ``source`` if it is not one."""
    try:
        document = json.loads(data)
    except ValueError as error:
        raise UserError(f"{source}: not a manifest file (not JSON: {error})") from None
    if not (isinstance(document, list) and document and isinstance(document[0], dict)
            and isinstance(document[0].get("prefix"), str) and document[0]["prefix"].endswith("/")):
        raise UserError(f'{source}: not a manifest file: expected [{{"prefix": "BASE/"}}, "key", ...]')
    keys = document[1:]
    bad = [key for key in keys if not isinstance(key, str) or not key or key.startswith("/") or ".." in key.split("/")]
    if bad:
        raise UserError(f"{source}: manifest keys must be relative paths below the prefix, not {bad[0]!r}")
    return Manifest(document[0]["prefix"], tuple(keys))
