"""``cloudviz schedule add | list | remove | pause | resume | history``: retraining schedules, kept in
``cloudviz.schedules.json``; ``cloudviz scheduler``: the local scheduler alone (``cloudviz serve`` runs it too),
and the retraining options ``cloudviz serve`` takes."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from cloudviz import render
from cloudviz.api.local import LocalProject
from cloudviz.api.schedules import LocalSchedules
from cloudviz.commands.arguments import (
    STATE_HOME_HELP,
    Actions,
    actions_of,
    add_command,
    add_json,
    positive_int,
    positive_seconds,
)
from cloudviz.commands.output import emit, print_flushed
from cloudviz.commands.pipeline import parse_overrides
from deploy.aws.names import STAGES
from deploy.monitoring.notifications import Notifier
from pipelines.scheduling.definitions import SCHEDULES_FILE, ScheduleDefinition
from pipelines.scheduling.drift_trigger import DEFAULT_COOLDOWN, DriftTrigger, parse_duration
from pipelines.scheduling.history import HistoryEntry
from pipelines.scheduling.scheduler import Scheduler, SchedulerLoop, describe

TICK_SECONDS = 30.0


def schedules_of(args: argparse.Namespace) -> LocalSchedules:
    project = LocalProject()
    return LocalSchedules(project.home, args.schedules)


def schedules_table(schedules: Sequence[ScheduleDefinition]) -> str:
    if not schedules:
        return "No schedules yet: add one with `cloudviz schedule add NAME --cron \"0 3 * * *\"`."
    rows = [[s.name, s.cron, s.dataset, "paused" if s.paused else "active", ",".join(s.stages),
             " ".join(f"{key}={value}" for key, value in s.parameters.items())] for s in schedules]
    return render.table(["NAME", "CRON (UTC)", "DATASET", "STATE", "STAGES", "PARAMETERS"], rows)


def history_text(entries: Sequence[HistoryEntry]) -> str:
    if not entries:
        return "No schedule has come due yet."
    rows = [[e.schedule, e.trigger, e.due_at[:16], e.status, e.run_id or "-", e.dataset_version or "-",
             e.registered or "-", e.reason] for e in entries]
    return render.table(["SCHEDULE", "TRIGGER", "DUE", "STATUS", "RUN", "DATA", "REGISTERED", "REASON"], rows)


def show(args: argparse.Namespace, definition: ScheduleDefinition, what: str) -> int:
    emit(args, {"name": definition.name, **definition.to_dict()}, f"{what} schedule {definition.name}: "
         f"{definition.cron} (UTC) on {definition.dataset}, stages {', '.join(definition.stages)}")
    return 0


def schedule_add(args: argparse.Namespace) -> int:
    definition = schedules_of(args).add(args.name, args.cron, args.dataset, parse_overrides(args.param),
                                        args.stage or ["dev"])
    return show(args, definition, "Added")


def schedule_list(args: argparse.Namespace) -> int:
    schedules = schedules_of(args).list()
    emit(args, [{"name": s.name, **s.to_dict()} for s in schedules], schedules_table(schedules))
    return 0


def schedule_remove(args: argparse.Namespace) -> int:
    return show(args, schedules_of(args).remove(args.name), "Removed")


def schedule_pause(args: argparse.Namespace) -> int:
    return show(args, schedules_of(args).pause(args.name), "Paused")


def schedule_resume(args: argparse.Namespace) -> int:
    return show(args, schedules_of(args).resume(args.name), "Resumed")


def schedule_history(args: argparse.Namespace) -> int:
    entries = schedules_of(args).history(args.name, args.limit)
    emit(args, [entry.to_dict() for entry in entries], history_text(entries))
    return 0


def scheduler_command(args: argparse.Namespace) -> int:
    schedules = schedules_of(args)
    if args.once:
        entries = schedules.tick()
        emit(args, [entry.to_dict() for entry in entries],
             "\n".join(map(describe, entries)) or "Nothing was due.")
        return 0
    scheduler = Scheduler(schedules.home, schedules.path)
    print_flushed(f"Scheduling {schedules.path} every {args.interval:g} s on {schedules.home.root}; Ctrl-C stops.")
    try:
        SchedulerLoop(scheduler, args.interval, print_flushed).run()
    except KeyboardInterrupt:
        if scheduler.runs.running:
            print_flushed("Stopping: waiting for the runs executing to end (Ctrl-C again leaves them failed; "
                          "`cloudviz pipeline resume` resumes one).")
            scheduler.wait()
        print_flushed("Stopped.")
    return 0


def start_retraining(args: argparse.Namespace, project: LocalProject, group: str,
                     on_event: Callable[[str], None]) -> tuple[SchedulerLoop, list[Notifier]]:
    """For ``cloudviz serve``: the scheduler loop (to ``start()`` once serving, ``stop()`` after), and with
    ``--retrain-on-drift`` the drift trigger, an alarm notifier to serve with."""
    cooldown = parse_duration(args.retrain_cooldown, "--retrain-cooldown")
    loop = SchedulerLoop(Scheduler(project.home, LocalSchedules(project.home, args.schedules).path), TICK_SECONDS,
                         on_event)
    return loop, [DriftTrigger(project.home, group, cooldown, on_event=on_event)] if args.retrain_on_drift else []


def add_schedules_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--schedules", metavar="PATH", default=SCHEDULES_FILE,
                        help=f"the schedule definitions file (default ./{SCHEDULES_FILE})")


def add_retraining_options(parser: argparse.ArgumentParser) -> None:
    """``cloudviz serve``'s: the schedules it runs, and drift-triggered retraining."""
    retraining = parser.add_argument_group(
        "retraining", "The due schedules of the definitions file start pipeline runs while serving (`cloudviz "
        "schedule list`); with --retrain-on-drift the feature-drift alarm going to ALARM starts one too.")
    add_schedules_option(retraining)
    retraining.add_argument("--retrain-on-drift", action="store_true",
                            help="start a run when the feature-drift alarm goes to ALARM and the data set has a "
                                 "newer version than the last run trained on (off by default)")
    retraining.add_argument("--retrain-cooldown", metavar="DURATION", default="24h",
                            help=f"after a drift-triggered run, start no other for this long (default "
                                 f"{DEFAULT_COOLDOWN.total_seconds() / 3600:g}h; s, m, h, d)")


