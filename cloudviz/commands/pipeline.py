"""``cloudviz pipeline run | start | definition | upsert | resume | parameters``: run the training pipeline here
through the Python API, or put it on SageMaker and start it there."""

from __future__ import annotations

import argparse
import sys

from cloudviz import render
from cloudviz.api.local import LocalProject
from cloudviz.api.types import Run
from cloudviz.commands import pipeline_aws
from cloudviz.commands.arguments import STATE_HOME_HELP, Actions, actions_of, add_command
from cloudviz.commands.output import emit
from cloudviz.commands.runs import show_run
from cloudviz.progress import ProgressDisplay
from pipelines.errors import UserError


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--param {pair!r}: expected NAME=VALUE")
        overrides[name.strip()] = value
    return overrides


def progress(args: argparse.Namespace) -> ProgressDisplay | None:
    """The progress display on stderr (redrawn in place on a terminal), unless ``--quiet``."""
    return None if args.quiet else ProgressDisplay(sys.stderr, sys.stderr.isatty() and not args.json)


def finish_run(args: argparse.Namespace, project: LocalProject, run: Run) -> int:
    show_run(args, project, run)
    return 0 if run.succeeded else 1


def pipeline_run(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.param)
    project = LocalProject()
    run = project.pipeline.start(overrides, args.data, use_cache=not args.no_cache, dataset=args.dataset,
                                 observer=progress(args))
    return finish_run(args, project, run)


def pipeline_start(args: argparse.Namespace) -> int:
    if args.target == "local":
        return pipeline_run(args)
    if args.data is not None:
        raise UserError("--data names a local file: with --target aws use --param InputData=s3://BUCKET/KEY.csv")
    overrides = parse_overrides(args.param)
    if args.dataset is not None:
        overrides["DataSetVersion"] = args.dataset
    return pipeline_aws.start_command(args, overrides)


def pipeline_resume(args: argparse.Namespace) -> int:
    project = LocalProject()
    return finish_run(args, project, project.pipeline.resume(args.run_id, use_cache=args.use_cache,
                                                             observer=progress(args)))


def pipeline_parameters(args: argparse.Namespace) -> int:
    parameters = LocalProject().pipeline.parameters()
    rows = [[p.name, p.type, repr(p.default), p.description] for p in parameters]
    document = [{"name": p.name, "type": p.type, "default": p.default, "description": p.description}
                for p in parameters]
    emit(args, document, render.table(["NAME", "TYPE", "DEFAULT", "DESCRIPTION"], rows))
    return 0


def add_run_options(parser: argparse.ArgumentParser, resuming: bool = False) -> None:
    """``--no-cache`` and ``--quiet``; a resume also takes ``--cache`` and, given neither, keeps the run's choice."""
    if resuming:
        cache = parser.add_mutually_exclusive_group()
        cache.add_argument("--no-cache", dest="use_cache", action="store_false", default=None,
                           help="execute every remaining step, ignoring the step cache")
        cache.add_argument("--cache", dest="use_cache", action="store_true", default=None,
                           help="take remaining steps from the step cache although the run began with --no-cache")
    else:
        parser.add_argument("--no-cache", action="store_true", help="execute every step, ignoring the step cache")
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def register(groups: Actions) -> None:
    pipeline = actions_of(groups, "pipeline", "run the training pipeline")
    run = add_command(
        pipeline, "run", pipeline_run, "run the pipeline on this machine",
        description="Run Preprocess -> Train -> Evaluate -> CheckAccuracy -> Register on this machine.",
        epilog="List the parameters with `cloudviz pipeline parameters`. " + STATE_HOME_HELP,
    )
    start = add_command(
        pipeline, "start", pipeline_start, "run the pipeline here (--target local) or on SageMaker (--target aws)",
        epilog="--target aws starts an execution of the pipeline put there by `cloudviz pipeline upsert`.",
    )
    start.add_argument("--target", choices=("local", "aws"), default="local", help="where to run (default local)")
    pipeline_aws.add_aws_options(start)
    for runner in (run, start):
        runner.add_argument("--data", metavar="PATH", help="raw CSV to train on (default: the bundled iris data)")
        runner.add_argument("--dataset", metavar="REF",
                            help="data set version to train on, all its parts: NAME (its newest version) or NAME@N "
                            "(`cloudviz data list`); sets the DataSetVersion parameter")
        runner.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                            help="set a pipeline parameter")
        add_run_options(runner)
    for name, handler, text in (
        ("definition", pipeline_aws.definition_command, "print the SageMaker Pipeline definition (offline)"),
        ("upsert", pipeline_aws.upsert_command, "create or update the SageMaker Pipeline (needs AWS credentials)"),
    ):
        pipeline_aws.add_definition_options(add_command(pipeline, name, handler, text))
    resume = add_command(pipeline, "resume", pipeline_resume, "resume a failed run from the step that failed", "RUN_ID",
                         epilog="By default the rest uses the step cache as the run did: a run started with "
                         "--no-cache resumes without it.")
    add_run_options(resume, resuming=True)
    add_command(pipeline, "parameters", pipeline_parameters, "list the pipeline parameters and their defaults")
