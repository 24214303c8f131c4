"""The local model endpoint: a real server on 127.0.0.1 serving models trained by the local training container."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import tarfile
import threading
from pathlib import Path

import boto3
import numpy as np
import pytest
import xgboost as xgb
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.validate import validate_parameters
from sklearn.datasets import load_iris

from deploy.aws.names import MODEL_VERSION_TAG, PRODUCTION_VARIANT
from deploy.endpoint import EndpointServer, ModelLoadError, ModelSlot, ServingModel, SwapRefused
from pipelines.builtin_xgboost import train
from pipelines.builtin_xgboost.hyperparameters import DEFAULT_HYPERPARAMETERS
from serving_lambdas.served_version import DATA_SCHEMA_TAG

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


# -- answers ----------------------------------------------------------------------------------------


def test_softmax_answers_the_contract_example_with_class_1(serve):
    server = serve("softmax", version=3)
    status, headers, body = invoke(server, CONTRACT_EXAMPLE)
    assert (status, headers["Content-Type"], body) == (200, "text/csv", "1.0")
    assert headers[VARIANT] == PRODUCTION_VARIANT  # the same name on every version, as on AWS
    status, headers, body = invoke(server, CONTRACT_EXAMPLE, Accept="application/json")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert json.loads(body) == {"predictions": [{"score": 1.0}]}


def test_softprob_answers_probabilities_whose_argmax_is_class_1(serve):
    server = serve("softprob")
    status, _, body = invoke(server, CONTRACT_EXAMPLE, Accept="application/json")
    (prediction,) = json.loads(body)["predictions"]
    assert status == 200 and len(prediction["score"]) == 3
    assert int(np.argmax(prediction["score"])) == 1 and sum(prediction["score"]) == pytest.approx(1, abs=1e-5)
    status, _, body = invoke(server, CONTRACT_EXAMPLE)
    assert json.loads(body) == prediction["score"]  # text/csv: the container prints the row as a list


def test_many_rows_get_one_prediction_each_in_order(serve, artifacts):
    features, labels = iris_contract_order()
    server = serve("softmax")
    rows = "\n".join(",".join(f"{value:g}" for value in row) for row in features) + "\n"
    status, _, body = invoke(server, rows)
    predictions = [float(value) for value in body.split(",")]
    reference = ServingModel.load(artifacts["softmax"]).booster.inplace_predict(features.astype(np.float32))
    assert status == 200 and predictions == reference.tolist()
    assert np.mean(np.array(predictions) == labels) > 0.9
    status, _, body = invoke(server, rows, Accept="application/json")
    assert [p["score"] for p in json.loads(body)["predictions"]] == predictions


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/csv", "6.7,3.3,5.7,2.5\n5.1,3.5,1.4,0.2"),
        ("text/csv; charset=utf-8", "6.7;3.3;5.7;2.5\r\n5.1;3.5;1.4;0.2\r\n"),
        ("text/csv", "6.7\t3.3\t5.7\t2.5\n5.1\t3.5\t1.4\t0.2"),
        ("text/csv", "6.7 3.3 5.7 2.5\n5.1 3.5 1.4 0.2"),
        ("text/libsvm", "1 0:6.7 1:3.3 2:5.7 3:2.5\n0 0:5.1 1:3.5 2:1.4 3:0.2"),
        ("text/x-libsvm", "0:6.7 1:3.3 2:5.7 3:2.5\n0:5.1 1:3.5 2:1.4 3:0.2"),
        ("application/json", '{"instances": [{"features": [6.7, 3.3, 5.7, 2.5]}, {"features": [5.1, 3.5, 1.4, 0.2]}]}'),
        ("application/json", "[[6.7, 3.3, 5.7, 2.5], [5.1, 3.5, 1.4, 0.2]]"),
    ],
)
def test_each_content_type_gives_the_same_predictions(serve, content_type, body):
    status, _, answer = invoke(serve("softmax"), body, content_type=content_type, Accept="application/json")
    assert status == 200, answer
    assert json.loads(answer) == {"predictions": [{"score": 1.0}, {"score": 0.0}]}


def test_json_single_records_and_missing_values(serve):
    server = serve("softmax")
    for body in ('{"features": [6.7, 3.3, 5.7, 2.5]}', "[6.7, 3.3, 5.7, 2.5]"):
        assert invoke(server, body, content_type="application/json")[2] == "1.0"
    # A missing value: an empty CSV field, an absent libsvm index, a JSON null; XGBoost routes it by default.
    answers = {
        invoke(server, "6.7,,5.7,2.5")[2],
        invoke(server, "0:6.7 2:5.7 3:2.5", content_type="text/libsvm")[2],
        invoke(server, "[6.7, null, 5.7, 2.5]", content_type="application/json")[2],
    }
    assert answers == {"1.0"}


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, "text/csv"),
        ("*/*", "text/csv"),
        ("text/csv", "text/csv"),
        ("application/json", "application/json"),
        ("application/json; charset=utf-8", "application/json"),
        ("text/html, application/json;q=0.9", "application/json"),
        ("application/jsonlines", "application/jsonlines"),
    ],
)
def test_accept_chooses_the_response_type(serve, accept, content_type):
    headers = {"Accept": accept} if accept else {}
    status, response_headers, body = invoke(serve("softmax"), "6.7,3.3,5.7,2.5\n5.1,3.5,1.4,0.2", **headers)
    assert (status, response_headers["Content-Type"]) == (200, content_type)
    expected = {
        "text/csv": "1.0,0.0",
        "application/json": '{"predictions": [{"score": 1.0}, {"score": 0.0}]}',
        "application/jsonlines": '{"score": 1.0}\n{"score": 0.0}',
    }
    assert body == expected[content_type]


def test_selectable_inference_output(serve):
    server = serve("softprob", inference_output="predicted_label, probabilities,predicted_score")
    status, _, body = invoke(server, CONTRACT_EXAMPLE, Accept="application/json")
    (prediction,) = json.loads(body)["predictions"]
    assert status == 200 and prediction["predicted_label"] == 1 and len(prediction["probabilities"]) == 3
    assert prediction["predicted_score"] is None  # a regression key: multi:softprob cannot give it
    status, _, body = invoke(server, CONTRACT_EXAMPLE)
    assert body == f'1,"{prediction["probabilities"]}",nan'  # the container quotes a list within a CSV row
    with pytest.raises(ValueError, match="choose keys among"):
        EndpointServer(ModelSlot(), inference_output="predicted_label,colour")


# -- bad input: one clear line, the right status, and the server keeps serving --------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "status", "message"),
    [
        ("application/xml", "<x/>", 415, "Content-type application/xml not supported. Supported content-type is"),
        ("text/csv", "6.7,3.3,5.7,2.5\n6.7,3.3,5.7", 400, "row 2: expected 4 values (the model's features), got 3"),
        ("text/csv", "6.7,3.3,5.7,2.5,1", 400, "row 1: expected 4 values (the model's features), got 5"),
        ("text/csv", "6.7,3.3,5.7,2.5\n1,2,abc,4", 400, 'row 2, column 3: "abc" is not a number'),
        ("text/csv", b"6.7,3.3,\xff,2.5", 400, "the body is not UTF-8 text (byte 8)"),
        ("text/libsvm", "0:6.7 1:3.3 7:5.7", 400, "row 1: feature index 7 is out of range; the model has 4 features"),
        ("text/libsvm", "0:6.7 x:3.3", 400, 'row 1: "x:3.3" is not index:value'),
        ("application/json", "{oops", 400, "the body is not valid JSON: "),
        ("application/json", '{"instances": [[1, 2, 3, 4], [1, "two", 3, 4]]}', 400, 'row 2, column 2: "two" is not a'),
        (
            "application/json",
            '{"instances": [[1, 2, 3]]}',
            400,
            "row 1: expected 4 values (the model's features), got 3",
        ),
        ("application/json", '{"instances": 5}', 400, 'expected {"instances": [{"features": [...]}, ...]}'),
        ("text/csv", "\n \n", 400, "the body holds no rows"),
    ],
)
def test_bad_input_gets_one_clear_line(serve, content_type, body, status, message):
    server = serve("softprob")
    answer_status, headers, answer = invoke(server, body, content_type=content_type)
    assert (answer_status, headers["Content-Type"]) == (status, "text/plain; charset=utf-8")
    assert answer.startswith(message) and answer.count("\n") == 1 and "Traceback" not in answer
    assert invoke(server, CONTRACT_EXAMPLE)[0] == 200


def test_unsupported_accept_is_406(serve):
    status, _, body = invoke(serve("softprob"), CONTRACT_EXAMPLE, Accept="image/png")
    assert status == 406 and body.startswith("Accept type image/png is not supported.")


def test_an_empty_body_is_204_as_in_the_container(serve):
    assert invoke(serve("softprob"), "")[:1] == (204,)


def test_a_body_over_the_limit_is_413_and_the_connection_stays_usable(serve):
    server = serve("softprob", max_body_bytes=1000)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    rows = "\n".join([CONTRACT_EXAMPLE] * 100)
    connection.request("POST", "/invocations", rows, {"Content-Type": "text/csv"})
    response = connection.getresponse()
    assert (response.status, response.read()) == (
        413,
        b"the request body is 1599 bytes; this endpoint accepts at most 1000\n",
    )
    connection.request("POST", "/invocations", CONTRACT_EXAMPLE, {"Content-Type": "text/csv"})
    assert connection.getresponse().status == 200
    connection.close()


def test_the_default_limit_is_sagemakers_6_mb(serve):
    server = serve("softprob")
    assert json.loads(call(server, "GET", "/execution-parameters")[2]) == {
        "MaxConcurrentTransforms": os.cpu_count(),
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }
    rows = (CONTRACT_EXAMPLE + "\n") * (6 * 1024 * 1024 // len(CONTRACT_EXAMPLE))
    status, _, body = invoke(server, rows)
    assert status == 413 and body.startswith(
        f"the request body is {len(rows)} bytes; this endpoint accepts at most 6291456"
    )


def test_a_malformed_http_request_is_400_and_the_server_keeps_serving(serve):
    server = serve("softprob")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"this is not http\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert invoke(server, CONTRACT_EXAMPLE)[0] == 200


def test_unknown_routes_and_methods(serve):
    server = serve("softprob")
    assert call(server, "GET", "/nothing")[::2] == (404, "no such resource: GET /nothing\n")
    assert call(server, "GET", "/invocations")[::2] == (405, "/invocations takes POST\n")


# -- health ---------------------------------------------------------------------------------------------


def test_ping_is_503_until_a_model_is_loaded(serve, artifacts):
    server = serve(None)
    assert call(server, "GET", "/ping")[::2] == (503, "no model is loaded on this endpoint yet\n")
    status, headers, body = invoke(server, CONTRACT_EXAMPLE)
    assert (status, body) == (503, "no model is loaded on this endpoint yet\n") and VARIANT not in headers
    server.slot.swap(ServingModel.load(artifacts["softprob"], version=4))
    assert call(server, "GET", "/ping")[:1] == (200,)
    assert invoke(server, CONTRACT_EXAMPLE)[1][VARIANT] == PRODUCTION_VARIANT


# -- the SageMaker Runtime API, with a stock boto3 client -----------------------------------------------


@pytest.fixture
def runtime_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A sagemaker-runtime client for a local endpoint; no AWS configuration or network is used."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    def client(server: EndpointServer):
        return boto3.client(
            "sagemaker-runtime",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 1}),
        )

    return client


def test_boto3_invoke_endpoint_works_unchanged(serve, runtime_client):
    server = serve("softprob", version=2, name="CloudVizIris-endpoint")
    client = runtime_client(server)
    response = client.invoke_endpoint(
        EndpointName="CloudVizIris-endpoint", ContentType="text/csv", Accept="application/json", Body=CONTRACT_EXAMPLE
    )
    assert (response["ContentType"], response["InvokedProductionVariant"]) == ("application/json", PRODUCTION_VARIANT)
    assert int(np.argmax(json.loads(response["Body"].read())["predictions"][0]["score"])) == 1
    response = client.invoke_endpoint(EndpointName="CloudVizIris-endpoint", ContentType="text/csv", Body=b"1,2,3,4")
    assert response["ContentType"] == "text/csv" and len(json.loads(response["Body"].read())) == 3


def test_boto3_sees_a_model_error_with_the_original_message(serve, runtime_client):
    server = serve("softprob", name="CloudVizIris-endpoint")
    with pytest.raises(ClientError) as caught:
        runtime_client(server).invoke_endpoint(
            EndpointName="CloudVizIris-endpoint", ContentType="text/csv", Body="6.7,3.3,oops,2.5"
        )
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError" and error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 400
    assert error["OriginalMessage"] == 'row 1, column 3: "oops" is not a number'
    assert error["Error"]["Message"] == (
        f'Received client error (400) from {PRODUCTION_VARIANT} with message "row 1, column 3: "oops" is not a number".'
    )


def test_boto3_sees_validation_errors_for_another_endpoint_and_an_oversized_body(serve, runtime_client):
    server = serve("softprob", name="CloudVizIris-endpoint", max_body_bytes=100)
    client = runtime_client(server)
    with pytest.raises(ClientError) as caught:
        client.invoke_endpoint(EndpointName="Other-endpoint", ContentType="text/csv", Body=CONTRACT_EXAMPLE)
    assert caught.value.response["Error"] == {
        "Code": "ValidationError",
        "Message": "Endpoint Other-endpoint of account local not found (this endpoint is CloudVizIris-endpoint).",
    }
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400  # as the real service answers
    with pytest.raises(ClientError) as caught:
        client.invoke_endpoint(EndpointName="CloudVizIris-endpoint", ContentType="text/csv", Body="1," * 100)
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_boto3_sees_service_unavailable_without_a_model(serve, runtime_client):
    server = serve(None)
    with pytest.raises(ClientError) as caught:
        runtime_client(server).invoke_endpoint(EndpointName="cloudviz-local", ContentType="text/csv", Body=b"1,2,3,4")
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"


def test_a_stock_boto3_sagemaker_client_reads_the_served_version(serve, runtime_client, artifacts):
    """The control-plane calls the inference handler makes (serving_lambdas/served_version.py), answered from
    what the endpoint serves, each response valid against SageMaker's service model."""
    server = serve("softprob", version=2, name="CloudVizIris-endpoint")
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="x")
    client = session.client("sagemaker", endpoint_url=server.url, config=Config(retries={"max_attempts": 1}))

    def checked(operation: str, **request) -> dict:
        response = getattr(client, xform_name(operation))(**request)
        shape = client.meta.service_model.operation_model(operation).output_shape
        validate_parameters({k: v for k, v in response.items() if k != "ResponseMetadata"}, shape)
        return response

    def version_tags() -> list[dict]:
        config = checked("DescribeEndpoint", EndpointName="CloudVizIris-endpoint")
        assert config["ProductionVariants"][0]["VariantName"] == PRODUCTION_VARIANT
        described = checked("DescribeEndpointConfig", EndpointConfigName=config["EndpointConfigName"])
        assert [v["VariantName"] for v in described["ProductionVariants"]] == [PRODUCTION_VARIANT]
        return checked("ListTags", ResourceArn=described["EndpointConfigArn"])["Tags"]

    assert version_tags() == [{"Key": MODEL_VERSION_TAG, "Value": "2"}]
    swapped = ServingModel.load(artifacts["softprob-short"], version=5)
    swapped.schema_uri = "file:///state/endpoints/CloudVizIris-endpoint/schema-v5.json"  # as the service sets it
    server.slot.swap(swapped)
    assert version_tags() == [{"Key": MODEL_VERSION_TAG, "Value": "5"},
                              {"Key": DATA_SCHEMA_TAG, "Value": swapped.schema_uri}]
    with pytest.raises(ClientError) as caught:
        client.describe_endpoint(EndpointName="Other-endpoint")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as caught:
        client.list_endpoints()
    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"


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
