"""Close the gaps between moto 5.2 (in-process ``mock_aws``, no Docker) and AWS that the end-to-end test of the
deployed stacks falls into. Each gap is closed by patching moto (never our code), undone by ``monkeypatch``:

1. *CloudFormation change sets* behave as CloudFormation's: ``tests/moto_cloudformation.py`` (the deployer's
   fixture, reused as it is; it also lets moto create the ``MOCK`` integrations of the CORS ``OPTIONS`` methods,
   which otherwise crash its ``AWS::ApiGateway::Method``, so the api template needs no transformation).
2. *Explicit SageMaker names.* moto's CloudFormation names an ``AWS::SageMaker::Endpoint`` after the stack and
   logical id, ignoring ``EndpointName``; the inference Lambda invokes the endpoint by the name the stack gives
   it (``ENDPOINT_NAME``), so the given name is honoured (:func:`honour_endpoint_names`).
3. *Lambda code never runs* (moto runs it only in Docker). :func:`run_lambdas_in_process` makes moto's Lambda
   invoke import the handler from the function's own deployment package (the zip CloudFormation read from S3),
   in isolation from the copy of the same package the test process imported, and call it with the function's
   environment and a Lambda context; what it prints (the EMF metric lines) goes to the function's log group.
   An exception is an unhandled function error, as the Lambda runtime reports it.
4. *invoke_endpoint answers canned bodies.* :func:`serve_endpoints_with_the_real_model` follows the endpoint as
   SageMaker does: endpoint -> endpoint config -> production variant -> model -> model package -> its
   ``ModelDataUrl`` in S3, loads that ``model.tar.gz`` with the local endpoint's :class:`ServingModel`, and
   answers with the local endpoint's invocation logic (``deploy.endpoint.invocation``), the variant's name in
   ``InvokedProductionVariant`` and, for an error of the model, the Runtime API's ``ModelError``.
5. *API Gateway routes no AWS_PROXY integration*, matches only literal paths (not ``{id}``), and checks no API
   key. :func:`route_stages_in_process` registers, for every deployed stage, one route of the stage URL
   (``https://{api}.execute-api.{region}.amazonaws.com/{stage}/...``) that does what API Gateway does before
   the integration: the method by resource path template, else 403 ``Missing Authentication Token``; an API key
   when the method requires one (enabled, in a usage plan of this API and stage), else 403 ``Forbidden``; the
   function's resource policy must let API Gateway invoke it from that route, else 500. It then hands the
   request to :class:`LambdaProxyIntegration`, the ``AWS_PROXY`` parser registered on moto's API Gateway
   resources, which builds the REST API (v1) proxy event, invokes the function through moto's Lambda (so 3.
   runs it) and turns the proxy response into the HTTP response (502 for a function error or a malformed
   answer). API Gateway's own errors carry the headers of the API's ``DEFAULT_4XX``/``DEFAULT_5XX`` gateway
   responses. Other integration types (the CORS preflight's ``MOCK``) are not emulated: moto keeps none of a
   MOCK's integration responses; the test checks those methods against the template.
6. *Resources moto's CloudFormation skips* (it warns and creates nothing): :func:`complete_skipped_resources`
   creates the api stack's ``AWS::ApiGateway::Stage``, ``ApiKey``, ``UsagePlan``, ``UsagePlanKey`` and
   ``GatewayResponse`` through moto's API Gateway API, from the template's own properties (Refs and Subs
   resolved against the stack). The skipped types with nothing to emulate them in moto
   (``AWS::CloudWatch::Alarm``, ``AWS::SNS::Subscription``, ``AWS::Scheduler::Schedule``,
   ``AWS::Lambda::EventInvokeConfig``) are left to the test, which checks them against the template itself.
7. *urllib is not intercepted* (moto's HTTP interception, ``responses``, patches ``requests``): a client of the API
   written with the standard library (the smoke test) would go to the network. :func:`urllib_through_requests`
   sends urllib's ``urlopen`` through ``requests``, so moto answers it (the routes of 5., else moto's 4xx).
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import importlib
import io
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
from moto.apigateway.integration_parsers import IntegrationParser
from moto.apigateway.models import Integration, Resource, RestAPI, apigateway_backends
from moto.awslambda.models import LambdaFunction, lambda_backends
from moto.core.models import responses_mock
from moto.s3.models import s3_backends
from moto.sagemaker.models import FakeEndpoint, sagemaker_backends
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse
from moto_cloudformation import patch_cloudformation

from deploy.endpoint import ServingModel
from deploy.endpoint import runtime as runtime_api
from deploy.endpoint.errors import InvocationError
from deploy.endpoint.invocation import invoke as invoke_model
from serving_lambdas.config import INFERENCE_VARIABLES
from serving_lambdas.responses import CORS_VARIABLE

HANDLER_VARIABLES = (*INFERENCE_VARIABLES, CORS_VARIABLE, "BASELINE_STATISTICS_URI")

ACCOUNT = "123456789012"  # moto's default account
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
PROXY_ERROR = (502, {"message": "Internal server error"})
# The api stack's resource types moto's CloudFormation skips and complete_skipped_resources creates, in order.
COMPLETED_TYPES = ("AWS::ApiGateway::GatewayResponse", "AWS::ApiGateway::Stage", "AWS::ApiGateway::ApiKey",
                   "AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::UsagePlanKey")

Response = tuple[int, dict[str, str], bytes]


@pytest.fixture
def aws_in_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[DeploymentPackages]:
    """Every gap of the module docstring closed, for one test (start ``mock_aws`` inside it); the deployment
    packages the Lambda functions run from."""
    patch_cloudformation(monkeypatch)
    honour_endpoint_names(monkeypatch)
    packages = run_lambdas_in_process(monkeypatch, tmp_path / "lambda-packages")
    serve_endpoints_with_the_real_model(monkeypatch, tmp_path / "endpoint-models")
    route_stages_in_process(monkeypatch)
    yield packages


# -- 2. explicit SageMaker endpoint names ------------------------------------------------------------------------


def honour_endpoint_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """``AWS::SageMaker::Endpoint`` created under its ``EndpointName`` property when it has one."""
    create = FakeEndpoint.create_from_cloudformation_json.__func__

    def create_named(cls: type, resource_name: str, cloudformation_json: dict, *args: Any, **kwargs: Any) -> Any:
        name = cloudformation_json["Properties"].get("EndpointName") or resource_name
        return create(cls, name, cloudformation_json, *args, **kwargs)

    monkeypatch.setattr(FakeEndpoint, "create_from_cloudformation_json", classmethod(create_named))


# -- 3. Lambda functions run in-process ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LambdaContext:
    """The attributes of the Lambda runtime's context object a handler may read."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str

    def get_remaining_time_in_millis(self) -> int:
        return 25_000


