"""``cloudviz.aws()`` on moto (in-process ``mock_aws``), every boto3 request validated against its service
model (tests/aws_stage.py's ``validated_requests``).

What moto cannot show, and how each test says so: moto executes no pipeline (an execution is ``Succeeded`` the
moment it starts, its parameters recorded, no job run), and has no ListPipelineExecutionSteps at all; that one
call is answered here with the steps a test sets for an execution, as SageMaker would report them once run
(:func:`execution_steps_set_by_the_test`; none by default). The deployed stages run on the fixtures of
tests/promotion_account.py (tests/moto_aws.py documents each gap they close).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from aws_stage import scheduled_rules_take_no_events, validated_requests  # noqa: F401  (fixtures)
from moto import mock_aws
from moto.sagemaker.responses import SageMakerResponse
from moto_aws import aws_in_process  # noqa: F401  (a fixture)
from moto_sagemaker import approve_and_announce
from promotion_account import BUCKET as STAGE_BUCKET
from promotion_account import account, register  # noqa: F401  (a fixture, and the pipeline's registration)
from sagemaker_definition import iris_version_parameters

import cloudviz
from cloudviz import AwsError, NotFoundError, Project, UserError
from deploy.aws.names import ResourceNames
from pipelines.definition import DEFAULT_GROUP
from pipelines.sagemaker import AWS_PARAMETERS

REGION = "us-east-1"
BUCKET = "cloudviz-api-aws"
ROLE = "arn:aws:iam::123456789012:role/CloudVizSageMaker"
GROUP = "CloudVizIris"
EVALUATION = {"multiclass_classification_metrics": {"accuracy": {"value": 0.96, "standard_deviation": "NaN"},
                                                    "weighted_f1": {"value": 0.95, "standard_deviation": "NaN"}}}
SEED = {"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5}

pytestmark = pytest.mark.filterwarnings("ignore:.*(not supported by moto|No Moto CloudFormation support).*")


def execution_steps_set_by_the_test(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[dict]]:
    """moto's missing ListPipelineExecutionSteps, answering the steps the test sets for an execution ARN."""
    steps: dict[str, list[dict]] = {}

    def list_pipeline_execution_steps(self: SageMakerResponse) -> str:
        return json.dumps({"PipelineExecutionSteps": steps.get(self._get_param("PipelineExecutionArn"), [])})

    monkeypatch.setattr(SageMakerResponse, "list_pipeline_execution_steps", list_pipeline_execution_steps,
                        raising=False)
    return steps


