"""The ``cloudviz`` command: the parser assembled from the command groups (:mod:`cloudviz.commands`), and how
errors end it.

Exit status: 0 success; 1 a pipeline run that failed; 2 a usage or input error (one line on
stderr, no traceback unless ``--debug``); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import textwrap
from importlib import metadata

from cloudviz.commands import data, deploy, models, monitoring, pipeline, report, runs, schedule, serve
from cloudviz.commands.arguments import STATE_HOME_HELP, Actions
from pipelines.errors import CloudVizError
from pipelines.state import use_owner_only_umask

DESCRIPTION = """\
CloudViz trains a tabular XGBoost model with a SageMaker-style pipeline (Preprocess -> Train -> Evaluate ->
CheckAccuracy -> Register), keeps its versions in a model registry where they are approved or rejected, deploys
an approved version to a dev endpoint and promotes it to prod, serves it behind a prediction API with an API key,
and watches it (dashboard, alarms, drift). It all runs on this machine; the same pipeline and stacks run on AWS
(SageMaker Pipelines, endpoints, API Gateway) with `pipeline start --target aws`, `deploy aws` and `promote aws`."""
GROUPS = (pipeline, data, runs, models, deploy, report, serve, monitoring,
          schedule)  # in the order --help lists their commands


class VersionAction(argparse.Action):
    """``--version``: the installed package's version, read only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version of cloudviz and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        try:
            version = metadata.version("cloudviz")
        except metadata.PackageNotFoundError:
            parser.exit(2, "cloudviz: error: the cloudviz package is not installed (pip install -e .)\n")
        print(f"cloudviz {version}")
        parser.exit()


def commands_epilog(groups: Actions) -> str:
    """Each command with its actions, from the parser itself, for the top-level --help."""
    lines = ["commands with actions (cloudviz COMMAND ACTION; --help on each):"]
    for name, command in groups.choices.items():
        for action in command._actions:  # noqa: SLF001 - argparse keeps them nowhere else
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                lines.append(f"  {name:<10} {', '.join(action.choices)}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloudviz", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    groups = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(groups)
    parser.epilog = commands_epilog(groups) + "\n\n" + textwrap.fill(STATE_HOME_HELP, 100)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_owner_only_umask()
    try:
        return args.handler(args)
    except (CloudVizError, OSError, sqlite3.Error) as error:
        if args.debug:
            raise
        print(f"cloudviz: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cloudviz: interrupted", file=sys.stderr)
        return 130
