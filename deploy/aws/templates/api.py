"""The API stack: the two serving Lambdas, the REST API in front of them, its key and usage plan, and the
DynamoDB prediction table, with one least-privilege role per function.

Routes: POST /predictions, GET /model (the live model's description, read from the data schema the served
endpoint configuration names) and POST /predictions/{id}/feedback (a true label: the function knows the model's
classes) to the inference function; GET /predictions and /predictions/{id} to the retrieve function."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

from deploy.aws.lambda_zip import INFERENCE_HANDLER, RETRIEVE_HANDLER
from deploy.aws.names import ResourceNames
from deploy.aws.templates.common import (
    LambdaSpec,
    arn,
    checkov_skip,
    function_runtime,
    get_att,
    lambda_function,
    log_group,
    output,
    ref,
    retention_parameter,
    role,
    statement,
    sub,
    template,
)
from deploy.gateway.policy import ALLOW_HEADERS, EXPOSE_HEADERS, PREFLIGHT_MAX_AGE_SECONDS, checked_origins
from pipelines.dag import RegisterModelStep
from pipelines.datasets import IRIS_FEATURE_DESCRIPTIONS, IRIS_PARAMETERS
from pipelines.definition import build_pipeline
from pipelines.sagemaker.compiler import AwsTarget
from serving_lambdas.config import DEFAULT_MAX_BATCH_ROWS, MAX_RETENTION_DAYS, TASKS
from serving_lambdas.responses import CORS_VARIABLE
from serving_lambdas.served_version import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS
from serving_lambdas.store.dynamodb import (
    ATTRIBUTE_DEFINITIONS,
    BILLING_MODE,
    DEFAULT_RETENTION_DAYS,
    KEY_SCHEMA,
    TTL_ATTRIBUTE,
)

FEATURE_NAMES = IRIS_PARAMETERS["FeatureColumns"]  # the stack's defaults serve the bundled data's model
CLASS_NAMES = IRIS_PARAMETERS["ClassNames"]
FEATURE_ALIASES = ",".join(f"{alias}={name}" for name, alias in IRIS_FEATURE_DESCRIPTIONS.items())
NAMES_PATTERN = r"[^,\s]+(,[^,\s]+)*"  # comma-separated names, none empty
DEFAULT_TASK = "multiclass"  # what a version registered before tasks were recorded is
FUNCTION_TIMEOUT_SECONDS = 25  # under API Gateway's 29 s integration timeout: the function answers, not the gateway
FUNCTION_MEMORY_MB = 256
# The S3 keys of the data schemas the pipeline registers (a Processing output lands at
# <prefix>/executions/<execution id>/<step>/<output>): GET /model reads the served version's.
(_SCHEMA,) = (step.data for step in build_pipeline().steps if isinstance(step, RegisterModelStep))
DATA_SCHEMA_KEYS = f"{AwsTarget.prefix}/executions/*/{_SCHEMA.step}/{_SCHEMA.output}/schema.json"

# (logical id of the method, HTTP method, resource logical id, function logical id)
ROUTES = (
    ("PostPredictionsMethod", "POST", "PredictionsResource", "InferenceFunction"),
    ("GetPredictionsMethod", "GET", "PredictionsResource", "RetrieveFunction"),
    ("GetPredictionMethod", "GET", "PredictionIdResource", "RetrieveFunction"),
    ("GetModelMethod", "GET", "ModelResource", "InferenceFunction"),
    ("PostFeedbackMethod", "POST", "FeedbackResource", "InferenceFunction"),
)
RESOURCE_PATHS = {"PredictionsResource": "predictions", "PredictionIdResource": "predictions/{id}",
                  "ModelResource": "model", "FeedbackResource": "predictions/{id}/feedback"}
# One JSON line per request in the stage's access log: who called (source IP, IAM caller, API key id), what, when,
# the answer, and API Gateway's own request id (the functions log it too) to join the two.
ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId", "ip": "$context.identity.sourceIp", "caller": "$context.identity.caller",
    "user": "$context.identity.user", "apiKeyId": "$context.identity.apiKeyId",
    "requestTime": "$context.requestTime", "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath", "status": "$context.status", "protocol": "$context.protocol",
    "responseLength": "$context.responseLength", "responseLatency": "$context.responseLatency",
    "integrationError": "$context.integration.error",
}, separators=(",", ":"))
ACCESS_LOGS_KEY = ("encrypted at rest by CloudWatch Logs' own keys; it holds request metadata (source IPs, key ids; "
                   "no bodies, no key values) for LogRetentionDays, readable only by principals granted logs reads")
STAGE_SKIPS = (
    ("CKV_AWS_120", "answers are per request (POST) or must show the newest predictions (GET): a cache would serve "
                    "stale pages, and costs by the hour"),
)
UNRESERVED_SKIP = ("CKV_AWS_115", "api_reserved_concurrency = 0 for this stage (dev's default): a new account's "
                                  "Lambda quota (10) has nothing to reserve; the usage plan's throttle bounds calls")
API_FUNCTION_SKIPS = (
    ("CKV_AWS_116", "invoked synchronously by API Gateway, which answers the caller: a dead-letter queue only "
                    "receives failed asynchronous invocations"),
    ("CKV_AWS_117", "calls only AWS APIs (SageMaker Runtime, DynamoDB) over their public endpoints: no VPC "
                    "resource to reach, and a VPC would need NAT or interface endpoints"),
    ("CKV_AWS_173", "its environment holds names and settings, no secret: Lambda's default encryption at rest"),
)


def _function(name: str, handler: str, role_id: str, log_group_id: str, environment: dict, description: str,
              origins: tuple[str, ...], reserved_concurrency: int) -> dict:
    # The handlers answer CORS themselves: API Gateway passes a proxy response through unchanged.
    return checkov_skip(lambda_function(LambdaSpec(
        name, handler, description, role_id, log_group_id,
        {**environment, CORS_VARIABLE: ",".join(origins)}, FUNCTION_TIMEOUT_SECONDS, FUNCTION_MEMORY_MB,
        reserved_concurrency,
    )), *API_FUNCTION_SKIPS, *(() if reserved_concurrency else (UNRESERVED_SKIP,)))


def _proxy_method(http_method: str, resource_id: str, function_id: str) -> dict:
    properties = {
        "RestApiId": ref("RestApi"),
        "ResourceId": ref(resource_id),
        "HttpMethod": http_method,
        "AuthorizationType": "NONE",
        "ApiKeyRequired": True,
        "Integration": {
            "Type": "AWS_PROXY",
            "IntegrationHttpMethod": "POST",
            "Uri": sub(
                "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/"
                f"${{{function_id}.Arn}}/invocations"
            ),
        },
    }
    if "{id}" in RESOURCE_PATHS[resource_id]:
        properties["RequestParameters"] = {"method.request.path.id": True}
    return {"Type": "AWS::ApiGateway::Method", "Properties": properties}


def _references(value: object) -> set[str]:
    """The names a piece of template refers to: its Refs and the ``${...}`` of its Fn::Subs."""
    text = json.dumps(value)
    return set(re.findall(r'"Ref": "([\w:]+)"', text)) | set(re.findall(r"\$\{([\w:]+)", text))


def _quoted(value: str) -> str:
    """A static header value in API Gateway's mapping syntax (single-quoted)."""
    return f"'{value}'"


