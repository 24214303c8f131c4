"""What the command groups share on the parser: subcommands with ``--json``, the group and stage options, and the
argument types (bad values are usage errors, exit 2)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from deploy.aws.names import STAGES
from pipelines.definition import DEFAULT_GROUP
from pipelines.runs import LATEST

STATE_HOME_HELP = ("State lives under $CLOUDVIZ_HOME (default ./.cloudviz): runs/, cache/, registry.db, datasets/,"
                   " deployments/, endpoints/ (each endpoint's predictions.db, alarms.db, logs, serve.json), logs/,"
                   " data/.")
RUN_ID_HELP = "a run id, a unique prefix of one, or 'latest'"

Handler = Callable[[argparse.Namespace], int]
Actions = argparse._SubParsersAction  # noqa: SLF001 - argparse names no public type for it


def actions_of(groups: Actions, name: str, text: str) -> Actions:
    """A command group (``cloudviz NAME ACTION``)."""
    return groups.add_parser(name, help=text).add_subparsers(dest="action", required=True, metavar="ACTION")


def add_command(actions: Actions, name: str, handler: Handler, text: str, *positionals: str,
                **options: str) -> argparse.ArgumentParser:
    """A subcommand with ``--json`` and its handler; VERSION positionals are whole numbers >= 1 or ``latest``."""
    parser = actions.add_parser(name, help=text, description=options.get("description", text),
                                epilog=options.get("epilog"))
    for positional in positionals:
        if positional == "VERSION":
            parser.add_argument("version", metavar="VERSION", type=version_number, help="a version number or 'latest'")
        else:
            parser.add_argument(positional.lower(), metavar=positional,
                                help=RUN_ID_HELP if positional == "RUN_ID" else None)
    add_json(parser)
    parser.set_defaults(handler=handler)
    return parser


def add_group(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", default=DEFAULT_GROUP, help=f"model package group (default {DEFAULT_GROUP})")


def add_endpoint(parser: argparse.ArgumentParser, stage_text: str) -> None:
    """``--group`` and ``--stage``, which name a local endpoint; ``stage_text`` says what the stage is for here."""
    add_group(parser)
    parser.add_argument("--stage", choices=STAGES, default=STAGES[0], help=f"{stage_text} (default {STAGES[0]})")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of ``minimum`` or more (text that is no number: "invalid integer value")."""

    def checked(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value

    checked.__name__ = "integer"  # what argparse calls the type when int() fails
    return checked


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535 (0: any free port), got {value}")
    return value


def version_number(text: str) -> int | str:
    if text == LATEST:
        return LATEST
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a version number (1, 2, ...) or 'latest', got {text!r}")
    return int(text)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value
