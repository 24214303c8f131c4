"""Update constraints of the endpoint stack that cfn-lint cannot see: they relate two deployments of the same
stack (the model version N, then N+1), not one template.

Each stage's endpoint stack is synthesized for two model packages, its SageMaker resources resolved with the
parameter values the deployer passes (as CloudFormation does), and the pair checked against what SageMaker and
CloudFormation document for an update:

- SageMaker, deployment guardrails, "Exclusions"
  (https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-exclusions.html): in a blue/green or
  rolling deployment the new endpoint configuration must have the same variant name as the old one; Marketplace
  containers and Inf1 instances make an endpoint fall back to all-at-once with no baking (no guardrails);
  rolling deployments exclude multi-variant endpoints.
- SageMaker, blue/green auto-rollback
  (https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-configuration.html): the rollback
  alarms watch the endpoint, so they must watch the variant name both fleets share.
- CloudFormation, resource names (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/
  aws-properties-name.html): a resource with a custom name cannot be replaced, and a new model replaces the
  Model and the EndpointConfig; the Endpoint itself must not be replaced (a new endpoint is downtime).
- The API requests CloudFormation makes for them (CreateModel, CreateEndpointConfig, CreateEndpoint,
  UpdateEndpoint) validated by botocore's ParamValidator against SageMaker's service model.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import botocore.session
import pytest
from botocore.validate import validate_parameters

from deploy.aws.names import ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.stacks import synthesize

STAGES = ("dev", "prod")
REGION, ACCOUNT = "eu-west-1", "123456789012"
PSEUDO = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com",
          "AWS::StackName": "stack"}
SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")
# The SageMaker resources and the API call CloudFormation creates each with (its name member, generated).
CREATE_CALLS = {"AWS::SageMaker::Model": ("CreateModel", "ModelName"),
                "AWS::SageMaker::EndpointConfig": ("CreateEndpointConfig", "EndpointConfigName"),
                "AWS::SageMaker::Endpoint": ("CreateEndpoint", "EndpointName")}


def settings(version: int) -> AwsSettings:
    return AwsSettings(region=REGION, account_id=ACCOUNT, artifact_bucket="cloudviz-artifacts",
                       alarm_email="ops@example.com", model_version=version,
                       model_package_arn=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/cloudviziris/{version}")


class Deployment:
    """One endpoint stack as CloudFormation would create it: intrinsic functions resolved with the parameter
    values the deployer passes (else the defaults); a GetAtt of a generated name is ``<LogicalId>-generated``."""

    def __init__(self, stage: str, version: int) -> None:
        spec = synthesize(stage, settings(version))[0]
        assert spec.name == ResourceNames(stage).endpoint_stack
        self.template = spec.template
        declared = self.template["Parameters"]
        self.values = {**{k: str(v["Default"]) for k, v in declared.items() if "Default" in v}, **spec.parameters}
        self.resources = {key: self.resolve(body) for key, body in self.template["Resources"].items()}

    def of_type(self, resource_type: str) -> dict[str, dict]:
        return {key: body for key, body in self.resources.items() if body["Type"] == resource_type}

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (function, argument), = value.items()
            if function == "Ref":
                return self.values.get(argument) or PSEUDO.get(argument) or f"{argument}-generated"
            if function == "Fn::GetAtt":
                return f"{argument[0]}-generated"
            if function == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                names = {**self.values, **PSEUDO, **{k: self.resolve(v) for k, v in variables.items()}}
                for name, replacement in names.items():
                    text = text.replace(f"${{{name}}}", str(replacement))
                return text
            if function == "Fn::Join":
                return argument[0].join(self.resolve(argument[1]))
            if function == "Fn::Split":
                return self.resolve(argument[1]).split(argument[0])
            if function == "Fn::Select":
                return self.resolve(argument[1])[int(argument[0])]
        return {key: self.resolve(item) for key, item in value.items()}


def api_request(operation: str, properties: dict) -> dict:
    """The CloudFormation properties as the API request: strings of Number parameters become the member's type,
    as CloudFormation converts them."""
    return _typed(copy.deepcopy(properties), SAGEMAKER.operation_model(operation).input_shape)


def _typed(value: Any, shape: Any) -> Any:
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: _typed(v, shape.members[k]) if k in shape.members else v for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [_typed(item, shape.member) for item in value]
    if isinstance(value, str) and shape.type_name in ("integer", "long"):
        return int(value)
    if isinstance(value, str) and shape.type_name in ("float", "double"):
        return float(value)
    return value


@pytest.fixture(scope="module", params=STAGES)
def pair(request) -> tuple[Deployment, Deployment]:
    """The stage's endpoint stack serving version 7, then updated to version 8."""
    return Deployment(request.param, 7), Deployment(request.param, 8)