def register(groups: Actions) -> None:
    schedule = actions_of(groups, "schedule", "retraining schedules (cloudviz.schedules.json)")
    add = add_command(schedule, "add", schedule_add, "add a schedule: a pipeline run on the newest version of a "
                      "data set at the times of a cron expression", "NAME",
                      epilog="A due run skips, and says so in `cloudviz schedule history`, when the data set has no "
                      "version newer than its last successful run trained on. `cloudviz deploy aws` makes the same "
                      "schedules EventBridge Scheduler schedules of the stages named.")
    add.add_argument("--cron", required=True, help='5 fields, in UTC: minute hour day-of-month month day-of-week, '
                     'e.g. "0 3 * * *" (03:00 daily), "0 6 * * MON-FRI"')
    add.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="set a pipeline parameter")
    add.add_argument("--dataset", default="iris", help="the data set to train on (default iris)")
    add.add_argument("--stage", action="append", choices=STAGES,
                     help="an AWS stage that runs it (repeatable; default dev)")
    listing = add_command(schedule, "list", schedule_list, "the schedules")
    removing = add_command(schedule, "remove", schedule_remove, "remove a schedule (its history stays)", "NAME")
    pausing = add_command(schedule, "pause", schedule_pause, "pause a schedule", "NAME")
    resuming = add_command(schedule, "resume", schedule_resume,
                           "resume a schedule (the due times missed while paused start nothing)", "NAME")
    history = add_command(schedule, "history", schedule_history, "due times handled: runs started, skipped, "
                          "failed, newest first")
    history.add_argument("name", metavar="NAME", nargs="?", help="only this schedule's (drift:GROUP: drift runs)")
    history.add_argument("--limit", type=positive_int, default=50, help="show at most this many (default 50)")
    for parser in (add, listing, removing, pausing, resuming, history):
        add_schedules_option(parser)
    scheduler = groups.add_parser(
        "scheduler", help="run the due schedules until Ctrl-C (a machine that only trains)",
        description="The local scheduler alone: every --interval seconds, start the runs of the schedules that "
        "came due (never two runs of one schedule at once; after downtime, one run for the due times missed). "
        "`cloudviz serve` runs it as well; both may run at once on one state home.", epilog=STATE_HOME_HELP)
    add_schedules_option(scheduler)
    scheduler.add_argument("--once", action="store_true", help="one tick: start what is due, wait for it, exit")
    scheduler.add_argument("--interval", type=positive_seconds, default=TICK_SECONDS, metavar="SECONDS",
                           help=f"seconds between ticks (default {TICK_SECONDS:g})")
    add_json(scheduler)
    scheduler.set_defaults(handler=scheduler_command)
