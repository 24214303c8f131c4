"""The CloudViz training pipeline, declared once: the local runner executes it, the SageMaker compiler compiles it.

Defaults reproduce the original iris deployment. The data decides the model's contract (Preprocess records task
and classes in the schema, Train's ``num_class`` reads it), and Evaluate decides the quality gate, which
CheckAccuracy (the name kept for existing dashboards and scripts) reads as ``gate.passed``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from pipelines.builtin_xgboost.hyperparameters import DEFAULT_HYPERPARAMETERS
from pipelines.dag import (
    PYTHON_TYPES,
    ConditionStep,
    FailStep,
    JsonGet,
    Param,
    Parameter,
    Pipeline,
    ProcessingInput,
    ProcessingOutput,
    ProcessingStep,
    RegisterModelStep,
    RetryPolicy,
    StepOutput,
    TrainingStep,
)
from pipelines.datasets import IRIS_PARAMETERS
from pipelines.errors import UserError
from pipelines.objectives import BINARY_OBJECTIVE, MULTICLASS_OBJECTIVES, REGRESSION_OBJECTIVE, objective_for
from pipelines.registry import APPROVAL_STATUSES

if TYPE_CHECKING:
    from pipelines.data.versions import DatasetStore, DatasetVersion

PIPELINE_NAME = "CloudVizPipeline"
DEFAULT_GROUP = "CloudVizIris"
GATE_PASSED_PATH = "gate.passed"
TASKS = {**dict.fromkeys(MULTICLASS_OBJECTIVES, "multiclass"), BINARY_OBJECTIVE: "binary",
         REGRESSION_OBJECTIVE: "regression"}
# The metrics GateMetric may name, per task (Evaluate's report sections; empty: accuracy, or r2 for regression).
GATE_METRICS = {
    "multiclass": ("accuracy", "macro_f1", "weighted_f1", "weighted_precision", "weighted_recall"),
    "binary": ("accuracy", "precision", "recall", "f1", "auc"),
    "regression": ("r2", "rmse", "mse", "mae"),
}
PROCESSING = "/opt/ml/processing"
INPUT_DATA_TYPES = ("S3Prefix", "ManifestFile")  # a ProcessingInput's S3DataType

# Hyperparameters exposed as pipeline parameters, named as SageMaker users name them.
HYPERPARAMETER_PARAMETERS = {
    "max_depth": ("MaxDepth", "Integer"),
    "eta": ("Eta", "Float"),
    "gamma": ("Gamma", "Float"),
    "min_child_weight": ("MinChildWeight", "Float"),
    "objective": ("Objective", "String"),
    "num_round": ("NumRound", "Integer"),
}

PARAMETERS = (
    Parameter("InputData", "String", "", "raw CSV (a local path or s3:// URI), a folder or prefix of CSV files, or "
              "a manifest file (InputDataType ManifestFile); empty: the bundled iris data"),
    Parameter("LabelColumn", "String", "", "name of the label column in the raw CSV (iris: species)"),
    Parameter("FeatureColumns", "String", "", "comma-separated feature columns, in model order; empty: every "
              "column but the label, in file order (iris: x1,x2,x3,x4)"),
    Parameter(
        "ClassNames",
        "String",
        "",
        "comma-separated classes in index order; empty: the sorted distinct labels "
        "(iris: setosa,virginica,versicolor)",
    ),
    Parameter("InputDataType", "String", "S3Prefix", "how InputData is read: S3Prefix (a file, or every file below "
              "a folder or prefix) or ManifestFile (the files a SageMaker manifest lists)",
              choices=INPUT_DATA_TYPES),
    Parameter("DataSetVersion", "String", "", "the data set version to train on, NAME or NAME@N (default the "
              "newest); sets InputData to its manifest and the parameters that describe its data. Empty: InputData"),
    Parameter("ValidationFraction", "Float", 0.15, "share of each class held out for validation"),
    Parameter("TestFraction", "Float", 0.15, "share of each class held out for the test set"),
    Parameter("Seed", "Integer", 42, "random seed of the split"),
    *(
        Parameter(name, kind, PYTHON_TYPES[kind](DEFAULT_HYPERPARAMETERS[hp]), f"XGBoost hyperparameter {hp}",
                  choices=tuple(TASKS) if hp == "objective" else ())
        for hp, (name, kind) in HYPERPARAMETER_PARAMETERS.items()
    ),
    Parameter(
        "NumClass",
        "Integer",
        0,
        "number of classes (XGBoost num_class); 0: as many as the label column has. Checked against the data "
        "before Train",
        minimum=0,
    ),
    Parameter(
        "TrainingInstanceCount",
        "Integer",
        1,
        "training instances (processes locally); Preprocess writes each split in as many part files, one per instance",
        minimum=1,
    ),
    Parameter(
        "GateMetric",
        "String",
        "",
        "test metric the gate compares with GateThreshold: accuracy, macro_f1, weighted_f1, weighted_precision, "
        "weighted_recall (multi:*); accuracy, precision, recall, f1, auc (binary); r2, rmse, mse, mae "
        "(regression). Empty: accuracy, or r2 for regression. rmse, mse and mae pass at or below the threshold, "
        "the others at or above",
    ),
    Parameter(
        "GateThreshold",
        "Float",
        0.9,
        "the gate's threshold on GateMetric (formerly AccuracyThreshold, still accepted)",
        aliases=("AccuracyThreshold",),
    ),
    Parameter(
        "MaxRegression",
        "Float",
        0.01,
        "how much worse than the champion (the group's live model, scored on the same test split) on GateMetric "
        "the new model may be and still pass the gate",
        minimum=0,
    ),
    Parameter(
        "ChampionModelData",
        "String",
        "",
        "the champion's model artifact (a model.tar.gz path or s3:// URI). Empty: the group's live model (locally "
        "the version live in prod, else dev; on AWS the newest Approved version), or none for a group's first model",
    ),
    Parameter(
        "ChampionDataSchema",
        "String",
        "",
        "the data schema the champion was trained on (its version's schema.json, a path or s3:// URI), so Evaluate "
        "matches its features and classes by name. Empty: the live model's, resolved with ChampionModelData (without "
        "one, features and classes are matched by count)",
    ),
    Parameter("ModelPackageGroupName", "String", DEFAULT_GROUP,
              f"model registry group to register into ({DEFAULT_GROUP}: the bundled iris data's; a run on your own "
              "data names its own)"),
    Parameter(
        "ModelApprovalStatus",
        "String",
        "PendingManualApproval",
        "approval status of the registered version",
        choices=APPROVAL_STATUSES,
    ),
)

STEP_RETRY = RetryPolicy(max_attempts=2, interval_seconds=1.0, backoff_rate=2.0)


def preprocess_step() -> ProcessingStep:
    return ProcessingStep(
        name="Preprocess",
        code="preprocessing/preprocess.py",
        # Not below {PROCESSING}/input: SageMaker mounts the step's code at {PROCESSING}/input/code.
        inputs=(ProcessingInput("raw", Param("InputData"), f"{PROCESSING}/raw", Param("InputDataType")),),
        outputs=tuple(
            ProcessingOutput(name, f"{PROCESSING}/{name}")
            for name in ("train", "validation", "test", "schema", "baseline")
        ),
        arguments=(
            "--label-column", Param("LabelColumn"),
            "--feature-columns", Param("FeatureColumns"),
            "--class-names", Param("ClassNames"),
            "--objective", Param("Objective"),
            "--num-class", Param("NumClass"),
            "--validation-fraction", Param("ValidationFraction"),
            "--test-fraction", Param("TestFraction"),
            "--seed", Param("Seed"),
            "--parts", Param("TrainingInstanceCount"),
        ),
        retry=STEP_RETRY,
    )


def train_step() -> TrainingStep:
    """Train on the built-in XGBoost algorithm; ``num_class`` is sent with multi:* objectives only.

    The built-in container requires it for them and lets it through for any other objective, after which XGBoost
    fails on the label shape (``objective_validator``, sagemaker_xgboost_container/algorithm_mode/
    hyperparameter_validation.py). A SageMaker Pipeline cannot leave a hyperparameter out at run time, so a
    compiled definition serves either the multi:* objectives or the others; locally every objective runs.
    """
    return TrainingStep(
        name="Train",
        hyperparameters={
            **{hp: Param(name) for hp, (name, _) in HYPERPARAMETER_PARAMETERS.items()},
            "num_class": JsonGet("Preprocess", "schema", "schema.json", "num_class"),  # decided by the data
        },
        sent_when={"num_class": ("Objective", MULTICLASS_OBJECTIVES)},
        channels={
            "train": StepOutput("Preprocess", "train"),
            "validation": StepOutput("Preprocess", "validation"),
        },
        instance_count=Param("TrainingInstanceCount"),
        sharded_channels=("train",),  # each instance trains on its parts; all see the whole validation split
        retry=STEP_RETRY,
    )


def evaluate_step() -> ProcessingStep:
    return ProcessingStep(
        name="Evaluate",
        code="evaluation/evaluate.py",
        inputs=(
            ProcessingInput("model", StepOutput("Train", "model"), f"{PROCESSING}/model"),
            ProcessingInput("test", StepOutput("Preprocess", "test"), f"{PROCESSING}/test"),
            ProcessingInput("schema", StepOutput("Preprocess", "schema"), f"{PROCESSING}/schema"),
            ProcessingInput("champion", Param("ChampionModelData"), f"{PROCESSING}/champion"),
            ProcessingInput("champion_schema", Param("ChampionDataSchema"), f"{PROCESSING}/champion_schema"),
        ),
        outputs=(ProcessingOutput("evaluation", f"{PROCESSING}/evaluation"),),
        arguments=("--gate-metric", Param("GateMetric"), "--gate-threshold", Param("GateThreshold"),
                   "--max-regression", Param("MaxRegression")),
        retry=STEP_RETRY,
    )


def check_parameters(values: dict) -> None:
    """GateMetric must be a metric of the Objective's task (before anything runs, not after Train)."""
    task = TASKS[values["Objective"]]
    metric = str(values["GateMetric"]).strip()
    if metric and metric not in GATE_METRICS[task]:
        raise UserError(
            f"parameter GateMetric: {metric!r} is not a {task} metric (Objective {values['Objective']}); "
            f"one of: {', '.join(GATE_METRICS[task])}"
        )


