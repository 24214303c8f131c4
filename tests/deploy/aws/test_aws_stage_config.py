"""The per-stage config file (cloudviz.toml): the defaults, errors naming the file, table and key, and the
settings reaching the synthesized stacks, where command-line flags win."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from project_root import ROOT
from promotion_account import ACCOUNT, BUCKET, DEV, PROD, REGION

from cloudviz.cli import main
from deploy.aws.stage_config import StageConfig, load_stage_configs

EXAMPLE_CONFIG = ROOT / "cloudviz.example.toml"
SYNTH_PACKAGE = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/cloudviziris/1"


# --- the per-stage config file ------------------------------------------------------------------------------------

def test_the_defaults_and_the_example_file_are_todays_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no cloudviz.toml here: the defaults
    today = {"dev": StageConfig("ml.t2.medium", 1, api_reserved_concurrency=0, prediction_retention_days=365),
             "prod": StageConfig("ml.m5.large", 2, api_reserved_concurrency=20, prediction_retention_days=365)}
    assert load_stage_configs() == today
    assert load_stage_configs(EXAMPLE_CONFIG) == today
    (tmp_path / "cloudviz.toml").write_text('[stages.prod]\ninstance_count = 3\n')
    assert load_stage_configs()["prod"] == replace(today["prod"], instance_count=3)  # found in the working directory


def synth(capsys, tmp_path: Path, stage: str, *extra: str) -> tuple[int, str]:
    code = main(["deploy", "aws", "--stage", stage, "--synth", str(tmp_path / "out"), "--bucket", BUCKET,
                 "--model-package-arn", SYNTH_PACKAGE, "--region", REGION, *extra])
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize(("text", "error"), [
    ('[stages.staging]\ninstance_count = 1\n', "[stages.staging]: unknown stage; the stages are dev, prod"),
    ('[stages.prod]\ninstance_size = "big"\n', "[stages.prod] instance_size: unknown key; the keys are "
                                                "instance_type, instance_count, retrain_schedule, alarm_email, "
                                                "cors_origins"),
    ('[stages.prod]\ninstance_count = "2"\n', "[stages.prod] instance_count: expected an integer, got str '2'"),
    ('[stages.prod]\ninstance_count = true\n', "[stages.prod] instance_count: expected an integer, got bool True"),
    ('[stages.prod]\ninstance_count = 0\n', "[stages.prod] instance_count: 0 must be at least 1 (the "
                                            "endpoint.InstanceCount stack parameter)"),
    ('[stages.dev]\ninstance_type = "ml.inf1.xlarge"\n', "[stages.dev] instance_type: 'ml.inf1.xlarge' must match"),
    ('[stages.dev]\nalarm_email = "oncall"\n', "[stages.dev] alarm_email: 'oncall' must match"),
    ('[stages.dev]\nretrain_schedule = "weekly"\n', "[stages.dev] retrain_schedule: 'weekly' must match"),
    ('[stages.dev]\ncors_origins = ["https://example.com/app"]\n',
     "[stages.dev] cors_origins: CORS origin 'https://example.com/app' must be scheme://host[:port]"),
    ('[stages.dev]\ncors_origins = "https://example.com"\n',
     "[stages.dev] cors_origins: expected a list of strings, got str 'https://example.com'"),
    ('[stages.dev]\ncors_origins = [1]\n', "[stages.dev] cors_origins: expected a list of strings, got [1]"),
    ('[stages.dev]\nallowed_origin = "*"\n', "[stages.dev] allowed_origin: replaced by cors_origins, a list"),
    ('[stages.dev]\ninstance_count = 1\n[prod]\n', "unknown key or table 'prod'"),
    ('[stages.dev\n', "not valid TOML: "),
])
def test_a_bad_config_is_one_line_naming_the_file_table_and_key(text, error, tmp_path, capsys):
    path = tmp_path / "settings.toml"
    path.write_text(text)
    code, stderr = synth(capsys, tmp_path, "dev", "--config", str(path))
    assert code == 2
    assert stderr.startswith(f"cloudviz: error: {path}: {error}"), stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_missing_config_file_is_named(tmp_path, capsys):
    code, stderr = synth(capsys, tmp_path, "dev", "--config", str(tmp_path / "nowhere.toml"))
    assert (code, stderr.strip()) == (2, f"cloudviz: error: --config {tmp_path / 'nowhere.toml'}: no such file")


def written_parameters(tmp_path: Path, stack: str) -> dict[str, str]:
    items = json.loads((tmp_path / "out" / f"{stack}.parameters.json").read_text())
    return {item["ParameterKey"]: item["ParameterValue"] for item in items}


def test_the_config_reaches_the_stacks_and_flags_win(tmp_path, capsys):
    path = tmp_path / "cloudviz.toml"
    path.write_text('[stages.prod]\ninstance_type = "ml.c5.xlarge"\ninstance_count = 3\n'
                    'retrain_schedule = "rate(7 days)"\nalarm_email = "team@example.com"\n'
                    'cors_origins = ["https://dashboard.example.com"]\n')
    assert synth(capsys, tmp_path, "prod", "--config", str(path), "--alarm-email", "oncall@example.com")[0] == 0
    endpoint = written_parameters(tmp_path, PROD.endpoint_stack)
    assert (endpoint["InstanceType"], endpoint["InstanceCount"]) == ("ml.c5.xlarge", "3")
    automation = written_parameters(tmp_path, PROD.automation_stack)
    assert (automation["ScheduleState"], automation["ScheduleExpression"]) == ("ENABLED", "rate(7 days)")
    assert written_parameters(tmp_path, PROD.monitoring_stack)["AlarmEmail"] == "oncall@example.com"  # the flag
    api = (tmp_path / "out" / f"{PROD.api_stack}.json").read_text()
    assert "'https://dashboard.example.com'" in api and "'*'" not in api
    # dev is not in the file: today's dev settings.
    assert synth(capsys, tmp_path, "dev", "--config", str(path), "--retrain-schedule", "")[0] == 0
    endpoint = written_parameters(tmp_path, DEV.endpoint_stack)
    assert (endpoint["InstanceType"], endpoint["InstanceCount"]) == ("ml.t2.medium", "1")
    assert written_parameters(tmp_path, DEV.automation_stack)["ScheduleState"] == "DISABLED"


def test_the_retrain_function_reads_the_data_sets_below_the_prefix_the_pipeline_used(tmp_path, capsys):
    """`pipeline --prefix ml/cloudviz` keeps the data sets below it: `deploy aws --prefix` points the retrain function
    there, its environment and its S3 permissions alike."""
    assert synth(capsys, tmp_path, "dev", "--prefix", "ml/cloudviz")[0] == 0
    template = json.loads((tmp_path / "out" / f"{DEV.automation_stack}.json").read_text())
    (function,) = [resource for resource in template["Resources"].values()
                   if resource["Type"] == "AWS::Lambda::Function"
                   and "ARTIFACT_PREFIX" in resource["Properties"]["Environment"]["Variables"]]
    assert function["Properties"]["Environment"]["Variables"]["ARTIFACT_PREFIX"] == "ml/cloudviz"
    text = json.dumps(template)
    assert "ml/cloudviz/datasets/" in text and '"cloudviz/datasets/' not in text
