"""``cloudviz runs list | show``: past pipeline runs, and how every command shows one run."""

from __future__ import annotations

import argparse

from cloudviz import render
from cloudviz.api.local import LocalProject
from cloudviz.api.types import Run
from cloudviz.commands.arguments import Actions, actions_of, add_command, positive_int
from cloudviz.commands.output import emit
from pipelines.errors import NotFoundError


def current_approval(project: LocalProject, run: Run) -> str | None:
    """The approval status in the registry now of the version a run registered (a cached Register step keeps the
    one from when it first registered); the recorded one if the registry lost the version."""
    try:
        return project.models.get(run.model.group, run.model.version).approval_status
    except NotFoundError:
        return render.registered_as(run)


def show_run(args: argparse.Namespace, project: LocalProject, run: Run) -> None:
    """The run record, with its headline metrics and registered version (its approval status now) for scripts."""
    status = current_approval(project, run) if run.model else None
    document = {
        **run.details,
        "metrics": run.metrics,
        "registered": {"model_package_group": run.model.group, "version": run.model.version,
                       "approval_status": status} if run.model else None,
    }
    emit(args, document, render.run_summary(run, status))


def runs_list(args: argparse.Namespace) -> int:
    runs = LocalProject().runs.list(args.limit)
    text = render.runs_table(runs) if runs else "No runs yet: start one with `cloudviz pipeline run`."
    emit(args, [run.details for run in runs], text)
    return 0


def runs_show(args: argparse.Namespace) -> int:
    project = LocalProject()
    show_run(args, project, project.runs.get(args.run_id))
    return 0


def register(groups: Actions) -> None:
    runs = actions_of(groups, "runs", "inspect pipeline runs")
    listing = add_command(runs, "list", runs_list, "runs, newest first")
    listing.add_argument("--limit", type=positive_int, default=20, help="show at most this many (default 20)")
    add_command(runs, "show", runs_show, "one run: steps, times, metrics, registered version", "RUN_ID")
