"""Text views of runs and model packages for the terminal (``--json`` prints the records instead)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cloudviz.progress import step_note
from pipelines.registry import ModelPackage
from pipelines.runs import RunRecord

if TYPE_CHECKING:
    from deploy.deployments import Deployment
    from deploy.local_service import LocalService  # imports XGBoost; only the type is needed here
    from deploy.monitoring.alarm_history import AlarmState, Transition
    from deploy.monitoring.alarm_rules import AlarmRule


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(f"{cell!s:<{w}}" for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [headers, *rows]]
    return "\n".join(lines)


def run_duration(record: RunRecord) -> float:
    return sum(step.duration_seconds or 0.0 for step in record.steps.values())


def run_summary(record: RunRecord) -> str:
    """Each step with its status and time, then the metrics and the registered version."""
    lines = [f"Run {record.run_id}: {record.status} ({run_duration(record):.2f}s of step time)"]
    rows = [
        [step.name, step.status, f"{step.duration_seconds:.2f}s" if step.duration_seconds is not None else "-",
         step_note(step)]
        for step in record.steps.values()
    ]
    lines.append(table(["STEP", "STATUS", "TIME", "NOTE"], rows))
    evaluation = record.output_json("evaluation", "evaluation.json")
    if evaluation:
        metrics = evaluation["multiclass_classification_metrics"]
        lines.append(
            f"Metrics: accuracy {metrics['accuracy']['value']:.4f}, macro F1 {metrics['macro_f1']['value']:.4f}, "
            f"weighted F1 {metrics['weighted_f1']['value']:.4f} on {evaluation['test_rows']} test rows"
        )
    for step in record.steps.values():
        if "version" in step.properties:
            p = step.properties
            lines.append(f"Registered: {p['model_package_group']} version {p['version']} ({p['approval_status']})")
            if p["approval_status"] == "PendingManualApproval":
                lines.append(f"  approve it with: cloudviz models approve {p['model_package_group']} {p['version']}")
    if record.failure_reason:
        lines.append(f"Failed: {record.failure_reason}")
        if record.status == "Failed":
            lines.append(f"  resume it with: cloudviz pipeline resume {record.run_id}")
    lines.append(f"Folder: {record.folder}")
    return "\n".join(lines)


def runs_table(records: list[RunRecord]) -> str:
    rows = []
    for record in records:
        registered = next((s.properties for s in record.steps.values() if "version" in s.properties), None)
        evaluation = record.output_json("evaluation", "evaluation.json")
        accuracy = evaluation["multiclass_classification_metrics"]["accuracy"]["value"] if evaluation else None
        rows.append([
            record.run_id,
            record.status,
            record.created_at.replace("T", " ")[:19],
            f"{run_duration(record):.2f}s",
            f"{accuracy:.4f}" if accuracy is not None else "-",
            f"{registered['model_package_group']} v{registered['version']}" if registered else "-",
        ])
    return table(["RUN", "STATUS", "STARTED (UTC)", "TIME", "ACCURACY", "REGISTERED"], rows)


def packages_table(packages: list[ModelPackage]) -> str:
    rows = [
        [
            p.group,
            str(p.version),
            p.approval_status,
            f"{p.metrics['multiclass_classification_metrics']['accuracy']['value']:.4f}"
            if "multiclass_classification_metrics" in p.metrics else "-",
            p.created_at.replace("T", " ")[:19],
            p.lineage.get("run_id", "-"),
        ]
        for p in packages
    ]
    return table(["GROUP", "VERSION", "APPROVAL", "ACCURACY", "CREATED (UTC)", "RUN"], rows)


def package_detail(package: ModelPackage) -> str:
    lines = [
        f"{package.group} version {package.version}",
        f"  ARN:        {package.arn}",
        f"  Approval:   {package.approval_status}" + (f" ({package.status_reason})" if package.status_reason else ""),
        f"  Artifact:   {package.model_data_url}",
        f"  Created:    {package.created_at}",
        f"  Updated:    {package.updated_at}",
    ]
    metrics = package.metrics.get("multiclass_classification_metrics")
    if metrics:
        lines.append(
            f"  Metrics:    accuracy {metrics['accuracy']['value']:.4f}, macro F1 {metrics['macro_f1']['value']:.4f},"
            f" weighted F1 {metrics['weighted_f1']['value']:.4f}"
        )
        for name, scores in package.metrics.get("per_class", {}).items():
            lines.append(
                f"    {name:<14} precision {scores['precision']:.3f}  recall {scores['recall']:.3f}"
                f"  F1 {scores['f1']:.3f}  support {scores['support']}"
            )
    lineage = package.lineage
    if lineage:
        data = lineage.get("data", {})
        lines.append(f"  Run:        {lineage.get('run_id')} ({lineage.get('pipeline')})")
        lines.append(f"  Data:       {data.get('file')} sha256 {str(data.get('sha256'))[:16]}… {data.get('rows')}")
        code = lineage.get("code_version", {})
        lines.append(f"  Code:       cloudviz {code.get('cloudviz')} commit {code.get('git_commit') or 'unknown'}")
    return "\n".join(lines)


def serve_command(stage: str) -> str:
    """The command that serves ``stage``, as a user types it (dev is the default)."""
    from deploy.release import APPROVED_STAGE

    return "cloudviz serve" if stage == APPROVED_STAGE else f"cloudviz serve --stage {stage}"


def deployment(record: Deployment) -> str:
    serve = serve_command(record.stage)
    return (
        f"{record.endpoint} serves {record.group} version {record.version} ({record.model_data_url}).\n"
        f"A running `{serve}` switches to it with no failed request; otherwise start one with `{serve}`."
    )


def promotion(record: Deployment, smoke_test: Mapping, source: str, changed: bool) -> str:
    passed = f"it passed its smoke test on {source} at {smoke_test['at']}: {smoke_test['detail']}"
    if not changed:
        return f"{record.stage} serves {record.group} version {record.version} already ({passed}). Nothing changed."
    return f"Promoted {record.group} version {record.version} from {source} to {record.stage} ({passed}).\n" + (
        deployment(record))


def serving(service: LocalService, key_from_env: bool) -> str:
    from deploy.dashboard.data import SAMPLE_BODY  # loaded already: the service serves the dashboard

    api, live = service.api.url, service.live
    key_source = "CLOUDVIZ_API_KEY" if key_from_env else f"kept in {service.home.api_key_file}"
    return "\n".join([
        f"Endpoint  {service.endpoint} at {service.endpoint_server.url} (SageMaker hosting and Runtime API),"
        f" serving {live.group} version {live.version}",
        f"API       {api}/predictions   (OpenAPI document: {api}/openapi.json)",
        f"API key   {service.api_key}   (send it as x-api-key; {key_source})",
        f"Try       curl -s -X POST {api}/predictions -H 'x-api-key: {service.api_key}'"
        f" -H 'Content-Type: application/json' -d '{SAMPLE_BODY}'",
        f"Dashboard {api}/dashboard   (live monitoring; `cloudviz dashboard` opens it; Prometheus: {api}/metrics)",
        alarms_line(service),
        smoke_test_line(service),
        follows_line(service) + " Ctrl-C stops.",
    ])


def smoke_test_line(service: LocalService) -> str:
    result = service.last_smoke_test
    if result is None:
        return "Smoke     not run"
    outcome = "passed" if result.passed else "FAILED (the version stays live; it cannot be promoted)"
    return f"Smoke     version {result.version} {outcome}: {result.detail}"


def follows_line(service: LocalService) -> str:
    """What makes another version go live on this stage."""
    from deploy.release import APPROVED_STAGE, STAGES, stage_before

    group, stage = service.live.group, service.stage
    if stage == APPROVED_STAGE:
        line = f"A version approved now (cloudviz models approve {group} N) goes live here with no failed request."
        later = STAGES[STAGES.index(stage) + 1:]
        if later:
            line += f" Once it passes its smoke test: cloudviz promote local --from {stage} --to {later[0]}."
        return line
    source = stage_before(stage)
    return (f"A version promoted now (cloudviz promote local --from {source} --to {stage}) goes live here with no"
            " failed request.")


def alarms_line(service: LocalService) -> str:
    rules = service.evaluator.rules if service.evaluator is not None else ()
    periods = "/".join(f"{period:g}" for period in sorted({rule.period_seconds for rule in rules}))
    destinations = ", ".join(notifier.destination for notifier in service.notifiers)
    return (f"Alarms    {len(rules)} rules over {periods} s periods (cloudviz alarms list); changes go to:"
            f" {destinations}")


def alarm_value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def alarms_table(rules: Sequence[AlarmRule], states: Mapping[str, AlarmState]) -> str:
    """Each rule with its recorded state; rules never evaluated show "-"."""
    rows = []
    for rule in rules:
        state = states.get(rule.name)
        rows.append([
            rule.name,
            state.state if state else "-",
            state.since.replace("T", " ")[:19] if state else "-",
            alarm_value(state.value) if state else "-",
            state.condition if state else rule.condition,
        ])
    lines = [table(["ALARM", "STATE", "SINCE (UTC)", "VALUE", "CONDITION"], rows)]
    if any(rule.name not in states for rule in rules):
        lines.append("-: not evaluated yet (`cloudviz serve` evaluates the alarms while it runs)")
    return "\n".join(lines)


def alarm_history(transitions: Sequence[Transition]) -> str:
    rows = [
        [t.timestamp.replace("T", " ")[:23], t.alarm, f"{t.old_state} -> {t.new_state}", alarm_value(t.value),
         t.reason]
        for t in transitions
    ]
    return table(["TIME (UTC)", "ALARM", "CHANGE", "VALUE", "REASON"], rows)