def _preflight_template(origins: tuple[str, ...]) -> str:
    """The MOCK's response template: the request's Origin echoed when listed, else 403 (as the local gateway)."""
    listed = " || ".join(f'$origin == "{origin}"' for origin in origins)
    return ('#set($origin = $input.params("Origin"))\n'
            '#if($origin == "")#set($origin = $input.params("origin"))#end\n'
            f"#if({listed})\n#set($context.responseOverride.header.Access-Control-Allow-Origin = $origin)\n"
            "#else\n#set($context.responseOverride.status = 403)\n#end\n")


def _preflight_method(resource_id: str, methods: list[str], origins: tuple[str, ...]) -> dict:
    """OPTIONS answered by API Gateway itself (a MOCK integration), without a key, to the stage's origins only."""
    headers = {
        "Access-Control-Allow-Methods": _quoted(",".join(sorted({*methods, "OPTIONS"}))),
        "Access-Control-Allow-Headers": _quoted(ALLOW_HEADERS),
        "Access-Control-Max-Age": _quoted(PREFLIGHT_MAX_AGE_SECONDS),
        "Vary": _quoted("Origin"),
    }
    return {
        "Type": "AWS::ApiGateway::Method",
        "Properties": {
            "RestApiId": ref("RestApi"),
            "ResourceId": ref(resource_id),
            "HttpMethod": "OPTIONS",
            "AuthorizationType": "NONE",
            "ApiKeyRequired": False,
            "Integration": {
                "Type": "MOCK",
                "RequestTemplates": {"application/json": '{"statusCode": 200}'},
                "IntegrationResponses": [{
                    "StatusCode": "200",
                    "ResponseParameters": {f"method.response.header.{name}": value for name, value in headers.items()},
                    "ResponseTemplates": {"application/json": _preflight_template(origins)},
                }],
            },
            "MethodResponses": [{
                "StatusCode": "200",
                "ResponseParameters": {f"method.response.header.{name}": False
                                       for name in ("Access-Control-Allow-Origin", *headers)},
                "ResponseModels": {"application/json": "Empty"},
            }],
        },
    }