@pytest.fixture
def steps(home, validated_requests, monkeypatch) -> Iterator[dict[str, list[dict]]]:  # noqa: F811
    """A moto account with the artifact bucket; the steps moto reports for each execution (set them)."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "CLOUDVIZ_BUCKET", "CLOUDVIZ_SAGEMAKER_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    steps = execution_steps_set_by_the_test(monkeypatch)
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        boto3.client("sagemaker", region_name=REGION).create_model_package_group(ModelPackageGroupName=GROUP)
        yield steps


def project() -> Project:
    return cloudviz.aws(region=REGION, bucket=BUCKET, role_arn=ROLE)


def register_evaluated(run: str, accuracy: float = 0.96, execution_arn: str = "") -> str:
    """A version registered as the pipeline's Register step does: its model, its evaluation (ModelQuality
    statistics) and baseline statistics (ModelDataQuality) in S3, the execution that generated it."""
    s3 = boto3.client("s3", region_name=REGION)
    prefix = f"cloudviz/executions/{run}"
    evaluation = {"multiclass_classification_metrics": {
        **EVALUATION["multiclass_classification_metrics"], "accuracy": {"value": accuracy}}}
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/Evaluate/evaluation/evaluation.json",
                  Body=json.dumps(evaluation).encode())
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/Preprocess/baseline/statistics.json", Body=b"{}")
    return boto3.client("sagemaker", region_name=REGION).create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus="PendingManualApproval",
        ModelPackageDescription=f"trained by {run}",
        InferenceSpecification={"Containers": [{"Image": "xgboost", "ModelDataUrl": f"s3://{BUCKET}/{prefix}/Train/"
                                                "model.tar.gz"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        ModelMetrics={
            "ModelQuality": {"Statistics": {"ContentType": "application/json",
                                            "S3Uri": f"s3://{BUCKET}/{prefix}/Evaluate/evaluation/evaluation.json"}},
            "ModelDataQuality": {"Statistics": {"ContentType": "application/json",
                                                "S3Uri": f"s3://{BUCKET}/{prefix}/Preprocess/baseline/statistics.json"}},
        },
        **({"MetadataProperties": {"GeneratedBy": execution_arn}} if execution_arn else {}),
    )["ModelPackageArn"]


# --- the pipeline and its runs -----------------------------------------------------------------------------------

def test_parameters_are_the_dags_then_where_the_jobs_run(steps):
    parameters = project().pipeline.parameters()
    aws_only = [p.name for p in parameters if p.targets == ("aws",)]
    assert aws_only == [p.name for p in AWS_PARAMETERS]
    assert parameters[-len(aws_only):][0].default == AWS_PARAMETERS[0].default
    assert {"GateThreshold", "InputData", "Objective"} <= {p.name for p in parameters if p.targets == ("local", "aws")}


def test_start_upserts_the_pipeline_and_starts_an_execution_with_the_values_given(steps):
    """moto marks an execution Succeeded as it starts (it runs nothing): the run is read back as moto reports it,
    its parameters as SageMaker recorded them."""
    aws_project = project()
    assert aws_project.runs.list() == []
    with pytest.raises(NotFoundError, match="has no execution"):
        aws_project.runs.get()
    run = aws_project.pipeline.start({"AccuracyThreshold": 0.95, "TrainingInstanceType": "ml.m5.xlarge"})
    assert (run.target, run.status, run.steps, run.model) == ("aws", "Succeeded", [], None)
    assert run.id.startswith(f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/")
    assert run.parameters == {"GateThreshold": "0.95", "TrainingInstanceType": "ml.m5.xlarge",
                              **iris_version_parameters(BUCKET)}  # no data: the data set iris
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    stored = sagemaker.describe_pipeline(PipelineName="CloudVizPipeline")
    assert stored["RoleArn"] == ROLE
    keys = [item["Key"] for item in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    staged = {key.rsplit("/", 1)[1] for key in keys if "/datasets/" not in key}
    assert staged == {"preprocess.py", "evaluate.py", "iris.csv", "README.json"}  # README.json: no champion
    assert {key for key in keys if "/datasets/iris/versions/" in key} == {
        "cloudviz/datasets/iris/versions/1.json", iris_version_parameters(BUCKET)["InputData"].split("/", 3)[3]}
    # iris@1, made once

    own = f"s3://{BUCKET}/data/penguins.csv"
    with pytest.raises(UserError, match="parameter ModelPackageGroupName: name the model registry group"):
        aws_project.pipeline.start(data=own)
    second = aws_project.pipeline.start({"LabelColumn": "species", "ModelPackageGroupName": "Penguins"}, data=own)
    assert second.parameters == {"InputData": own, "LabelColumn": "species", "FeatureColumns": "", "ClassNames": "",
                                 "ModelPackageGroupName": "Penguins"}
    regression = aws_project.pipeline.start({"Objective": "reg:squarederror"})
    definition = json.loads(sagemaker.describe_pipeline(PipelineName="CloudVizPipeline")["PipelineDefinition"])
    (objective,) = [p for p in definition["Parameters"] if p["Name"] == "Objective"]
    assert objective["DefaultValue"] == "reg:squarederror"  # upserted for the Objective's family
    assert [r.id for r in aws_project.runs.list()] == [regression.id, second.id, run.id]
    assert aws_project.runs.list(limit=1)[0].id == regression.id
    assert aws_project.runs.get().id == regression.id and aws_project.runs.get(run.id).parameters == run.parameters

    for parameters, data, message in (({"Sed": 1}, None, "unknown parameter 'Sed'"),
                                      ({"AccuracyThreshold": "high"}, None, "parameter AccuracyThreshold: expected "
                                                                            "float"),
                                      ({"Objective": "multi:fast"}, None, "parameter Objective: 'multi:fast'"),
                                      (None, "data/own.csv", "data 'data/own.csv': on AWS, the s3:// URI")):
        with pytest.raises(UserError, match=message):
            aws_project.pipeline.start(parameters, data)
    with pytest.raises(UserError, match="use_cache=False"):
        aws_project.pipeline.start(use_cache=False)
    assert len(aws_project.runs.list()) == 3


def test_a_run_reports_its_steps_and_the_version_its_register_step_registered(steps):
    """The steps are those the test sets for the execution (moto has no ListPipelineExecutionSteps): the run
    reads the registered version's ARN from the RegisterModel step's metadata, and its metrics from that version's
    evaluation in S3."""
    aws_project = project()
    run = aws_project.pipeline.start()
    arn = register_evaluated("run1", execution_arn=run.id)
    steps[run.id] = [
        {"StepName": "Train", "StepStatus": "Succeeded", "Metadata": {"TrainingJob": {"Arn": "job"}}},
        {"StepName": "Register-RegisterModel", "StepStatus": "Succeeded",
         "Metadata": {"RegisterModel": {"Arn": arn}}},
    ]
    again = run.wait(timeout_seconds=1, poll_seconds=0)  # ended already: no wait
    assert again is run and run.steps == []
    run = aws_project.runs.get(run.id)
    assert [(step.name, step.status) for step in run.steps] == [("Train", "Succeeded"),
                                                                ("Register-RegisterModel", "Succeeded")]
    assert (run.model.group, run.model.version, run.model.arn) == (GROUP, 1, arn)
    assert run.metrics == {"accuracy": 0.96, "weighted_f1": 0.95}
    assert aws_project.models.get(GROUP, 1).run_id == run.id


def test_an_aws_refusal_is_an_aws_error_with_awss_message(steps):
    aws_project = cloudviz.aws(region=REGION, bucket="no-such-bucket", role_arn=ROLE)
    with pytest.raises(AwsError, match="NoSuchBucket"):
        aws_project.pipeline.start()
    with pytest.raises(UserError, match="role_arn must be an IAM role ARN"):
        cloudviz.aws(region=REGION, bucket=BUCKET, role_arn="admin").pipeline.start()
    with pytest.raises(UserError, match=r"bucket: give cloudviz.aws\(bucket=...\)"):
        cloudviz.aws(region=REGION, role_arn=ROLE).pipeline.start()


# --- the model registry ------------------------------------------------------------------------------------------

def test_models_list_get_approve_and_reject_in_the_model_registry(steps):
    v1, v2, v3 = (register_evaluated(f"run{n}", accuracy=0.9 + n / 100) for n in (1, 2, 3))
    models = project().models
    listed = models.list()
    assert [(m.group, m.version, m.arn, m.approval_status) for m in listed] == [
        (GROUP, 3, v3, "PendingManualApproval"), (GROUP, 2, v2, "PendingManualApproval"),
        (GROUP, 1, v1, "PendingManualApproval")]
    latest = models.get(GROUP)
    assert latest == listed[0] and latest.target == "aws" and latest.description == "trained by run3"
    assert latest.evaluation["multiclass_classification_metrics"]["accuracy"] == {"value": 0.93}
    assert latest.artifacts == {
        "model": f"s3://{BUCKET}/cloudviz/executions/run3/Train/model.tar.gz",
        "evaluation": f"s3://{BUCKET}/cloudviz/executions/run3/Evaluate/evaluation/evaluation.json",
        "baseline_statistics": f"s3://{BUCKET}/cloudviz/executions/run3/Preprocess/baseline/statistics.json"}
    assert models.get(GROUP, "2").arn == v2

    approved = models.approve(GROUP, 2, reason="best on the holdout")
    assert (approved.approval_status, approved.status_reason) == ("Approved", "best on the holdout")
    assert models.reject(GROUP).approval_status == "Rejected"
    assert models.set_approval(GROUP, 1, "approved").approval_status == "Approved"
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert sagemaker.describe_model_package(ModelPackageName=v3)["ModelApprovalStatus"] == "Rejected"
    assert [m.version for m in models.list(status="APPROVED")] == [2, 1]
    assert [m.version for m in models.list(GROUP, "Rejected")] == [3]

    with pytest.raises(NotFoundError, match="CloudVizIris has no version 9"):
        models.get(GROUP, 9)
    with pytest.raises(NotFoundError, match="group 'Penguins' has no model package"):
        models.get("Penguins")
    with pytest.raises(UserError, match="status 'Shipped': expected one of PendingManualApproval, Approved"):
        models.set_approval(GROUP, 1, "Shipped")
    with pytest.raises(UserError, match="version 'newest': expected a version number or 'latest'"):
        models.get(GROUP, "newest")


# --- the stages --------------------------------------------------------------------------------------------------

def opener_through_urlopen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The prediction API client opens its requests with its own ``OpenerDirector`` (no proxy): they go through
    ``urlopen``, which the account fixture sends through ``requests`` (moto intercepts those only)."""
    monkeypatch.setattr(urllib.request.OpenerDirector, "open",
                        lambda self, request, data=None, timeout=None: urllib.request.urlopen(request, timeout=timeout))


