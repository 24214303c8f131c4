"""The endpoint stack: the approved model package served by a SageMaker real-time endpoint with data capture.

Model -> EndpointConfig (one variant, tagged with the version and the schema it serves) -> Endpoint, blue/green in prod.
"""

from __future__ import annotations

from deploy.aws.names import MODEL_VERSION_TAG, PRODUCTION_VARIANT, ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.templates.common import arn, get_att, output, ref, role, stack_tags, statement, sub, template
from deploy.monitoring.alarm_rules import ALARM_RULES, AlarmRule
from pipelines.dag import TrainingStep
from pipelines.definition import build_pipeline
from pipelines.sagemaker.compiler import AwsTarget
from serving_lambdas.served_version import DATA_SCHEMA_TAG

SAGEMAKER_NAMESPACE = "AWS/SageMaker"
XGBOOST_REPOSITORY = "sagemaker-xgboost"  # the built-in algorithm's image repository (an AWS-owned account)
INSTANCE_TYPES = {"dev": "ml.t2.medium", "prod": "ml.m5.large"}
INSTANCE_COUNTS = {"dev": 1, "prod": 2}
# The S3 keys of the models the pipeline trains: its Train step's output path is
# <prefix>/executions/<execution id>/<step>, below which SageMaker writes <training job>/output/model.tar.gz.
(TRAIN_STEP,) = (step.name for step in build_pipeline().steps if isinstance(step, TrainingStep))
MODEL_ARTIFACT_KEYS = f"{AwsTarget.prefix}/executions/*/{TRAIN_STEP}/*/output/model.tar.gz"
BAKE_SECONDS = 600  # how long the new fleet serves all traffic, watched by the alarms, before the old one goes
TERMINATION_WAIT_SECONDS = 300
MAX_DEPLOYMENT_SECONDS = 3600


def endpoint_rules() -> tuple[AlarmRule, ...]:
    """The shared alarm rules about the SageMaker endpoint: they live in this stack (rollback watches them)."""
    return tuple(rule for rule in ALARM_RULES if rule.namespace == SAGEMAKER_NAMESPACE)


def alarm_logical_id(rule: AlarmRule) -> str:
    words = rule.name.removeprefix("cloudviz-").replace("5xx", "5XX").split("-")
    return "".join(word[:1].upper() + word[1:] for word in words) + "Alarm"


def topic_arn(names: ResourceNames) -> dict:
    """The monitoring stack's SNS topic, by name (that stack is deployed after this one)."""
    return arn("sns", names.topic_name)


def role_arn(role_name: str) -> dict:
    return arn("iam", f"role/{role_name}", region=False)


def _alarm(rule: AlarmRule, names: ResourceNames) -> dict:
    properties = rule.cloudwatch_properties({"EndpointName": names.endpoint_name,
                                             "VariantName": PRODUCTION_VARIANT})
    properties["AlarmName"] = names.alarm_name(rule.name)
    properties["AlarmActions"] = [topic_arn(names)]
    properties["OKActions"] = [topic_arn(names)]
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": properties}


