"""A servable model: the booster inside a registered ``model.tar.gz``, and what it needs to answer requests.

The artifact is the one SageMaker's built-in XGBoost container serves (``xgboost-model``, UBJSON from
XGBoost 3.x); like the container, the booster predicts with ``nthread=1``, so concurrent requests scale
across threads instead of fighting over cores.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import xgboost as xgb

from deploy.endpoint import predictor
from deploy.endpoint.errors import ModelLoadError

MODEL_FILE = "xgboost-model"
PICKLE_MAGIC = b"\x80"  # a pickled booster, as images 0.90-1.x saved them


def read_model_file(tarball: Path) -> bytes:
    """The ``xgboost-model`` member's bytes (or the archive's only file, as the container takes the first file)."""
    if not tarball.is_file():
        raise ModelLoadError(f"{tarball}: no such model artifact")
    try:
        with tarfile.open(tarball, "r:*") as archive:
            files = [m for m in archive.getmembers() if m.isfile()]
            named = [m for m in files if Path(m.name).name == MODEL_FILE]
            if named:
                chosen = named[0]
            elif len(files) == 1:
                chosen = files[0]
            else:
                listing = ", ".join(m.name for m in files) or "nothing"
                raise ModelLoadError(f"{tarball}: no {MODEL_FILE} file in the archive (it holds {listing})")
            handle = archive.extractfile(chosen)
            assert handle is not None  # a regular file always has a body
            return handle.read()
    except tarfile.ReadError:
        raise ModelLoadError(f"{tarball}: not a readable model.tar.gz (not a tar archive, gzipped or plain)") from None
    except (tarfile.TarError, OSError, EOFError) as error:
        reason = str(error).strip().splitlines()[0]
        raise ModelLoadError(f"{tarball}: not a readable model.tar.gz ({reason})") from None


class ServingModel:
    """A loaded booster with its version and the facts request handling needs (objective, classes, features)."""

    def __init__(self, booster: xgb.Booster, version: int | None = None) -> None:
        booster.set_param("nthread", 1)
        learner = json.loads(booster.save_config())["learner"]
        self.booster = booster
        self.version = version
        self.objective: str = learner["objective"]["name"]
        self.num_class = int(learner["learner_model_param"].get("num_class", 0))
        self.num_features = booster.num_features()
        # The file:// URI of the data schema its version was registered with, once the local service wrote it: the
        # control plane tags the model's configuration with it, as the AWS endpoint stack tags its configurations.
        self.schema_uri: str | None = None

    @classmethod
    def load(cls, tarball: Path, version: int | None = None) -> ServingModel:
        """Load ``tarball``; ModelLoadError with a one-line reason if it cannot be served."""
        tarball = Path(tarball)
        raw = read_model_file(tarball)
        if raw.startswith(PICKLE_MAGIC):
            raise ModelLoadError(
                f"{tarball}: {MODEL_FILE} is a pickled booster (images 1.x); save it with Booster.save_model as UBJSON"
            )
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(raw))
        except xgb.core.XGBoostError as error:
            reason = str(error).strip().splitlines()[0]
            raise ModelLoadError(f"{tarball}: {MODEL_FILE} is not a model XGBoost can load ({reason})") from None
        return cls(booster, version)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predictions as the container returns them: class indices (multi:softmax), one row of
        probabilities per input row (multi:softprob), one score per row otherwise. NaN marks a missing value."""
        return predictor.predict(self.booster, features)
