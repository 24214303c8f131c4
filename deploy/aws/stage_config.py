"""Per-stage settings of the AWS deployment, read strictly from one TOML file (``cloudviz.toml``).

A bad table, key, type or value is a :class:`UserError` naming the file, the table and the key, before any AWS call.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from deploy.aws.names import STAGES, ResourceNames
from deploy.gateway.policy import checked_origins
from pipelines.errors import UserError

if TYPE_CHECKING:
    from pipelines.scheduling.definitions import ScheduleDefinition

DEFAULT_CONFIG = Path("cloudviz.toml")  # in the working directory
DEFAULT_ARTIFACT_PREFIX = "cloudviz"  # the commands' --prefix default
STAGES_TABLE = "stages"


@dataclass(frozen=True)
class StageConfig:
    """One stage's settings. ``None`` for ``retrain_schedule``/``alarm_email``: as the previous deploy left it.
    ``schedules``: the project's schedule definitions (:func:`with_schedules`), not a key of the file."""

    instance_type: str
    instance_count: int
    retrain_schedule: str | None = None
    alarm_email: str | None = None
    cors_origins: tuple[str, ...] = ()  # the web origins the API answers CORS to; none: no CORS at all
    retrain_on_drift: bool = False
    retrain_cooldown_hours: int = 24
    schedules: tuple[ScheduleDefinition, ...] = ()
    # The API's: each function's reserved concurrency (0: none) and the days a prediction is kept (0: the api
    # template's default); default_config gives each stage its own.
    api_reserved_concurrency: int = 0
    prediction_retention_days: int = 0
    # Where the pipeline and `cloudviz data add --target aws` keep data sets (their --prefix): the retrain function
    # reads the versions there. Not a key of the file: the commands' --prefix.
    artifact_prefix: str = DEFAULT_ARTIFACT_PREFIX

    def api_settings(self) -> dict:
        """The :class:`~deploy.aws.settings.AwsSettings` fields of the stage's API functions and table."""
        return {"api_reserved_concurrency": self.api_reserved_concurrency,
                "prediction_retention_days": self.prediction_retention_days}

    def retraining_settings(self) -> dict:
        """The :class:`~deploy.aws.settings.AwsSettings` fields of scheduled and drift-triggered retraining."""
        return {"schedules": self.schedules, "retrain_on_drift": self.retrain_on_drift,
                "retrain_cooldown_hours": self.retrain_cooldown_hours, "artifact_prefix": self.artifact_prefix}


# Each API function's reserved concurrency by default: none in dev, so that a new account (whose Lambda quota of 10
# concurrent executions leaves nothing to reserve) can deploy; prod's covers the usage plan's default burst (20).
API_RESERVED_CONCURRENCY = {"dev": 0, "prod": 20}


def default_config(stage: str) -> StageConfig:
    """The settings of a stage no file mentions: today's instances of the stage, every other key as described."""
    from deploy.aws.templates.endpoint import INSTANCE_COUNTS, INSTANCE_TYPES
    from serving_lambdas.store.dynamodb import DEFAULT_RETENTION_DAYS

    return StageConfig(INSTANCE_TYPES[stage], INSTANCE_COUNTS[stage],
                       api_reserved_concurrency=API_RESERVED_CONCURRENCY[stage],
                       prediction_retention_days=DEFAULT_RETENTION_DAYS)


def parameter_refusal(definition: dict, value: str | int) -> str:
    """Why CloudFormation would refuse ``value`` for a template parameter of this ``definition`` ("" if it would
    not): its AllowedPattern (matching the whole value), AllowedValues, MinValue/MaxValue, Min/MaxLength."""
    text = str(value)
    pattern = definition.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(pattern, text):
        return f"must match {pattern}"
    allowed = definition.get("AllowedValues")
    if allowed is not None and text not in [str(item) for item in allowed]:
        return f"must be one of {', '.join(map(str, allowed))}"
    if definition.get("Type") == "Number":
        number = float(text)
        if "MinValue" in definition and number < float(definition["MinValue"]):
            return f"must be at least {definition['MinValue']}"
        if "MaxValue" in definition and number > float(definition["MaxValue"]):
            return f"must be at most {definition['MaxValue']}"
    if "MinLength" in definition and len(text) < int(definition["MinLength"]):
        return f"must be at least {definition['MinLength']} characters long"
    if "MaxLength" in definition and len(text) > int(definition["MaxLength"]):
        return f"must be at most {definition['MaxLength']} characters long"
    return ""


def template_parameters(stage: str) -> dict[str, dict]:
    """Every parameter definition of the stage's four templates, by ``<stack kind>.<parameter>``."""
    from deploy.aws.lambda_zip import LambdaZip
    from deploy.aws.settings import AwsSettings
    from deploy.aws.stacks import synthesize

    names = ResourceNames(stage)
    packages = (LambdaZip("serving_lambdas", b""), LambdaZip("automation", b""))  # only their keys are named
    specs = synthesize(stage, AwsSettings(artifact_bucket="cloudviz-config-check"), packages)
    return {f"{spec.name.removeprefix(names.prefix + '-')}.{name}": definition
            for spec in specs for name, definition in spec.template.get("Parameters", {}).items()}


