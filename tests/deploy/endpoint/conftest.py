"""The local endpoint's fixtures: models trained once per module, and a server on 127.0.0.1 serving one."""

from __future__ import annotations

from pathlib import Path

import pytest
from endpoint_calls import trained

from deploy.endpoint import EndpointServer, ModelSlot, ServingModel


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "softmax": trained(root / "softmax", "multi:softmax"),
        "softprob": trained(root / "softprob", "multi:softprob"),
        "softprob-short": trained(root / "short", "multi:softprob", num_round=3),
    }


@pytest.fixture
def serve(artifacts: dict[str, Path]):
    """Start an endpoint serving one of the artifacts (version 1 unless said); closed after the test."""
    servers: list[EndpointServer] = []

    def start(kind: str | None = "softprob", version: int = 1, **options) -> EndpointServer:
        model = ServingModel.load(artifacts[kind], version=version) if kind else None
        server = EndpointServer(ModelSlot(model), **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
