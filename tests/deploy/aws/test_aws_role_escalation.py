"""The IAM roles of the generated stacks: no role can modify itself or a role that can become it."""

from __future__ import annotations

import json

import pytest
from aws_stage import scheduled_rules_take_no_events, validated_requests  # noqa: F401  (fixtures)
from deployer_account import BUCKET
from moto_cloudformation import cloudformation_like_aws  # noqa: F401  (a fixture)
from moto_sagemaker import model_packages_like_sagemaker  # noqa: F401  (a fixture)

from deploy.aws.names import ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.stacks import synthesize

pytestmark = [
    pytest.mark.usefixtures("validated_requests", "scheduled_rules_take_no_events", "aws",
                            "cloudformation_like_aws", "model_packages_like_sagemaker"),
    pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto"),
]


# --- no role can escalate through another ------------------------------------------------------------------------

READ_ONLY_IAM = ("iam:Get", "iam:List", "iam:PassRole")


def resource_role_names(resource: object) -> list[str]:
    """The role names (or patterns) an IAM statement's resource names: ``...:role/NAME`` or ``*``."""
    text = resource if isinstance(resource, str) else json.dumps(resource)
    if text == "*":
        return ["*"]
    return [part.split('"')[0].split(",")[0] for part in text.split(":role/")[1:]]


def role_graph(templates: list[dict]) -> dict[str, tuple[set[str], set[str]]]:
    """Role name -> (roles it may modify, roles it may become: pass to a service, or assume)."""
    graph = {}
    for template in templates:
        for body in template["Resources"].values():
            if body["Type"] != "AWS::IAM::Role":
                continue
            modifies, becomes = set(), set()
            for policy in body["Properties"].get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
                    targets = {name for resource in statement["Resource"] for name in resource_role_names(resource)}
                    if any(a in ("iam:PassRole", "sts:AssumeRole", "iam:*", "*") for a in actions):
                        becomes |= targets
                    if any(a.startswith("iam:") and not a.startswith(READ_ONLY_IAM) or a == "*" for a in actions):
                        modifies |= targets
            graph[body["Properties"]["RoleName"]] = (modifies, becomes)
    return graph


def escalations(graph: dict[str, tuple[set[str], set[str]]]) -> list[str]:
    """Every role that may modify a role able to become it (itself included): its holder could widen its own
    rights through the other's."""
    def reach(start: str) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for target in graph.get(todo.pop(), (set(), set()))[1]:
                matched = set(graph) if target == "*" else {target}
                todo += [name for name in matched - seen]
                seen |= matched
        return seen

    found = []
    for name, (modifies, _) in graph.items():
        for target in modifies:
            for victim in (set(graph) if target == "*" else {target}):
                if name in reach(victim):
                    found.append(f"{name} may modify {victim}, which can become {name}")
    return found


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_no_role_may_modify_itself_or_a_role_that_can_become_it(stage):
    templates = [spec.template for spec in synthesize(stage, AwsSettings(artifact_bucket=BUCKET))]
    graph = role_graph(templates)
    names = ResourceNames(stage)
    assert escalations(graph) == []
    if stage == "prod":  # no redeploy there: neither its role nor the endpoint stack's service role
        assert not {names.redeploy_role_name, names.endpoint_deploy_role_name} & set(graph)
        return
    assert names.endpoint_deploy_role_name in graph[names.redeploy_role_name][1]  # the walk sees the passing
    assert names.model_role_name in graph[names.endpoint_deploy_role_name][0]  # and the managing
    # The walk finds the escalation the endpoint stack's role had: PutRolePolicy on itself.
    automation = next(t for t in templates if "EndpointDeployRole" in t["Resources"])
    policy = automation["Resources"]["EndpointDeployRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    policy["Statement"].append({"Effect": "Allow", "Action": ["iam:PutRolePolicy"], "Resource": [
        {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{names.endpoint_deploy_role_name}"}]})
    assert escalations(role_graph(templates)) == [
        f"{names.endpoint_deploy_role_name} may modify {names.endpoint_deploy_role_name}, which can become "
        f"{names.endpoint_deploy_role_name}"]
    # ... and the one through a role that can become it: the redeploy role passes the CloudFormation role.
    policy["Statement"][-1]["Resource"] = [
        {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{names.redeploy_role_name}"}]
    assert escalations(role_graph(templates)) == [
        f"{names.endpoint_deploy_role_name} may modify {names.redeploy_role_name}, which can become "
        f"{names.endpoint_deploy_role_name}"]