class DeploymentPackages:
    """Handlers imported from deployment packages (zip bytes), each package unpacked and imported once.

    A package's top-level modules (``serving_lambdas``) are usually imported by the test process too, from the
    working tree: the package's own modules live in a separate ``sys.modules`` set, swapped in while the
    package is imported or called and swapped out after, so each side keeps its own copy.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: dict[str, dict[str, Any]] = {}  # package digest (sha256[:16]) -> its modules

    def handler(self, code: bytes, spec: str) -> tuple[Callable, Callable[[], contextlib.AbstractContextManager]]:
        """The handler ``module.function`` of the package, and the context its calls must run in."""
        digest = hashlib.sha256(code).hexdigest()[:16]
        directory = self.root / digest
        if not directory.exists():
            with zipfile.ZipFile(io.BytesIO(code)) as archive:
                archive.extractall(directory)
        module_name, _, function_name = spec.rpartition(".")
        tops = {path.name.removesuffix(".py") for path in directory.iterdir()}
        modules = self.modules.setdefault(digest, {})

        def isolated() -> contextlib.AbstractContextManager:
            return swapped_modules(tops, modules, directory)

        with isolated():
            module = importlib.import_module(module_name)
        return getattr(module, function_name), isolated


def owned_by(name: str, tops: set[str]) -> bool:
    return name.split(".")[0] in tops


@contextlib.contextmanager
def swapped_modules(tops: set[str], modules: dict[str, Any], directory: Path) -> Iterator[None]:
    """``sys.modules`` holding the package's modules (``modules``, updated on exit) for the names under
    ``tops``, and ``directory`` first on ``sys.path``; the process's own modules restored on exit."""
    own = {name: module for name, module in sys.modules.items() if owned_by(name, tops)}
    for name in own:
        del sys.modules[name]
    sys.modules.update(modules)
    sys.path.insert(0, str(directory))
    try:
        yield
    finally:
        sys.path.remove(str(directory))
        modules.update({name: module for name, module in sys.modules.items() if owned_by(name, tops)})
        for name in [name for name in sys.modules if owned_by(name, tops)]:
            del sys.modules[name]
        sys.modules.update(own)


