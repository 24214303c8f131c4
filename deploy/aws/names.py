"""Every AWS resource name of a stage, in one place.

Templates, the deployer and the tests read names only from here, so a stack never refers to a
resource under a name another stack spells differently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipelines.definition import DEFAULT_GROUP, PIPELINE_NAME
from pipelines.errors import UserError
from serving_lambdas.served_version import MODEL_VERSION_TAG

STAGES = ("dev", "prod")
PROJECT = "cloudviz"
# The one production variant of every endpoint, on every version and both targets (SageMaker's default name).
# A blue/green update (prod's DeploymentConfig) requires the new configuration to keep the variant names; the
# served model version is the endpoint configuration's MODEL_VERSION_TAG instead.
PRODUCTION_VARIANT = "AllTraffic"
# A SageMaker model package group name (ModelPackageGroupName's pattern).
GROUP_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
SCHEDULE_NAME_LIMIT = 64  # an EventBridge Scheduler schedule's name
__all__ = ["DEFAULT_GROUP", "MODEL_VERSION_TAG", "PRODUCTION_VARIANT", "PROJECT", "STAGES", "ResourceNames",
           "log_group_name"]


def log_group_name(function_name: str) -> str:
    """The log group Lambda writes a function's logs to."""
    return f"/aws/lambda/{function_name}"


@dataclass(frozen=True)
class ResourceNames:
    """Names of the resources of one stage (``dev`` or ``prod``) serving one model package ``group``: the default
    group's are ``cloudviz-{stage}-...`` (as before groups had stacks of their own), another group's
    ``cloudviz-{group in lower case}-{stage}-...``. A group whose names AWS would refuse is refused up front."""

    stage: str
    group: str = DEFAULT_GROUP

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}: expected one of {', '.join(STAGES)}")
        if self.group != DEFAULT_GROUP:
            self._refuse_unnamable_group()

    def _refuse_unnamable_group(self) -> None:
        if not GROUP_PATTERN.fullmatch(self.group):
            raise UserError(f"group {self.group!r}: not a SageMaker model package group name (letters, digits and "
                            "hyphens, starting and ending with a letter or digit, at most 63 characters)")
        # Every stage's names (a group deployable to dev must be promotable to prod); the one furthest over.
        over, kind, limit, name = max((len(name) - limit, kind, limit, name)
                                      for stage in STAGES for kind, limit, name in (
                                          (kind, limit, name.replace(self.prefix, self._prefix(stage), 1))
                                          for kind, limit, name in self.limited_names()))
        if over > 0:
            raise UserError(f"group {self.group!r}: its {kind} name {name} would be {len(name)} characters long, "
                            f"over AWS's limit of {limit}: use a group name shorter by {over}")

    def limited_names(self) -> list[tuple[str, int, str]]:
        """Every name AWS limits in length: ``(kind, limit, name)``."""
        roles = (self.model_role_name, self.endpoint_deploy_role_name, self.inference_role_name,
                 self.retrieve_role_name, self.drift_role_name, self.redeploy_role_name, self.scheduler_role_name,
                 self.smoke_test_role_name, self.retrain_role_name)
        functions = (self.inference_function, self.retrieve_function, self.drift_function, self.redeploy_function,
                     self.smoke_test_function, self.retrain_function)
        log_groups = (self.inference_log_group, self.retrieve_log_group, self.redeploy_log_group,
                      self.drift_log_group, self.smoke_test_log_group, self.retrain_log_group)
        return [
            *(("CloudFormation stack", 128, name) for name in self.stacks),
            ("SageMaker endpoint", 63, self.endpoint_name),
            *(("IAM role", 64, name) for name in roles),
            *(("Lambda function", 64, name) for name in functions),
            *(("EventBridge rule", 64, name) for name in (self.drift_schedule_name, self.approval_rule_name,
                                                           self.endpoint_updated_rule_name,
                                                           self.drift_retrain_rule_name)),
            ("EventBridge Scheduler schedule", SCHEDULE_NAME_LIMIT, self.schedule_name),
            *(("SQS queue", 80, name) for name in (self.redeploy_queue_name, self.redeploy_dead_letter_queue_name)),
            ("DynamoDB table", 255, self.table_name),
            ("SNS topic", 256, self.topic_name),
            ("CloudWatch dashboard", 255, self.dashboard_name),
            ("CloudWatch alarm", 255, self.redeploy_dead_letter_alarm_name),
            *(("CloudWatch log group", 512, name) for name in log_groups),
        ]

    def _prefix(self, stage: str) -> str:
        return f"{PROJECT}-{stage}" if self.group == DEFAULT_GROUP else f"{PROJECT}-{self.group.lower()}-{stage}"

    @property
    def prefix(self) -> str:
        """``cloudviz-{stage}`` (the default group) or ``cloudviz-{group}-{stage}``: every stage-scoped name starts
        with it."""
        return self._prefix(self.stage)

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

    def retrain_schedule_name(self, schedule: str) -> str:
        """The EventBridge Scheduler schedule of a schedule definition (``cloudviz.schedules.json``); a name over
        AWS's limit is refused where the automation template is generated (:func:`schedule_name_refusal`)."""
        return f"{self.schedule_name}-{schedule}"

    def schedule_name_refusal(self, schedule: str) -> str:
        """Why AWS would refuse the EventBridge Scheduler schedule of ``schedule`` ("" if it would not)."""
        name = self.retrain_schedule_name(schedule)
        over = len(name) - SCHEDULE_NAME_LIMIT
        return (f"its EventBridge Scheduler schedule {name} would be {len(name)} characters long, over AWS's limit of "
                f"{SCHEDULE_NAME_LIMIT}: use a schedule name shorter by {over}") if over > 0 else ""

    @property
    def retrain_function(self) -> str:
        """Starts a retraining run on the newest data version (the schedules' and the drift rule's target)."""
        return f"{self.prefix}-retraining"

    @property
    def retrain_role_name(self) -> str:
        return f"{self.retrain_function}-role"

    @property
    def drift_retrain_rule_name(self) -> str:
        """The rule retraining when the feature-drift alarm goes to ALARM (where the stage enables it)."""
        return f"{self.prefix}-drift-retrain"

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

    # Shared with the pipeline (not stage-scoped: one pipeline per account/region, registering into any group).
    @property
    def model_package_group(self) -> str:
        return self.group

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

    @property
    def retrain_log_group(self) -> str:
        return log_group_name(self.retrain_function)
