"""Own-data models of every task served end to end: binary:logistic, a 5-class multi:softprob with other column
names, reg:squarederror, a two-class multi:softprob, and iris registered as before schemas said their task.

Each model is trained here with XGBoost, packed as the container's ``model.tar.gz``, registered with its schema in a
temporary registry, deployed and served by ``LocalService`` on 127.0.0.1; the API is called over HTTP and the
endpoint through the stock boto3 ``sagemaker-runtime`` client. Expected answers come from XGBoost's own
``Booster.predict`` on the same rows. Last, a regression model trained by the pipeline itself is served from the
schema its run registered.
"""

from __future__ import annotations

import http.client
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import boto3
import numpy as np
import pytest
import xgboost as xgb
from botocore.config import Config
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris

from cloudviz import render
from deploy.deployments import DeploymentStore
from deploy.local_service import LocalService
from deploy.release import deploy_local
from pipelines.definition import build_pipeline
from pipelines.registry import ModelRegistry
from pipelines.runner import LocalRunner
from pipelines.state import StateHome

KEY = "k" * 32
ROWS = 400


@dataclass(frozen=True)
class DataSet:
    """A generated data set, its model, and the schema its version is registered with."""

    group: str
    features: list[str]
    x: np.ndarray
    y: np.ndarray
    params: dict
    schema: dict  # the registered schema: the lineage's ``data``

    @property
    def task(self) -> str:
        return self.schema.get("task", "multiclass")


def generated(name: str, rng: np.random.Generator) -> DataSet:
    """The data sets a user brings: two classes, five classes with other column names, a numeric target, and the
    two classes trained as multi:softprob (num_class=2)."""
    if name in ("binary", "two-class-softprob"):
        features = ["tenure_months", "monthly_spend", "support_calls"]
        x = rng.uniform([0, 10, 0], [72, 120, 10], size=(ROWS, 3))
        y = (x[:, 2] * 8 - x[:, 0] * 0.5 + rng.normal(0, 5, ROWS) > 0).astype(int)
        classes = ["stays", "churns"]
        if name == "binary":
            params = {"objective": "binary:logistic"}
            schema = schema_of("binary", "binary:logistic", features, x, classes=classes)
        else:
            params = {"objective": "multi:softprob", "num_class": 2}
            schema = schema_of("multiclass", "multi:softprob", features, x, classes=classes)
        return DataSet(f"Churn-{name}", features, x, y, params, schema)
    if name == "five-class":
        features = ["acidity", "residual_sugar", "alcohol", "sulphates"]
        x = rng.uniform([3, 0, 8, 0.3], [9, 15, 15, 2], size=(ROWS, 4))
        y = np.clip(((x[:, 2] - 8) / 7 * 5).astype(int), 0, 4)
        classes = ["poor", "fair", "good", "great", "superb"]
        params = {"objective": "multi:softprob", "num_class": 5}
        return DataSet("Wine-five", features, x, y, params,
                       schema_of("multiclass", "multi:softprob", features, x, classes=classes))
    features = ["rooms", "floor_area", "age_years"]
    x = rng.uniform([1, 20, 0], [8, 250, 100], size=(ROWS, 3))
    y = 30 * x[:, 0] + 2.5 * x[:, 1] - 0.8 * x[:, 2] + rng.normal(0, 5, ROWS)
    schema = schema_of("regression", "reg:squarederror", features, x, classes=[])
    schema["target"] = {"name": "price", "min": float(y.min()), "max": float(y.max()), "mean": float(y.mean())}
    return DataSet("Houses", features, x, y, {"objective": "reg:squarederror"}, schema)


def schema_of(task: str, objective: str, features: list[str], x: np.ndarray, classes: list[str]) -> dict:
    """The registered schema's keys (H8's preprocessing writes them; the registry copies them into the lineage)."""
    return {
        "task": task,
        "objective": objective,
        "features": [{"name": name, "type": "number", "min": float(x[:, i].min()), "max": float(x[:, i].max())}
                     for i, name in enumerate(features)],
        "classes": classes,
    }


def iris() -> DataSet:
    """Iris as versions registered before schemas: lineage data of feature columns and classes only."""
    data = load_iris()
    classes = ["setosa", "virginica", "versicolor"]
    y = np.array([0, 2, 1])[data.target]  # the contract's order
    schema = {"feature_columns": ["x1", "x2", "x3", "x4"], "classes": classes}
    return DataSet("CloudVizIris", schema["feature_columns"], data.data, y,
                   {"objective": "multi:softprob", "num_class": 3}, schema)


def train(data: DataSet) -> xgb.Booster:
    return xgb.train({**data.params, "max_depth": 3, "eta": 0.3, "nthread": 1},
                     xgb.DMatrix(data.x, label=data.y), num_boost_round=20)


