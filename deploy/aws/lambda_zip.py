"""The Lambda deployment packages, built from the project's own sources (boto3 + the standard library only).

``serving_lambdas``: the ``serving_lambdas/`` package; ``automation``: ``deploy/aws/functions/`` at the zip's root,
with the ``pipelines`` modules the retrain function imports (``RETRAIN_MODULES``) under ``pipelines/``.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pipelines
import serving_lambdas
from deploy.aws import functions

KEY_PREFIX = "cloudviz/lambda"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
INFERENCE_HANDLER = "serving_lambdas.inference.handler"
RETRIEVE_HANDLER = "serving_lambdas.retrieve.handler"
DRIFT_HANDLER = "serving_lambdas.drift_monitor.handler"
REDEPLOY_HANDLER = "redeploy.handler"
SMOKE_TEST_HANDLER = "smoke_test.handler"
RETRAIN_HANDLER = "retrain.handler"
AUTOMATION_MODULES = ("redeploy", "retrain", "smoke_test")  # deploy/aws/functions/<module>.py
# The pipelines modules the retrain function imports (the retraining decisions), relative to the package: files,
# or folders whose Python files all go.
RETRAIN_MODULES = ("__init__.py", "approved_version.py", "objectives.py", "retraining.py")


@dataclass(frozen=True)
class LambdaZip:
    """A deployment package: its name, its bytes, and the S3 key it is uploaded to."""

    name: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def key(self) -> str:
        return f"{KEY_PREFIX}/{self.name}-{self.sha256[:16]}.zip"

    @property
    def filename(self) -> str:
        return f"{self.name}.zip"


def _zip(files: dict[str, Path]) -> bytes:
    """A reproducible zip of ``files`` (archive name -> source path): the same sources give the same bytes, so the
    S3 key (a digest of the bytes), and the function, change exactly when the code does."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            entry = zipfile.ZipInfo(name, FIXED_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, files[name].read_bytes())
    return buffer.getvalue()


def serving_zip() -> LambdaZip:
    """The ``serving_lambdas`` package's Python sources, under ``serving_lambdas/``."""
    package = Path(serving_lambdas.__file__).parent
    files = {f"serving_lambdas/{path.relative_to(package).as_posix()}": path for path in package.rglob("*.py")}
    return LambdaZip("serving_lambdas", _zip(files))


def retrain_library() -> dict[str, Path]:
    """``RETRAIN_MODULES``, by their archive names (``pipelines/...``)."""
    package = Path(pipelines.__file__).parent
    paths = [package / name for name in RETRAIN_MODULES]
    sources = [source for path in paths for source in (sorted(path.rglob("*.py")) if path.is_dir() else [path])]
    return {f"pipelines/{source.relative_to(package).as_posix()}": source for source in sources}


def automation_zip() -> LambdaZip:
    """The automation stack's functions (redeploy, smoke test, retrain) at the root of the zip, and the retrain
    function's ``pipelines`` modules."""
    sources = [Path(functions.__file__).parent / f"{module}.py" for module in AUTOMATION_MODULES]
    return LambdaZip("automation", _zip({**{source.name: source for source in sources}, **retrain_library()}))


def lambda_zips() -> tuple[LambdaZip, ...]:
    """Every package the stacks reference, for the deployer to upload (and ``write_synth`` to write)."""
    return serving_zip(), automation_zip()