@contextlib.contextmanager
def environment(variables: dict[str, str], unset: Iterable[str] = ()) -> Iterator[None]:
    """``os.environ`` with ``variables`` set and ``unset`` removed, restored on exit."""
    saved = {name: os.environ.get(name) for name in (*variables, *unset)}
    for name in unset:
        os.environ.pop(name, None)
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_lambdas_in_process(monkeypatch: pytest.MonkeyPatch, root: Path) -> DeploymentPackages:
    """moto's Lambda invoke runs the function's handler, from its deployment package, in this process."""
    packages = DeploymentPackages(root)

    def invoke_in_process(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
        handler, isolated = packages.handler(self.code_bytes, self.handler)
        request_id = str(uuid.uuid4())
        log_group = self.logs_group_name  # /aws/lambda/<function>: moto keeps no LoggingConfig
        stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        context = LambdaContext(self.function_name, "$LATEST", self.function_arn, int(self.memory_size),
                                request_id, log_group, stream)
        variables = {"AWS_LAMBDA_FUNCTION_NAME": self.function_name, "AWS_REGION": self.region,
                     "AWS_DEFAULT_REGION": self.region, "_HANDLER": self.handler, **self.environment_vars}
        printed = io.StringIO()
        errored = False
        # A function sees its own configuration only: `cloudviz serve` in an earlier test sets the handlers'
        # variables process-wide (SAGEMAKER_RUNTIME_URL among them), which no Lambda on AWS has.
        configured = environment({k: str(v) for k, v in variables.items()}, unset=HANDLER_VARIABLES)
        with isolated(), configured, contextlib.redirect_stdout(printed):
            try:
                result = json.dumps(handler({} if event is None else event, context))
            except Exception as error:  # the runtime's answer for an unhandled error
                errored = True
                result = json.dumps({"errorMessage": str(error), "errorType": type(error).__name__})
        lines = [line for line in printed.getvalue().splitlines() if line]
        self.logs_backend.ensure_log_group(log_group)
        self.logs_backend.create_log_stream(log_group, stream)
        now = int(time.time() * 1000)
        self.logs_backend.put_log_events(log_group, stream, [{"timestamp": now, "message": line} for line in lines])
        return result, errored, "\n".join(lines)

    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", invoke_in_process)
    return packages


# -- 4. invoke_endpoint answered by the real model ----------------------------------------------------------------


def serve_endpoints_with_the_real_model(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """moto's InvokeEndpoint answered by the model package the endpoint serves, loaded from its S3 artifact."""
    loaded: dict[str, ServingModel] = {}

    def model_of(region: str, endpoint_name: str) -> tuple[ServingModel, str] | None:
        sagemaker = sagemaker_backends[ACCOUNT][region]
        if endpoint_name not in sagemaker.endpoints:
            return None
        endpoint = sagemaker.describe_endpoint(endpoint_name)
        config = sagemaker.describe_endpoint_config(endpoint["EndpointConfigName"])
        variant = max(config["ProductionVariants"], key=lambda v: v.get("InitialVariantWeight", 1.0))
        container = sagemaker.describe_model(variant["ModelName"]).primary_container
        package = sagemaker.describe_model_package(container["ModelPackageName"])
        url = package.inference_specification["Containers"][0]["ModelDataUrl"]
        if url not in loaded:
            bucket, _, key = url.removeprefix("s3://").partition("/")
            data = s3_backends[ACCOUNT]["global"].get_object(bucket, key).value
            path = root / hashlib.sha256(url.encode()).hexdigest()[:16] / "model.tar.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            loaded[url] = ServingModel.load(path)
        return loaded[url], variant["VariantName"]

    def invoke_endpoint(self: SageMakerRuntimeResponse) -> Response:
        name = self.path.split("/")[2]
        served = model_of(self.region, name)
        if served is None:
            return runtime_api.error(400, f"Endpoint {name} of account {ACCOUNT} not found.", from_model=False)
        model, variant = served
        headers = {key.lower(): value for key, value in self.headers.items()}
        body = self.body if isinstance(self.body, bytes) else self.body.encode()
        try:
            answer = invoke_model(model, body, headers.get("content-type"), headers.get("accept"))
        except InvocationError as error:
            status, error_headers, document = runtime_api.error(error.status, error.message, variant)
            return status, {**error_headers, "x-Amzn-Invoked-Production-Variant": variant}, document
        return answer.status, {"Content-Type": answer.content_type,
                               "x-Amzn-Invoked-Production-Variant": variant}, answer.body

    monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)


# -- 5. API Gateway stages routed in-process ----------------------------------------------------------------------


def json_body(status: int, document: dict, headers: dict[str, str] | None = None) -> Response:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(document).encode()


class LambdaProxyIntegration(IntegrationParser):
    """The ``AWS_PROXY`` integration of one resource: the REST API (v1) proxy event in, the proxy response out."""

    def __init__(self, api: RestAPI, resource: Resource) -> None:
        self.api = api
        self.resource = resource

    def invoke(self, request: Any, integration: Integration) -> tuple[int, str | bytes]:
        """moto's parser interface (status and body only)."""
        status, _, body = self.respond(request, integration)
        return status, body

    def respond(self, request: Any, integration: Integration, api_key: dict | None = None) -> Response:
        function_arn = integration.uri.split("/functions/")[1].removesuffix("/invocations")
        response_headers: dict[str, str] = {}
        payload = lambda_backends[ACCOUNT][self.api.region_name].invoke(
            function_arn, None, json.dumps(self.event(request, api_key)), {}, response_headers)
        if "x-amz-function-error" in response_headers:
            return json_body(*PROXY_ERROR)
        try:
            answer = json.loads(payload)
            status = int(answer["statusCode"])
            headers = {name: str(value) for name, value in (answer.get("headers") or {}).items()}
            for name, values in (answer.get("multiValueHeaders") or {}).items():
                headers[name] = ",".join(str(value) for value in values)
            body = answer.get("body") or ""
            data = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()
        except (ValueError, KeyError, TypeError, AttributeError):  # API Gateway: "Malformed Lambda proxy response"
            return json_body(*PROXY_ERROR)
        return status, headers, data

    def event(self, request: Any, api_key: dict | None) -> dict:
        """The proxy event API Gateway sends for ``request`` (REST API, payload format 1.0)."""
        url = urlsplit(request.url)
        stage, _, rest = url.path.lstrip("/").partition("/")
        path = "/" + rest
        headers = dict(request.headers)
        query = parse_qsl(url.query, keep_blank_values=True)
        multi_query: dict[str, list[str]] = {}
        for name, value in query:
            multi_query.setdefault(name, []).append(value)
        body = request.body
        if isinstance(body, bytes):
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError:
                body = base64.b64encode(body).decode()
        template = self.resource.get_path()
        now = time.time()
        return {
            "resource": template,
            "path": path,
            "httpMethod": request.method,
            "headers": headers or None,
            "multiValueHeaders": {name: [value] for name, value in headers.items()} or None,
            "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": path_parameters(template, path),
            "stageVariables": None,
            "requestContext": {
                "accountId": ACCOUNT,
                "apiId": self.api.id,
                "domainName": url.hostname,
                "domainPrefix": self.api.id,
                "httpMethod": request.method,
                "path": url.path,
                "protocol": "HTTP/1.1",
                "requestId": str(uuid.uuid4()),
                "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "requestTimeEpoch": int(now * 1000),
                "resourceId": self.resource.id,
                "resourcePath": template,
                "stage": stage,
                "identity": {"apiKey": (api_key or {}).get("value"), "apiKeyId": (api_key or {}).get("id"),
                             "sourceIp": "127.0.0.1", "userAgent": headers.get("User-Agent")},
            },
            "body": body or None,
            "isBase64Encoded": False,
        }


def template_pattern(template: str) -> re.Pattern:
    """``/predictions/{id}`` -> a regex with one named group per path parameter."""
    parts = re.split(r"\{([^}/]+)\}", template)
    pattern = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts))
    return re.compile(f"{pattern}/?")


