"""The ``cloudviz`` command: parses arguments, calls the packages, prints for people or for scripts.

Exit status: 0 success; 1 a pipeline run that failed; 2 a usage or input error (one line on
stderr, no traceback unless ``--debug``); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from cloudviz import aws_deploy, aws_pipeline, render
from cloudviz.progress import ProgressDisplay
from deploy.aws.names import STAGES
from pipelines.definition import DEFAULT_GROUP, build_pipeline
from pipelines.errors import UserError
from pipelines.json_logs import log_to_file
from pipelines.registry import APPROVAL_STATUSES, ModelRegistry
from pipelines.runner import LocalRunner
from pipelines.runs import SUCCEEDED, RunRecord, RunStore
from pipelines.state import StateHome

LATEST = "latest"
STATE_HOME_HELP = "State lives under $CLOUDVIZ_HOME (default ./.cloudviz): runs/, cache/, registry.db, data/."
STAGE_PORTS = {"dev": (8000, 8080), "prod": (8001, 8081)}  # (API, endpoint): both stages can serve at once


def emit(args: argparse.Namespace, document: object, text: str) -> None:
    print(json.dumps(document, indent=2, default=str) if args.json else text)


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--param {pair!r}: expected NAME=VALUE")
        overrides[name.strip()] = value
    return overrides


def make_runner(args: argparse.Namespace) -> LocalRunner:
    interactive = sys.stderr.isatty() and not args.json
    observer = None if args.quiet else ProgressDisplay(sys.stderr, interactive)
    home = StateHome.from_env()
    log_to_file(home.logs / "runner.log", "pipelines")
    return LocalRunner(home, build_pipeline(), observer)


def finish_run(args: argparse.Namespace, record: RunRecord) -> int:
    emit(args, record.to_dict(), render.run_summary(record))
    return 0 if record.status == SUCCEEDED else 1


def pipeline_run(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.param)
    if args.data is not None:
        overrides["InputData"] = args.data
    return finish_run(args, make_runner(args).start(overrides, use_cache=not args.no_cache))


def pipeline_start(args: argparse.Namespace) -> int:
    if args.target == "local":
        return pipeline_run(args)
    if args.data is not None:
        raise UserError("--data names a local file: with --target aws use --param InputData=s3://BUCKET/KEY.csv")
    return aws_pipeline.start_command(args, parse_overrides(args.param))


def pipeline_resume(args: argparse.Namespace) -> int:
    return finish_run(args, make_runner(args).resume(args.run_id, use_cache=not args.no_cache))


def pipeline_parameters(args: argparse.Namespace) -> int:
    pipeline = build_pipeline()
    rows = [[p.name, p.type, repr(p.default), p.description] for p in pipeline.parameters]
    document = [{"name": p.name, "type": p.type, "default": p.default, "description": p.description}
                for p in pipeline.parameters]
    emit(args, document, render.table(["NAME", "TYPE", "DEFAULT", "DESCRIPTION"], rows))
    return 0


def runs_list(args: argparse.Namespace) -> int:
    records = RunStore(StateHome.from_env().runs).list()[: args.limit]
    text = render.runs_table(records) if records else "No runs yet: start one with `cloudviz pipeline run`."
    emit(args, [r.to_dict() for r in records], text)
    return 0


def runs_show(args: argparse.Namespace) -> int:
    record = RunStore(StateHome.from_env().runs).load(args.run_id)
    emit(args, record.to_dict(), render.run_summary(record))
    return 0


def registry() -> ModelRegistry:
    return ModelRegistry(StateHome.from_env().registry_db)


def models_list(args: argparse.Namespace) -> int:
    packages = registry().list_packages(args.group, args.status)
    text = render.packages_table(packages) if packages else "No registered models yet."
    emit(args, [p.to_dict() for p in packages], text)
    return 0


def version_of(models: ModelRegistry, args: argparse.Namespace) -> int:
    return models.latest_version(args.group) if args.version == LATEST else args.version


def models_show(args: argparse.Namespace) -> int:
    models = registry()
    package = models.get(args.group, version_of(models, args))
    emit(args, package.to_dict(), render.package_detail(package))
    return 0


def set_approval(status: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        models = registry()
        package = models.update_approval(args.group, version_of(models, args), status, args.reason)
        emit(args, package.to_dict(), f"{package.group} version {package.version}: {package.approval_status}")
        return 0

    return handler


def deploy_local_command(args: argparse.Namespace) -> int:
    from deploy.deployments import DeploymentStore  # deploy imports XGBoost: only the commands that serve pay for it
    from deploy.release import deploy_local

    home = StateHome.from_env()
    deployment, _ = deploy_local(
        ModelRegistry(home.registry_db), DeploymentStore(home.deployments), args.group, args.version, args.force,
        reason="cloudviz deploy local --force" if args.force else "cloudviz deploy local", stage=args.stage,
    )
    emit(args, deployment.to_dict(), render.deployment(deployment))
    return 0


def promote_local_command(args: argparse.Namespace) -> int:
    from deploy.deployments import DeploymentStore  # deploy imports XGBoost: only the commands that serve pay for it
    from deploy.release import promote_local

    home = StateHome.from_env()
    deployment, smoke_test, changed = promote_local(
        ModelRegistry(home.registry_db), DeploymentStore(home.deployments), args.group, args.source, args.target
    )
    document = {"promoted": changed, "deployment": deployment.to_dict(), "smoke_test": smoke_test}
    emit(args, document, render.promotion(deployment, smoke_test, args.source, changed))
    return 0


def serve_command(args: argparse.Namespace) -> int:
    from deploy.api_key import api_key
    from deploy.dashboard.serve_file import ServeRecord, forget_serve, record_serve
    from deploy.local_service import LocalService, stage_path
    from deploy.monitoring.notifications import NotificationSettings

    home = StateHome.from_env()
    key = api_key(home.api_key_file)
    notifications = NotificationSettings.resolve(args.alarm_webhook, args.smtp_host, args.smtp_port, args.smtp_from,
                                                 args.smtp_to)
    log_to_file(stage_path(home.logs / "serve.log", args.stage), "deploy", "serving_lambdas")
    default_api_port, default_endpoint_port = STAGE_PORTS[args.stage]
    api_port = default_api_port if args.api_port is None else args.api_port
    endpoint_port = default_endpoint_port if args.endpoint_port is None else args.endpoint_port
    service = LocalService(home, args.group, key, api_port, endpoint_port, on_event=print_flushed,
                           alarm_period_seconds=args.alarm_period, notifiers=notifications.notifiers(),
                           stage=args.stage, smoke_test=True)
    try:
        service.start()
    except OSError as error:
        raise UserError(
            f"cannot listen on 127.0.0.1 (API port {api_port}, endpoint port {endpoint_port}): "
            f"{error.strerror or error}; choose others with --api-port / --endpoint-port"
        ) from None
    # Ctrl-C stops it even when started with SIGINT ignored (a background job of a script), and a service
    # manager's SIGTERM ends it as cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    with service:
        record = ServeRecord(service.api.url, service.endpoint_server.url, os.getpid(), args.group)
        serve_file = stage_path(home.serve_file, args.stage)
        record_serve(serve_file, record)  # how `cloudviz dashboard` finds this serve
        print_flushed(render.serving(service, key_from_env="CLOUDVIZ_API_KEY" in os.environ))
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print_flushed("Stopping.")
        finally:
            forget_serve(serve_file, record)
    return 0


def dashboard_command(args: argparse.Namespace) -> int:
    import webbrowser  # tens of milliseconds: only this command pays for it

    from deploy.dashboard.serve_file import check_answers, running_serve
    from deploy.local_service import stage_path

    record = running_serve(stage_path(StateHome.from_env().serve_file, args.stage))
    check_answers(record)
    url = record.dashboard_url
    opened = not args.no_browser and webbrowser.open(url)
    if opened or args.no_browser:
        text = f"Dashboard: {url}"
    else:
        text = f"Dashboard: {url}\n(no browser could be started here: open the URL in one on this machine)"
    emit(args, {"url": url, "opened": opened, "serve": record.to_dict()}, text)
    return 0


def alarms_list(args: argparse.Namespace) -> int:
    from deploy.local_service import stage_path
    from deploy.monitoring.alarm_history import AlarmHistory
    from deploy.monitoring.alarm_rules import ALARM_RULES

    states = AlarmHistory(stage_path(StateHome.from_env().alarms_db, args.stage)).states()
    document = []
    for rule in ALARM_RULES:
        state = states.get(rule.name)  # None: never evaluated
        document.append({"rule": rule.name, "condition": state.condition if state else rule.condition,
                         "description": rule.description, "aws_metric": f"{rule.namespace} {rule.metric_name}",
                         "state": state.to_dict() if state else None})
    emit(args, document, render.alarms_table(ALARM_RULES, states))
    return 0


def alarms_history(args: argparse.Namespace) -> int:
    from deploy.local_service import stage_path
    from deploy.monitoring.alarm_history import AlarmHistory
    from deploy.monitoring.alarm_rules import ALARM_RULES

    names = [rule.name for rule in ALARM_RULES]
    if args.alarm is not None and args.alarm not in names:
        raise UserError(f"--alarm {args.alarm!r}: no such alarm; the alarms are {', '.join(names)}")
    alarms_db = stage_path(StateHome.from_env().alarms_db, args.stage)
    transitions = AlarmHistory(alarms_db).transitions(args.alarm, args.limit)
    text = render.alarm_history(transitions) if transitions else (
        "No alarm state changes recorded yet: `cloudviz serve` evaluates the alarms while it runs.")
    emit(args, [transition.to_dict() for transition in transitions], text)
    return 0


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def print_flushed(text: str) -> None:
    print(text, flush=True)


def report_command(args: argparse.Namespace) -> int:
    from deploy.deployments import DeploymentStore  # matplotlib and XGBoost: only this command pays for them
    from deploy.run_report import write_report

    home = StateHome.from_env()
    record = RunStore(home.runs).load(args.run_id)
    folder = Path(args.output) if args.output else record.folder / "report"
    report = write_report(record, ModelRegistry(home.registry_db), DeploymentStore(home.deployments), folder)
    emit(args, report.to_dict(), f"Report: {report.html}\nFigures: {', '.join(p.name for p in report.figures)}")
    return 0


def add_group(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", default=DEFAULT_GROUP, help=f"model package group (default {DEFAULT_GROUP})")


def add_stage(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--stage", choices=STAGES, default=STAGES[0], help=f"{text} (default {STAGES[0]})")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_command(
    actions: argparse._SubParsersAction,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    text: str,
    *positionals: str,
    **options: str,
) -> argparse.ArgumentParser:
    """A subcommand with ``--json`` and its handler; VERSION positionals are whole numbers >= 1 or ``latest``."""
    parser = actions.add_parser(name, help=text, description=options.get("description", text),
                                epilog=options.get("epilog"))
    for positional in positionals:
        if positional == "VERSION":
            parser.add_argument("version", metavar="VERSION", type=version_number, help="a version number or 'latest'")
        else:
            parser.add_argument(positional.lower(), metavar=positional)
    add_json(parser)
    parser.set_defaults(handler=handler)
    return parser


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-cache", action="store_true", help="execute every step, ignoring the step cache")
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


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


def actions_of(groups: argparse._SubParsersAction, name: str, text: str) -> argparse._SubParsersAction:
    return groups.add_parser(name, help=text).add_subparsers(dest="action", required=True, metavar="ACTION")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloudviz", description=__doc__.splitlines()[0], epilog=STATE_HOME_HELP)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    groups = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    aws_pipeline.add_aws_options(start)
    for runner in (run, start):
        runner.add_argument("--data", metavar="PATH", help="raw CSV to train on (default: the bundled iris data)")
        runner.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                            help="set a pipeline parameter")
        add_run_options(runner)
    for name, handler, text in (
        ("definition", aws_pipeline.definition_command, "print the SageMaker Pipeline definition (offline)"),
        ("upsert", aws_pipeline.upsert_command, "create or update the SageMaker Pipeline (needs AWS credentials)"),
    ):
        aws_pipeline.add_aws_options(add_command(pipeline, name, handler, text))
    resume = add_command(pipeline, "resume", pipeline_resume, "resume a failed run from the step that failed", "RUN_ID")
    add_run_options(resume)
    add_command(pipeline, "parameters", pipeline_parameters, "list the pipeline parameters and their defaults")

    runs = actions_of(groups, "runs", "inspect pipeline runs")
    listing = add_command(runs, "list", runs_list, "runs, newest first")
    listing.add_argument("--limit", type=positive_int, default=20, help="show at most this many (default 20)")
    add_command(runs, "show", runs_show, "one run: steps, times, metrics, registered version", "RUN_ID")

    models = actions_of(groups, "models", "the model registry")
    listing = add_command(models, "list", models_list, "model package versions, newest first")
    listing.add_argument("--group", help="only this model package group")
    listing.add_argument("--status", choices=APPROVAL_STATUSES, help="only versions with this approval status")
    add_command(models, "show", models_show, "one version: approval, artifact, metrics, lineage", "GROUP", "VERSION")
    for name, status, text in (("approve", "Approved", "approve a version (it becomes deployable)"),
                               ("reject", "Rejected", "reject a version")):
        command = add_command(models, name, set_approval(status), text, "GROUP", "VERSION")
        command.add_argument("--reason", default="", help="why (kept with the version)")

    deploy = actions_of(groups, "deploy", "deploy a registered model")
    local = add_command(
        deploy, "local", deploy_local_command, "serve a registered version on this machine",
        description="Check a registered version (it loads and answers a smoke test) and make it the live one of "
        "the group's local endpoint. A running `cloudviz serve` switches to it with no failed request.",
    )
    add_group(local)
    add_stage(local, "the stage whose endpoint serves it; prod takes only versions promoted to it")
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
    aws_deploy.add_commands(deploy, destroy, promote)

    report = add_command(
        groups, "report", report_command, "write an HTML report (and PNG figures) of a pipeline run", "RUN_ID",
        description="Write a self-contained HTML report of a pipeline run: data summary, split sizes, metrics, "
        "confusion matrix, feature importance, step timings, and a comparison with the live model.",
    )
    report.add_argument("--output", metavar="DIR", help="folder to write into (default: the run's folder/report)")

    serve = groups.add_parser(
        "serve", help="run the local endpoint and prediction API until Ctrl-C",
        description="Serve the group's live version (deploying the latest Approved one if none is live) through the "
        "local endpoint (SageMaker hosting and Runtime API) and the prediction API (x-api-key). A version approved "
        "while serving goes live with no failed request.",
        epilog="The API key is CLOUDVIZ_API_KEY when set, else one generated once and kept in the state home. "
        + STATE_HOME_HELP,
    )
    add_group(serve)
    add_stage(serve, "the stage to serve: dev follows approvals, prod follows promotions")
    serve.add_argument("--api-port", type=port_number,
                       help="prediction API port (default 8000 on dev, 8001 on prod)")
    serve.add_argument("--endpoint-port", type=port_number, help="endpoint port (default 8080 on dev, 8081 on prod)")
    alarms = serve.add_argument_group(
        "alarms", "The alarm rules (`cloudviz alarms list`) are evaluated while serving; their changes into and out "
        "of ALARM are sent to a webhook and/or by email. Each flag falls back to its environment variable.")
    alarms.add_argument("--alarm-period", type=positive_seconds, metavar="SECONDS",
                        help="evaluate every alarm over periods of this length (default: each rule's own, 60 s)")
    alarms.add_argument("--alarm-webhook", metavar="URL", help="POST each alarm change as JSON here "
                        "[CLOUDVIZ_ALARM_WEBHOOK]")
    alarms.add_argument("--smtp-host", metavar="HOST", help="email alarm changes through this SMTP server "
                        "[CLOUDVIZ_SMTP_HOST]")
    alarms.add_argument("--smtp-port", metavar="PORT", help="its port (default 25) [CLOUDVIZ_SMTP_PORT]")
    alarms.add_argument("--smtp-from", metavar="ADDRESS", help="sender address [CLOUDVIZ_SMTP_FROM]")
    alarms.add_argument("--smtp-to", metavar="ADDRESSES", help="recipients, separated by commas [CLOUDVIZ_SMTP_TO]")
    serve.set_defaults(handler=serve_command)

    alarm_actions = actions_of(groups, "alarms", "alarm rules, their states and history")
    listing = add_command(alarm_actions, "list", alarms_list, "the alarm rules and their current states",
                          epilog="States are those `cloudviz serve` recorded in the state home (alarms.db; "
                          "alarms-prod.db on prod).")
    history = add_command(alarm_actions, "history", alarms_history, "alarm state changes, newest first")
    for alarm_command in (listing, history):
        add_stage(alarm_command, "the stage whose alarms to show")
    history.add_argument("--alarm", metavar="NAME", help="only this alarm")
    history.add_argument("--limit", type=positive_int, default=50, help="show at most this many (default 50)")

    dashboard = add_command(
        groups, "dashboard", dashboard_command, "open the live dashboard of the running `cloudviz serve`",
        description="Open the monitoring dashboard (/dashboard on the API) of the `cloudviz serve` running on this "
        "state home in a web browser, or print its URL: traffic, errors, latency, alarms, predictions by class, "
        "drift, the live model's evaluation, pipeline runs and registry versions, refreshed every 5 s.",
        epilog="It reads <state home>/serve.json (serve-prod.json for --stage prod), which `cloudviz serve` writes "
        "while it runs. " + STATE_HOME_HELP,
    )
    dashboard.add_argument("--no-browser", action="store_true", help="only print the URL")
    add_stage(dashboard, "the stage whose serve to open")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (UserError, OSError, sqlite3.Error) as error:
        if args.debug:
            raise
        print(f"cloudviz: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cloudviz: interrupted", file=sys.stderr)
        return 130
