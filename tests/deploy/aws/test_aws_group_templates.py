"""The stacks of a model package group other than the bundled iris data's: their names (the group in them, AWS's
length limits checked up front), cfn-lint and checkov as clean as iris's, and IAM scoped to the group's own
resources (iris's names and templates: test_aws_templates.py, which pins them)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
from cfnlint.api import lint
from template_stacks import SETTINGS, STAGES, resources_of
from test_aws_templates import JUSTIFIED_WARNINGS, LINT_REGIONS
from test_checkov import run_checkov

from deploy.aws.names import ResourceNames
from deploy.aws.settings import AwsSettings
from deploy.aws.stacks import synthesize
from pipelines.definition import DEFAULT_GROUP
from pipelines.errors import UserError

GROUP = "Churn"
LONGEST_GROUP = "Customer-Churn-Prediction-2026-ab"  # 33 characters: the longest a group's names allow


def group_settings(group: str) -> AwsSettings:
    """The template tests' settings, serving a package of ``group``."""
    return replace(SETTINGS, model_package_arn=f"arn:aws:sagemaker:eu-west-1:123456789012:model-package/"
                                               f"{group.lower()}/7")


def test_another_groups_names_carry_the_group_and_the_default_groups_do_not():
    names = ResourceNames("dev", GROUP)
    assert names.stacks == ("cloudviz-churn-dev-endpoint", "cloudviz-churn-dev-api", "cloudviz-churn-dev-monitoring",
                            "cloudviz-churn-dev-automation")
    assert (names.endpoint_name, names.table_name, names.redeploy_function, names.model_package_group) == (
        "cloudviz-churn-dev", "cloudviz-churn-dev-predictions", "cloudviz-churn-dev-redeploy", GROUP)
    assert ResourceNames("dev", DEFAULT_GROUP) == ResourceNames("dev")
    assert ResourceNames("dev").endpoint_stack == "cloudviz-dev-endpoint"
    iris = {name for stage in STAGES for _, _, name in ResourceNames(stage).limited_names()}
    churn = {name for stage in STAGES for _, _, name in ResourceNames(stage, GROUP).limited_names()}
    assert not iris & churn


def test_a_group_whose_names_aws_would_refuse_is_refused_naming_the_name_and_the_limit():
    ResourceNames("prod", LONGEST_GROUP)
    too_long = LONGEST_GROUP + "x"
    for stage in STAGES:  # dev too: a group deployed to dev must be promotable to prod
        with pytest.raises(UserError) as refused:
            ResourceNames(stage, too_long)
        assert str(refused.value) == (
            f"group '{too_long}': its EventBridge rule name cloudviz-{too_long.lower()}-prod-endpoint-updated would "
            "be 65 characters long, over AWS's limit of 64: use a group name shorter by 1")
    with pytest.raises(UserError, match="group 'my_group': not a SageMaker model package group name"):
        ResourceNames("dev", "my_group")


@pytest.mark.parametrize("group", [GROUP, LONGEST_GROUP])
@pytest.mark.parametrize("stage", STAGES)
def test_another_groups_templates_pass_cfn_lint(stage, group):
    specs = synthesize(stage, group_settings(group), group=group)
    assert [spec.name for spec in specs] == list(ResourceNames(stage, group).stacks)
    for spec in specs:
        findings = [match for match in lint(json.dumps(spec.template), regions=LINT_REGIONS)
                    if match.rule.id not in JUSTIFIED_WARNINGS]
        assert findings == [], f"{spec.name}: " + "\n".join(str(match) for match in findings)


def test_another_groups_automation_follows_its_own_group_only():
    names = ResourceNames("dev", GROUP)
    automation = next(spec for spec in synthesize("dev", group_settings(GROUP), group=GROUP)
                      if spec.name == names.automation_stack).template
    resources = automation["Resources"]
    assert resources["ApprovalRule"]["Properties"]["EventPattern"]["detail"]["ModelPackageGroupName"] == [GROUP]
    environment = resources["RedeployFunction"]["Properties"]["Environment"]["Variables"]
    assert (environment["MODEL_PACKAGE_GROUP"], environment["ENDPOINT_STACK"]) == (GROUP, names.endpoint_stack)
    retrain_environment = resources["RetrainFunction"]["Properties"]["Environment"]["Variables"]
    assert retrain_environment["MODEL_PACKAGE_GROUP"] == GROUP
    policies = json.dumps({key: role["Properties"]["Policies"]
                           for key, role in resources_of(automation, "AWS::IAM::Role").items()})
    assert "model-package/churn/*" in policies and "cloudviziris" not in policies
    assert "cloudviz-dev-" not in policies  # no right on iris's stacks, functions or roles


def comparable(results: list[dict], names: ResourceNames) -> set[tuple[str, str, str, str]]:
    """checkov's outcomes by stack kind (``endpoint``, ...), resource and check: the same for any group."""
    return {(r["stack"].removeprefix(names.prefix + "-"), r["resource"], r["check"], r["outcome"])
            for r in results if r["stack"].startswith(names.prefix + "-")}


def test_another_groups_templates_get_the_same_checkov_results_as_iris(tmp_path):
    documents = {spec.name: spec.template for stage in STAGES for group in (DEFAULT_GROUP, GROUP)
                 for spec in synthesize(stage, group_settings(group), group=group)}
    results = run_checkov(copy.deepcopy(documents), tmp_path / "checkov")
    assert not [r for r in results if r["outcome"] == "failed"]
    for stage in STAGES:
        iris, churn = ResourceNames(stage), ResourceNames(stage, GROUP)
        assert comparable(results, churn) == comparable(results, iris)
        assert len(comparable(results, churn)) > 50