def path_parameters(template: str, path: str) -> dict[str, str] | None:
    match = template_pattern(template).fullmatch(path)
    return (match.groupdict() or None) if match else None


class StageRouter:
    """The stage URL of one API: API Gateway's routing, key check and invoke permission, then the integration."""

    def __init__(self, api: RestAPI, stage: str) -> None:
        self.api = api
        self.stage = stage

    def gateway_error(self, status: int, message: str) -> Response:
        """API Gateway's own error, with the headers of the API's DEFAULT_4XX/DEFAULT_5XX gateway response."""
        kind = "DEFAULT_4XX" if status < 500 else "DEFAULT_5XX"
        headers = {}
        if kind in self.api.gateway_responses:
            for name, value in self.api.gateway_responses[kind].response_parameters.items():
                if name.startswith("gatewayresponse.header."):
                    headers[name.removeprefix("gatewayresponse.header.")] = value.strip("'")
        return json_body(status, {"message": message}, headers)

    def __call__(self, request: Any) -> Response:
        if self.stage not in self.api.stages:
            return self.gateway_error(403, "Forbidden")
        path = "/" + urlsplit(request.url).path.lstrip("/").partition("/")[2]
        resource = next((r for r in self.api.resources.values() if template_pattern(r.get_path()).fullmatch(path)),
                        None)
        method = None if resource is None else resource.resource_methods.get(request.method)
        if method is None:
            return self.gateway_error(403, "Missing Authentication Token")
        api_key = None
        if method.api_key_required:
            api_key = self.valid_key(request.headers.get("x-api-key"))
            if api_key is None:
                return self.gateway_error(403, "Forbidden")
        integration = method.method_integration
        if integration.integration_type != "AWS_PROXY":
            return self.gateway_error(500, f"{integration.integration_type} integrations are not emulated")
        if not self.may_invoke(integration, request.method, path):
            return self.gateway_error(500, "Internal server error")
        parser = resource.integration_parsers["AWS_PROXY"]
        return parser.respond(request, integration, api_key)

    def valid_key(self, value: str | None) -> dict | None:
        """The key of that value when it is enabled and in a usage plan of this API and stage."""
        backend = apigateway_backends[ACCOUNT][self.api.region_name]
        for key in backend.keys.values():
            if value and key.value == value and key.enabled:
                for plan in backend.get_usage_plans(api_key_id=key.id):
                    if {"apiId": self.api.id, "stage": self.stage} in [
                            {"apiId": s.get("apiId"), "stage": s.get("stage")} for s in plan.api_stages]:
                        return {"id": key.id, "value": key.value}
        return None

    def may_invoke(self, integration: Integration, http_method: str, path: str) -> bool:
        """Whether the function's resource policy lets API Gateway invoke it from this route (its source ARN
        ``arn:aws:execute-api:{region}:{account}:{api}/{stage}/{METHOD}/{path}``)."""
        function_arn = integration.uri.split("/functions/")[1].removesuffix("/invocations")
        region = self.api.region_name
        try:
            policy = json.loads(json.loads(lambda_backends[ACCOUNT][region].get_policy(function_arn))["Policy"])
        except Exception:  # no such function, or no resource policy: API Gateway may not invoke it
            return False
        route = f"arn:aws:execute-api:{region}:{ACCOUNT}:{self.api.id}/{self.stage}/{http_method}{path}"
        for statement in policy.get("Statement", []):
            principal = statement.get("Principal", {})
            source = statement.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn", "*")
            if principal.get("Service") == "apigateway.amazonaws.com" and fnmatch.fnmatchcase(route, source):
                return True
        return False


