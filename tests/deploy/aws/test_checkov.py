"""checkov's CloudFormation policies over every generated template of both stages: no failed check remains
unless the resource says why in its ``Metadata`` (checkov's inline suppression, ``checkov.skip`` with a
``comment``), and no skip outlives the failure it justifies.

checkov runs offline from its own venv (``make test`` makes ``.venv-checkov``: checkov pins older boto3 and
botocore than the project needs): no API key, no downloads, and proxies pointed at a closed port so that any
attempt to reach the network fails instead of passing unnoticed.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from project_root import ROOT

from deploy.aws.settings import AwsSettings
from deploy.aws.stacks import apigw_logging_stack, synthesize
from deploy.aws.stage_config import default_config

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SETTINGS = AwsSettings(region="eu-west-1", account_id="123456789012", artifact_bucket="cloudviz-artifacts",
                       alarm_email="ops@example.com", model_version=7,
                       model_package_arn="arn:aws:sagemaker:eu-west-1:123456789012:model-package/cloudviziris/7",
                       baseline_statistics_uri="s3://cloudviz-artifacts/cloudviz/executions/x/statistics.json")
CHECK_ID = re.compile(r"CKV2?_AWS_\d+")
MIN_REASON = 20  # characters: a reason, not a placeholder


def templates() -> dict[str, dict]:
    """Every stack template of both stages with each stage's default settings, and the account stack
    (``--create-apigw-logging-role``), by stack name."""
    specs = [spec for stage in ("dev", "prod")
             for spec in synthesize(stage, replace(SETTINGS, **default_config(stage).api_settings()))]
    return {spec.name: spec.template for spec in (*specs, apigw_logging_stack())}


def declared_skips(documents: dict[str, dict]) -> dict[tuple[str, str, str], str]:
    """(stack, logical id, check id) -> the comment, of every checkov skip in the templates' Metadata."""
    skips = {}
    for stack, template in documents.items():
        for key, resource in template["Resources"].items():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                skips[stack, key, skip.get("id", "")] = skip.get("comment", "")
    return skips


def unjustified(skips: dict[tuple[str, str, str], str]) -> list[str]:
    return [f"{stack} {key}: skip {check!r} needs a check id and a comment saying why"
            for (stack, key, check), comment in skips.items()
            if not CHECK_ID.fullmatch(check) or len(comment.strip()) < MIN_REASON]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_checkov(documents: dict[str, dict], directory: Path) -> list[dict]:
    """checkov's results (passed, failed, skipped) of ``documents`` written to ``directory``."""
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: `make test` installs it (or `make .venv-checkov/.installed-3.3.30`)")
    directory.mkdir(parents=True)
    for stack, template in documents.items():
        (directory / f"{stack}.json").write_text(json.dumps(template, indent=1))
    dead = f"http://127.0.0.1:{closed_port()}"
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("BC_", "PRISMA_"))}
    environment.update({"HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead, "https_proxy": dead,
                        "NO_PROXY": "", "no_proxy": "", "LOG_LEVEL": "WARNING"})
    completed = subprocess.run(
        [str(CHECKOV), "--directory", str(directory), "--framework", "cloudformation", "--skip-download",
         "--output", "json", "--compact"],
        capture_output=True, text=True, env=environment, timeout=300, check=False,
    )
    assert completed.returncode in (0, 1), completed.stderr[-2000:]  # 1: some check failed
    reports = json.loads(completed.stdout)
    results = []
    for report in reports if isinstance(reports, list) else [reports]:
        assert report["summary"]["parsing_errors"] == 0, report["results"].get("parsing_errors")
        for outcome in ("passed", "failed", "skipped"):
            for check in report["results"][f"{outcome}_checks"]:
                stack = Path(check["file_path"]).stem
                results.append({"outcome": outcome, "stack": stack, "resource": check["resource"].split(".")[-1],
                                "check": check["check_id"], "name": check["check_name"],
                                "comment": check["check_result"].get("suppress_comment")})
    return results


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """checkov over the templates as generated, and over the same templates with every skip taken out."""
    documents = templates()
    bare = copy.deepcopy(documents)
    for template in bare.values():
        for resource in template["Resources"].values():
            resource.get("Metadata", {}).pop("checkov", None)
    root = tmp_path_factory.mktemp("checkov")
    return {"documents": documents, "as_generated": run_checkov(documents, root / "generated"),
            "without_skips": run_checkov(bare, root / "bare")}


def test_no_check_fails_unless_the_template_says_why(runs):
    results = runs["as_generated"]
    failed = [f"{r['stack']} {r['resource']}: {r['check']} {r['name']}" for r in results if r["outcome"] == "failed"]
    assert failed == [], "checkov failures with no justification in Metadata:\n" + "\n".join(failed)
    skips = declared_skips(runs["documents"])
    for result in (r for r in results if r["outcome"] == "skipped"):
        assert result["comment"] == skips[result["stack"], result["resource"], result["check"]]
    assert sum(r["outcome"] == "passed" for r in results) > 100, "checkov ran its policies"


def test_every_skip_says_why_and_suppresses_a_real_failure(runs):
    skips = declared_skips(runs["documents"])
    assert unjustified(skips) == []
    failing = {(r["stack"], r["resource"], r["check"]) for r in runs["without_skips"] if r["outcome"] == "failed"}
    stale = sorted(set(skips) - failing)
    assert stale == [], f"skips of checks that pass anyway (remove them): {stale}"


def test_a_skip_without_a_reason_is_refused():
    """The rule of the test above can fail: an empty or missing comment, or a made-up check id, is caught."""
    documents = templates()
    resource = next(iter(documents.values()))["Resources"]
    first = next(iter(resource))
    resource[first]["Metadata"] = {"checkov": {"skip": [{"id": "CKV_AWS_1"}, {"id": "CKV_AWS_2", "comment": " "},
                                                        {"id": "all", "comment": "because we felt like it, really"}]}}
    assert len(unjustified(declared_skips(documents))) == 3


# Checks that are fixed in the templates, never skipped: (stack, resource, check) checkov must see pass.
MUST_PASS = [
    *((f"cloudviz-{stage}-api", "ApiStage", "CKV_AWS_76") for stage in ("dev", "prod")),  # the access log
    *(("cloudviz-prod-api", function, "CKV_AWS_115") for function in ("InferenceFunction", "RetrieveFunction")),
    *(("cloudviz-apigw-logging", resource, check) for resource, check in (
        ("ApiGatewayCloudWatchRole", "CKV_AWS_60"), ("ApiGatewayCloudWatchRole", "CKV_AWS_61"))),
]


def test_what_is_fixed_passes_checkov_without_a_skip(runs):
    passed = {(r["stack"], r["resource"], r["check"]) for r in runs["as_generated"] if r["outcome"] == "passed"}
    assert [check for check in MUST_PASS if check not in passed] == []
    account = [r for r in runs["as_generated"] if r["stack"] == "cloudviz-apigw-logging"]
    assert account and all(r["outcome"] == "passed" for r in account)
