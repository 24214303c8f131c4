"""The account-level settings a stage's CloudFormation templates are generated with (:class:`AwsSettings`).

Its own module so that the templates (:mod:`deploy.aws.templates`) and the stacks that assemble them
(:mod:`deploy.aws.stacks`) both depend on it, and the templates never on the stacks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.scheduling.definitions import ScheduleDefinition


@dataclass(frozen=True)
class AwsSettings:
    """Account-level settings a stage's templates are generated with.

    ``region`` and ``account_id`` only serve names that must be literal ARNs outside a template;
    templates use the ``AWS::Region``/``AWS::AccountId`` pseudo-parameters. ``model_package_arn``
    and ``model_version`` are the approved model package to serve (empty: the template defaults);
    ``baseline_statistics_uri`` its training data's statistics, which drift is measured against (empty:
    no drift function); ``data_schema_uri`` its registered data schema, which GET /model describes it from
    (empty: described from the API's configuration alone). ``instance_type``/``instance_count`` size the endpoint
    (empty/0: the stage's defaults, ``INSTANCE_TYPES``/``INSTANCE_COUNTS``); the per-stage values come from
    ``cloudviz.toml`` (:mod:`deploy.aws.stage_config`). ``schedules`` are the project's schedule definitions
    (``cloudviz.schedules.json``; the automation template keeps those of its stage and group);
    ``retrain_on_drift``/``retrain_cooldown_hours`` the stage's drift-triggered retraining. ``artifact_prefix`` is
    the key prefix the pipeline and ``cloudviz data add --target aws`` write below (the data sets' versions).
    """

    region: str = "us-east-1"
    account_id: str = "123456789012"
    artifact_bucket: str = ""
    alarm_email: str = ""
    model_package_arn: str = ""
    model_version: int = 1
    baseline_statistics_uri: str = ""
    data_schema_uri: str = ""
    cors_origins: tuple[str, ...] = ()  # the web origins the stage's API answers CORS to (none: CORS off)
    # The served package's data schema: its task, features and classes (comma-separated; none for regression).
    # No task: the package has no schema, and the api template's defaults (the pipeline's) apply.
    model_task: str = ""
    feature_names: str = ""
    class_names: str = ""
    schedule_expression: str = "cron(0 3 ? * MON *)"
    schedule_enabled: bool = False  # scheduled retraining is off until asked for
    instance_type: str = ""
    instance_count: int = 0
    artifact_prefix: str = "cloudviz"
    schedules: tuple[ScheduleDefinition, ...] = ()
    retrain_on_drift: bool = False
    retrain_cooldown_hours: int = 24
    # The stage's API: each function's reserved concurrency (0: none), the days a prediction is kept (0: the api
    # template's default).
    api_reserved_concurrency: int = 0
    prediction_retention_days: int = 0