def _gateway_response(response_type: str, origins: tuple[str, ...]) -> dict:
    """CORS headers on API Gateway's own errors too (a missing key's 403, throttling's 429), so a browser page
    can read the message: only with exactly one origin, since a gateway response cannot choose among several."""
    properties: dict = {"RestApiId": ref("RestApi"), "ResponseType": response_type}
    if len(origins) == 1:
        properties["ResponseParameters"] = {
            "gatewayresponse.header.Access-Control-Allow-Origin": _quoted(origins[0]),
            "gatewayresponse.header.Access-Control-Expose-Headers": _quoted(EXPOSE_HEADERS),
        }
    return {"Type": "AWS::ApiGateway::GatewayResponse", "Properties": properties}


def _permission(function_id: str, http_method: str, path: str) -> dict:
    """API Gateway may invoke the function, from this API's route only (any stage)."""
    return {
        "Type": "AWS::Lambda::Permission",
        "Properties": {
            "Action": "lambda:InvokeFunction",
            "FunctionName": ref(function_id),
            "Principal": "apigateway.amazonaws.com",
            "SourceAccount": ref("AWS::AccountId"),
            "SourceArn": arn("execute-api", f"${{RestApi}}/*/{http_method}/{path}"),
        },
    }


def table_retained(names: ResourceNames) -> bool:
    """Whether the stage's prediction table outlives its stack (prod's: its predictions are the record of what was
    served), so that deploying the stage again after a destroy needs that table name free."""
    return names.stage == "prod"