def the_config(deployment: Deployment) -> dict:
    (config,) = deployment.of_type("AWS::SageMaker::EndpointConfig").values()
    return config["Properties"]


def test_the_two_deployments_serve_different_packages(pair):
    """The oracle compares two different deployments (else every rule below would hold trivially)."""
    old, new = pair
    packages = [d.of_type("AWS::SageMaker::Model")["Model"]["Properties"]["PrimaryContainer"]["ModelPackageName"]
                for d in pair]
    assert packages[0] != packages[1] and old.values["ModelVersion"] != new.values["ModelVersion"]


def test_the_new_configuration_keeps_the_variant_names_of_the_old_one(pair):
    old, new = (the_config(deployment) for deployment in pair)
    names = [[variant["VariantName"] for variant in config["ProductionVariants"]] for config in (old, new)]
    assert names[0] == names[1], f"variant names change across versions: {names[0]} -> {names[1]}"
    assert len(names[1]) == 1, "one production variant (rolling deployments exclude multi-variant endpoints)"


def test_the_rollback_alarms_watch_the_variant_both_fleets_share(pair):
    for deployment in pair:
        (variant,) = the_config(deployment)["ProductionVariants"]
        endpoint = deployment.resources["Endpoint"]["Properties"]
        alarms = deployment.of_type("AWS::CloudWatch::Alarm")
        for alarm in alarms.values():
            dimensions = {d["Name"]: d["Value"] for d in alarm["Properties"]["Dimensions"]}
            assert dimensions == {"EndpointName": endpoint["EndpointName"], "VariantName": variant["VariantName"]}
        declared = deployment.template["Resources"]["Endpoint"]["Properties"]
        rollback = declared.get("DeploymentConfig", {}).get("AutoRollbackConfiguration", {}).get("Alarms", [])
        assert {alarm["AlarmName"]["Ref"] for alarm in rollback} <= set(alarms)  # this template's alarms


def test_nothing_excludes_the_endpoint_from_deployment_guardrails(pair):
    for deployment in pair:
        (variant,) = the_config(deployment)["ProductionVariants"]
        assert not variant["InstanceType"].startswith("ml.inf1."), "Inf1 instances get no guardrails"
        assert "ServerlessConfig" not in variant
        package = deployment.resources["Model"]["Properties"]["PrimaryContainer"]["ModelPackageName"]
        assert f":{ACCOUNT}:model-package/" in package, "a Marketplace package gets no guardrails"
        pattern = deployment.template["Parameters"]["InstanceType"]["AllowedPattern"]
        assert re.fullmatch(pattern, variant["InstanceType"]) and re.fullmatch(pattern, "ml.c5.xlarge")
        assert not re.fullmatch(pattern, "ml.inf1.xlarge"), "InstanceType should refuse Inf1: no guardrails there"


def test_a_new_model_replaces_the_model_and_configuration_but_updates_the_endpoint(pair):
    """Replaced resources keep generated names (a custom-named resource cannot be replaced); the Endpoint keeps
    its logical id and name, so CloudFormation updates it (UpdateEndpoint) instead of replacing it."""
    old, new = pair
    for resource_type, (_, name_member) in CREATE_CALLS.items():
        for deployment in pair:
            for body in deployment.of_type(resource_type).values():
                if resource_type != "AWS::SageMaker::Endpoint":
                    assert name_member not in body["Properties"], f"{resource_type} has a custom name"
    assert set(old.of_type("AWS::SageMaker::Endpoint")) == set(new.of_type("AWS::SageMaker::Endpoint")) == {"Endpoint"}
    assert old.resources["Endpoint"]["Properties"]["EndpointName"] == new.resources["Endpoint"]["Properties"][
        "EndpointName"]


def test_the_api_requests_cloudformation_makes_are_valid(pair):
    _, new = pair
    for resource_type, (operation, name_member) in CREATE_CALLS.items():
        for key, body in new.of_type(resource_type).items():
            request = {name_member: f"{key}-generated", **body["Properties"]}
            validate_parameters(api_request(operation, request), SAGEMAKER.operation_model(operation).input_shape)
    endpoint = new.resources["Endpoint"]["Properties"]
    update = {"EndpointName": endpoint["EndpointName"], "EndpointConfigName": endpoint["EndpointConfigName"]}
    if "DeploymentConfig" in endpoint:
        update["DeploymentConfig"] = endpoint["DeploymentConfig"]
        policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
        waits = policy["TerminationWaitInSeconds"] + policy["TrafficRoutingConfiguration"]["WaitIntervalInSeconds"]
        # UpdateEndpoint's documentation: the timeout must exceed the waits it includes.
        assert policy["MaximumExecutionTimeoutInSeconds"] > waits
    validate_parameters(api_request("UpdateEndpoint", update), SAGEMAKER.operation_model("UpdateEndpoint").input_shape)
