"""``cloudviz report RUN_ID``: a run's HTML report, through ``LocalProject.report``."""

from __future__ import annotations

import argparse
from pathlib import Path

from cloudviz.api.local import LocalProject
from cloudviz.commands.arguments import Actions, add_command
from cloudviz.commands.output import emit


def report_command(args: argparse.Namespace) -> int:
    report = LocalProject().report(args.run_id, args.output)
    emit(args, report.to_dict(), f"Report: {report.html}\nFigures: {', '.join(Path(p).name for p in report.figures)}")
    return 0


def register(groups: Actions) -> None:
    report = add_command(
        groups, "report", report_command, "write an HTML report (and PNG figures) of a pipeline run", "RUN_ID",
        description="Write a self-contained HTML report of a pipeline run: data summary, split sizes, metrics, "
        "confusion matrix, feature importance, step timings, and a comparison with the live model.",
    )
    report.add_argument("--output", metavar="DIR", help="folder to write into (default: the run's folder/report)")