def data_parameters(values: Mapping[str, object], given: Collection[str]) -> dict[str, object]:
    """The values of the declared parameters that describe the data (label, features, classes), for those the user
    did not give (``given``: parameter names); ``values`` are the run's, its InputData as the user gave it.

    An empty InputData is the bundled iris data: they take its values (``IRIS_PARAMETERS``), so iris runs keep the
    original contract. The user's own file: their values as they are (the declared defaults are empty: from the
    data), and its ModelPackageGroupName must be given: the default would register it into the iris group.
    """
    if "InputData" not in values:
        return {}
    describing = [name for name in IRIS_PARAMETERS if name in values and name not in given]
    input_data = str(values["InputData"]).strip()
    if not input_data:
        return {name: IRIS_PARAMETERS[name] for name in describing}
    if "ModelPackageGroupName" in values and "ModelPackageGroupName" not in given:
        raise UserError(
            f"parameter ModelPackageGroupName: name the model registry group for {input_data} (the default, "
            f"{DEFAULT_GROUP}, is the bundled iris data's), e.g. --param ModelPackageGroupName="
            f"{suggested_group(input_data)}"
        )
    return {name: values[name] for name in describing}


def dataset_version(store: DatasetStore, ref: str) -> DatasetVersion:
    """The version ``ref`` (``NAME`` or ``NAME@N``) names in ``store``; an error naming the parameter."""
    try:
        return store.resolve(ref)
    except UserError as error:  # NotFoundError: no such data set or version; UserError: not a ref
        raise type(error)(f"parameter DataSetVersion: {error}") from None