def test_deploy_dev_serve_predict_and_promote_to_prod(account, monkeypatch):  # noqa: F811
    """Through the change-set deployer and the stage router of tests/promotion_account.py's account fixture: the
    Lambda functions run from their zips, the endpoint answers with the registered model."""
    opener_through_urlopen(monkeypatch)
    aws_project = cloudviz.aws(region=REGION, bucket=STAGE_BUCKET)
    assert aws_project.deployments() == []
    with pytest.raises(NotFoundError, match="dev is not deployed"):
        aws_project.api(DEFAULT_GROUP)
    v1 = register("run1")
    approve_and_announce(v1)
    with pytest.raises(UserError, match="version 2: on AWS dev serves version 1 of CloudVizIris"):
        aws_project.deploy(DEFAULT_GROUP, version=2)
    with pytest.raises(UserError, match="no Approved model package in group 'Penguins'"):  # its own stacks' to serve
        aws_project.deploy("Penguins")

    dev = aws_project.deploy(DEFAULT_GROUP)
    names = ResourceNames("dev")
    assert (dev.stage, dev.version, dev.endpoint, dev.target) == ("dev", 1, names.endpoint_name, "aws")
    assert [stack["status"] for stack in dev.details["stacks"]] == ["created"] * 4
    assert dev.details["smoke_test"]["passed"] and dev.api_url.endswith("/dev")
    (listed,) = aws_project.deployments()
    assert (listed.stage, listed.version, listed.api_url) == ("dev", 1, dev.api_url)
    assert listed.details["model_package_arn"] == v1

    with aws_project.serve(DEFAULT_GROUP) as serving:
        answer = serving.api.predict(SEED)
    assert answer["model_version"] == 1 and answer["label"] == "virginica"
    assert aws_project.api(DEFAULT_GROUP).prediction(answer["id"])["features"] == SEED
    assert aws_project.predict([SEED, SEED], DEFAULT_GROUP)[1]["label"] == "virginica"

    promotion = aws_project.promote(DEFAULT_GROUP, "dev", "prod")
    assert (promotion.source, promotion.target_stage, promotion.promoted) == ("dev", "prod", True)
    assert promotion.smoke_test["passed"] and promotion.deployment.version == 1
    assert promotion.deployment.details["promoted_at"]
    assert [(d.stage, d.version) for d in aws_project.deployments()] == [("dev", 1), ("prod", 1)]
    assert [d.stage for d in aws_project.deployments(stage="prod")] == ["prod"]
    assert aws_project.deployments(group="Penguins") == []
    assert aws_project.predict(SEED, DEFAULT_GROUP, "prod")["model_version"] == 1


def test_start_on_a_data_set_version_sends_its_manifest_and_its_parameters(steps):
    """``dataset=`` is resolved in the bucket (the bundled iris data's version 1 made there when first named)
    before anything is upserted or started."""
    aws_project = project()
    with pytest.raises(NotFoundError, match="parameter DataSetVersion: data set 'churn': no such data set"):
        aws_project.pipeline.start(dataset="churn")
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert sagemaker.list_pipelines()["PipelineSummaries"] == []
    run = aws_project.pipeline.start(dataset="iris")
    assert run.parameters == {
        "DataSetVersion": "iris@1", "InputData": iris_version_parameters(BUCKET)["InputData"],
        "InputDataType": "ManifestFile", "LabelColumn": "species", "FeatureColumns": "x1,x2,x3,x4",
        "ClassNames": "setosa,virginica,versicolor", "ModelPackageGroupName": GROUP}
