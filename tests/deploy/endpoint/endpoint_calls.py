"""Models trained by the local training container, packed as model.tar.gz, and HTTP calls to a local endpoint."""

from __future__ import annotations

import http.client
import io
import json
import tarfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_iris

from deploy.endpoint import EndpointServer
from pipelines.builtin_xgboost import train
from pipelines.builtin_xgboost.hyperparameters import DEFAULT_HYPERPARAMETERS

CONTRACT_EXAMPLE = "6.7,3.3,5.7,2.5"  # answered {"prediction": 1} (virginica) by the original deployment
VARIANT = "x-Amzn-Invoked-Production-Variant"


def iris_contract_order() -> tuple[np.ndarray, np.ndarray]:
    """Iris with the contract's class indices: setosa=0, virginica=1, versicolor=2."""
    iris = load_iris()
    return iris.data, np.array([0, 2, 1])[iris.target]


def tarball(path: Path, model_bytes: bytes, name: str = "xgboost-model") -> Path:
    """A model.tar.gz as the local runner packs a training job's model folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(model_bytes)
        archive.addfile(info, io.BytesIO(model_bytes))
    return path


def trained(root: Path, objective: str, num_round: int = 10) -> Path:
    """Train with the local emulation of the built-in container on iris; return the model.tar.gz."""
    features, labels = iris_contract_order()
    config = root / "ml" / "input" / "config"
    config.mkdir(parents=True)
    hyperparameters = {**DEFAULT_HYPERPARAMETERS, "objective": objective, "num_round": str(num_round)}
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters), encoding="utf-8")
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {"ContentType": "text/csv"}}), "utf-8")
    data = root / "ml" / "input" / "data" / "train" / "train.csv"
    data.parent.mkdir(parents=True)
    np.savetxt(data, np.column_stack([labels, features]), delimiter=",", fmt="%g")
    train.train(root / "ml")
    return tarball(root / "model.tar.gz", (root / "ml" / "model" / train.MODEL_FILE).read_bytes())


def call(server: EndpointServer, method: str, path: str, body: bytes | str = b"", **headers: str):
    """One request on a fresh connection: (status, headers, body text)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        payload = body.encode() if isinstance(body, str) else body
        connection.request(method, path, payload, {k.replace("_", "-"): v for k, v in headers.items()})
        response = connection.getresponse()
        return response.status, response.headers, response.read().decode()
    finally:
        connection.close()


def invoke(server: EndpointServer, body: bytes | str, content_type: str = "text/csv", **headers: str):
    return call(server, "POST", "/invocations", body, Content_Type=content_type, **headers)