def api_parameters() -> dict[str, dict]:
    """The API stack's parameters: the code's location, throttling, limits, retention and the served model's
    schema."""
    return {
        "CodeBucket": {"Type": "String", "Description": "S3 bucket holding the serving Lambdas' zip"},
        "CodeKey": {"Type": "String", "Description": "S3 key of the serving Lambdas' zip (serving_lambdas-*.zip)"},
        "ArtifactBucket": {"Type": "String", "Description": "the bucket holding the pipeline's artifacts, whose data "
                                                            "schemas GET /model reads"},
        "ThrottleRateLimit": {"Type": "Number", "Default": 10, "MinValue": 1,
                              "Description": "usage plan: steady-state requests per second per API key"},
        "ThrottleBurstLimit": {"Type": "Number", "Default": 20, "MinValue": 1,
                               "Description": "usage plan: burst of requests per API key"},
        "MaxBatchRows": {"Type": "Number", "Default": DEFAULT_MAX_BATCH_ROWS, "MinValue": 1, "MaxValue": 100,
                         "Description": "most rows one POST /predictions may carry (a batch is one DynamoDB "
                                        "transaction: at most 100 items)"},
        "ModelVersionTtlSeconds": {"Type": "Number", "Default": DEFAULT_TTL_SECONDS, "MinValue": 0,
                                   "MaxValue": MAX_TTL_SECONDS,
                                   "Description": "how long the inference function trusts the model version it "
                                                  "read from the endpoint before reading it again"},
        "PredictionRetentionDays": {"Type": "Number", "Default": DEFAULT_RETENTION_DAYS, "MinValue": 1,
                                    "MaxValue": MAX_RETENTION_DAYS,
                                    "Description": "days a stored prediction is kept (DynamoDB's TTL deletes it)"},
        "LogRetentionDays": retention_parameter(),
        # The served model's, from its registered data schema (`cloudviz deploy aws` fills them in): what API
        # consumers send and get back, so the redeploy function refuses a version that changes them.
        "FeatureNames": {"Type": "String", "Default": FEATURE_NAMES, "AllowedPattern": NAMES_PATTERN,
                         "Description": "the model's features, in model order (comma-separated)"},
        "ClassNames": {"Type": "String", "Default": CLASS_NAMES, "AllowedPattern": f"({NAMES_PATTERN})?",
                       "Description": "the model's classes, by class index (comma-separated); empty for "
                                      "regression"},
        "ModelTask": {"Type": "String", "Default": DEFAULT_TASK, "AllowedValues": list(TASKS),
                      "Description": "what the endpoint's score means: a class (multiclass, binary) or a value "
                                     "(regression)"},
    }


