"""``cloudviz alarms list | history`` and ``cloudviz dashboard``: what a local serve watches, through
``LocalProject.alarms``, ``.alarm_history`` and ``.dashboard``."""

from __future__ import annotations

import argparse

from cloudviz import render
from cloudviz.api.local import LocalProject
from cloudviz.commands.arguments import STATE_HOME_HELP, Actions, actions_of, add_command, add_endpoint, positive_int
from cloudviz.commands.output import emit


def alarms_list(args: argparse.Namespace) -> int:
    project = LocalProject()
    alarms = project.alarms(args.group, args.stage)
    text = render.alarms_table(alarms)
    if project.running_serve(args.group, args.stage) is None:
        serve = render.serve_command(args.group, args.stage)
        text += (f"\n`{serve}` is not running on this state home: these are the states it recorded when it last ran;"
                 " nothing is evaluated until it runs again." if any(alarm.state for alarm in alarms) else
                 f"\n`{serve}` is not running on this state home: start it to evaluate the alarms.")
    emit(args, [alarm.to_dict() for alarm in alarms], text)
    return 0


def alarms_history(args: argparse.Namespace) -> int:
    transitions = LocalProject().alarm_history(args.group, args.stage, args.alarm, args.limit)
    text = render.alarm_history(transitions) if transitions else (
        "No alarm state changes recorded yet: `cloudviz serve` evaluates the alarms while it runs.")
    emit(args, [transition.to_dict() for transition in transitions], text)
    return 0


def dashboard_command(args: argparse.Namespace) -> int:
    import webbrowser  # tens of milliseconds: only this command pays for it

    record = LocalProject().dashboard(args.group, args.stage)
    url = record.dashboard_url
    opened = not args.no_browser and webbrowser.open(url)
    if opened or args.no_browser:
        text = f"Dashboard: {url}"
    else:
        text = f"Dashboard: {url}\n(no browser could be started here: open the URL in one on this machine)"
    emit(args, {"url": url, "opened": opened, "serve": record.to_dict()}, text)
    return 0


def register(groups: Actions) -> None:
    alarm_actions = actions_of(groups, "alarms", "alarm rules, their states and history")
    listing = add_command(alarm_actions, "list", alarms_list, "the alarm rules and their current states",
                          epilog="States are those `cloudviz serve` of the group on the stage recorded in the "
                          "state home (endpoints/<endpoint>/alarms.db).")
    history = add_command(alarm_actions, "history", alarms_history, "alarm state changes, newest first")
    for alarm_command in (listing, history):
        add_endpoint(alarm_command, "the stage whose alarms to show")
    history.add_argument("--alarm", metavar="NAME", help="only this alarm")
    history.add_argument("--limit", type=positive_int, default=50, help="show at most this many (default 50)")

    dashboard = add_command(
        groups, "dashboard", dashboard_command, "open the live dashboard of the running `cloudviz serve`",
        description="Open the monitoring dashboard (/dashboard on the API) of the `cloudviz serve` running on this "
        "state home in a web browser, or print its URL: traffic, errors, latency, alarms, predictions by class, "
        "drift, the live model's evaluation, pipeline runs and registry versions, refreshed every 5 s.",
        epilog="It reads <state home>/endpoints/<endpoint>/serve.json, which `cloudviz serve` writes "
        "while it runs. " + STATE_HOME_HELP,
    )
    dashboard.add_argument("--no-browser", action="store_true", help="only print the URL")
    add_endpoint(dashboard, "the stage whose serve to open")
