"""The ``cloudviz`` command: parses arguments, calls the packages, prints for people or for scripts.

Exit status: 0 success; 1 a pipeline run that failed; 2 a usage or input error (one line on
stderr, no traceback unless ``--debug``); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import signal
import socket
import sqlite3
import sys
import textwrap
import threading
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cloudviz import aws_deploy, aws_pipeline, render
from cloudviz.progress import ProgressDisplay
from deploy.aws.names import STAGES
from deploy.deployments import Deployment, DeploymentStore
from pipelines.definition import DEFAULT_GROUP, build_pipeline
from pipelines.errors import NotFoundError, UserError
from pipelines.json_logs import log_to_file
from pipelines.model_quality import scalar_metrics
from pipelines.registry import APPROVAL_STATUSES, ModelRegistry
from pipelines.runner import LocalRunner
from pipelines.runs import SUCCEEDED, RunRecord, RunStore
from pipelines.state import StateHome

if TYPE_CHECKING:
    from deploy.dashboard.serve_file import ServeRecord
    from deploy.endpoint_state import EndpointFiles

LATEST = "latest"
STATE_HOME_HELP = ("State lives under $CLOUDVIZ_HOME (default ./.cloudviz): runs/, cache/, registry.db, deployments/,"
                   " endpoints/ (each endpoint's predictions.db, alarms.db, logs, serve.json), logs/, data/.")
DESCRIPTION = """\
CloudViz trains a tabular XGBoost model with a SageMaker-style pipeline (Preprocess -> Train -> Evaluate ->
CheckAccuracy -> Register), keeps its versions in a model registry where they are approved or rejected, deploys
an approved version to a dev endpoint and promotes it to prod, serves it behind a prediction API with an API key,
and watches it (dashboard, alarms, drift). It all runs on this machine; the same pipeline and stacks run on AWS
(SageMaker Pipelines, endpoints, API Gateway) with `pipeline start --target aws`, `deploy aws` and `promote aws`."""
RUN_ID_HELP = "a run id, a unique prefix of one, or 'latest'"
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


def find_run(store: RunStore, text: str) -> RunRecord:
    """The run ``text`` names: its id, a unique prefix of one (ids start with the UTC start time), or ``latest``."""
    if text == LATEST:
        records = store.list()
        if not records:
            raise NotFoundError(f"no runs yet under {store.folder}: start one with `cloudviz pipeline run`")
        return records[0]
    if text and "/" not in text and not (store.folder / text / "run.json").is_file():
        matches = sorted(path.parent.name for path in store.folder.glob(f"{glob.escape(text)}*/run.json"))
        if len(matches) == 1:
            return store.load(matches[0])
        if matches:
            shown = ", ".join(matches[:10]) + (f" and {len(matches) - 10} more" if len(matches) > 10 else "")
            raise UserError(f"run id prefix {text!r} is ambiguous: it starts {len(matches)} runs ({shown})")
    return store.load(text)


def current_approval(registered: dict) -> str:
    """The approval status in the registry now of the version a run registered (a cached Register step keeps the
    one from when it first registered); the recorded one if the registry lost the version."""
    try:
        return registry().get(registered["model_package_group"], registered["version"]).approval_status
    except NotFoundError:
        return registered["approval_status"]


def show_run(args: argparse.Namespace, record: RunRecord) -> None:
    """The run record, with its headline metrics and registered version (its approval status now) for scripts."""
    registered = render.registered_version(record)
    status = current_approval(registered) if registered else None
    document = {
        **record.to_dict(),
        "metrics": scalar_metrics(record.output_json("evaluation", "evaluation.json") or {}),
        "registered": {"model_package_group": registered["model_package_group"], "version": registered["version"],
                       "approval_status": status} if registered else None,
    }
    emit(args, document, render.run_summary(record, status))


def finish_run(args: argparse.Namespace, record: RunRecord) -> int:
    show_run(args, record)
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
    run_id = find_run(RunStore(StateHome.from_env().runs), args.run_id).run_id
    return finish_run(args, make_runner(args).resume(run_id, use_cache=not args.no_cache))


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
    show_run(args, find_run(RunStore(StateHome.from_env().runs), args.run_id))
    return 0


def registry() -> ModelRegistry:
    return ModelRegistry(StateHome.from_env().registry_db)


def deployments() -> list[Deployment]:
    return DeploymentStore(StateHome.from_env().deployments).live()


def models_list(args: argparse.Namespace) -> int:
    packages = registry().list_packages(args.group, args.status)
    live = deployments()
    if packages:
        text = render.packages_table(packages, live)
    elif args.group or args.status:
        text = f"No {args.status or 'registered'} versions{f' in {args.group}' if args.group else ''}."
    else:
        text = "No registered models yet."
    emit(args, [{**p.to_dict(), "live": render.live_stages(live, p)} for p in packages], text)
    return 0


def approval_status(text: str) -> str:
    """An approval status in any letter case (approved, APPROVED), as the registry spells it."""
    return next((status for status in APPROVAL_STATUSES if status.lower() == text.lower()), text)


def version_of(models: ModelRegistry, args: argparse.Namespace) -> int:
    return models.latest_version(args.group) if args.version == LATEST else args.version


def models_show(args: argparse.Namespace) -> int:
    models = registry()
    package = models.get(args.group, version_of(models, args))
    live = deployments()
    emit(args, {**package.to_dict(), "live": render.live_stages(live, package)}, render.package_detail(package, live))
    return 0


def set_approval(status: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        models = registry()
        package = models.update_approval(args.group, version_of(models, args), status, args.reason)
        emit(args, package.to_dict(), f"{package.group} version {package.version}: {package.approval_status}")
        return 0

    return handler


def deploy_local_command(args: argparse.Namespace) -> int:
    from deploy.release import deploy_local  # XGBoost: only the commands that serve pay for it

    home = StateHome.from_env()
    deployment, _ = deploy_local(
        ModelRegistry(home.registry_db), DeploymentStore(home.deployments), args.group, args.version, args.force,
        reason="cloudviz deploy local --force" if args.force else "cloudviz deploy local", stage=args.stage,
    )
    emit(args, deployment.to_dict(), render.deployment(deployment))
    return 0


def promote_local_command(args: argparse.Namespace) -> int:
    from deploy.release import promote_local  # XGBoost: only the commands that serve pay for it

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
    from deploy.local_service import LocalService
    from deploy.monitoring.notifications import NotificationSettings

    home = StateHome.from_env()
    key = api_key(home.api_key_file)
    notifications = NotificationSettings.resolve(args.alarm_webhook, args.smtp_host, args.smtp_port, args.smtp_from,
                                                 args.smtp_to)
    files = endpoint_files(home, args.group, args.stage)
    running = serve_record(files)
    if running is not None:
        raise UserError(f"{files.endpoint} is served already, by process {running.pid} at {running.api_url}:"
                        " stop that `cloudviz serve` first")
    default_api_port, default_endpoint_port = STAGE_PORTS[args.stage]
    api_port = default_api_port if args.api_port is None else args.api_port
    endpoint_port = default_endpoint_port if args.endpoint_port is None else args.endpoint_port
    for port, role in ((endpoint_port, "endpoint"), (api_port, "API")):
        check_port_free(home, args.group, port, role)
    log_to_file(files.serve_log, "deploy", "serving_lambdas")
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
        record_serve(files.serve_file, record)  # how `cloudviz dashboard` finds this serve
        print_flushed(render.serving(service, key_from_env="CLOUDVIZ_API_KEY" in os.environ))
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print_flushed("Stopping.")
        finally:
            forget_serve(files.serve_file, record)
    return 0


def dashboard_command(args: argparse.Namespace) -> int:
    import webbrowser  # tens of milliseconds: only this command pays for it

    from deploy.dashboard.serve_file import check_answers, running_serve

    files = endpoint_files(StateHome.from_env(), args.group, args.stage)
    record = running_serve(files.serve_file, render.serve_command(args.group, args.stage))
    check_answers(record)
    url = record.dashboard_url
    opened = not args.no_browser and webbrowser.open(url)
    if opened or args.no_browser:
        text = f"Dashboard: {url}"
    else:
        text = f"Dashboard: {url}\n(no browser could be started here: open the URL in one on this machine)"
    emit(args, {"url": url, "opened": opened, "serve": record.to_dict()}, text)
    return 0


def endpoint_files(home: StateHome, group: str, stage: str) -> EndpointFiles:
    from deploy.endpoint_state import EndpointFiles  # it names endpoints as deploy.release does (XGBoost)

    return EndpointFiles.of(home, group, stage)


def serve_record(files: EndpointFiles) -> ServeRecord | None:
    """The `cloudviz serve` running the endpoint of ``files`` (as `cloudviz dashboard` finds it), if any."""
    from deploy.dashboard.serve_file import running_serve

    try:
        return running_serve(files.serve_file)
    except UserError:
        return None


def check_port_free(home: StateHome, group: str, port: int, role: str) -> None:
    """Refuse, naming the port and the serve of this state home that holds it if one does, a port that is taken:
    each serve listens where it is told (several groups: one serve each, on ports of its own)."""
    from deploy.endpoint_state import every_endpoint

    if port == 0:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no obstacle
        try:
            probe.bind(("127.0.0.1", port))
            return
        except OSError as error:
            reason = error.strerror or str(error)
    holders = [f", by the serve of {files.endpoint} (process {record.pid})" for files in every_endpoint(home)
               if (record := serve_record(files)) and port in (urlsplit(record.api_url).port,
                                                              urlsplit(record.endpoint_url).port)]
    raise UserError(f"cannot listen on 127.0.0.1:{port} (the {role} port): {reason}{''.join(holders[:1])};"
                    f" serve {group} on other ports with --api-port N --endpoint-port M (0: any free port)")


def serve_line(deployment: Deployment, record: ServeRecord | None) -> str:
    serve = render.serve_command(deployment.group, deployment.stage)
    if record is None:
        return f"{deployment.endpoint}: `{serve}` is not running on this state home"
    return f"{deployment.endpoint}: `{serve}` is running (process {record.pid}, API {record.api_url})"


def deployments_command(args: argparse.Namespace) -> int:
    home = StateHome.from_env()
    live = [d for d in deployments() if args.group in (None, d.group) and args.stage in (None, d.stage)]
    models = registry()
    approvals = {}
    for d in live:
        with contextlib.suppress(NotFoundError):  # the registry lost the version: it serves, its status is unknown
            approvals[d.group, d.version] = models.get(d.group, d.version).approval_status
    from deploy.endpoint_state import EndpointFiles

    serves = {d.endpoint: serve_record(EndpointFiles.named(home, d.endpoint)) for d in live}
    document = [{**d.to_dict(), "approval_status": approvals.get((d.group, d.version)),
                 "serve": serves[d.endpoint].to_dict() if serves[d.endpoint] else None} for d in live]
    if live:
        lines = [serve_line(d, serves[d.endpoint]) for d in live]
        text = "\n".join([render.deployments_table(live, approvals), *lines])
    else:
        text = ("Nothing is deployed on this state home yet: `cloudviz serve` deploys the latest Approved version"
                " (or `cloudviz deploy local`).")
    emit(args, document, text)
    return 0


def alarms_list(args: argparse.Namespace) -> int:
    from deploy.monitoring.alarm_history import AlarmHistory
    from deploy.monitoring.alarm_rules import ALARM_RULES

    files = endpoint_files(StateHome.from_env(), args.group, args.stage)
    states = AlarmHistory(files.alarms_db).states() if files.alarms_db.exists() else {}
    document = []
    for rule in ALARM_RULES:
        state = states.get(rule.name)  # None: never evaluated
        document.append({"rule": rule.name, "condition": state.condition if state else rule.condition,
                         "description": rule.description, "aws_metric": f"{rule.namespace} {rule.metric_name}",
                         "state": state.to_dict() if state else None})
    text = render.alarms_table(ALARM_RULES, states)
    if serve_record(files) is None:
        serve = render.serve_command(args.group, args.stage)
        text += (f"\n`{serve}` is not running on this state home: these are the states it recorded when it last ran;"
                 " nothing is evaluated until it runs again." if states else
                 f"\n`{serve}` is not running on this state home: start it to evaluate the alarms.")
    emit(args, document, text)
    return 0


def alarms_history(args: argparse.Namespace) -> int:
    from deploy.monitoring.alarm_history import AlarmHistory
    from deploy.monitoring.alarm_rules import ALARM_RULES

    names = [rule.name for rule in ALARM_RULES]
    if args.alarm is not None and args.alarm not in names:
        raise UserError(f"--alarm {args.alarm!r}: no such alarm; the alarms are {', '.join(names)}")
    alarms_db = endpoint_files(StateHome.from_env(), args.group, args.stage).alarms_db
    transitions = AlarmHistory(alarms_db).transitions(args.alarm, args.limit) if alarms_db.exists() else []
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
    from deploy.run_report import write_report  # matplotlib and XGBoost: only this command pays for them

    home = StateHome.from_env()
    record = find_run(RunStore(home.runs), args.run_id)
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
            parser.add_argument(positional.lower(), metavar=positional,
                                help=RUN_ID_HELP if positional == "RUN_ID" else None)
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
    parser = argparse.ArgumentParser(prog="cloudviz", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=VersionAction)
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
        aws_pipeline.add_definition_options(add_command(pipeline, name, handler, text))
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
    listing.add_argument("--status", type=approval_status, choices=APPROVAL_STATUSES,
                         help="only versions with this approval status (any letter case)")
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
    live = add_command(
        groups, "deployments", deployments_command, "what each local endpoint serves, since when",
        description="Every local endpoint with the version it serves (group, stage, approval status now), since "
        "when and why, and whether a `cloudviz serve` serves it.",
        epilog="It reads <state home>/deployments/, which `cloudviz serve`, `deploy local` and `promote local` "
        "write. " + STATE_HOME_HELP,
    )
    live.add_argument("--group", help="only this model package group")
    live.add_argument("--stage", choices=STAGES, help="only this stage")

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
        epilog="The API key is CLOUDVIZ_API_KEY when set, else one generated once and kept in the state home. One "
        "serve per group and stage, each with its own state (endpoints/<endpoint>/): serve other groups on other "
        "ports. " + STATE_HOME_HELP,
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
                          epilog="States are those `cloudviz serve` of the group on the stage recorded in the "
                          "state home (endpoints/<endpoint>/alarms.db).")
    history = add_command(alarm_actions, "history", alarms_history, "alarm state changes, newest first")
    for alarm_command in (listing, history):
        add_group(alarm_command)
        add_stage(alarm_command, "the stage whose alarms to show")
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
    add_group(dashboard)
    add_stage(dashboard, "the stage whose serve to open")

    parser.epilog = commands_epilog(groups) + "\n\n" + textwrap.fill(STATE_HOME_HELP, 100)
    return parser


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


def commands_epilog(groups: argparse._SubParsersAction) -> str:
    """Each command with its actions, from the parser itself, for the top-level --help."""
    lines = ["commands with actions (cloudviz COMMAND ACTION; --help on each):"]
    for name, command in groups.choices.items():
        for action in command._actions:  # noqa: SLF001 - argparse keeps them nowhere else
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                lines.append(f"  {name:<10} {', '.join(action.choices)}")
    return "\n".join(lines)


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
