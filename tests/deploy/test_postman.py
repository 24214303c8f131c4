"""The prediction API as its consumers see it, on a live local API (the real endpoint, serving handlers and
gateway on 127.0.0.1): answers checked against the OpenAPI document it serves (generated from GET /model), and the
Postman collection run by newman, against iris and against a five-class model of other features."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from generated_data import five_classes
from openapi_schema_validator import OAS30Validator
from openapi_schema_validator import validate as validate_schema
from openapi_spec_validator import validate
from project_root import ROOT

from deploy.endpoint import EndpointServer, ModelSlot, ServingModel
from deploy.local_service import LocalService, lambda_environment
from deploy.model_signature import Signature
from deploy.openapi import generic_document, request_examples
from deploy.prediction_api import build_prediction_api
from pipelines.definition import build_pipeline
from pipelines.runner import LocalRunner
from pipelines.state import StateHome

COLLECTION = ROOT / "deploy" / "postman" / "cloudviz.postman_collection.json"
NEWMAN = ROOT / ".venv" / "node" / "node_modules" / ".bin" / "newman"
KEY = "postman-test-key-0123456789"
SEED = {"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5}
SETOSA = [5.1, 3.5, 1.4, 0.2]
FEATURES = ("x1", "x2", "x3", "x4")
CLASSES = ("setosa", "virginica", "versicolor")
IRIS_SCHEMA = {"feature_columns": list(FEATURES), "classes": list(CLASSES), "example": SEED}


@pytest.fixture
def api(model_tarball: Path, tmp_path: Path):
    """The endpoint and the prediction API, with an empty prediction store, configured as `cloudviz serve` does
    (the model tagged with its schema, which holds the seed example)."""
    model = ServingModel.load(model_tarball, version=1)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(IRIS_SCHEMA), encoding="utf-8")
    model.schema_uri = schema.as_uri()
    with EndpointServer(ModelSlot(model)).start() as endpoint:
        home = StateHome(tmp_path / "home")
        environment = lambda_environment(Signature(FEATURES, CLASSES), endpoint.name, endpoint.url, home)
        with build_prediction_api(environment, KEY, access_log=home.logs / "api-access.log").start() as gateway:
            yield gateway


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> StateHome:
    """A state home whose registry holds an Approved five-class model of other features (leaf_mm, bark_mm,
    height_m; alder..fir), trained by the pipeline."""
    root = tmp_path_factory.mktemp("trees")
    home = StateHome(root / "home")
    data = five_classes(root / "data")
    record = LocalRunner(home, build_pipeline()).start(data.parameters(
        ModelPackageGroupName="Trees", ModelApprovalStatus="Approved"))
    assert record.status == "Succeeded"
    return home


@pytest.fixture
def trees_api(trees: StateHome, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with LocalService(trees, "Trees", KEY).start(poll_seconds=3600) as service:
        yield service.api


def spec_of(api) -> dict:
    """The OpenAPI document ``api`` serves, fetched once."""
    if not hasattr(api, "served_spec"):
        status, _, api.served_spec = call(api, "GET", "/openapi.json", key=None)
        assert status == 200
    return api.served_spec


def call(api, method: str, target: str, body: object = None, key: str | None = KEY, raw: bytes | None = None):
    """(status, headers, decoded JSON body) of one call; ``raw`` sends bytes as they are."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["x-api-key"] = key
    payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    try:
        connection.request(method, target, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read())
    finally:
        connection.close()