def route_stages_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each stage moto creates is served by a :class:`StageRouter`, and every resource of its API gets the
    :class:`LambdaProxyIntegration` parser (moto registers only literal paths, to its own parsers)."""

    def register_stage(self: RestAPI, stage_name: str | None) -> None:
        """(moto's registry prefers plain ``responses.CallbackResponse`` routes, as moto's own API Gateway
        routes are, over its service URL patterns, which include ``execute-api`` hosts.)"""
        if not stage_name:  # a deployment without a stage (the template's Stage is a resource of its own)
            return
        for resource in self.resources.values():
            resource.integration_parsers["AWS_PROXY"] = LambdaProxyIntegration(self, resource)
        url = re.compile(rf"https://{re.escape(self.id)}\.execute-api\.{re.escape(self.region_name)}\.amazonaws\.com"
                         rf"/{re.escape(stage_name)}(/[^?]*)?(\?.*)?$", re.IGNORECASE)
        for method in HTTP_METHODS:
            route = responses.CallbackResponse(url=url, method=method, callback=StageRouter(self, stage_name))
            responses_mock.add(route)

    monkeypatch.setattr(RestAPI, "update_integration_mocks", register_stage)


# -- 6. resources moto's CloudFormation skips ---------------------------------------------------------------------


class StackValues:
    """Resolves the template's ``Ref`` and ``Fn::Sub`` against a deployed stack (and what this module created)."""

    def __init__(self, cloudformation: Any, stack_name: str, template: dict) -> None:
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        region = cloudformation.meta.region_name
        defaults = {name: str(p.get("Default", "")) for name, p in template.get("Parameters", {}).items()}
        given = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}
        resources = cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
        self.values = {**defaults, **given, "AWS::Region": region, "AWS::AccountId": ACCOUNT,
                       "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": stack_name,
                       **{r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}}

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            return self.values[value["Ref"]]
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            return re.sub(r"\$\{([^}]+)\}", lambda match: self.values[match.group(1)], value["Fn::Sub"])
        if any(key.startswith("Fn::") for key in value):
            raise NotImplementedError(f"intrinsic function not resolved here: {value}")
        return {key: self.resolve(item) for key, item in value.items()}


