"""Deploying :class:`StackSpec` s through CloudFormation change sets, one stack at a time, and deleting their stacks.

A failed stack operation raises :class:`UserError` with the failed resources' reasons from the stack events.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from botocore.exceptions import ClientError

from deploy.aws.stacks import StackSpec
from pipelines.errors import UserError

# CloudFormation takes at most 51,200 bytes as TemplateBody; larger templates go by TemplateURL from S3.
TEMPLATE_BODY_LIMIT = 51_200
TEMPLATE_PREFIX = "cloudviz/deploy/templates"
# Why a change set failed when the template and parameters change nothing (CloudFormation uses both wordings).
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")

CREATED, UPDATED, UNCHANGED, DRY_RUN = "created", "updated", "unchanged", "dry-run"
ROLLBACK_COMPLETE = "ROLLBACK_COMPLETE"
REVIEW_IN_PROGRESS = "REVIEW_IN_PROGRESS"
DELETE_COMPLETE = "DELETE_COMPLETE"

Progress = Callable[[str], None]
T = TypeVar("T")


def quiet(line: str) -> None:
    """The default progress reporter: says nothing."""


@dataclass(frozen=True)
class ResourceChange:
    """One line of a change set: what happens to which resource."""

    action: str  # Add | Modify | Remove | Import | Dynamic
    logical_id: str
    resource_type: str
    replacement: str = ""  # True | False | Conditional, for Modify

    @classmethod
    def from_change(cls, change: dict) -> ResourceChange:
        resource = change["ResourceChange"]
        return cls(resource["Action"], resource["LogicalResourceId"], resource["ResourceType"],
                   resource.get("Replacement", ""))

    def to_dict(self) -> dict:
        return {"action": self.action, "logical_id": self.logical_id, "resource_type": self.resource_type,
                "replacement": self.replacement}


@dataclass(frozen=True)
class DeployResult:
    """What deploying one stack did: ``created``, ``updated``, ``unchanged`` or ``dry-run``."""

    stack_name: str
    status: str
    changes: tuple[ResourceChange, ...] = ()
    outputs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"stack_name": self.stack_name, "status": self.status,
                "changes": [change.to_dict() for change in self.changes], "outputs": self.outputs}


def format_changes(stack_name: str, changes: Sequence[ResourceChange]) -> str:
    """The printable summary of a change set: one aligned line per resource."""
    if not changes:
        return f"{stack_name}: no resource changes (parameters or outputs only)"
    rows = [(c.action, c.resource_type, c.logical_id) for c in changes]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [f"{stack_name}: {len(changes)} change(s)"]
    for change, row in zip(changes, rows, strict=True):
        line = "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        note = f"  (replacement: {change.replacement})" if change.action == "Modify" and change.replacement else ""
        lines.append((line + note).rstrip())
    return "\n".join(lines)


def deploy_stack(
    cloudformation: object,
    s3: object,
    spec: StackSpec,
    bucket: str | None,
    dry_run: bool,
    *,
    progress: Progress = quiet,
    poll_seconds: float = 5.0,
    timeout_seconds: float = 3600.0,
) -> DeployResult:
    """Deploy one stack through a change set and return what it did, with the stack's outputs.

    ``bucket`` receives the template when it is over the TemplateBody limit (``None``: such a template is an
    error). A stack left in ROLLBACK_COMPLETE by a failed creation cannot be updated: it is deleted first
    (not in a dry run, which reports it instead).
    """
    waiter = Poller(poll_seconds, timeout_seconds)
    stack = describe_stack(cloudformation, spec.name)
    if stack is not None and stack["StackStatus"] == ROLLBACK_COMPLETE:
        if dry_run:
            raise UserError(f"stack {spec.name} is in {ROLLBACK_COMPLETE} (its creation failed): deploying without "
                            "--dry-run deletes and recreates it")
        progress(f"{spec.name}: deleting the stack its failed creation left in {ROLLBACK_COMPLETE}")
        delete_and_wait(cloudformation, stack["StackId"], waiter, progress)
        stack = None
    status = stack["StackStatus"] if stack is not None else None
    if status is not None and status.endswith("_IN_PROGRESS") and status != REVIEW_IN_PROGRESS:
        raise UserError(f"stack {spec.name} is busy ({status}): wait for it to finish and deploy again")
    creating = status is None or status == REVIEW_IN_PROGRESS

    change_set_name = f"cloudviz-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"
    arguments = {
        "StackName": spec.name,
        "ChangeSetName": change_set_name,
        "ChangeSetType": "CREATE" if creating else "UPDATE",
        "Parameters": [{"ParameterKey": key, "ParameterValue": value} for key, value in spec.parameters.items()],
        "Capabilities": list(spec.capabilities),
        "Tags": [{"Key": key, "Value": value} for key, value in spec.tags.items()],
        "Description": f"cloudviz deploy {'(dry run) ' if dry_run else ''}of {spec.name}",
        **template_argument(s3, spec, bucket),
    }
    progress(f"{spec.name}: creating a change set ({arguments['ChangeSetType']})")
    created = cloudformation.create_change_set(**arguments)
    change_set_id, stack_id = created["Id"], created["StackId"]
    change_set = wait_for_change_set(cloudformation, change_set_id, waiter)
    failed = change_set["Status"] == "FAILED"
    changes = () if failed else tuple(ResourceChange.from_change(change) for change in change_set["Changes"])
    if not failed:
        progress(format_changes(spec.name, changes))
    if failed or dry_run:
        discard(cloudformation, change_set_id, stack_id if stack is None else None, waiter)
    if failed:
        reason = change_set.get("StatusReason", "")
        if any(marker in reason for marker in NO_CHANGES):
            progress(f"{spec.name}: no changes")
            return DeployResult(spec.name, UNCHANGED, (), stack_outputs(cloudformation, stack_id))
        raise UserError(f"stack {spec.name}: the change set failed: {reason}")
    if dry_run:
        return DeployResult(spec.name, DRY_RUN, changes, {} if creating else stack_outputs(cloudformation, stack_id))

    seen = {event["EventId"] for event in stack_events(cloudformation, stack_id, set())}
    progress(f"{spec.name}: executing the change set")
    cloudformation.execute_change_set(ChangeSetName=change_set_id)
    expected = "CREATE_COMPLETE" if creating else "UPDATE_COMPLETE"
    status, events = wait_for_stack(cloudformation, stack_id, seen, waiter, progress)
    if status != expected:
        raise UserError(f"stack {spec.name} failed ({status}): {failure_reasons(events)}")
    return DeployResult(spec.name, CREATED if creating else UPDATED, changes, stack_outputs(cloudformation, stack_id))


def destroy_stacks(
    cloudformation: object,
    stack_names: Sequence[str],
    *,
    progress: Progress = quiet,
    poll_seconds: float = 5.0,
    timeout_seconds: float = 3600.0,
) -> list[str]:
    """Delete the stacks named, in that order; the names of those that existed."""
    waiter = Poller(poll_seconds, timeout_seconds)
    removed = []
    for name in stack_names:
        stack = describe_stack(cloudformation, name)
        if stack is None:
            progress(f"{name}: not found, nothing to delete")
            continue
        progress(f"{name}: deleting")
        delete_and_wait(cloudformation, stack["StackId"], waiter, progress)
        removed.append(name)
    return removed


def template_argument(s3: object, spec: StackSpec, bucket: str | None) -> dict[str, str]:
    """``TemplateBody``, or ``TemplateURL`` of the template uploaded under its content hash when it is too big."""
    body = json.dumps(spec.template, separators=(",", ":"))
    size = len(body.encode("utf-8"))
    if size <= TEMPLATE_BODY_LIMIT:
        return {"TemplateBody": body}
    if not bucket:
        raise UserError(f"the template of {spec.name} is {size:,} bytes, over CloudFormation's "
                        f"{TEMPLATE_BODY_LIMIT:,}-byte TemplateBody limit: give a bucket (--bucket) to upload it to")
    key = f"{TEMPLATE_PREFIX}/{spec.name}/{hashlib.sha256(body.encode('utf-8')).hexdigest()}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode("utf-8"), ContentType="application/json")
    return {"TemplateURL": f"https://{bucket}.s3.{s3.meta.region_name}.amazonaws.com/{key}"}


def describe_stack(cloudformation: object, name_or_id: str) -> dict | None:
    """The stack, or ``None`` when there is none of that name (deleted stacks are found by ID only)."""
    try:
        return cloudformation.describe_stacks(StackName=name_or_id)["Stacks"][0]
    except ClientError as error:
        if error.response["Error"]["Code"] == "ValidationError" and "does not exist" in str(error):
            return None
        raise


def stack_parameter(cloudformation: object, stack_name: str, key: str) -> str:
    """A deployed stack's value of parameter ``key``; empty when there is no such stack or parameter."""
    stack = describe_stack(cloudformation, stack_name)
    parameters = (stack or {}).get("Parameters") or []
    return next((p.get("ParameterValue", "") for p in parameters if p["ParameterKey"] == key), "")