def documented(api, method: str, template: str, status: int, body: object) -> None:
    """Fail unless ``status`` is documented for the operation in the document ``api`` serves and ``body`` matches
    its schema."""
    spec = spec_of(api)
    responses = spec["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, which the OpenAPI document omits"
    response = responses[str(status)]
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"]["application/json"]["schema"]
    validate_schema(body, {**schema, "components": spec["components"]}, cls=OAS30Validator)


def predict(api, body: object) -> dict:
    status, _, answer = call(api, "POST", "/predictions", body)
    documented(api, "POST", "/predictions", status, answer)
    assert status == 200, answer
    return answer


# -- the OpenAPI document ---------------------------------------------------------------------------------------


def test_the_generic_openapi_document_is_valid_openapi():
    validate(generic_document())


def test_the_served_openapi_document_describes_iris_and_needs_no_key(api):
    status, headers, served = call(api, "GET", "/openapi.json", key=None)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    validate(served)
    schemas = served["components"]["schemas"]
    assert schemas["SingleInput"]["required"] == list(FEATURES)
    assert schemas["Label"]["enum"] == list(CLASSES) and schemas["ClassIndex"]["enum"] == [0, 1, 2]
    assert set(schemas["NamedInput"]["properties"]["features"]["properties"]) == {
        *FEATURES, "sepal_length", "sepal_width", "petal_length", "petal_width"}
    examples = served["paths"]["/predictions"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert examples["single"]["value"] == SEED


def test_get_model_describes_iris(api):
    status, _, model = call(api, "GET", "/model")
    documented(api, "GET", "/model", status, model)
    assert status == 200
    assert (model["model_version"], model["task"], model["example"]) == (1, "multiclass", SEED)
    assert model["classes"] == [{"index": k, "name": name} for k, name in enumerate(CLASSES)]
    assert model["features"][0] == {"name": "x1", "type": "number", "min": None, "max": None,
                                    "aliases": ["sepal_length"]}
    assert call(api, "GET", "/model", key=None)[0] == 403


def test_the_openapi_document_of_another_model_names_its_features_and_classes(trees_api):
    status, _, served = call(trees_api, "GET", "/openapi.json", key=None)
    assert status == 200
    validate(served)
    schemas = served["components"]["schemas"]
    assert schemas["SingleInput"]["required"] == ["leaf_mm", "bark_mm", "height_m"]
    assert schemas["Label"]["enum"] == ["alder", "birch", "cedar", "elm", "fir"]
    assert schemas["BatchInput"]["properties"]["input_data"]["items"]["maxItems"] == 3
    assert "x1" not in json.dumps(served) and "setosa" not in json.dumps(served)
    leaf = schemas["SingleInput"]["properties"]["leaf_mm"]
    assert "training data: min " in leaf["description"]
    status, _, model = call(trees_api, "GET", "/model")
    assert status == 200 and model["features"][0]["min"] < model["example"]["leaf_mm"] < model["features"][0]["max"]
    for name, example in served["paths"]["/predictions"]["post"]["requestBody"]["content"]["application/json"][
            "examples"].items():
        answer = predict(trees_api, example["value"])
        assert answer.get("label", answer.get("predictions", [{}])[0].get("label")) in schemas["Label"]["enum"], name


# -- predictions ------------------------------------------------------------------------------------------------


def test_the_original_seed_example_predicts_virginica(api):
    answer = predict(api, SEED)
    assert answer["prediction"] == 1
    assert answer["label"] == "virginica"
    assert answer["model_version"] == 1
    assert sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-4)


def test_a_batch_answers_one_prediction_per_row_in_order(api):
    answer = predict(api, {"input_data": [list(SEED.values()), SETOSA]})
    assert [p["prediction"] for p in answer["predictions"]] == [1, 0]
    assert [p["label"] for p in answer["predictions"]] == ["virginica", "setosa"]


def test_named_features_predict_like_the_seed_example(api):
    named = {"sepal_length": 6.7, "sepal_width": 3.3, "petal_length": 5.7, "petal_width": 2.5}
    assert predict(api, {"features": named})["prediction"] == 1


def test_named_instances_answer_and_return_each_rows_request_id(api):
    instances = [{"request_id": "order-17:a", "sepal_length": 6.7, "sepal_width": 3.3, "petal_length": 5.7,
                  "petal_width": 2.5}, dict(zip(FEATURES, SETOSA, strict=True))]
    made = predict(api, {"instances": instances})["predictions"]
    assert [(p["label"], p.get("request_id")) for p in made] == [("virginica", "order-17:a"), ("setosa", None)]
    status, _, stored = call(api, "GET", f"/predictions/{made[0]['id']}")
    documented(api, "GET", "/predictions/{id}", status, stored)
    assert (status, stored["request_id"]) == (200, "order-17:a")
    status, _, listed = call(api, "GET", "/predictions")
    documented(api, "GET", "/predictions", status, listed)
    assert [item.get("request_id") for item in listed] == [None, "order-17:a"]


@pytest.mark.parametrize("name", sorted(request_examples(SEED)))
def test_every_documented_request_example_matches_one_form_and_is_answered(api, name):
    content = spec_of(api)["paths"]["/predictions"]["post"]["requestBody"]["content"]["application/json"]
    example = content["examples"][name]["value"]
    validate_schema(example, {**content["schema"], "components": spec_of(api)["components"]},  # exactly one form
                    cls=OAS30Validator)
    answer = predict(api, example)
    rows = example.get("instances") or example.get("input_data") or [example]
    sent = [row.get("request_id") if isinstance(row, dict) else None for row in rows]
    assert [p.get("request_id") for p in answer.get("predictions", [answer])] == sent


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"x1": 6.7, "x2": 3.3, "x3": 5.7}, "x4"),
        ({**SEED, "request_id": "two words"}, "request_id"),
        ({"instances": [{**SEED, "x2": "wide"}]}, "instances[0].x2"),
        ({"x1": 6.7, "x2": "wide", "x3": 5.7, "x4": 2.5}, "x2"),
        (b"x1=6.7&x2=3.3", "JSON"),
        ({"input_data": [[1, 2, 3]]}, "input_data"),
    ],
)
def test_bad_input_is_a_400_naming_the_problem(api, body, named):
    raw = body if isinstance(body, bytes) else None
    status, _, answer = call(api, "POST", "/predictions", None if raw else body, raw=raw)
    documented(api, "POST", "/predictions", status, answer)
    assert status == 400
    assert named in answer["message"]