# Each key: its TOML type, and the template parameter it becomes (whose constraints it must meet).
KEYS: dict[str, tuple[type, str]] = {
    "instance_type": (str, "endpoint.InstanceType"),
    "instance_count": (int, "endpoint.InstanceCount"),
    "retrain_schedule": (str, "automation.ScheduleExpression"),
    "alarm_email": (str, "monitoring.AlarmEmail"),
    "cors_origins": (list, ""),  # written into the api template (its preflights and the functions' environment)
    "retrain_on_drift": (bool, ""),  # adds the automation template's drift rule
    "retrain_cooldown_hours": (int, ""),  # the retrain function's environment
    "api_reserved_concurrency": (int, ""),  # written into the api template (0: no reservation, and a checkov skip)
    "prediction_retention_days": (int, "api.PredictionRetentionDays"),  # the table's TTL, via the function
}
TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list of strings"}
RENAMED = {"allowed_origin": 'replaced by cors_origins, a list of origins such as ["https://app.example.com"] '
                             '(no "*": none means no CORS)'}
MAX_COOLDOWN_HOURS = 24 * 366


def value_refusal(stage: str, key: str, value: object, parameters: dict[str, dict]) -> str:
    """Why ``value`` is not a valid ``key`` of the stage's table ("" if it is)."""
    kind, parameter = KEYS[key]
    if type(value) is not kind:  # bool is an int to isinstance; TOML's true is not a count
        return f"expected {TYPE_NAMES[kind]}, got {type(value).__name__} {value!r}"
    if key == "retrain_schedule" and value == "":
        return ""  # off
    if key == "cors_origins":
        if not all(isinstance(origin, str) for origin in value):
            return f"expected {TYPE_NAMES[list]}, got {value!r}"
        try:
            checked_origins(value)
        except ValueError as error:
            return str(error)
        return ""
    if key == "api_reserved_concurrency":
        return "" if value >= 0 else f"{value} must be 0 (none reserved) or more concurrent executions"
    if key == "retrain_cooldown_hours":
        return "" if 1 <= value <= MAX_COOLDOWN_HOURS else f"{value} must be from 1 to {MAX_COOLDOWN_HOURS} hours"
    if not parameter:
        return ""
    refusal = parameter_refusal(parameters[parameter], value)
    return f"{value!r} {refusal} (the {parameter} stack parameter)" if refusal else ""


def load_stage_configs(path: str | Path | None = None) -> dict[str, StageConfig]:
    """Every stage's settings: from ``path``, else ``cloudviz.toml`` in the working directory when there is one,
    else the defaults. A named file that does not exist is an error; the default one is optional."""
    configs = {stage: default_config(stage) for stage in STAGES}
    source = Path(path) if path is not None else DEFAULT_CONFIG
    if not source.is_file():
        if path is not None:
            raise UserError(f"--config {source}: no such file")
        return configs
    try:
        document = tomllib.loads(source.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{source}: not valid TOML: {error}") from None
    unknown = sorted(set(document) - {STAGES_TABLE})
    if unknown:
        raise UserError(f"{source}: unknown key or table {unknown[0]!r}: settings go in [{STAGES_TABLE}.<stage>] "
                        f"tables ({', '.join(STAGES)})")
    tables = document.get(STAGES_TABLE, {})
    if not isinstance(tables, dict):
        raise UserError(f"{source}: {STAGES_TABLE} must be a table of stages ([{STAGES_TABLE}.dev], ...)")
    for stage, table in tables.items():
        where = f"{source}: [{STAGES_TABLE}.{stage}]"
        if stage not in STAGES:
            raise UserError(f"{where}: unknown stage; the stages are {', '.join(STAGES)}")
        if not isinstance(table, dict):
            raise UserError(f"{where}: expected a table of settings, got {type(table).__name__}")
        parameters = template_parameters(stage)
        for key, value in table.items():
            if key in RENAMED:
                raise UserError(f"{where} {key}: {RENAMED[key]}")
            if key not in KEYS:
                raise UserError(f"{where} {key}: unknown key; the keys are {', '.join(KEYS)}")
            refusal = value_refusal(stage, key, value, parameters)
            if refusal:
                raise UserError(f"{where} {key}: {refusal}")
        if "cors_origins" in table:
            table = {**table, "cors_origins": checked_origins(table["cors_origins"])}
        configs[stage] = StageConfig(**{**default_config(stage).__dict__, **table})
    return configs


def with_schedules(config: StageConfig, path: str | Path | None = None) -> StageConfig:
    """``config`` with the project's schedule definitions: from ``path``, else ``cloudviz.schedules.json`` in the
    working directory when there is one, else none. A named file that does not exist is an error."""
    from pipelines.scheduling.definitions import SCHEDULES_FILE, load_schedules

    source = Path(path) if path is not None else Path(SCHEDULES_FILE)
    if path is not None and not source.is_file():
        raise UserError(f"--schedules {source}: no such file")
    return replace(config, schedules=tuple(load_schedules(source).values()))