def stack_outputs(cloudformation: object, stack_id: str) -> dict[str, str]:
    stack = cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0]
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs") or []}


class Poller:
    """Polls until an answer comes, sleeping between polls; gives up (with a UserError) after the timeout."""

    def __init__(self, poll_seconds: float, timeout_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds

    def until(self, what: str, poll: Callable[[], T | None]) -> T:
        """The first answer of ``poll`` that is not ``None``."""
        deadline = time.monotonic() + self.timeout_seconds
        while (answer := poll()) is None:
            if time.monotonic() > deadline:
                raise UserError(f"gave up waiting for {what} after {self.timeout_seconds:.0f} s")
            time.sleep(self.poll_seconds)
        return answer


def wait_for_change_set(cloudformation: object, change_set_id: str, waiter: Poller) -> dict:
    """The change set once computed (CREATE_COMPLETE or FAILED), with every page of its changes."""
    def computed() -> dict | None:
        change_set = cloudformation.describe_change_set(ChangeSetName=change_set_id)
        return change_set if change_set["Status"] in ("CREATE_COMPLETE", "FAILED") else None

    change_set = waiter.until(f"change set {change_set_id}", computed)
    changes = list(change_set.get("Changes", []))
    token = change_set.get("NextToken")
    while token:
        page = cloudformation.describe_change_set(ChangeSetName=change_set_id, NextToken=token)
        changes += page.get("Changes", [])
        token = page.get("NextToken")
    return {**change_set, "Changes": changes}


def stack_events(cloudformation: object, stack_id: str, seen: set[str]) -> list[dict]:
    """The stack's events not in ``seen``, oldest first.

    CloudFormation lists events newest first, so paging stops at the first page holding a seen event.
    """
    new = []
    for page in cloudformation.get_paginator("describe_stack_events").paginate(StackName=stack_id):
        events = page["StackEvents"]
        new += [event for event in events if event["EventId"] not in seen]
        if any(event["EventId"] in seen for event in events):
            break
    return sorted(new, key=lambda event: event["Timestamp"])


def describe_event(event: dict) -> str:
    reason = event.get("ResourceStatusReason")
    text = f"{event['StackName']}: {event['LogicalResourceId']} ({event['ResourceType']}) {event['ResourceStatus']}"
    return f"{text}: {reason}" if reason else text


def wait_for_stack(cloudformation: object, stack_id: str, seen: set[str], waiter: Poller,
                   progress: Progress) -> tuple[str, list[dict]]:
    """Poll until the stack's operation ends; its final status and the events it produced."""
    events: list[dict] = []

    def finished() -> str | None:
        status = cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"]
        for event in stack_events(cloudformation, stack_id, seen):
            seen.add(event["EventId"])
            events.append(event)
            progress(describe_event(event))
        return None if status.endswith("_IN_PROGRESS") else status

    return waiter.until(f"stack {stack_id}", finished), events


def failure_reasons(events: Sequence[dict]) -> str:
    """The failed resources of an operation and why, for the one-line error."""
    failed = [f"{event['LogicalResourceId']} ({event['ResourceType']}): "
              f"{event.get('ResourceStatusReason') or 'no reason given'}"
              for event in events if event["ResourceStatus"].endswith("_FAILED")]
    return "; ".join(failed) if failed else "no resource reported a failure; see the stack's events"


def discard(cloudformation: object, change_set_id: str, review_stack_id: str | None, waiter: Poller) -> None:
    """Delete a change set that will not be executed, and the empty stack created to review it, if any
    (CloudFormation keeps such a stack in REVIEW_IN_PROGRESS after its only change set is deleted)."""
    cloudformation.delete_change_set(ChangeSetName=change_set_id)
    if review_stack_id is not None:
        delete_and_wait(cloudformation, review_stack_id, waiter, quiet)


def delete_and_wait(cloudformation: object, stack_id: str, waiter: Poller, progress: Progress) -> None:
    seen = {event["EventId"] for event in stack_events(cloudformation, stack_id, set())}
    cloudformation.delete_stack(StackName=stack_id)
    status, events = wait_for_stack(cloudformation, stack_id, seen, waiter, progress)
    if status != DELETE_COMPLETE:
        raise UserError(f"deleting stack {stack_id} failed ({status}): {failure_reasons(events)}")


CREATE_APIGW_LOGGING_ROLE = "--create-apigw-logging-role"


def apigw_logging(session: object, create: bool, bucket: str | None, dry_run: bool,
                  progress: Progress = quiet) -> DeployResult | None:
    """Make sure API Gateway can write the stage's access log: with ``create``, deploy the region's account stack
    (the role and the account setting naming it, :mod:`deploy.aws.templates.account`) and return what that did;
    without, refuse (before any stack changes) when the region's API Gateway account setting names no CloudWatch
    role, since the api stack's stage would then fail to create, after the endpoint stack had taken its minutes."""
    from deploy.aws.stacks import apigw_logging_stack

    if create:
        return deploy_stack(session.client("cloudformation"), session.client("s3"), apigw_logging_stack(), bucket,
                            dry_run, progress=progress)
    if not session.client("apigateway").get_account().get("cloudwatchRoleArn"):
        raise UserError(f"API Gateway in {session.region_name} has no CloudWatch Logs role (an account setting), "
                        f"which the stage's access log needs: add {CREATE_APIGW_LOGGING_ROLE} to create one (it "
                        "serves every API of the account in this region), or set yours: aws apigateway "
                        "update-account --patch-operations op=replace,path=/cloudwatchRoleArn,value=ROLE_ARN")
    return None
