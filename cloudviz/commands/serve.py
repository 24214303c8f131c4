"""``cloudviz serve``: serve a stage until Ctrl-C or SIGTERM, through ``LocalProject.serve`` (which refuses a
second serve of the endpoint and taken ports), printing where it serves and what it reports."""

from __future__ import annotations

import argparse
import os
import signal
import threading

from cloudviz import render
from cloudviz.api.local import LocalProject
from cloudviz.api.local_serve import AlreadyServed, PortTaken, alarm_notifiers
from cloudviz.commands.arguments import (
    STATE_HOME_HELP,
    Actions,
    add_endpoint,
    non_negative_int,
    port_number,
    positive_int,
    positive_seconds,
)
from cloudviz.commands.output import print_flushed
from cloudviz.commands.schedule import add_retraining_options, start_retraining
from deploy.monitoring.notifications import SMTP_SECURITIES
from pipelines.errors import UserError

# A worker spends about a third of a call waiting for the endpoint: one more than the CPUs keeps them busy
# (benchmarks/README.md, "Serving"); past 8 the gateway in front of them is the limit, and each holds boto3 (~60 MB).
DEFAULT_LAMBDA_WORKERS = min((os.cpu_count() or 1) + 1, 8)
STAGE_PORTS = {"dev": (8000, 8080), "prod": (8001, 8081)}  # (API, endpoint): both stages can serve at once


def serve_command(args: argparse.Namespace) -> int:
    default_api_port, default_endpoint_port = STAGE_PORTS[args.stage]
    api_port = default_api_port if args.api_port is None else args.api_port
    endpoint_port = default_endpoint_port if args.endpoint_port is None else args.endpoint_port
    notifiers = alarm_notifiers(args.alarm_webhook, args.smtp_host, args.smtp_port, args.smtp_from, args.smtp_to,
                                smtp_security=args.smtp_security, smtp_user=args.smtp_user,
                                smtp_password_file=args.smtp_password_file)
    project = LocalProject()
    scheduler, retrain = start_retraining(args, project, args.group, print_flushed)
    try:
        serving = project.serve(args.group, args.stage, api_port=api_port, endpoint_port=endpoint_port,
                                alarm_period_seconds=args.alarm_period, notifiers=[*notifiers, *retrain],
                                on_event=print_flushed, cors_origins=args.cors_origin,
                                max_connections=args.max_connections, lambda_workers=args.lambda_workers,
                                endpoint_process=True)
    except AlreadyServed as error:
        raise UserError(f"{error.reason}: stop that `cloudviz serve` first") from None
    except PortTaken as error:
        raise UserError(f"{error.reason}; serve {args.group} on other ports with --api-port N --endpoint-port M"
                        " (0: any free port)") from None
    except OSError as error:
        raise UserError(
            f"cannot listen on 127.0.0.1 (API port {api_port}, endpoint port {endpoint_port}): "
            f"{error.strerror or error}; choose others with --api-port / --endpoint-port"
        ) from None
    # Ctrl-C stops it even when started with SIGINT ignored (a background job of a script), and a service
    # manager's SIGTERM ends it as cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    with serving:
        print_flushed(render.serving(serving.service, key_from_env="CLOUDVIZ_API_KEY" in os.environ))
        scheduler.start()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print_flushed("Stopping.")
        finally:
            scheduler.stop()
    return 0


def cors_origin(text: str) -> str:
    """An argparse type: one origin, checked as the gateway checks it."""
    from deploy.gateway.policy import checked_origins

    try:
        (origin,) = checked_origins([text])
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return origin