def _model_role(names: ResourceNames) -> dict:
    """The model's execution role. It reads trained models only (MODEL_ARTIFACT_KEYS), not the one the stack
    serves: a policy naming the served artifact would change with every version, and the redeploy function's
    CloudFormation role may not rewrite policies (that would let it grant itself anything)."""
    capture_bucket = {"Fn::Select": [2, {"Fn::Split": ["/", ref("DataCaptureS3Uri")]}]}  # s3://BUCKET/prefix
    endpoint_logs = f"/aws/sagemaker/Endpoints/{names.endpoint_name}"
    return role(
        names.model_role_name, "sagemaker.amazonaws.com", "serve-model",
        [
            statement(["s3:GetObject"], [sub(f"arn:${{AWS::Partition}}:s3:::${{ModelArtifactBucket}}/"
                                             f"{MODEL_ARTIFACT_KEYS}")], "ReadModelArtifacts"),
            statement(["s3:PutObject"], [sub(["arn:${AWS::Partition}:s3:::${Bucket}/*", {"Bucket": capture_bucket}])],
                      "WriteDataCapture"),
            # GetAuthorizationToken has no resource type: IAM accepts only "*" for it.
            statement(["ecr:GetAuthorizationToken"], ["*"], "EcrLogin"),
            statement(["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                      [sub(f"arn:${{AWS::Partition}}:ecr:${{AWS::Region}}:*:repository/{XGBOOST_REPOSITORY}")],
                      "PullXgboostImage"),
            statement(["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                      [arn("logs", f"log-group:{endpoint_logs}:*")], "EndpointLogs"),
        ],
        "SageMaker execution role of the CloudViz model: reads its artifact, pulls its image, writes captures",
    )


def endpoint_template(names: ResourceNames, settings: AwsSettings) -> dict:
    """The endpoint stack's template. The Model and EndpointConfig keep CloudFormation-generated names: a new
    package or instance type replaces them, and the named Endpoint is updated in place to the new config."""
    prod = names.stage == "prod"
    package_parameter: dict = {
        "Type": "String",
        "AllowedPattern": r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:model-package/.+",
        "Description": f"ARN of the Approved model package (group {names.model_package_group}) to serve",
    }
    if settings.model_package_arn:
        package_parameter["Default"] = settings.model_package_arn
    parameters = {
        "ModelPackageArn": package_parameter,
        "ModelVersion": {"Type": "Number", "MinValue": 1, "Default": settings.model_version,
                         "Description": f"the package's version: the endpoint configuration's {MODEL_VERSION_TAG} tag"},
        "DataSchemaUri": {"Type": "String", "Default": settings.data_schema_uri, "AllowedPattern": "(s3://.+)?",
                          "Description": f"the package's registered data schema (its DataSchema metadata), the "
                                         f"endpoint configuration's {DATA_SCHEMA_TAG} tag; empty: none"},
        "InstanceType": {"Type": "String", "Default": INSTANCE_TYPES[names.stage],
                         "AllowedPattern": r"ml\.(?!inf1\.).+",
                         "Description": "instance type of the endpoint (not Inf1: no deployment guardrails there)"},
        "InstanceCount": {"Type": "Number", "Default": INSTANCE_COUNTS[names.stage], "MinValue": 1,
                          "Description": "instances behind the endpoint"},
        "DataCaptureS3Uri": {"Type": "String", "AllowedPattern": "s3://[a-z0-9.-]+(/.*)?",
                             "Default": f"s3://{settings.artifact_bucket}/cloudviz/data-capture/{names.stage}",
                             "Description": "where the endpoint captures its requests and responses"},
        "ModelArtifactBucket": {"Type": "String", "Default": settings.artifact_bucket,
                                "Description": "the bucket holding the pipeline's model artifacts"},
    }
    tags = [{"Key": key, "Value": value} for key, value in stack_tags(names).items()]
    endpoint_properties: dict = {
        "EndpointName": names.endpoint_name,
        "EndpointConfigName": get_att("EndpointConfig", "EndpointConfigName"),
        "Tags": tags,
    }
    alarm_ids = {rule: alarm_logical_id(rule) for rule in endpoint_rules()}
    if prod:
        endpoint_properties["DeploymentConfig"] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": BAKE_SECONDS},
                "TerminationWaitInSeconds": TERMINATION_WAIT_SECONDS,
                "MaximumExecutionTimeoutInSeconds": MAX_DEPLOYMENT_SECONDS,
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": ref(alarm_id)} for alarm_id in alarm_ids.values()]},
        }
    resources: dict[str, dict] = {
        "ModelExecutionRole": _model_role(names),
        "Model": {
            "Type": "AWS::SageMaker::Model",
            "Properties": {
                "ExecutionRoleArn": get_att("ModelExecutionRole", "Arn"),
                # One container, so PrimaryContainer (the same as a one-item Containers; moto knows only this one).
                "PrimaryContainer": {"ModelPackageName": ref("ModelPackageArn")},
                # The built-in XGBoost container needs no network to serve: SageMaker itself fetches the artifact
                # and captures data, so the container gets none.
                "EnableNetworkIsolation": True,
                "Tags": tags,
            },
        },
        "EndpointConfig": {
            "Type": "AWS::SageMaker::EndpointConfig",
            "Properties": {
                "ProductionVariants": [{
                    "VariantName": PRODUCTION_VARIANT,
                    "ModelName": get_att("Model", "ModelName"),
                    "InstanceType": ref("InstanceType"),
                    "InitialInstanceCount": ref("InstanceCount"),
                    "InitialVariantWeight": 1.0,
                }],
                "DataCaptureConfig": {
                    "EnableCapture": True,
                    "InitialSamplingPercentage": 100,
                    "DestinationS3Uri": ref("DataCaptureS3Uri"),
                    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                    "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"],
                                                 "JsonContentTypes": ["application/json"]},
                },
                # What the inference function records as each prediction's model version, and the schema GET /model
                # describes the model from.
                "Tags": [*tags, {"Key": MODEL_VERSION_TAG, "Value": ref("ModelVersion")},
                         {"Key": DATA_SCHEMA_TAG, "Value": ref("DataSchemaUri")}],
            },
        },
        **{alarm_id: _alarm(rule, names) for rule, alarm_id in alarm_ids.items()},
        "Endpoint": {"Type": "AWS::SageMaker::Endpoint", "Properties": endpoint_properties},
    }
    if not prod:  # in prod the rollback configuration's Refs already order them
        # The alarms exist (and watch the variant) before the endpoint serves.
        resources["Endpoint"]["DependsOn"] = list(alarm_ids.values())
    outputs = {
        "EndpointName": output(get_att("Endpoint", "EndpointName"), "the SageMaker endpoint"),
        "ModelVersion": output(ref("ModelVersion"), "the served model package version"),
        "ModelPackageArn": output(ref("ModelPackageArn"), "the served model package"),
        "VariantName": output(PRODUCTION_VARIANT, "the production variant (the same on every version)"),
    }
    kind = "blue/green with automatic rollback" if prod else "in-place updates"
    return template(f"CloudViz {names.stage}: SageMaker endpoint of the approved model ({kind})", parameters,
                    resources, outputs)