def package(booster: xgb.Booster, path: Path) -> Path:
    """model.tar.gz with ``xgboost-model`` (UBJSON), as a training job leaves it."""
    raw = bytes(booster.save_raw("ubj"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(raw)
        archive.addfile(info, io.BytesIO(raw))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[DataSet, xgb.Booster, Path]]:
    root = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(7)
    sets = {name: generated(name, rng) for name in ("binary", "two-class-softprob", "five-class", "regression")}
    sets["iris"] = iris()
    models = {}
    for name, data in sets.items():
        booster = train(data)
        models[name] = (data, booster, package(booster, root / name / "model.tar.gz"))
    return models


def register(home: StateHome, data: DataSet, tarball: Path, approval: str = "Approved") -> None:
    ModelRegistry(home.registry_db).register(data.group, tarball.as_uri(), approval, lineage={"data": data.schema})


def call(url: str, method: str, path: str, body: object = None) -> tuple[int, object]:
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    payload = None if body is None else json.dumps(body)
    connection.request(method, path, payload, {"x-api-key": KEY, "Content-Type": "application/json"})
    response = connection.getresponse()
    text = response.read()
    return response.status, json.loads(text) if response.headers.get_content_type() == "application/json" else text


def runtime(url: str):
    """The stock sagemaker-runtime client pointed at the local endpoint; no AWS configuration is read."""
    return boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local", config=Config(retries={"max_attempts": 1}))


def expected_answer(data: DataSet, score: float | list[float]) -> dict:
    """What the API must answer for a row XGBoost scored ``score``, per task."""
    if data.task == "regression":
        return {"prediction": pytest.approx(float(score), rel=1e-6)}
    classes = data.schema["classes"]
    probabilities = list(score) if isinstance(score, list) else [1 - score, score]
    index = int(np.argmax(probabilities)) if isinstance(score, list) else int(score > 0.5)
    answer = {"prediction": index, "label": classes[index],
              "probabilities": pytest.approx(dict(zip(classes, probabilities, strict=True)), rel=1e-5)}
    if len(classes) == 2:
        answer["probability"] = pytest.approx(probabilities[index], rel=1e-5)
    return answer


def expected_description(data: DataSet) -> dict:
    """What GET /model answers for ``data``'s version 1, but the example: its features with the registered ranges
    (iris registered none) and its classes, or its target."""
    ranges = {feature["name"]: feature for feature in data.schema.get("features", [])}
    features = [{"name": name, "type": "number", "min": ranges.get(name, {}).get("min"),
                 "max": ranges.get(name, {}).get("max")} for name in data.features]
    if data.group == "CloudVizIris":
        aliases = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        features = [{**feature, "aliases": [alias]} for feature, alias in zip(features, aliases, strict=True)]
    answer = {"endpoint": f"{data.group}-endpoint", "features": features}
    if data.task == "regression":
        answer["target"] = data.schema["target"]
    else:
        answer["classes"] = [{"index": index, "name": name} for index, name in enumerate(data.schema["classes"])]
    return answer


@pytest.mark.parametrize(("lambda_workers", "endpoint_process"), [(0, False), (2, True)],
                         ids=["all in-process", "handlers and endpoint in processes"])
@pytest.mark.parametrize("name", ["binary", "two-class-softprob", "five-class", "regression", "iris"])
def test_each_task_is_answered_stored_listed_and_counted(trained, tmp_path: Path, monkeypatch, name: str,
                                                         lambda_workers: int, endpoint_process: bool):
    data, booster, tarball = trained[name]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    home = StateHome(tmp_path / "home")
    register(home, data, tarball)
    rows = data.x[:5].round(3)
    scores = booster.predict(xgb.DMatrix(rows.astype(np.float32))).tolist()
    with LocalService(home, data.group, KEY, lambda_workers=lambda_workers,
                      endpoint_process=endpoint_process).start() as service:
        status, single = call(service.api.url, "POST", "/predictions",
                              {"features": dict(zip(data.features, rows[0].tolist(), strict=True))})
        assert status == 200, single
        wanted = expected_answer(data, scores[0])
        assert set(single) == {*wanted, "id", "timestamp", "model_version"}
        assert {key: single[key] for key in wanted} == wanted and single["model_version"] == 1
        if data.task == "regression":
            assert isinstance(single["prediction"], float)

        status, batch = call(service.api.url, "POST", "/predictions", {"input_data": rows.tolist()})
        assert status == 200
        for answer, score in zip(batch["predictions"], scores, strict=True):
            assert {key: answer[key] for key in expected_answer(data, score)} == expected_answer(data, score)

        status, stored = call(service.api.url, "GET", f"/predictions/{single['id']}")
        assert status == 200
        assert stored == {**single, "features": dict(zip(data.features, rows[0].tolist(), strict=True)),
                          "latency_ms": stored["latency_ms"]}
        status, listed = call(service.api.url, "GET", "/predictions?limit=10")
        assert status == 200 and [item["id"] for item in listed][-1] == single["id"] and len(listed) == 6

        _, exposition = call(service.api.url, "GET", "/metrics")
        counted = {sample.labels["label"]: sample.value
                   for family in text_string_to_metric_families(exposition.decode())
                   if family.name == "cloudviz_predictions" for sample in family.samples
                   if sample.name == "cloudviz_predictions_total"}
        if data.task == "regression":
            assert counted == {"": 6.0}  # no label to count by: all of them together
        else:
            labels = [answer["label"] for answer in [single, *batch["predictions"]]]
            assert counted == {label: float(labels.count(label)) for label in set(labels)}

        status, dashboard = call(service.api.url, "GET", "/dashboard/data")
        assert status == 200 and dashboard["predictions"]["rows"] == 6
        if data.task == "regression":  # one series, named for what it is, rather than a "null" class
            assert dashboard["predictions"]["class_counts"] == {"(regression: no classes)": 6}
        else:
            assert sum(dashboard["predictions"]["class_counts"].values()) == 6
            assert set(dashboard["predictions"]["class_counts"]) <= set(data.schema["classes"])
        status, model = call(service.api.url, "GET", "/model")
        assert status == 200 and (model["model_version"], model["task"]) == (1, data.task)
        assert model["example"] is not None
        assert model == {**model, **expected_description(data)}
        # The hint a consumer is shown is the model's own example (iris: the seed example; registered with no
        # training run, so no medians: the midpoints of the registered ranges), found out once.
        body = json.dumps(model["example"], separators=(",", ":"))
        assert dashboard["predictions"]["hint"].endswith(f"-d '{body}'")
        monkeypatch.setattr("deploy.local_service.example_row", lambda *_: pytest.fail("the example read again"))
        assert service.example_body() == body

        client = runtime(service.endpoint_server.url)
        body = "\n".join(",".join(repr(value) for value in row) for row in rows.tolist())
        answer = client.invoke_endpoint(EndpointName=service.endpoint, ContentType="text/csv",
                                        Accept="application/json", Body=body)
        document = json.loads(answer["Body"].read())
        assert document == {"predictions": [{"score": pytest.approx(score, rel=1e-6)} for score in scores]}
        answer = client.invoke_endpoint(EndpointName=service.endpoint, ContentType="text/csv", Body=body)
        text = answer["Body"].read().decode()
        assert answer["ContentType"] == "text/csv"
        if isinstance(scores[0], list):  # the container prints each row of probabilities as a list
            assert json.loads(f"[{text}]") == [pytest.approx(score, rel=1e-6) for score in scores]
        else:  # one number per row, comma-joined
            assert [float(value) for value in text.split(",")] == pytest.approx(scores, rel=1e-6)


def test_iris_answers_exactly_as_before(trained, tmp_path: Path, monkeypatch):
    """The README's seed example: version 1 of iris answers virginica with its keys of before, in their order."""
    data, _, tarball = trained["iris"]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    home = StateHome(tmp_path / "home")
    register(home, data, tarball)
    with LocalService(home, data.group, KEY).start() as service:
        status, answer = call(service.api.url, "POST", "/predictions", {"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5})
    assert status == 200
    assert list(answer) == ["prediction", "label", "probabilities", "id", "timestamp", "model_version"]
    assert (answer["prediction"], answer["label"]) == (1, "virginica")
    assert list(answer["probabilities"]) == ["setosa", "virginica", "versicolor"]


def test_a_version_of_another_task_needs_a_restart(trained, tmp_path: Path, monkeypatch):
    """A regression version approved while a binary one is live is refused with the reason; a restart serves it."""
    binary, _, binary_tarball = trained["binary"]
    regression, _, regression_tarball = trained["regression"]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    home = StateHome(tmp_path / "home")
    group = binary.group
    register(home, binary, binary_tarball)
    events: list[str] = []
    with LocalService(home, group, KEY, on_event=events.append).start(poll_seconds=3600) as service:
        ModelRegistry(home.registry_db).register(group, regression_tarball.as_uri(), "Approved",
                                                 lineage={"data": regression.schema})
        service.poll()
        assert service.live.version == 1
        assert "is a regression model of features ['rooms', 'floor_area', 'age_years'] and classes []" in events[-1]
        assert events[-1].endswith(f"to switch, `cloudviz deploy local --group {group} --version 2`, then restart"
                                   " `cloudviz serve`")
    deploy_local(ModelRegistry(home.registry_db), DeploymentStore(home.deployments), group, 2, False, "test")
    with LocalService(home, group, KEY).start() as service:
        assert service.live.version == 2 and service.signature.task == "regression"
        status, answer = call(service.api.url, "POST", "/predictions",
                              {"input_data": [regression.x[0].round(3).tolist()]})
        assert status == 200 and set(answer["predictions"][0]) == {"prediction", "id", "timestamp", "model_version"}


def test_a_regression_model_trained_by_the_pipeline_serves_from_its_runs_schema(tmp_path: Path, monkeypatch):
    """The production path: the registry's lineage names the run, whose Preprocess schema.json says the task; the
    service configures the API from it, and the smoke test through the API passes."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 10, size=(300, 3))
    y = 3 * x[:, 0] - x[:, 1] + rng.normal(0, 0.3, 300)
    source = tmp_path / "houses.csv"
    source.write_text("rooms,area,age,price\n" + "\n".join(",".join(f"{v:.3f}" for v in (*row, target))
                                                            for row, target in zip(x, y, strict=True)))
    home = StateHome(tmp_path / "home")
    record = LocalRunner(home, build_pipeline()).start({
        "InputData": str(source), "LabelColumn": "price", "FeatureColumns": "rooms,area,age", "ClassNames": "",
        "Objective": "reg:squarederror", "GateMetric": "rmse", "GateThreshold": "5", "ModelPackageGroupName": "Houses",
        "ModelApprovalStatus": "Approved",
    })
    assert record.status == "Succeeded"
    with LocalService(home, "Houses", KEY, smoke_test=True).start() as service:
        assert (service.signature.task, service.signature.classes) == ("regression", ())
        assert service.last_smoke_test.passed, service.last_smoke_test.detail
        status, answer = call(service.api.url, "POST", "/predictions", {"rooms": 5.0, "area": 2.0, "age": 1.0})
        # What a consumer is shown to send is this model's example (the training medians), not iris's.
        body = service.example_body()
        assert list(json.loads(body)) == ["rooms", "area", "age"]
        model = call(service.api.url, "GET", "/model")[1]  # the same example, the training medians
        assert (model["example"], model["target"]["name"]) == (json.loads(body), "price")
        assert all(feature["min"] <= model["example"][feature["name"]] <= feature["max"]
                   for feature in model["features"])
        try_line = next(line for line in render.serving(service, key_from_env=False).splitlines()
                        if line.startswith("Try"))
        assert try_line.endswith(f"-d '{body}'")
        dashboard = call(service.api.url, "GET", "/dashboard/data")[1]
        assert dashboard["predictions"]["hint"].endswith(f"-d '{body}'")
        # Every panel reads a regression's report: its metrics, no classes, runs and versions without accuracy.
        assert not [name for name, panel in dashboard.items() if isinstance(panel, dict) and "error" in panel]
        evaluation = dashboard["model"]["evaluation"]
        assert set(evaluation["metrics"]) == {"rmse", "mae", "r2"} and evaluation["confusion_matrix"] == []
        assert dashboard["runs"]["runs"][0]["accuracy"] is None and dashboard["registry"]["versions"]
        assert dashboard["drift"]["prediction_label"] == "predicted value" and "why" not in dashboard["drift"], \
            dashboard["drift"]
    assert status == 200 and set(answer) == {"prediction", "id", "timestamp", "model_version"}
    assert answer["prediction"] == pytest.approx(13, abs=2)  # 3 * 5 - 2, learnt from 210 rows


def test_get_model_follows_a_swap_to_the_new_versions_schema(trained, tmp_path: Path, monkeypatch):
    """The served configuration's data-schema tag moves with the model: after v1 -> v2, GET /model answers v2's
    ranges, read from the schema file written when v2 went live."""
    data, _, tarball = trained["binary"]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    home = StateHome(tmp_path / "home")
    register(home, data, tarball)
    with LocalService(home, data.group, KEY).start(poll_seconds=3600) as service:
        status, before = call(service.api.url, "GET", "/model")
        assert (status, before["model_version"]) == (200, 1)
        assert before["features"][0]["max"] == data.schema["features"][0]["max"]
        wider = {**data.schema, "features": [{**feature, "max": feature["max"] * 10}
                                             for feature in data.schema["features"]]}
        ModelRegistry(home.registry_db).register(data.group, tarball.as_uri(), "Approved", lineage={"data": wider})
        service.poll()
        assert service.live.version == 2
        status, after = call(service.api.url, "GET", "/model")
    assert (status, after["model_version"]) == (200, 2)
    assert [feature["max"] for feature in after["features"]] == [feature["max"] for feature in wider["features"]]
    assert after["example"] != before["example"]  # the midpoints of v2's ranges
    written = home.root / "endpoints" / f"{data.group}-endpoint" / "schema-v2.json"
    assert json.loads(written.read_text(encoding="utf-8"))["features"] == wider["features"]