class NoPasswordFlag(argparse.Action):
    """``--smtp-password``: refused without echoing its value (a flag shows in ``ps`` and the shell's history); it
    also keeps argparse from reading it as an abbreviation of ``--smtp-password-file``."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        parser.error("--smtp-password: the SMTP password is never a flag (it would show in `ps` and the shell's "
                     "history): put it in CLOUDVIZ_SMTP_PASSWORD or in a file named by --smtp-password-file")


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def register(groups: Actions) -> None:
    serve = groups.add_parser(
        "serve", help="run the local endpoint and prediction API until Ctrl-C",
        description="Serve the group's live version (deploying the latest Approved one if none is live) through the "
        "local endpoint (SageMaker hosting and Runtime API) and the prediction API (x-api-key). A version approved "
        "while serving goes live with no failed request.",
        epilog="The API key is CLOUDVIZ_API_KEY when set, else one generated once and kept in the state home. One "
        "serve per group and stage, each with its own state (endpoints/<endpoint>/): serve other groups on other "
        "ports. " + STATE_HOME_HELP,
    )
    add_endpoint(serve, "the stage to serve: dev follows approvals, prod follows promotions")
    serve.add_argument("--api-port", type=port_number,
                       help="prediction API port (default 8000 on dev, 8001 on prod)")
    serve.add_argument("--endpoint-port", type=port_number, help="endpoint port (default 8080 on dev, 8081 on prod)")
    serve.add_argument("--max-connections", type=positive_int, metavar="N",
                       help="client connections each of the API and the endpoint holds at once (default 512; fewer "
                       "when the open-file limit requires): beyond, the longest idle one is closed, else 503")
    serve.add_argument("--lambda-workers", type=non_negative_int, default=DEFAULT_LAMBDA_WORKERS, metavar="N",
                       help="processes the serving Lambdas run in, one request at a time each, as Lambda's execution "
                       "environments (default: one more than the CPUs, at most 8: here %(default)s; 0: in the serve "
                       "process itself, e.g. to debug a handler)")
    serve.add_argument("--cors-origin", type=cors_origin, action="append", default=[], metavar="ORIGIN",
                       help="a web page origin (scheme://host[:port]) allowed to call the prediction routes from a "
                       "browser; repeat for more (default: none, no CORS headers)")
    alarms = serve.add_argument_group(
        "alarms", "The alarm rules (`cloudviz alarms list`) are evaluated while serving; their changes into and out "
        "of ALARM are sent to a webhook and/or by email. Each flag falls back to its environment variable.")
    alarms.add_argument("--alarm-period", type=positive_seconds, metavar="SECONDS",
                        help="evaluate every alarm over periods of this length (default: each rule's own, 60 s)")
    alarms.add_argument("--alarm-webhook", metavar="URL", help="POST each alarm change as JSON here "
                        "[CLOUDVIZ_ALARM_WEBHOOK]")
    alarms.add_argument("--smtp-host", metavar="HOST", help="email alarm changes through this SMTP server "
                        "[CLOUDVIZ_SMTP_HOST]")
    alarms.add_argument("--smtp-port", metavar="PORT", help="its port (default 587 with starttls, 465 with tls, 25 "
                        "without) [CLOUDVIZ_SMTP_PORT]")
    alarms.add_argument("--smtp-from", metavar="ADDRESS", help="sender address [CLOUDVIZ_SMTP_FROM]")
    alarms.add_argument("--smtp-to", metavar="ADDRESSES", help="recipients, separated by commas [CLOUDVIZ_SMTP_TO]")
    alarms.add_argument("--smtp-security", choices=SMTP_SECURITIES, help="starttls: upgrade to TLS after connecting;"
                        " tls: TLS from the start (port 465); none: plain (a local relay). Default: tls on port 465,"
                        " else starttls with --smtp-user, else none. The server's certificate is verified (a private"
                        " CA: SSL_CERT_FILE) [CLOUDVIZ_SMTP_SECURITY]")
    alarms.add_argument("--smtp-user", metavar="USER", help="log in as USER (SES, Office 365, Gmail...); the password "
                        "comes from --smtp-password-file or CLOUDVIZ_SMTP_PASSWORD, never a flag [CLOUDVIZ_SMTP_USER]")
    alarms.add_argument("--smtp-password-file", metavar="PATH", help="file whose first line is the SMTP password "
                        "[CLOUDVIZ_SMTP_PASSWORD_FILE]")
    alarms.add_argument("--smtp-password", action=NoPasswordFlag, help=argparse.SUPPRESS)
    add_retraining_options(serve)
    serve.set_defaults(handler=serve_command)