def version_parameters(version: DatasetVersion, given: Collection[str], manifest: str) -> dict[str, object]:
    """The values a data set version sets (``given``: the parameters the user gave): DataSetVersion its ``NAME@N``,
    InputData its ``manifest`` (as the target reads it), InputDataType ManifestFile, and the version's describing
    parameters (label, features, classes, group) and the objective its task needs, those the user did not give."""
    for name in ("InputData", "InputDataType"):
        if name in given:
            raise UserError(f"parameter {name}: not with DataSetVersion {version.ref}, which sets it (its manifest)")
    describing = {**version.parameters, **objective_for(version.schema)}
    return {"DataSetVersion": version.ref, "InputData": manifest, "InputDataType": "ManifestFile",
            **{name: value for name, value in describing.items() if name not in given}}


def suggested_group(input_data: str) -> str:
    """A model package group name from a data file's name: ``penguins.csv`` -> ``Penguins``,
    ``s3://b/k/churn-2024.csv`` -> ``Churn2024`` (letters and digits, as SageMaker's group names allow)."""
    stem = PurePosixPath(input_data.replace("\\", "/").rstrip("/")).name.split(".")[0]
    words = re.findall(r"[A-Za-z0-9]+", stem)
    return "".join(word[:1].upper() + word[1:] for word in words)[:63] or "MyData"


def build_pipeline() -> Pipeline:
    """The DAG: Preprocess -> Train -> Evaluate -> CheckAccuracy -> Register | AccuracyBelowThreshold."""
    return Pipeline(
        name=PIPELINE_NAME,
        description="Preprocess, train XGBoost, evaluate, gate on a test metric, register",
        parameters=PARAMETERS,
        check=check_parameters,
        steps=(
            preprocess_step(),
            train_step(),
            evaluate_step(),
            ConditionStep(
                name="CheckAccuracy",
                left=JsonGet("Evaluate", "evaluation", "evaluation.json", GATE_PASSED_PATH),
                comparison="==",
                right=True,
                if_steps=("Register",),
                else_steps=("AccuracyBelowThreshold",),
            ),
            RegisterModelStep(
                name="Register",
                model=StepOutput("Train", "model"),
                model_package_group=Param("ModelPackageGroupName"),
                approval_status=Param("ModelApprovalStatus"),
                metrics=JsonGet("Evaluate", "evaluation", "evaluation.json", ""),
                data=StepOutput("Preprocess", "schema"),
                baseline=StepOutput("Preprocess", "baseline"),
            ),
            FailStep(
                name="AccuracyBelowThreshold",
                message=(JsonGet("Evaluate", "evaluation", "evaluation.json", "gate.message"),),
            ),
        ),
    )
