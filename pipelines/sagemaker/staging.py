"""Where the pipeline's files live in S3: addressed by content, so the definition names them offline.

``definition`` only computes these URIs; ``upsert`` uploads what is missing before it creates or updates the
pipeline. A changed script gets a new key, so a running execution never sees its code replaced.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pipelines.approved_version import NO_CHAMPION_KEY

REPOSITORY = Path(__file__).resolve().parents[2]
# A Processing input needs an existing object: ChampionModelData's default, when a group has no Approved version.
NO_CHAMPION_FILE = Path(__file__).resolve().parent / "no_champion" / "README.json"


@dataclass(frozen=True)
class StagedFile:
    """A local file and the ``s3://`` URI it is (or will be) uploaded to."""

    path: Path
    uri: str

    @property
    def bucket(self) -> str:
        return self.uri.removeprefix("s3://").split("/", 1)[0]

    @property
    def key(self) -> str:
        return self.uri.removeprefix("s3://").split("/", 1)[1]


def staged(path: Path, bucket: str, prefix: str, folder: str) -> StagedFile:
    """``s3://BUCKET/PREFIX/FOLDER/<sha256 of the content, 16 hex>/<file name>``."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return StagedFile(path, f"s3://{bucket}/{prefix}/{folder}/{digest}/{path.name}")


def upload_if_missing(s3: object, bucket: str, key: str, data: bytes) -> bool:
    """Upload ``data`` unless the key exists (a content-addressed key names its content, so a present one is
    current); whether it uploaded. Shared by the pipeline's files and the deployer's Lambda zips."""
    if s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount", 0):
        return False
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    return True


def staged_code(script: str, bucket: str, prefix: str) -> StagedFile:
    """A step's script, given relative to the repository root (``preprocessing/preprocess.py``)."""
    return staged(REPOSITORY / script, bucket, prefix, "code")


def no_champion(bucket: str, prefix: str) -> StagedFile:
    """The no-champion marker: at a fixed key (the retrain Lambda names it too), its content never changing."""
    return StagedFile(NO_CHAMPION_FILE, f"s3://{bucket}/{prefix}/{NO_CHAMPION_KEY}")
