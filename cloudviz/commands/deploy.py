"""``cloudviz deploy | promote | destroy`` (local and aws) and ``cloudviz deployments``: what each stage serves,
through ``project.deploy``, ``project.promote`` and ``project.deployments``."""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING

from cloudviz import render
from cloudviz.api.local import LocalProject
from cloudviz.api.types import Deployment
from cloudviz.commands import deploy_aws
from cloudviz.commands.arguments import (
    STATE_HOME_HELP,
    Actions,
    actions_of,
    add_command,
    add_endpoint,
    add_group,
    positive_int,
)
from cloudviz.commands.output import emit
from deploy.aws.names import STAGES
from pipelines.errors import NotFoundError

if TYPE_CHECKING:
    from deploy.dashboard.serve_file import ServeRecord


def deploy_local_command(args: argparse.Namespace) -> int:
    reason = "cloudviz deploy local --force" if args.force else "cloudviz deploy local"
    deployment = LocalProject().deploy(args.group, args.version, args.stage, args.force, reason=reason)
    emit(args, deployment.details, render.deployment(deployment))
    return 0


def promote_local_command(args: argparse.Namespace) -> int:
    promotion = LocalProject().promote(args.group, args.source, args.target)
    document = {"promoted": promotion.promoted, "deployment": promotion.deployment.details,
                "smoke_test": promotion.smoke_test}
    emit(args, document, render.promotion(promotion.deployment, promotion.smoke_test, args.source,
                                          promotion.promoted))
    return 0


def serve_line(deployment: Deployment, serve: ServeRecord | None) -> str:
    command = render.serve_command(deployment.group, deployment.stage)
    if serve is None:
        return f"{deployment.endpoint}: `{command}` is not running on this state home"
    return f"{deployment.endpoint}: `{command}` is running (process {serve.pid}, API {serve.api_url})"


def deployments_command(args: argparse.Namespace) -> int:
    project = LocalProject()
    live = project.deployments(args.group, args.stage)
    approvals = {}
    for d in live:
        with contextlib.suppress(NotFoundError):  # the registry lost the version: it serves, its status is unknown
            approvals[d.group, d.version] = project.models.get(d.group, d.version).approval_status
    serves = {d.endpoint: project.running_serve(d.group, d.stage) for d in live}
    document = [{**d.details, "approval_status": approvals.get((d.group, d.version)),
                 "serve": serves[d.endpoint].to_dict() if serves[d.endpoint] else None} for d in live]
    if live:
        lines = [serve_line(d, serves[d.endpoint]) for d in live]
        text = "\n".join([render.deployments_table(live, approvals), *lines])
    else:
        text = ("Nothing is deployed on this state home yet: `cloudviz serve` deploys the latest Approved version"
                " (or `cloudviz deploy local`).")
    emit(args, document, text)
    return 0


def register(groups: Actions) -> None:
    deploy = actions_of(groups, "deploy", "deploy a registered model")
    local = add_command(
        deploy, "local", deploy_local_command, "serve a registered version on this machine",
        description="Check a registered version (it loads and answers a smoke test) and make it the live one of "
        "the group's local endpoint. A running `cloudviz serve` switches to it with no failed request.",
    )
    add_endpoint(local, "the stage whose endpoint serves it; prod takes only versions promoted to it")
    local.add_argument("--version", type=positive_int, help="version to deploy (default: the latest Approved)")
    local.add_argument("--force", action="store_true",
                       help="deploy a version that is not Approved, or to prod one never promoted there")
    destroy = actions_of(groups, "destroy", "remove what a deploy created")
    promote = actions_of(groups, "promote", "deploy a stage's smoke-tested version to the next stage")
    promotion = add_command(
        promote, "local", promote_local_command, "promote dev's live version to prod on this machine",
        description="Deploy the version live on --from (dev) to --to (prod), only if its newest smoke test on "
        "--from passed: `cloudviz serve --stage dev` smoke-tests every version it puts live through its own API "
        "(POST /predictions with an example row, then GET /predictions/{id}). A running `cloudviz serve --stage "
        "prod` switches to the promoted version with no failed request.",
        epilog="Refused (exit 2, nothing changed) when --from serves nothing, its version was never smoke-tested "
        "or failed its smoke test, or is no longer Approved. " + STATE_HOME_HELP,
    )
    add_group(promotion)
    promotion.add_argument("--from", dest="source", choices=STAGES, required=True, help="the stage promoted from")
    promotion.add_argument("--to", dest="target", choices=STAGES, required=True, help="the stage promoted to")
    deploy_aws.register(deploy, destroy, promote)
    live = add_command(
        groups, "deployments", deployments_command, "what each local endpoint serves, since when",
        description="Every local endpoint with the version it serves (group, stage, approval status now), since "
        "when and why, and whether a `cloudviz serve` serves it.",
        epilog="It reads <state home>/deployments/, which `cloudviz serve`, `deploy local` and `promote local` "
        "write. " + STATE_HOME_HELP,
    )
    live.add_argument("--group", help="only this model package group")
    live.add_argument("--stage", choices=STAGES, help="only this stage")