def complete_skipped_resources(cloudformation: Any, apigateway: Any, stack_name: str, template: dict) -> dict[str, str]:
    """Create the API Gateway resources of the stack that moto's CloudFormation skipped, from the template's
    properties, through moto's API Gateway API; their physical ids by logical id."""
    values = StackValues(cloudformation, stack_name, template)
    created: dict[str, str] = {}
    resources = template["Resources"]
    for resource_type in COMPLETED_TYPES:
        for logical_id, resource in resources.items():
            if resource["Type"] != resource_type:
                continue
            properties = values.resolve(resource["Properties"])
            created[logical_id] = create_skipped(apigateway, resource_type, properties)
            values.values[logical_id] = created[logical_id]
    return created


def create_skipped(apigateway: Any, resource_type: str, p: dict) -> str:
    """Create one skipped resource from its resolved CloudFormation properties; its physical id."""
    if resource_type == "AWS::ApiGateway::GatewayResponse":
        apigateway.put_gateway_response(restApiId=p["RestApiId"], responseType=p["ResponseType"],
                                        responseParameters=p.get("ResponseParameters", {}))
        return p["ResponseType"]
    if resource_type == "AWS::ApiGateway::Stage":
        apigateway.create_stage(restApiId=p["RestApiId"], stageName=p["StageName"], deploymentId=p["DeploymentId"],
                                description=p.get("Description", ""))
        return p["StageName"]
    if resource_type == "AWS::ApiGateway::ApiKey":
        return apigateway.create_api_key(name=p["Name"], enabled=p.get("Enabled", False),
                                         description=p.get("Description", ""))["id"]
    if resource_type == "AWS::ApiGateway::UsagePlan":
        throttle = {"rateLimit": float(p["Throttle"]["RateLimit"]), "burstLimit": int(p["Throttle"]["BurstLimit"])}
        stages = [{"apiId": s["ApiId"], "stage": s["Stage"]} for s in p["ApiStages"]]
        return apigateway.create_usage_plan(name=p["UsagePlanName"], description=p.get("Description", ""),
                                            apiStages=stages, throttle=throttle)["id"]
    if resource_type == "AWS::ApiGateway::UsagePlanKey":
        apigateway.create_usage_plan_key(usagePlanId=p["UsagePlanId"], keyId=p["KeyId"], keyType=p["KeyType"])
        return p["KeyId"]
    raise ValueError(f"not a type complete_skipped_resources creates: {resource_type}")


# -- 7. urllib through requests ----------------------------------------------------------------------------------------


class UrlopenResponse:
    """What ``urllib.request.urlopen`` returns, over a ``requests`` response."""

    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        self._body = response.content

    def read(self) -> bytes:
        return self._body

    def __enter__(self) -> UrlopenResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def urllib_through_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib's ``urlopen`` sends through ``requests``, which moto intercepts; an error status raises HTTPError
    with its body, as urlopen does."""

    def urlopen(request: urllib.request.Request, timeout: float | None = None) -> UrlopenResponse:
        response = requests.request(request.get_method(), request.full_url, data=request.data,
                                    headers=dict(request.header_items()), timeout=timeout)
        if response.status_code >= 400:
            raise urllib.error.HTTPError(request.full_url, response.status_code, response.reason,
                                         response.headers, io.BytesIO(response.content))
        return UrlopenResponse(response)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
