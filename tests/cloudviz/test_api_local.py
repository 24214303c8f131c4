"""The Python API on the local target: real runs, a real SQLite registry, a real endpoint and prediction API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from generated_data import two_classes

import cloudviz
from cloudviz import NotFoundError, UserError
from pipelines.definition import DEFAULT_GROUP


def test_iris_from_run_to_promotion(tmp_path: Path) -> None:
    project = cloudviz.local(tmp_path / "home")
    assert isinstance(project, cloudviz.Project) and project.target == "local"
    names = [parameter.name for parameter in project.pipeline.parameters()]
    assert {"InputData", "ModelPackageGroupName", "NumRound"} <= set(names)

    run = project.pipeline.run({"NumRound": 20})
    assert run.succeeded and run.target == "local" and run.parameters["NumRound"] == 20
    assert run.metrics["accuracy"] > 0.9
    assert [step.name for step in run.steps][:2] == ["Preprocess", "Train"]
    assert run.model is not None and run.model.group == DEFAULT_GROUP and run.model.version == 1
    assert project.runs.get(run.id[:-2]).id == run.id
    assert project.runs.get().id == run.id == project.runs.list()[0].id
    with pytest.raises(NotFoundError, match="no run 'nope'"):
        project.runs.get("nope")

    model = project.models.get(DEFAULT_GROUP)
    assert (model.version, model.approval_status, model.run_id) == (1, "PendingManualApproval", run.id)
    assert model.artifacts["model"].startswith("file://") and "classification" in str(model.evaluation)
    assert set(model.artifacts) >= {"evaluation", "baseline_statistics"}
    with pytest.raises(UserError, match="approval status 'maybe' is not one of"):
        project.models.set_approval(DEFAULT_GROUP, 1, "maybe")
    with pytest.raises(NotFoundError, match=f"no model package {DEFAULT_GROUP} version 9"):
        project.models.approve(DEFAULT_GROUP, 9)
    with pytest.raises(NotFoundError, match="no model package group 'Nope'"):
        project.models.get("Nope")
    with pytest.raises(UserError, match="model version 'newest'"):
        project.models.get(DEFAULT_GROUP, "newest")
    assert project.models.reject(DEFAULT_GROUP, reason="too early").approval_status == "Rejected"
    assert project.models.set_approval(DEFAULT_GROUP, "latest", "APPROVED").approval_status == "Approved"
    assert [m.version for m in project.models.list(status="approved")] == [1]

    with pytest.raises(UserError, match="prod serves no version"):
        project.serve(DEFAULT_GROUP, "prod")
    deployment = project.deploy(DEFAULT_GROUP)
    assert (deployment.stage, deployment.version, deployment.api_url) == ("dev", 1, None)
    with pytest.raises(NotFoundError, match="nothing serves"):
        project.api(DEFAULT_GROUP)

    with project.serve(DEFAULT_GROUP) as serving:
        api = serving.api
        example = api.model()["example"]
        one = api.predict(example)
        assert one["model_version"] == 1 and one["label"] in ("setosa", "versicolor", "virginica")
        batch = api.predict([example, {**example, "request_id": "second"}])
        assert len(batch) == 2 and batch[1]["request_id"] == "second"
        page = api.predictions(limit=2)
        assert len(page.predictions) == 2 and page.next_token  # the smoke test's prediction is stored too
        assert api.prediction(one["id"])["id"] == one["id"]
        with pytest.raises(NotFoundError, match="404"):
            api.prediction("no-such-id")
        with pytest.raises(UserError, match="400"):
            api.predict({"x1": 1.0})

        second = cloudviz.local(tmp_path / "home")  # another notebook on the same state home
        assert second.api(DEFAULT_GROUP).url == api.url
        assert second.predict(example, DEFAULT_GROUP)["model_version"] == 1
        assert second.deployments(stage="dev")[0].api_url == api.url
        with pytest.raises(UserError, match="served already"):
            second.serve(DEFAULT_GROUP)

        promotion = project.promote(DEFAULT_GROUP, "dev", "prod")
        assert promotion.promoted and promotion.smoke_test["passed"]
        assert (promotion.deployment.stage, promotion.deployment.version) == ("prod", 1)
        assert not project.promote(DEFAULT_GROUP).promoted  # prod serves that version already

    with pytest.raises(NotFoundError, match="nothing serves"):
        project.api(DEFAULT_GROUP)
    assert [(d.stage, d.version, d.api_url) for d in project.deployments()] == [("dev", 1, None), ("prod", 1, None)]
    assert project.deployments(stage="prod")[0].details["promoted_from"] == "dev"


def test_own_data_set_with_its_own_label_and_group(tmp_path: Path) -> None:
    data = two_classes(tmp_path / "data")
    project = cloudviz.local(tmp_path / "home")
    parameters = {**data.parameters(ModelPackageGroupName="Churn", ModelApprovalStatus="Approved")}
    del parameters["InputData"]
    with pytest.raises(UserError, match="ModelPackageGroupName"):
        project.pipeline.run({"LabelColumn": "churn"}, data=data.path)

    run = project.pipeline.run(parameters, data=data.path)
    assert run.succeeded and run.model is not None and run.model.group == "Churn"
    assert project.models.get("Churn", run.model.version).approval_status == "Approved"

    project.deploy("Churn")
    with project.serve("Churn") as serving:
        answer = project.predict({"tenure": 0.1, "monthly": 50.0}, "Churn")
        assert answer["label"] == "yes"
        answers = serving.api.predict([{"tenure": 0.9, "monthly": 80.0}, {"tenure": 0.2, "monthly": 30.0}])
        assert [a["label"] for a in answers] == ["no", "yes"]
        with pytest.raises(UserError, match="tenure"):
            serving.api.predict({"monthly": 50.0})
        assert serving.api.feedback(answer["id"], "no")["feedback"]["label"] == "no"
        second_class = serving.api.model()["classes"][1]["name"]
        assert serving.api.feedback(answers[0]["id"], 1)["feedback"]["label"] == second_class  # an index
        with pytest.raises(UserError, match="409 .* already has label 'no' recorded"):
            serving.api.feedback(answer["id"], "yes")
        with pytest.raises(UserError, match="400 label 'maybe' is not a class of the model"):
            serving.api.feedback(answer["id"], "maybe")
        with pytest.raises(NotFoundError, match="404"):
            serving.api.feedback("no-such-id", "no")


def test_importing_cloudviz_loads_neither_xgboost_nor_pandas() -> None:
    check = "import sys, cloudviz; cloudviz.Project; print(sorted({'xgboost', 'pandas', 'numpy'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
