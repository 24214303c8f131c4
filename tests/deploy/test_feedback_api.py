"""POST /predictions/{id}/feedback end to end over HTTP on the local API (the real endpoint, handlers, gateway and
SQLite store): recorded, shown by GET, repeated, refused; for iris and for a regression model of generated data."""

from __future__ import annotations

from pathlib import Path

import pytest
from generated_data import regression
from test_postman import KEY, SEED, api, call, documented, spec_of  # noqa: F401 (api: a fixture)

from deploy.local_service import LocalService
from pipelines.definition import build_pipeline
from pipelines.runner import LocalRunner
from pipelines.state import StateHome

FEEDBACK = "/predictions/{id}/feedback"


def predicted(service) -> dict:
    status, _, answer = call(service, "POST", "/predictions", SEED)
    assert status == 200, answer
    return answer


def feedback(service, prediction_id: str, body: object, key: str | None = KEY) -> tuple[int, dict]:
    status, _, answer = call(service, "POST", f"/predictions/{prediction_id}/feedback", body, key=key)
    if key is not None:
        documented(service, "POST", FEEDBACK, status, answer)
    return status, answer


def test_a_label_is_recorded_and_shown_by_get(api):  # noqa: F811
    prediction = predicted(api)
    before = call(api, "GET", f"/predictions/{prediction['id']}")[2]
    status, stored = feedback(api, prediction["id"], {"label": "virginica"})
    assert status == 200
    assert stored["feedback"]["label"] == "virginica" and stored["feedback"]["recorded_at"].endswith("Z")
    assert {name: value for name, value in stored.items() if name != "feedback"} == before
    assert call(api, "GET", f"/predictions/{prediction['id']}")[2] == stored
    assert call(api, "GET", "/predictions")[2] == [stored]


def test_an_index_is_recorded_as_its_class_name_and_the_same_label_again_changes_nothing(api):  # noqa: F811
    prediction = predicted(api)
    status, first = feedback(api, prediction["id"], {"label": 2})
    assert status == 200 and first["feedback"]["label"] == "versicolor"
    assert feedback(api, prediction["id"], {"label": "versicolor"}) == (200, first)
    assert feedback(api, prediction["id"], {"label": 2}) == (200, first)
    assert feedback(api, prediction["id"], {"label": 2.0}) == (200, first)  # an integer, as JSON Schema reads it


def test_another_label_is_a_409_and_the_first_stays(api):  # noqa: F811
    prediction = predicted(api)
    _, first = feedback(api, prediction["id"], {"label": "virginica"})
    status, answer = feedback(api, prediction["id"], {"label": "setosa"})
    assert status == 409
    assert "'virginica'" in answer["message"] and "'setosa'" in answer["message"]
    assert call(api, "GET", f"/predictions/{prediction['id']}")[2] == first


def test_an_unknown_id_is_a_404_and_stores_nothing(api):  # noqa: F811
    status, answer = feedback(api, "20261129T032001123456Z-3f9a2c7e1b5d0000", {"label": "setosa"})
    assert status == 404 and "20261129T032001123456Z-3f9a2c7e1b5d0000" in answer["message"]
    assert call(api, "GET", "/predictions")[2] == []


@pytest.mark.parametrize(("body", "message"), [
    ({}, "label is missing: send a class name or index: setosa (0), virginica (1), versicolor (2)"),
    ({"label": "daisy"}, "label 'daisy' is not a class of the model: send a class name or index: setosa (0), "
                         "virginica (1), versicolor (2)"),
    ({"label": 3}, "label 3 is not a class of the model"),
    ({"label": 1.5}, "label 1.5 is not a class of the model"),
    ({"label": True}, "label True is not a class of the model"),
    ({"label": "virginica", "note": "x"}, "unexpected field 'note'"),
    ([1], "the body must be a JSON object, not an array"),
])
def test_a_missing_or_unknown_label_is_a_400_naming_the_field_and_the_classes(api, body, message):  # noqa: F811
    prediction = predicted(api)
    status, answer = feedback(api, prediction["id"], body)
    assert status == 400 and answer["message"].startswith(message), answer
    assert "feedback" not in call(api, "GET", f"/predictions/{prediction['id']}")[2]


def test_feedback_needs_the_api_key(api):  # noqa: F811
    prediction = predicted(api)
    assert feedback(api, prediction["id"], {"label": "virginica"}, key=None)[0] == 403
    assert feedback(api, prediction["id"], {"label": "virginica"}, key="wrong-key-0123456789")[0] == 403
    assert "feedback" not in call(api, "GET", f"/predictions/{prediction['id']}")[2]


@pytest.fixture(scope="module")
def houses(tmp_path_factory: pytest.TempPathFactory) -> StateHome:
    """A state home whose Houses group holds an Approved regression model of generated data."""
    home = StateHome(tmp_path_factory.mktemp("houses") / "home")
    data = regression(tmp_path_factory.mktemp("houses-data"))
    record = LocalRunner(home, build_pipeline()).start(
        data.parameters(ModelPackageGroupName="Houses", ModelApprovalStatus="Approved"))
    assert record.status == "Succeeded", record.failure_reason
    return home


def test_a_regression_models_feedback_is_a_number(houses: StateHome, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with LocalService(houses, "Houses", KEY).start(poll_seconds=3600) as service:
        status, _, prediction = call(service.api, "POST", "/predictions", {"area": 5.0, "rooms": 3, "age": 10})
        assert status == 200, prediction
        status, answer = feedback(service.api, prediction["id"], {"label": "virginica"})
        assert status == 400 and answer["message"] == "label must be a number, not a string"
        status, stored = feedback(service.api, prediction["id"], {"label": 21.5})
        assert status == 200 and stored["feedback"]["label"] == 21.5 and "label" not in stored
        assert feedback(service.api, prediction["id"], {"label": 21.5}) == (200, stored)
        assert feedback(service.api, prediction["id"], {"label": 22})[0] == 409


def test_the_served_openapi_document_has_the_route_with_the_models_example(api):  # noqa: F811
    operation = spec_of(api)["paths"][FEEDBACK]["post"]
    assert operation["requestBody"]["content"]["application/json"]["example"] == {"label": "setosa"}
    assert set(operation["responses"]) == {"200", "400", "403", "404", "409", "413", "429", "502"}
    assert "setosa (0), virginica (1), versicolor (2)" in operation["description"]
