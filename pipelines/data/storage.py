"""Where data set files live: a local folder or an S3 prefix, behind one small interface. Keys are relative
``/``-separated paths (``iris/parts/<sha256>.csv``); a file is never changed once written."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Protocol

CONFLICT_ATTEMPTS = 5  # conditional PUTs of one key answered 409 ConditionalRequestConflict
CONFLICT_PAUSE_SECONDS = 0.2


class Storage(Protocol):
    def read(self, key: str) -> bytes | None:
        """The file's bytes, or None when there is no such file."""

    def write_if_absent(self, key: str, source: Path | bytes) -> bool:
        """Write the file whole unless it exists: True if this call wrote it. Readers never see it half-written."""

    def list(self, prefix: str) -> list[str]:
        """The keys that start with ``prefix``, sorted."""

    def uri(self, key: str) -> str:
        """The key's address: ``file:///abs/path`` or ``s3://bucket/prefix/key``."""


class LocalStorage:
    """Files below ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def write_if_absent(self, key: str, source: Path | bytes) -> bool:
        """Written beside the target, then hard-linked to its name: the link fails if the name exists."""
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            if isinstance(source, bytes):
                temporary.write_bytes(source)
            else:
                shutil.copyfile(source, temporary)
            os.link(temporary, target)
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        return True

    def list(self, prefix: str) -> list[str]:
        folder = prefix.rpartition("/")[0]
        base = self.root / folder
        if not base.is_dir():
            return []
        keys = (path.relative_to(self.root).as_posix() for path in base.rglob("*") if path.is_file())
        return sorted(key for key in keys if key.startswith(prefix) and not Path(key).name.startswith("."))

    def uri(self, key: str) -> str:
        return self.root.resolve().as_uri() + "/" + key


class S3Storage:
    """Objects below ``s3://bucket/prefix/``, through a boto3 S3 client; a conditional PUT (``If-None-Match: *``)
    writes only what does not exist: 412 PreconditionFailed when it does, 409 ConditionalRequestConflict when
    another PUT of the key is in flight (then, as the S3 docs say, the PUT is retried)."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def read(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def write_if_absent(self, key: str, source: Path | bytes) -> bool:
        from botocore.exceptions import ClientError

        attempt = 1
        while True:
            try:
                if isinstance(source, bytes):
                    self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=source, IfNoneMatch="*")
                else:
                    with source.open("rb") as body:
                        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body, IfNoneMatch="*")
                return True
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                if code == "PreconditionFailed":
                    return False
                if code != "ConditionalRequestConflict" or attempt == CONFLICT_ATTEMPTS:
                    raise
            time.sleep(CONFLICT_PAUSE_SECONDS * attempt)
            attempt += 1

    def list(self, prefix: str) -> list[str]:
        start = len(self._key(""))
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
        return sorted(item["Key"][start:] for page in pages for item in page.get("Contents", []))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"
