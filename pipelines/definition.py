"""The CloudViz training pipeline, declared once.

The local runner executes this declaration; the SageMaker compiler turns the same declaration
into a SageMaker Pipeline definition. Defaults reproduce the original deployment (iris, the
class order setosa=0, virginica=1, versicolor=2, and its XGBoost hyperparameters).
"""

from __future__ import annotations

from pipelines.builtin_xgboost.hyperparameters import DEFAULT_HYPERPARAMETERS
from pipelines.dag import (
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

PIPELINE_NAME = "CloudVizPipeline"
DEFAULT_GROUP = "CloudVizIris"
ACCURACY_PATH = "multiclass_classification_metrics.accuracy.value"
APPROVAL_STATUSES = ("PendingManualApproval", "Approved", "Rejected")
PROCESSING = "/opt/ml/processing"

# Hyperparameters exposed as pipeline parameters, named as SageMaker users name them.
HYPERPARAMETER_PARAMETERS = {
    "max_depth": ("MaxDepth", "Integer"),
    "eta": ("Eta", "Float"),
    "gamma": ("Gamma", "Float"),
    "min_child_weight": ("MinChildWeight", "Float"),
    "objective": ("Objective", "String"),
    "num_class": ("NumClass", "Integer"),
    "num_round": ("NumRound", "Integer"),
}
PYTHON_TYPE = {"Integer": int, "Float": float, "String": str}

PARAMETERS = (
    Parameter("InputData", "String", "", "raw CSV (a local path or s3:// URI); empty: the bundled iris data"),
    Parameter("LabelColumn", "String", "species", "name of the label column in the raw CSV"),
    Parameter("FeatureColumns", "String", "x1,x2,x3,x4", "comma-separated feature columns, in model order"),
    Parameter(
        "ClassNames",
        "String",
        "setosa,virginica,versicolor",
        "comma-separated classes in index order; empty: the sorted distinct labels",
    ),
    Parameter("ValidationFraction", "Float", 0.15, "share of each class held out for validation"),
    Parameter("TestFraction", "Float", 0.15, "share of each class held out for the test set"),
    Parameter("Seed", "Integer", 42, "random seed of the split"),
    *(
        Parameter(name, kind, PYTHON_TYPE[kind](DEFAULT_HYPERPARAMETERS[hp]), f"XGBoost hyperparameter {hp}")
        for hp, (name, kind) in HYPERPARAMETER_PARAMETERS.items()
    ),
    Parameter(
        "TrainingInstanceCount",
        "Integer",
        1,
        "training instances (processes locally); Preprocess writes each split in as many part files, one per instance",
        minimum=1,
    ),
    Parameter("AccuracyThreshold", "Float", 0.9, "minimum test accuracy for the model to be registered"),
    Parameter("ModelPackageGroupName", "String", DEFAULT_GROUP, "model registry group to register into"),
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
        inputs=(ProcessingInput("raw", Param("InputData"), f"{PROCESSING}/raw"),),
        outputs=tuple(
            ProcessingOutput(name, f"{PROCESSING}/{name}")
            for name in ("train", "validation", "test", "schema", "baseline")
        ),
        arguments=(
            "--label-column", Param("LabelColumn"),
            "--feature-columns", Param("FeatureColumns"),
            "--class-names", Param("ClassNames"),
            "--validation-fraction", Param("ValidationFraction"),
            "--test-fraction", Param("TestFraction"),
            "--seed", Param("Seed"),
            "--parts", Param("TrainingInstanceCount"),
        ),
        retry=STEP_RETRY,
    )


def train_step() -> TrainingStep:
    return TrainingStep(
        name="Train",
        hyperparameters={hp: Param(name) for hp, (name, _) in HYPERPARAMETER_PARAMETERS.items()},
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
        ),
        outputs=(ProcessingOutput("evaluation", f"{PROCESSING}/evaluation"),),
        retry=STEP_RETRY,
    )


def build_pipeline() -> Pipeline:
    """The DAG: Preprocess -> Train -> Evaluate -> CheckAccuracy -> Register | AccuracyBelowThreshold."""
    accuracy = JsonGet("Evaluate", "evaluation", "evaluation.json", ACCURACY_PATH)
    return Pipeline(
        name=PIPELINE_NAME,
        description="Preprocess, train XGBoost, evaluate, gate on accuracy, register",
        parameters=PARAMETERS,
        steps=(
            preprocess_step(),
            train_step(),
            evaluate_step(),
            ConditionStep(
                name="CheckAccuracy",
                left=accuracy,
                comparison=">=",
                right=Param("AccuracyThreshold"),
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
                message=("Accuracy ", accuracy, " is below the threshold ", Param("AccuracyThreshold")),
            ),
        ),
    )
