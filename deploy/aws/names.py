"""Every AWS resource name of a stage, in one place.

Templates, the deployer and the tests read names only from here, so a stack never refers to a
resource under a name another stack spells differently.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.definition import DEFAULT_GROUP, PIPELINE_NAME
from serving_lambdas.served_version import MODEL_VERSION_TAG

STAGES = ("dev", "prod")
PROJECT = "cloudviz"
# The one production variant of every endpoint, on every version and both targets (SageMaker's default name).
# A blue/green update (prod's DeploymentConfig) requires the new configuration to keep the variant names; the
# served model version is the endpoint configuration's MODEL_VERSION_TAG instead.
PRODUCTION_VARIANT = "AllTraffic"
__all__ = ["MODEL_VERSION_TAG", "PRODUCTION_VARIANT", "PROJECT", "STAGES", "ResourceNames", "log_group_name"]


def log_group_name(function_name: str) -> str:
    """The log group Lambda writes a function's logs to."""
    return f"/aws/lambda/{function_name}"


@dataclass(frozen=True)
class ResourceNames:
    """Names of the resources of one stage (``dev`` or ``prod``)."""

    stage: str

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}: expected one of {', '.join(STAGES)}")

    @property
    def prefix(self) -> str:
        """``cloudviz-{stage}``: every stage-scoped name starts with it."""
        return f"{PROJECT}-{self.stage}"

    # Stacks, in deployment order.
    @property
    def endpoint_stack(self) -> str:
        return f"{self.prefix}-endpoint"

    @property
    def api_stack(self) -> str:
        return f"{self.prefix}-api"

    @property
    def monitoring_stack(self) -> str:
        return f"{self.prefix}-monitoring"

    @property
    def automation_stack(self) -> str:
        return f"{self.prefix}-automation"

    @property
    def stacks(self) -> tuple[str, ...]:
        """The four stack names in deployment order."""
        return (self.endpoint_stack, self.api_stack, self.monitoring_stack, self.automation_stack)

    @property
    def destroy_order(self) -> tuple[str, ...]:
        """The stacks in deletion order: the reverse of deployment, but the automation stack last. In dev it holds
        the CloudFormation role the redeploy function updates the endpoint stack through, and CloudFormation deletes
        a stack through the role last used on it: that role must outlive the endpoint stack."""
        return (self.monitoring_stack, self.api_stack, self.endpoint_stack, self.automation_stack)

    # Endpoint stack.
    @property
    def endpoint_name(self) -> str:
        return self.prefix

    @property
    def model_role_name(self) -> str:
        return f"{self.prefix}-model-execution"

    @property
    def endpoint_deploy_role_name(self) -> str:
        """The CloudFormation service role the endpoint stack is updated through (by the redeploy function).
        It lives in the automation stack: a stack's own resources never include the role that manages it."""
        return f"{self.prefix}-endpoint-cfn"

    # API stack.
    @property
    def table_name(self) -> str:
        return f"{self.prefix}-predictions"

    @property
    def inference_function(self) -> str:
        return f"{self.prefix}-inference"

    @property
    def retrieve_function(self) -> str:
        return f"{self.prefix}-retrieve"

    @property
    def inference_role_name(self) -> str:
        return f"{self.inference_function}-role"

    @property
    def retrieve_role_name(self) -> str:
        return f"{self.retrieve_function}-role"

    @property
    def api_name(self) -> str:
        return f"{self.prefix}-api"

    @property
    def api_stage_name(self) -> str:
        """The API Gateway stage: the deployment stage itself (``dev`` or ``prod``)."""
        return self.stage

    @property
    def api_key_name(self) -> str:
        return f"{self.prefix}-key"

    @property
    def usage_plan_name(self) -> str:
        return f"{self.prefix}-usage-plan"

    # Monitoring stack.
    @property
    def topic_name(self) -> str:
        return f"{self.prefix}-alarms"

    @property
    def dashboard_name(self) -> str:
        return self.prefix

    @property
    def drift_function(self) -> str:
        return f"{self.prefix}-drift"

    @property
    def drift_role_name(self) -> str:
        return f"{self.drift_function}-role"

    @property
    def drift_schedule_name(self) -> str:
        return f"{self.drift_function}-schedule"

    def alarm_name(self, rule_name: str) -> str:
        """The CloudWatch alarm name of a shared rule: ``cloudviz-api-5xx-rate`` -> ``cloudviz-dev-api-5xx-rate``."""
        return f"{self.prefix}-{rule_name.removeprefix(f'{PROJECT}-')}"

    # Automation stack.
    @property
    def redeploy_function(self) -> str:
        return f"{self.prefix}-redeploy"

    @property
    def redeploy_role_name(self) -> str:
        return f"{self.redeploy_function}-role"

    @property
    def schedule_name(self) -> str:
        return f"{self.prefix}-retrain"

    @property
    def scheduler_role_name(self) -> str:
        return f"{self.schedule_name}-role"

    @property
    def approval_rule_name(self) -> str:
        return f"{self.prefix}-model-approved"

    @property
    def redeploy_queue_name(self) -> str:
        """The queue between the approval rule and the redeploy function (retries while a stack is busy)."""
        return f"{self.redeploy_function}-queue"

    @property
    def redeploy_dead_letter_queue_name(self) -> str:
        return f"{self.redeploy_function}-dead-letters"

    @property
    def redeploy_dead_letter_alarm_name(self) -> str:
        return f"{self.redeploy_function}-dead-letters"

    @property
    def smoke_test_function(self) -> str:
        return f"{self.prefix}-smoke-test"

    @property
    def smoke_test_role_name(self) -> str:
        return f"{self.smoke_test_function}-role"

    @property
    def endpoint_updated_rule_name(self) -> str:
        """The rule running the smoke test when the endpoint stack finished a creation or an update."""
        return f"{self.prefix}-endpoint-updated"

    # Shared with the pipeline (not stage-scoped: one registry group and one pipeline per account/region).
    @property
    def model_package_group(self) -> str:
        return DEFAULT_GROUP

    @property
    def pipeline_name(self) -> str:
        return PIPELINE_NAME

    # Log groups.
    @property
    def inference_log_group(self) -> str:
        return log_group_name(self.inference_function)

    @property
    def retrieve_log_group(self) -> str:
        return log_group_name(self.retrieve_function)

    @property
    def redeploy_log_group(self) -> str:
        return log_group_name(self.redeploy_function)

    @property
    def drift_log_group(self) -> str:
        return log_group_name(self.drift_function)

    @property
    def smoke_test_log_group(self) -> str:
        return log_group_name(self.smoke_test_function)