@pytest.mark.parametrize("key", [None, "not-the-key-of-this-api-at-all"])
def test_calls_without_the_right_key_are_forbidden(api, key):
    for method, target, body in [("POST", "/predictions", SEED), ("GET", "/predictions", None)]:
        status, _, answer = call(api, method, target, body, key=key)
        documented(api, method, "/predictions", status, answer)
        assert (status, answer) == (403, {"message": "Forbidden"})


def test_an_oversize_body_is_a_413(api):
    rows = [list(SEED.values())] * 50_000  # about 1.1 MiB of JSON, above the 1 MiB limit
    status, _, answer = call(api, "POST", "/predictions", {"input_data": rows})
    documented(api, "POST", "/predictions", status, answer)
    assert status == 413
    assert "1048576" in answer["message"]


# -- retrieval --------------------------------------------------------------------------------------------------


def test_get_by_id_answers_the_stored_prediction(api):
    made = predict(api, SEED)
    status, _, stored = call(api, "GET", f"/predictions/{made['id']}")
    documented(api, "GET", "/predictions/{id}", status, stored)
    assert status == 200
    assert {key: stored[key] for key in ("id", "prediction", "label", "timestamp", "model_version")} == {
        key: made[key] for key in ("id", "prediction", "label", "timestamp", "model_version")
    }


def test_an_unknown_id_is_a_404(api):
    status, _, answer = call(api, "GET", "/predictions/no-such-prediction")
    documented(api, "GET", "/predictions/{id}", status, answer)
    assert status == 404
    assert "no-such-prediction" in answer["message"]


def test_pages_follow_x_next_token_until_the_last_page(api):
    made = [predict(api, SEED)["id"] for _ in range(5)]
    seen, pages, target = [], 0, "/predictions?limit=2"
    while True:
        status, headers, page = call(api, "GET", target)
        documented(api, "GET", "/predictions", status, page)
        assert status == 200 and len(page) <= 2
        seen += page
        pages += 1
        token = headers.get("X-Next-Token")
        if token is None:
            break
        target = f"/predictions?limit=2&next_token={token}"
    assert pages == 3
    assert [item["id"] for item in seen] == made[::-1]  # newest first
    assert not [name for name in headers if name.startswith("Access-Control-")]  # no CORS without origins


def test_a_limit_out_of_range_is_a_400(api):
    status, _, answer = call(api, "GET", "/predictions?limit=0")
    documented(api, "GET", "/predictions", status, answer)
    assert status == 400 and "limit" in answer["message"]


def test_every_call_has_a_line_in_the_access_log(api):
    predict(api, SEED)
    call(api, "GET", "/predictions")
    call(api, "GET", "/predictions", key=None)
    log = Path(api.access_log_path).read_text(encoding="utf-8").splitlines()
    calls = [(line["method"], line["resource"], line["status"]) for line in map(json.loads, log)]
    assert [call for call in calls if call[1] != "/openapi.json"] == [
        ("POST", "/predictions", 200),
        ("GET", "/predictions", 200),
        ("GET", "/predictions", 403),
    ]


# -- the Postman collection -------------------------------------------------------------------------------------


def collection_requests(items: list[dict]) -> list[dict]:
    return [leaf for item in items for leaf in (collection_requests(item["item"]) if "item" in item else [item])]


