"""``cloudviz models list | show | approve | reject``: the model registry, through ``project.models``."""

from __future__ import annotations

import argparse

from cloudviz import render
from cloudviz.api.local import LocalProject
from cloudviz.api.types import Deployment, ModelVersion
from cloudviz.commands.arguments import Actions, Handler, actions_of, add_command
from cloudviz.commands.output import emit
from pipelines.registry import APPROVAL_STATUSES, approval_status


def version_document(version: ModelVersion, live: list[Deployment]) -> dict:
    """The registry row, with the stages whose endpoints serve it."""
    return {**version.details, "live": render.live_stages(live, version)}


def models_list(args: argparse.Namespace) -> int:
    project = LocalProject()
    versions = project.models.list(args.group, args.status)
    live = project.deployments()
    if versions:
        text = render.packages_table(versions, live)
    elif args.group or args.status:
        text = f"No {args.status or 'registered'} versions{f' in {args.group}' if args.group else ''}."
    else:
        text = "No registered models yet."
    emit(args, [version_document(version, live) for version in versions], text)
    return 0


def models_show(args: argparse.Namespace) -> int:
    project = LocalProject()
    version = project.models.get(args.group, args.version)
    live = project.deployments()
    emit(args, version_document(version, live), render.package_detail(version, live))
    return 0


def set_approval(status: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        version = LocalProject().models.set_approval(args.group, args.version, status, args.reason)
        emit(args, version.details, f"{version.group} version {version.version}: {version.approval_status}")
        return 0

    return handler


def register(groups: Actions) -> None:
    models = actions_of(groups, "models", "the model registry")
    listing = add_command(models, "list", models_list, "model package versions, newest first")
    listing.add_argument("--group", help="only this model package group")
    listing.add_argument("--status", type=approval_status, choices=APPROVAL_STATUSES,
                         help="only versions with this approval status (any letter case)")
    add_command(models, "show", models_show, "one version: approval, artifact, metrics, lineage", "GROUP", "VERSION")
    for name, status, text in (("approve", "Approved", "approve a version (it becomes deployable)"),
                               ("reject", "Rejected", "reject a version")):
        command = add_command(models, name, set_approval(status), text, "GROUP", "VERSION")
        command.add_argument("--reason", default="", help="why (kept with the version)")