def table_resources(names: ResourceNames) -> dict[str, dict]:
    """The DynamoDB prediction table."""
    return {"PredictionTable": checkov_skip({
        "Type": "AWS::DynamoDB::Table",
        # dev: deleted with the stack (`cloudviz destroy aws` removes everything it created). prod: kept when
        # the stack is deleted or the table replaced: its predictions are the record of what was served.
        "DeletionPolicy": "Retain" if table_retained(names) else "Delete",
        "UpdateReplacePolicy": "Retain" if table_retained(names) else "Delete",
        "Properties": {
            "TableName": names.table_name,
            "KeySchema": KEY_SCHEMA,
            "AttributeDefinitions": ATTRIBUTE_DEFINITIONS,
            "BillingMode": BILLING_MODE,
            "SSESpecification": {"SSEEnabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            # Every item carries its expiry (PredictionRetentionDays after it was made); DynamoDB deletes it.
            "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
        },
    }, ("CKV_AWS_119", "encrypted at rest with the AWS managed key (SSEEnabled); a customer managed key adds a "
                       "key policy and per-request KMS cost, and no consumer needs key-level control"))}


def function_resources(names: ResourceNames, origins: tuple[str, ...], reserved_concurrency: int = 0
                       ) -> dict[str, dict]:
    """The inference and retrieve functions, each with its log group and least-privilege role, and each with
    ``reserved_concurrency`` (0: none) of the account's Lambda concurrency, which is also its ceiling."""
    inference_environment = {
        "ENDPOINT_NAME": names.endpoint_name,
        "PREDICTION_STORE": sub("dynamodb:${PredictionTable}"),
        "FEATURE_NAMES": ref("FeatureNames"),
        "FEATURE_ALIASES": {"Fn::If": ["IrisFeatures", FEATURE_ALIASES, ""]},  # the seed's names, for its features
        "CLASS_NAMES": ref("ClassNames"),
        "MODEL_TASK": ref("ModelTask"),
        "MAX_BATCH_ROWS": ref("MaxBatchRows"),
        "MODEL_VERSION_TTL_SECONDS": ref("ModelVersionTtlSeconds"),
        "PREDICTION_RETENTION_DAYS": ref("PredictionRetentionDays"),
    }
    table_arn = get_att("PredictionTable", "Arn")
    endpoint_arn = arn("sagemaker", f"endpoint/{names.endpoint_name}")
    return {
        "InferenceLogGroup": log_group(names.inference_log_group, ref("LogRetentionDays")),
        "RetrieveLogGroup": log_group(names.retrieve_log_group, ref("LogRetentionDays")),
        "InferenceRole": role(
            names.inference_role_name, "lambda.amazonaws.com", "invoke-endpoint-store-predictions",
            [
                statement(["sagemaker:InvokeEndpoint"], [endpoint_arn], "InvokeTheEndpoint"),
                # Which model version it serves (serving_lambdas/served_version.py): the endpoint's configuration
                # and that configuration's tags. Configurations get CloudFormation-generated names, known only
                # after they exist, hence endpoint-config/* (read-only calls on this account and region's).
                statement(["sagemaker:DescribeEndpoint"], [endpoint_arn], "DescribeTheEndpoint"),
                statement(["sagemaker:DescribeEndpointConfig", "sagemaker:ListTags"],
                          [arn("sagemaker", "endpoint-config/*")], "ReadServedModelVersion"),
                # GET /model: the served version's data schema, which the configuration's tag names. Any version's
                # (the pipeline's schema keys), so that a new version changes a tag, never this policy.
                statement(["s3:GetObject"], [sub(f"arn:${{AWS::Partition}}:s3:::${{ArtifactBucket}}/"
                                                 f"{DATA_SCHEMA_KEYS}")], "ReadDataSchemas"),
                # PutItem also authorizes the Puts of a TransactWriteItems batch, and an Idempotency-Key's claim.
                statement(["dynamodb:PutItem"], [table_arn], "StorePredictions"),
                # POST /predictions/{id}/feedback: one conditional UpdateItem of a stored prediction; and an
                # Idempotency-Key's answer (an Update in the predictions' transaction) or release.
                statement(["dynamodb:UpdateItem"], [table_arn], "RecordFeedback"),
                *function_runtime(names.inference_log_group),
            ],
            "POST /predictions: invokes the stage's endpoint and stores predictions; GET /model: describes it; "
            "POST /predictions/{id}/feedback: records a true label",
        ),
        "RetrieveRole": role(
            names.retrieve_role_name, "lambda.amazonaws.com", "read-predictions",
            [
                statement(["dynamodb:GetItem", "dynamodb:Query"], [table_arn], "ReadPredictions"),
                *function_runtime(names.retrieve_log_group),
            ],
            "GET /predictions: reads stored predictions",
        ),
        "InferenceFunction": _function(
            names.inference_function, INFERENCE_HANDLER, "InferenceRole", "InferenceLogGroup",
            inference_environment,
            "POST /predictions: validate, invoke the endpoint, store, answer; GET /model; POST .../feedback",
            origins, reserved_concurrency,
        ),
        "RetrieveFunction": _function(
            names.retrieve_function, RETRIEVE_HANDLER, "RetrieveRole", "RetrieveLogGroup",
            {"PREDICTION_STORE": sub("dynamodb:${PredictionTable}")},
            "GET /predictions and GET /predictions/{id}: stored predictions, newest first", origins,
            reserved_concurrency,
        ),
    }


def rest_api_resources(names: ResourceNames, origins: tuple[str, ...]) -> dict[str, dict]:
    """The REST API, its resources (paths) and its CORS-enabled gateway error responses."""
    return {
        "RestApi": {
            "Type": "AWS::ApiGateway::RestApi",
            "Properties": {
                "Name": names.api_name,
                "Description": "CloudViz prediction API",
                "ApiKeySourceType": "HEADER",
                "EndpointConfiguration": {"Types": ["REGIONAL"]},
            },
        },
        "PredictionsResource": {
            "Type": "AWS::ApiGateway::Resource",
            "Properties": {"RestApiId": ref("RestApi"), "ParentId": get_att("RestApi", "RootResourceId"),
                           "PathPart": "predictions"},
        },
        "PredictionIdResource": {
            "Type": "AWS::ApiGateway::Resource",
            "Properties": {"RestApiId": ref("RestApi"), "ParentId": ref("PredictionsResource"), "PathPart": "{id}"},
        },
        "FeedbackResource": {
            "Type": "AWS::ApiGateway::Resource",
            "Properties": {"RestApiId": ref("RestApi"), "ParentId": ref("PredictionIdResource"),
                           "PathPart": "feedback"},
        },
        "ModelResource": {
            "Type": "AWS::ApiGateway::Resource",
            "Properties": {"RestApiId": ref("RestApi"), "ParentId": get_att("RestApi", "RootResourceId"),
                           "PathPart": "model"},
        },
        "Default4xxResponse": _gateway_response("DEFAULT_4XX", origins),
        "Default5xxResponse": _gateway_response("DEFAULT_5XX", origins),
    }


def route_resources(origins: tuple[str, ...]) -> dict[str, dict]:
    """Each route's proxy method and the permission to invoke its function, then each path's preflight method
    (none without origins: CORS off)."""
    resources: dict[str, dict] = {}
    for method_id, http_method, resource_id, function_id in ROUTES:
        resources[method_id] = _proxy_method(http_method, resource_id, function_id)
        path = RESOURCE_PATHS[resource_id].replace("{id}", "*")
        resources[f"{method_id}Permission"] = _permission(function_id, http_method, path)
    for resource_id in RESOURCE_PATHS if origins else ():
        allowed = [http_method for _, http_method, resource, _ in ROUTES if resource == resource_id]
        resources[f"{resource_id.removesuffix('Resource')}OptionsMethod"] = _preflight_method(
            resource_id, allowed, origins)
    return resources


def deployment_resources(resources: dict[str, dict], parameters: dict[str, dict]) -> dict[str, dict]:
    """The Deployment of the API that ``resources`` declare: a snapshot taken when it is created, so its logical id
    carries a digest of the API's methods, resources and gateway responses, and a changed API gets a new
    deployment (and the stage moves to it). The digest sees the template, not parameter values: the snapshot
    may refer to none of ``parameters``."""
    methods = [name for name, body in resources.items() if body["Type"] == "AWS::ApiGateway::Method"]
    api_shape = {name: body for name, body in resources.items()
                 if body["Type"] in ("AWS::ApiGateway::Method", "AWS::ApiGateway::Resource",
                                     "AWS::ApiGateway::GatewayResponse")}
    in_snapshot = _references(api_shape) & set(parameters)
    if in_snapshot:
        raise AssertionError(f"the API's deployment snapshot refers to parameters {sorted(in_snapshot)}: the "
                             "Deployment's digest would not see their values")
    digest = hashlib.sha256(json.dumps(api_shape, sort_keys=True).encode()).hexdigest()[:10]
    return {f"ApiDeployment{digest}": {
        "Type": "AWS::ApiGateway::Deployment",
        "DependsOn": [*methods, "Default4xxResponse", "Default5xxResponse"],
        "Properties": {"RestApiId": ref("RestApi"), "Description": f"CloudViz API {digest}"},
    }}


def access_log_group(names: ResourceNames) -> str:
    """The log group of the stage's access log (one JSON line per request, :data:`ACCESS_LOG_FORMAT`)."""
    return f"/aws/apigateway/{names.api_name}/{names.api_stage_name}"


def stage_resources(names: ResourceNames, deployment_id: str) -> dict[str, dict]:
    """The stage serving the deployment ``deployment_id`` (traced by X-Ray, its access log in a log group of its
    own: API Gateway writes it through the account's CloudWatch role, see ``--create-apigw-logging-role``), its
    API key and the usage plan throttling that key."""
    return {
        "ApiAccessLogGroup": log_group(access_log_group(names), ref("LogRetentionDays"), ACCESS_LOGS_KEY),
        "ApiStage": checkov_skip({
            "Type": "AWS::ApiGateway::Stage",
            # The destination is the group's ARN without the ":*" its Arn attribute ends in, as API Gateway wants.
            "DependsOn": ["ApiAccessLogGroup"],
            "Properties": {
                "RestApiId": ref("RestApi"),
                "DeploymentId": ref(deployment_id),
                "StageName": names.api_stage_name,
                "Description": f"the {names.stage} stage",
                "TracingEnabled": True,
                "AccessLogSetting": {"DestinationArn": arn("logs", f"log-group:{access_log_group(names)}"),
                                     "Format": ACCESS_LOG_FORMAT},
                "MethodSettings": [{
                    "ResourcePath": "/*",
                    "HttpMethod": "*",
                    "MetricsEnabled": True,
                    "ThrottlingRateLimit": ref("ThrottleRateLimit"),
                    "ThrottlingBurstLimit": ref("ThrottleBurstLimit"),
                }],
            },
        }, *STAGE_SKIPS),
        "ApiKey": {
            "Type": "AWS::ApiGateway::ApiKey",
            "Properties": {"Name": names.api_key_name, "Enabled": True,
                           "Description": f"the key of the CloudViz {names.stage} API"},
        },
        "UsagePlan": {
            "Type": "AWS::ApiGateway::UsagePlan",
            # The stage by name (not Ref): the stage resource must exist first, hence DependsOn.
            "DependsOn": ["ApiStage"],
            "Properties": {
                "UsagePlanName": names.usage_plan_name,
                "Description": "throttling of the CloudViz API key",
                "ApiStages": [{"ApiId": ref("RestApi"), "Stage": names.api_stage_name}],
                "Throttle": {"RateLimit": ref("ThrottleRateLimit"), "BurstLimit": ref("ThrottleBurstLimit")},
            },
        },
        "UsagePlanKey": {
            "Type": "AWS::ApiGateway::UsagePlanKey",
            "Properties": {"KeyId": ref("ApiKey"), "KeyType": "API_KEY", "UsagePlanId": ref("UsagePlan")},
        },
    }


def api_outputs(names: ResourceNames) -> dict[str, dict]:
    """The stack's outputs: the invoke URL, the key's id, the table and the API."""
    return {
        "ApiUrl": output(
            sub(f"https://${{RestApi}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/{names.api_stage_name}"),
            "the stage's invoke URL (append /predictions)",
        ),
        "ApiKeyId": output(ref("ApiKey"), "aws apigateway get-api-key --api-key <ApiKeyId> --include-value"),
        "TableName": output(ref("PredictionTable"), "the DynamoDB prediction table"),
        "ApiId": output(ref("RestApi"), "the REST API's id"),
    }


def api_rules() -> dict[str, dict]:
    """Checked by CloudFormation before any change: no classes exactly when the model predicts a value."""
    regression, no_classes = {"Fn::Equals": [ref("ModelTask"), "regression"]}, {"Fn::Equals": [ref("ClassNames"), ""]}
    return {"ClassesFitTheTask": {"Assertions": [{
        "Assert": {"Fn::Or": [{"Fn::And": [regression, no_classes]},
                              {"Fn::And": [{"Fn::Not": [regression]}, {"Fn::Not": [no_classes]}]}]},
        "AssertDescription": "ClassNames must be empty when ModelTask is regression, and name the classes "
                             "otherwise",
    }]}}


def api_template(names: ResourceNames, cors_origins: Sequence[str] = (), reserved_concurrency: int = 0) -> dict:
    """The API stack's template; ``cors_origins`` are the web origins the stage answers CORS to (none: CORS off);
    ``reserved_concurrency`` each function's reserved (and most) concurrent executions (0: none reserved).

    The origins are written into the template, not taken as a parameter: they are part of the API's deployment
    snapshot, and the Deployment's logical id is a digest of that snapshot, so changed origins must change the
    template to reach the stage."""
    origins = checked_origins(cors_origins)  # ValueError naming a bad one
    parameters = api_parameters()
    resources = {**table_resources(names), **function_resources(names, origins, reserved_concurrency),
                 **rest_api_resources(names, origins), **route_resources(origins)}
    deployment = deployment_resources(resources, parameters)
    (deployment_id,) = deployment
    resources = {**resources, **deployment, **stage_resources(names, deployment_id)}
    conditions = {"IrisFeatures": {"Fn::Equals": [ref("FeatureNames"), FEATURE_NAMES]}}
    document = template(f"CloudViz {names.stage}: prediction API (API Gateway, Lambda, DynamoDB)", parameters,
                        resources, api_outputs(names), conditions)
    document["Rules"] = api_rules()
    return document