def script_of(request: dict) -> str:
    return "\n".join(line for e in request["event"] if e["listen"] == "test" for line in e["script"]["exec"])


def test_collection_is_v2_1_with_base_url_and_api_key_variables():
    collection = json.loads(COLLECTION.read_text(encoding="utf-8"))
    assert collection["info"]["schema"] == "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
    assert {"baseUrl", "apiKey"} <= {variable["key"] for variable in collection["variable"]}
    assert collection["auth"]["type"] == "apikey"
    for request in collection_requests(collection["item"]):
        script = script_of(request)
        assert "pm.test(" in script and "pm.expect(" in script, request["name"]
        assert request["request"]["url"]["raw"].startswith("{{baseUrl}}/"), request["name"]


def visualized_request() -> tuple[dict, str]:
    """The one request whose test script sets a visualizer, and that script."""
    requests = collection_requests(json.loads(COLLECTION.read_text(encoding="utf-8"))["item"])
    (chart,) = [r for r in requests if "pm.visualizer.set" in script_of(r)]
    return chart, script_of(chart)


def test_collection_visualizer_charts_predictions_offline():
    chart, script = visualized_request()
    assert (chart["request"]["method"], chart["request"]["url"]["path"]) == ("GET", ["predictions"])
    assert "<svg" in script
    assert "<script" not in script and "https://" not in script and "http://" not in script  # nothing fetched


# Runs a request's test script with a stand-in `pm` whose assertions accept anything (newman checks those),
# then renders what the script gave pm.visualizer.set with Handlebars, as Postman's Visualize tab does.
RENDER_VISUALIZER = """
const [script, itemsJson, handlebarsPath, classesJson] = process.argv.slice(1);
const classes = JSON.parse(classesJson);
const Handlebars = require(handlebarsPath);
const anything = new Proxy(function () {}, { get: () => anything, apply: () => anything });
let rendered = null;
const pm = {
    test: (name, check) => check(),
    expect: () => anything,
    collectionVariables: { get: (name) => (name === "classes" ? JSON.stringify(classes) : null) },
    response: { json: () => JSON.parse(itemsJson), to: anything },
    visualizer: { set: (template, data) => { rendered = Handlebars.compile(template)(data); } },
};
new Function("pm", script)(pm);
process.stdout.write(rendered);
"""


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: newman cannot run the Postman collection")
    assert NEWMAN.exists(), f"newman is missing at {NEWMAN}: run `make .venv/node/.installed`"
    return NEWMAN.parents[1]


def test_collection_visualizer_renders_a_dot_per_prediction_in_its_class_lane(node_modules):
    _, script = visualized_request()
    stamps = {
        "c": (2, "2026-11-29T03:20:02.000001Z"),
        "b": (1, "2026-11-29T03:20:01.5Z"),
        "a": (1, "2026-11-29T03:20:01Z"),
    }
    items = [
        {"id": id_, "prediction": k, "label": CLASSES[k], "timestamp": t, "model_version": 1}
        for id_, (k, t) in stamps.items()
    ]
    command = ["node", "-e", RENDER_VISUALIZER, script, json.dumps(items), str(node_modules / "handlebars"),
               json.dumps(CLASSES)]
    html = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    assert html.count("<svg") == 1 and html.count("<circle") == 3
    assert "setosa (0)" in html and "virginica (2)" in html and "versicolor (1)" in html
    assert "2026-11-29T03:20:01.000Z" in html and "2026-11-29T03:20:02.000Z" in html  # the time axis ends


@pytest.mark.parametrize("served", ["api", "trees_api"])
def test_postman_collection_passes_under_newman(served, request, tmp_path, node_modules):
    """The one collection, run against iris and against a five-class model of other features."""
    api = request.getfixturevalue(served)
    report = tmp_path / "newman.json"
    command = [str(NEWMAN), "run", str(COLLECTION), "--env-var", f"baseUrl={api.url}", "--env-var", f"apiKey={KEY}"]
    command += ["--reporters", "cli,json", "--reporter-json-export", str(report), "--color", "off", "--disable-unicode"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    stats = json.loads(report.read_text(encoding="utf-8"))["run"]["stats"]
    requests = collection_requests(json.loads(COLLECTION.read_text(encoding="utf-8"))["item"])
    assert stats["requests"] == {"total": len(requests), "pending": 0, "failed": 0}
    assert stats["assertions"]["failed"] == 0 and stats["assertions"]["total"] >= 2 * len(requests)
