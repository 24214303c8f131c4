"""Make moto 5.2's CloudFormation change sets behave as CloudFormation's do, where the deployer depends on it.

moto applies an executed change set synchronously and differs from CloudFormation in five ways (verified by
experiment against moto 5.2.5), each closed here by patching moto, never our code:

1. *No-change updates.* CloudFormation accepts CreateChangeSet and marks the change set FAILED with the reason
   "The submitted information didn't contain changes..."; moto's response layer instead raises ValidationError
   "No updates are to be performed." when parameters are given (as UpdateStack rightly does). Its backend
   already has CloudFormation's behaviour, so the response-layer check is switched off for CreateChangeSet.
2. *Outputs.* moto computes a stack's outputs when the stack is created, and a stack created by a change set is
   created empty: its outputs stay empty after execution. They are recomputed after every execution.
3. *Parameters and template.* moto keeps the stack's first parameters and parsed template after an update, so
   the next no-change comparison is against stale values. Both are refreshed after every execution.
4. *UpdateStack with UsePreviousValue* (how the redeploy function keeps the endpoint's other parameters)
   looks the value up among the parameters given when the stack was created, and fails with KeyError for one
   that took its default; CloudFormation keeps the stack's current value, default or not. The current (resolved)
   values are used.
5. *Failures.* A resource that cannot be created makes moto's ExecuteChangeSet itself fail, leaving the stack in
   REVIEW_IN_PROGRESS. CloudFormation accepts the execution, records a ``CREATE_FAILED``/``UPDATE_FAILED`` event
   with the reason, and rolls back to ``ROLLBACK_COMPLETE``/``UPDATE_ROLLBACK_COMPLETE``. The fixture does the
   same, naming the resource whose creation or update raised; a failed creation deletes what was created, a
   failed update restores nothing.

And one resource type moto's CloudFormation reads more strictly than CloudFormation does:
``AWS::ApiGateway::Method`` requires ``Integration.IntegrationHttpMethod`` and ``Integration.Uri``, which a
``MOCK`` integration (the api stack's CORS preflight) has neither of: missing ones are passed as absent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from moto.apigateway.models import Method
from moto.cloudformation import parsing
from moto.cloudformation.models import CloudFormationBackend, Event, Stack
from moto.cloudformation.responses import CloudFormationResponse


def record_failure(stack: object, change_set: object, error: Exception) -> None:
    """Give the stack CloudFormation's events and final status for a failed execution."""
    creating = change_set.change_set_type == "CREATE"
    resources = change_set.template_dict.get("Resources", {})
    failed = getattr(error, "logical_id", None) or next(iter(resources))
    operation = "CREATE" if creating else "UPDATE"
    stack.events.append(Event(
        stack_id=stack.stack_id, stack_name=stack.name, logical_resource_id=failed, physical_resource_id="",
        resource_type=resources[failed]["Type"], resource_status=f"{operation}_FAILED",
        resource_status_reason=str(error), resource_properties=None,
    ))
    rollback = "ROLLBACK" if creating else "UPDATE_ROLLBACK"
    stack._add_stack_event(f"{rollback}_IN_PROGRESS", resource_status_reason=f"The following resource(s) failed "
                           f"to {operation.lower()}: [{failed}].")
    if creating:
        stack.resource_map.delete()
    stack._add_stack_event(f"{rollback}_COMPLETE")
    stack.status = f"{rollback}_COMPLETE"


def naming_the_resource(parse: Callable) -> Callable:
    """``parse`` (moto's create or update of one resource), tagging its error with the resource's logical ID
    (the innermost one: a resource's dependencies are created while it is)."""

    def parse_naming_the_resource(logical_id: str, *args: object, **kwargs: object) -> object:
        try:
            return parse(logical_id, *args, **kwargs)
        except Exception as error:
            if not hasattr(error, "logical_id"):
                error.logical_id = logical_id
            raise

    return parse_naming_the_resource


@pytest.fixture
def cloudformation_like_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's CloudFormation patched as the module docstring describes, for one test."""
    patch_cloudformation(monkeypatch)
    yield


def patch_cloudformation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patch moto's CloudFormation as the module docstring describes, undone with ``monkeypatch``."""
    execute = CloudFormationBackend.execute_change_set

    def execute_like_aws(self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None) -> None:
        change_set = self.describe_change_set(change_set_name)
        stack = change_set.stack
        try:
            execute(self, change_set_name, stack_name)
        except Exception as error:  # a resource's error: CloudFormation reports it in events, not to the caller
            record_failure(stack, change_set, error)
            return
        stack._parse_template()
        stack.parameters = dict(change_set.parameters)
        stack.output_map = stack._create_output_map()

    for name in ("parse_and_create_resource", "parse_and_update_resource"):
        monkeypatch.setattr(parsing, name, naming_the_resource(getattr(parsing, name)))

    create_method = Method.create_from_cloudformation_json.__func__

    def create_method_like_aws(cls: type, resource_name: str, cloudformation_json: dict, *args: object,
                               **kwargs: object) -> Method:
        properties = dict(cloudformation_json["Properties"])
        properties["Integration"] = {"IntegrationHttpMethod": None, "Uri": None, **properties.get("Integration", {})}
        return create_method(cls, resource_name, {**cloudformation_json, "Properties": properties}, *args, **kwargs)

    monkeypatch.setattr(Method, "create_from_cloudformation_json", classmethod(create_method_like_aws))
    create_change_set = CloudFormationResponse.create_change_set

    def create_change_set_like_aws(self: CloudFormationResponse) -> object:
        self._validate_different_update = lambda *args: None  # this request only: UpdateStack keeps moto's check
        return create_change_set(self)

    monkeypatch.setattr(CloudFormationResponse, "create_change_set", create_change_set_like_aws)
    monkeypatch.setattr(CloudFormationBackend, "execute_change_set", execute_like_aws)
    resolve = CloudFormationBackend._resolve_update_parameters

    def resolve_like_aws(self: CloudFormationBackend, instance: object, incoming_params: list[dict]) -> dict:
        if isinstance(instance, Stack):
            current = instance.stack_parameters
            incoming_params = [{"ParameterKey": p["ParameterKey"], "ParameterValue": current[p["ParameterKey"]]}
                               if p.get("UsePreviousValue") else p for p in incoming_params]
        return resolve(self, instance, incoming_params)

    monkeypatch.setattr(CloudFormationBackend, "_resolve_update_parameters", resolve_like_aws)
