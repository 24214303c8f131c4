"""The local endpoint's models: what a loaded model needs, artifacts that cannot be served, blue/green swaps
(refused, and under concurrent requests), and closing idle connections."""

from __future__ import annotations

import http.client
import io
import json
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from endpoint_calls import CONTRACT_EXAMPLE, VARIANT, invoke, tarball

from deploy.aws.names import PRODUCTION_VARIANT
from deploy.endpoint import ModelLoadError, ModelSlot, ServingModel, SwapRefused

# -- models and blue/green swaps ------------------------------------------------------------------------


def test_a_loaded_model_knows_what_requests_need(artifacts):
    model = ServingModel.load(artifacts["softprob"], version=7)
    assert (model.version, model.objective, model.num_class, model.num_features) == (7, "multi:softprob", 3, 4)
    assert model.predict(np.array([[6.7, 3.3, 5.7, 2.5]], dtype=np.float32)).shape == (1, 3)


def test_artifacts_that_cannot_be_served_raise_one_line(tmp_path: Path):
    cases = {
        tmp_path / "absent.tar.gz": "no such model artifact",
        tmp_path / "plain.tar.gz": "not a readable model.tar.gz",
        tarball(tmp_path / "garbage.tar.gz", b"not a model"): "xgboost-model is not a model XGBoost can load",
        tarball(tmp_path / "pickled.tar.gz", b"\x80\x04rest"): "xgboost-model is a pickled booster (images 1.x)",
    }
    (tmp_path / "plain.tar.gz").write_text("hello", encoding="utf-8")
    with tarfile.open(tmp_path / "two.tar.gz", "w:gz") as archive:
        for name in ("a", "b"):
            info = tarfile.TarInfo(name)
            archive.addfile(info, io.BytesIO(b""))
    cases[tmp_path / "two.tar.gz"] = "no xgboost-model file in the archive (it holds a, b)"
    for path, message in cases.items():
        with pytest.raises(ModelLoadError) as caught:
            ServingModel.load(path)
        assert message in str(caught.value) and "\n" not in str(caught.value)


def nan_model(artifact: Path, path: Path) -> Path:
    """A model that loads but answers NaN: its leaves were corrupted."""
    booster = ServingModel.load(artifact).booster
    document = json.loads(bytes(booster.save_raw("json")))
    for tree in document["learner"]["gradient_booster"]["model"]["trees"]:
        tree["split_conditions"] = [float("nan")] * len(tree["split_conditions"])
        tree["base_weights"] = [float("nan")] * len(tree["base_weights"])
    broken = xgb.Booster()
    broken.load_model(bytearray(json.dumps(document).encode()))
    return tarball(path, bytes(broken.save_raw("ubj")))


def test_a_refused_swap_keeps_the_old_model(serve, artifacts, tmp_path: Path):
    server = serve("softprob", version=1)
    broken = ServingModel.load(nan_model(artifacts["softprob"], tmp_path / "nan.tar.gz"), version=2)
    with pytest.raises(SwapRefused, match=r"the probe prediction is not a finite number: \[\[nan, nan, nan\]\]"):
        server.slot.swap(broken)
    assert server.slot.current.version == 1
    status, headers, _ = invoke(server, CONTRACT_EXAMPLE)
    assert (status, headers[VARIANT]) == (200, PRODUCTION_VARIANT)
    with pytest.raises(SwapRefused):
        ModelSlot(broken)


def test_swaps_under_concurrent_requests_fail_no_request(serve, artifacts):
    server = serve("softprob", version=1)
    models = [ServingModel.load(artifacts["softprob-short"], version=2), server.slot.current]
    stop = threading.Event()
    failures: list[str] = []
    seen: set[str] = set()  # the answers: the two models' probabilities differ

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        while not stop.is_set():
            try:
                connection.request("POST", "/invocations", CONTRACT_EXAMPLE, {"Content-Type": "text/csv"})
                response = connection.getresponse()
                body = response.read().decode()
                if response.status != 200 or np.argmax(json.loads(body)) != 1:
                    failures.append(f"{response.status} {body}")
                seen.add(body)
            except OSError as error:
                failures.append(repr(error))
        connection.close()

    clients = [threading.Thread(target=client) for _ in range(6)]
    for thread in clients:
        thread.start()
    for swap in range(40):
        server.slot.swap(models[swap % 2])
        threading.Event().wait(0.005)
    stop.set()
    for thread in clients:
        thread.join()
    assert failures == [] and len(seen) == 2


def test_close_ends_idle_keep_alive_connections(serve):
    server = serve("softprob")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("POST", "/invocations", CONTRACT_EXAMPLE, {"Content-Type": "text/csv"})
    assert connection.getresponse().read()
    server.close()
    with pytest.raises(ConnectionError):
        connection.request("POST", "/invocations", CONTRACT_EXAMPLE, {"Content-Type": "text/csv"})
        connection.getresponse()
