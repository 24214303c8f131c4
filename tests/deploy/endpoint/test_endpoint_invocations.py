"""The local model endpoint, a real server on 127.0.0.1 serving models trained by the local training container:
its answers, bad input (one clear line, the right status, and the server keeps serving) and its health."""

from __future__ import annotations

import http.client
import json
import os
import socket

import numpy as np
import pytest
from endpoint_calls import CONTRACT_EXAMPLE, VARIANT, call, invoke, iris_contract_order

from deploy.aws.names import PRODUCTION_VARIANT
from deploy.endpoint import EndpointServer, ModelSlot, ServingModel

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
