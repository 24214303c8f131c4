"""The Lambda zips: what each holds and imports (in an interpreter that cannot see the project), which a stage
uploads, and the automation stack's schedules and smoke-test timing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from project_root import ROOT
from template_stacks import SETTINGS, stacks

from deploy.aws.functions.smoke_test import REQUEST_TIMEOUT_SECONDS, longest_run_seconds
from deploy.aws.lambda_zip import automation_zip, lambda_zips, serving_zip
from deploy.aws.settings import AwsSettings
from deploy.aws.stacks import referenced_packages, synthesize

# What a Lambda zip may import besides its own files: the standard library and the runtime's boto3.
# (certifi: botocore imports it when present, and falls back to its own CA bundle when not)
BOTO3_DISTRIBUTION = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six", "certifi")


# --- Lambda zips -----------------------------------------------------------------------------------------------

ISOLATED_IMPORT = """
import importlib, json, os, sys, sysconfig
preloaded = set(sys.modules)  # the interpreter's own start-up (site hooks), not the package's imports
root = sys.argv[1]
# The project is out of sight: its editable install's finder goes, and so does its root on the path.
sys.meta_path[:] = [finder for finder in sys.meta_path if "__editable__" not in getattr(finder, "__module__", "")]
sys.path[:] = [root] + [p for p in sys.path if p and os.path.realpath(p) != {project!r}]
for module in sys.argv[2:]:
    importlib.import_module(module.rpartition(".")[0]).__dict__[module.rpartition(".")[2]]
stdlib = sysconfig.get_paths(vars={{"base": sys.base_prefix, "platbase": sys.base_prefix}})["stdlib"]
allowed = {allowed!r}
outside = sorted(
    name for name, module in list(sys.modules.items())
    if name not in preloaded and getattr(module, "__file__", None)
    and not module.__file__.startswith(root)
    and not (module.__file__.startswith(stdlib) and "site-packages" not in module.__file__)
    and name.partition(".")[0] not in allowed
)
print(json.dumps(outside))
"""


def import_from_zip(archive: bytes, directory: Path, handlers: list[str]) -> list[str]:
    """Unpack the zip and import its handlers in a fresh interpreter that cannot see the project: the modules
    loaded from anywhere but the zip, the standard library and boto3's distribution."""
    directory.mkdir()
    (directory / "package.zip").write_bytes(archive)
    with zipfile.ZipFile(directory / "package.zip") as opened:
        opened.extractall(directory / "unpacked")
    script = ISOLATED_IMPORT.format(project=str(ROOT), allowed=BOTO3_DISTRIBUTION)
    result = subprocess.run([sys.executable, "-I", "-c", script, str(directory / "unpacked"), *handlers],
                            capture_output=True, text=True, cwd=directory, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_serving_zip_holds_serving_lambdas_and_imports_nothing_else(tmp_path):
    package = serving_zip()
    with zipfile.ZipFile(__import__("io").BytesIO(package.data)) as archive:
        entries = archive.namelist()
    assert all(entry.startswith("serving_lambdas/") and entry.endswith(".py") for entry in entries)
    assert {"serving_lambdas/inference.py", "serving_lambdas/retrieve.py", "serving_lambdas/drift_monitor.py",
            "serving_lambdas/drift.py", "serving_lambdas/store/dynamodb.py"} <= set(entries)
    assert serving_zip().data == package.data and package.key.endswith(f"-{package.sha256[:16]}.zip")
    assert import_from_zip(package.data, tmp_path / "serving", [
        "serving_lambdas.inference.handler", "serving_lambdas.retrieve.handler",
        "serving_lambdas.drift_monitor.handler", "serving_lambdas.store.dynamodb.DynamoDbStore"]) == []


def test_automation_zip_holds_its_functions_on_boto3(tmp_path):
    package = automation_zip()
    with zipfile.ZipFile(__import__("io").BytesIO(package.data)) as archive:
        assert archive.namelist() == ["pipelines/__init__.py", "pipelines/approved_version.py",
                                      "pipelines/objectives.py", "pipelines/retraining.py", "redeploy.py",
                                      "retrain.py", "smoke_test.py"]
    assert automation_zip().data == package.data
    assert import_from_zip(package.data, tmp_path / "automation",
                           ["redeploy.handler", "retrain.handler", "smoke_test.handler"]) == []


@pytest.mark.parametrize("expression", ["cron(0 3 ? * MON *)", "rate(7 days)", "at(2026-12-01T03:00:00)"])
def test_the_automation_stack_takes_every_schedule_the_cli_takes(expression):
    from deploy.aws.stage_release import schedule_settings

    settings = AwsSettings(artifact_bucket="b", **schedule_settings(expression))
    automation = synthesize("dev", settings)[3]
    pattern = automation.template["Parameters"]["ScheduleExpression"]["AllowedPattern"]
    assert re.fullmatch(pattern, automation.parameters["ScheduleExpression"])


def test_the_smoke_test_outlasts_the_longest_version_cache_the_api_takes():
    """After an update dev's smoke test waits until the inference function's version cache expired (the api
    stack's ModelVersionTtlSeconds): its function's timeout covers the longest TTL the api stack accepts, the wait's
    margin and the two API calls, within Lambda's 900 s."""
    specs = stacks("dev")
    longest_ttl = specs["api"].template["Parameters"]["ModelVersionTtlSeconds"]["MaxValue"]
    timeout = specs["automation"].template["Resources"]["SmokeTestFunction"]["Properties"]["Timeout"]
    assert longest_ttl + 2 * REQUEST_TIMEOUT_SECONDS <= longest_run_seconds(longest_ttl) <= timeout <= 900


def test_only_the_zips_a_stage_runs_are_uploaded():
    packages = lambda_zips()
    for stage in ("dev", "prod"):  # prod's automation stack runs the retrain function too
        used = referenced_packages(synthesize(stage, SETTINGS, packages), packages)
        assert {package.name for package in used} == {"serving_lambdas", "automation"}, stage
