"""Champion vs challenger on the local target: a run after a deployed version scores that version's model on its
own test split, and the registry names the champion the new version was compared with."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import xgboost as xgb
from sklearn.metrics import accuracy_score, f1_score

from deploy.deployments import DeploymentStore
from deploy.release import deploy_local
from pipelines.datasets import iris_csv
from pipelines.definition import build_pipeline
from pipelines.registry import ModelRegistry
from pipelines.runner import LocalRunner
from pipelines.state import StateHome

GROUP = "CloudVizIris"


def run(home: StateHome, **overrides: object):
    record = LocalRunner(home, build_pipeline()).start({k: str(v) for k, v in overrides.items()})
    assert record.status == "Succeeded", record.failure_reason
    return record


def deploy(home: StateHome, version: int, stage: str = "dev") -> None:
    registry = ModelRegistry(home.registry_db)
    registry.update_approval(GROUP, version, "Approved")
    deploy_local(registry, DeploymentStore(home.deployments), GROUP, version, stage != "dev", "test", stage)


def evaluation_of(record) -> dict:
    return json.loads((Path(record.steps["Evaluate"].outputs["evaluation"]) / "evaluation.json").read_text())


def scored_by_hand(model_url: str, test_folder: Path) -> dict[str, float]:
    """The accuracy and macro F1 of a registered model on a run's test split (label first, no header)."""
    with tarfile.open(model_url.removeprefix("file://")) as archive:
        raw = archive.extractfile("xgboost-model").read()
    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    rows = np.loadtxt(next(test_folder.glob("*.csv")), delimiter=",", ndmin=2)
    predicted = booster.predict(xgb.DMatrix(rows[:, 1:]))
    predicted = predicted.argmax(axis=1) if predicted.ndim == 2 else predicted
    return {"accuracy": accuracy_score(rows[:, 0], predicted),
            "macro_f1": f1_score(rows[:, 0], predicted, average="macro")}


def test_a_run_after_a_deployed_version_compares_with_it_on_the_same_test_split(home: StateHome):
    first = run(home)
    assert evaluation_of(first)["champion"]["status"] == "none"
    deploy(home, 1)
    second = run(home, NumRound=3, MaxRegression=0.5)

    evaluation = evaluation_of(second)
    champion = evaluation["champion"]
    registry = ModelRegistry(home.registry_db)
    v1 = registry.get(GROUP, 1)
    assert (champion["status"], champion["group"], champion["version"], champion["stage"]) == (
        "compared", GROUP, 1, "dev")
    expected = scored_by_hand(v1.model_data_url, Path(second.steps["Preprocess"].outputs["test"]))
    section = champion["multiclass_classification_metrics"]
    assert {name: section[name]["value"] for name in expected} == expected
    assert champion["champion_value"] == expected["accuracy"]
    assert champion["challenger_value"] == evaluation["multiclass_classification_metrics"]["accuracy"]["value"]
    assert champion["max_regression"] == 0.5

    v2 = registry.get(GROUP, 2)
    assert v2.metrics["champion"] == champion
    assert v2.lineage["champion"] == {"group": GROUP, "version": 1, "stage": "dev", "model_data_url": v1.model_data_url}
    assert v1.lineage["champion"] is None


def test_the_champion_is_the_version_live_in_prod_else_dev(home: StateHome):
    run(home)
    run(home, NumRound=3)
    runner = LocalRunner(home, build_pipeline())
    deploy(home, 2)
    assert json.loads((Path(runner.resolve_parameters({})["ChampionModelData"]) / "champion.json").read_text())[
        "version"] == 2
    deploy(home, 1, "prod")
    champion = Path(runner.resolve_parameters({})["ChampionModelData"])
    assert json.loads((champion / "champion.json").read_text())["stage"] == "prod"
    assert (champion / "model.tar.gz").read_bytes() == Path(
        ModelRegistry(home.registry_db).get(GROUP, 1).model_data_url.removeprefix("file://")).read_bytes()
    # another group has no live model: no champion; a model given explicitly is used as it is
    assert runner.resolve_parameters({"ModelPackageGroupName": "Other"})["ChampionModelData"] == str(
        home.root / "no-champion")
    given = str(champion / "model.tar.gz")
    assert runner.resolve_parameters({"ChampionModelData": given})["ChampionModelData"] == given


def test_models_show_and_the_run_report_put_the_champion_beside_the_new_version(home: StateHome, capsys, tmp_path):
    from cloudviz.cli import main

    run(home)
    deploy(home, 1)
    second = run(home, NumRound=3, MaxRegression=0.5)
    champion = ModelRegistry(home.registry_db).get(GROUP, 2).metrics["champion"]
    assert main(["models", "show", GROUP, "2"]) == 0
    shown = capsys.readouterr().out
    accuracy = champion["multiclass_classification_metrics"]["accuracy"]["value"]
    assert (f"  Champion:   version 1 (live on dev): accuracy {accuracy:.4f}, " in shown
            and f"on the same test rows; gate metric {accuracy:.4f} champion vs "
                f"{champion['challenger_value']:.4f} this version (MaxRegression 0.5, passed)" in shown)
    assert main(["models", "show", GROUP, "1"]) == 0
    assert "  Champion:   no champion: the group has no live model yet" in capsys.readouterr().out

    assert main(["report", second.run_id, "--output", str(tmp_path / "report"), "--json"]) == 0
    page = Path(json.loads(capsys.readouterr().out)["html"]).read_text(encoding="utf-8")
    assert "<h2>Champion vs challenger</h2>" in page
    assert "<th>champion (version 1)</th>" in page and f"<td class='n'>{round(accuracy, 4)}</td>" in page


def test_a_run_recorded_before_champions_and_data_versions_resumes_with_their_values(home: StateHome):
    """Its Evaluate runs again with the parameters added since as a new run of its group takes them: the live
    model as the champion, MaxRegression's default, no data set version."""
    first = run(home)
    deploy(home, 1)
    # The bundled file itself, as runs before data sets read it, with iris's class order: the champion's rows.
    old = run(home, InputData=iris_csv(home.data), ModelPackageGroupName=GROUP, LabelColumn="species",
              ClassNames="setosa,virginica,versicolor")
    document = json.loads((old.folder / "run.json").read_text())
    for name in ("ChampionModelData", "MaxRegression", "InputDataType", "DataSetVersion"):
        del document["parameters"][name]
    document["status"] = "Failed"
    for name in ("Evaluate", "CheckAccuracy", "Register"):
        document["steps"][name]["status"] = "Failed" if name == "Evaluate" else "Pending"
    (old.folder / "run.json").write_text(json.dumps(document))
    resumed = LocalRunner(home, build_pipeline()).resume(old.run_id)
    assert resumed.status == "Succeeded", resumed.failure_reason
    assert (resumed.parameters["MaxRegression"], resumed.parameters["DataSetVersion"]) == (0.01, "")
    champion = evaluation_of(resumed)["champion"]
    assert (champion["status"], champion["version"]) == ("compared", 1), champion
    assert first.run_id != resumed.run_id
