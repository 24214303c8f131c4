"""Text views of runs and model packages for the terminal (``--json`` prints the records instead)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cloudviz.progress import printable, step_note
from pipelines.model_quality import headline_metrics, scalar_metrics

if TYPE_CHECKING:
    from cloudviz.api.types import Alarm, Deployment, ModelVersion, Run
    from deploy.local_service import LocalService  # imports XGBoost; only the type is needed here
    from deploy.monitoring.alarm_history import Transition


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(f"{cell!s:<{w}}" for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [headers, *rows]]
    return "\n".join(lines)


def run_duration(run: Run) -> float:
    return sum(step.duration_seconds or 0.0 for step in run.steps)


LABELS = {"macro_f1": "macro F1", "weighted_f1": "weighted F1", "f1": "F1", "auc": "AUC", "rmse": "RMSE",
          "mae": "MAE", "r2": "R2"}  # how the headline metrics are written; the others as named


def metrics_text(evaluation: Mapping) -> str:
    """``accuracy 0.9583, macro F1 0.9582, ...``: the headline metrics present, else every metric."""
    shown = headline_metrics(evaluation) or scalar_metrics(evaluation)
    shown = {LABELS.get(name, name): value for name, value in shown.items()}
    return ", ".join(f"{name} {value:.4f}" for name, value in shown.items())


def champion_text(champion: Mapping) -> str:
    """The champion a version was compared with, side by side with it on the same test rows (or why none was)."""
    if champion.get("status") != "compared":
        return str(champion.get("reason", "none"))
    who = f"version {champion['version']}" if "version" in champion else "the model given"
    stage = f" (live on {champion['stage']})" if champion.get("stage") else ""
    verdict = "passed" if champion["passed"] else "failed"
    return (f"{who}{stage}: {metrics_text(champion)} on the same test rows; gate metric "
            f"{champion['champion_value']:.4f} champion vs {champion['challenger_value']:.4f} this version "
            f"(MaxRegression {champion['max_regression']:g}, {verdict})")


def registered_as(run: Run) -> str | None:
    """The approval status the run's version was registered with (a cached Register step keeps the first one)."""
    return next((step.properties.get("approval_status") for step in run.steps if "version" in step.properties), None)


def run_summary(run: Run, approval_status: str | None = None) -> str:
    """Each step with its status and time, then the metrics and the registered version with its approval status
    now (``approval_status``, from the registry), which a cached Register step's record does not follow."""
    lines = [f"Run {run.id}: {run.status} ({run_duration(run):.2f}s of step time)"]
    rows = [
        [step.name, step.status, f"{step.duration_seconds:.2f}s" if step.duration_seconds is not None else "-",
         step_note(step)]
        for step in run.steps
    ]
    lines.append(table(["STEP", "STATUS", "TIME", "NOTE"], rows))
    if run.parameters.get("DataSetVersion"):
        lines.append(f"Data: {run.parameters['DataSetVersion']}")
    evaluation = run.evaluation
    if evaluation:
        lines.append(f"Metrics: {metrics_text(evaluation)} on {evaluation['test_rows']} test rows")
        if evaluation.get("gate"):
            lines.append(f"Gate: {evaluation['gate']['message']}")
        if evaluation.get("champion"):
            lines.append(f"Champion: {champion_text(evaluation['champion'])}")
    if run.model:
        group, version = run.model.group, run.model.version
        recorded = registered_as(run)
        status = approval_status or recorded
        note = f"; registered as {recorded}" if status != recorded else ""
        lines.append(f"Registered: {group} version {version} ({status}{note})")
        if status == "PendingManualApproval":
            lines.append(f"  approve it with: cloudviz models approve {group} {version}")
    if run.failure_reason:
        lines.append(f"Failed: {printable(run.failure_reason)}")
        if run.status == "Failed":
            lines.append(f"  resume it with: cloudviz pipeline resume {run.id}")
    lines.append(f"Folder: {run.folder}")
    return "\n".join(lines)


def runs_table(runs: list[Run]) -> str:
    rows = []
    for run in runs:
        accuracy = run.metrics.get("accuracy")
        rows.append([
            run.id,
            run.status,
            (run.started_at or "").replace("T", " ")[:19],
            f"{run_duration(run):.2f}s",
            f"{accuracy:.4f}" if accuracy is not None else "-",
            f"{run.model.group} v{run.model.version}" if run.model else "-",
        ])
    return table(["RUN", "STATUS", "STARTED (UTC)", "TIME", "ACCURACY", "REGISTERED"], rows)


def serving_package(deployments: Sequence[Deployment], package: ModelVersion) -> list[Deployment]:
    """The deployment records of the local endpoints that serve ``package``, in stage order."""
    return [d for d in deployments if (d.group, d.version) == (package.group, package.version)]


def live_stages(deployments: Sequence[Deployment], package: ModelVersion) -> list[str]:
    return [d.stage for d in serving_package(deployments, package)]


def packages_table(packages: list[ModelVersion], deployments: Sequence[Deployment]) -> str:
    rows = [
        [
            p.group,
            str(p.version),
            p.approval_status,
            ",".join(live_stages(deployments, p)) or "-",
            f"{accuracy:.4f}" if (accuracy := scalar_metrics(p.evaluation).get("accuracy")) is not None else "-",
            p.created_at.replace("T", " ")[:19],
            p.lineage.get("run_id", "-"),
        ]
        for p in packages
    ]
    return table(["GROUP", "VERSION", "APPROVAL", "LIVE", "ACCURACY", "CREATED (UTC)", "RUN"], rows)


def package_detail(package: ModelVersion, deployments: Sequence[Deployment]) -> str:
    """Readable lines only: a field the version does not have is left out, never shown as a Python value."""
    lines = [
        f"{package.group} version {package.version}",
        f"  ARN:        {package.arn}",
        f"  Approval:   {package.approval_status}" + (f" ({package.status_reason})" if package.status_reason else ""),
        f"  Artifact:   {package.model_data_url}",
        f"  Created:    {package.created_at}",
        f"  Updated:    {package.updated_at}",
    ]
    for live in serving_package(deployments, package):
        lines.append(f"  Live:       {live.stage} ({live.endpoint}) since {live.deployed_at}")
    if scalar_metrics(package.evaluation):
        lines.append(f"  Metrics:    {metrics_text(package.evaluation)}")
    for name, scores in package.evaluation.get("per_class", {}).items():
        lines.append(
            f"    {name:<14} precision {scores['precision']:.3f}  recall {scores['recall']:.3f}"
            f"  F1 {scores['f1']:.3f}  support {scores['support']}"
        )
    if package.evaluation.get("champion"):
        lines.append(f"  Champion:   {champion_text(package.evaluation['champion'])}")
    lineage = package.lineage
    if lineage.get("run_id"):
        pipeline = f" ({lineage['pipeline']})" if lineage.get("pipeline") else ""
        lines.append(f"  Run:        {lineage['run_id']}{pipeline}")
    data = lineage.get("data") or {}
    dataset = data.get("dataset")
    if dataset or data.get("file"):
        # A data set version's parts are stored by their hashes: its name and id say more than a file name.
        name = f"{dataset['name']}@{dataset['version']} (id {dataset['id']})" if dataset else data["file"]
        digest = f" sha256 {data['sha256'][:16]}…" if data.get("sha256") else ""
        size = f" ({data['bytes']:,} bytes)" if data.get("bytes") is not None else ""
        lines.append(f"  Data:       {name}{digest}{size}")
    rows = data.get("rows")
    if rows:
        counts = ", ".join(f"{count} {split}" for split, count in rows.items()) if isinstance(rows, Mapping) else rows
        lines.append(f"  Rows:       {counts}")
    for label, key in (("Features:", "feature_columns"), ("Classes:", "classes")):
        if data.get(key):
            lines.append(f"  {label:<11} {', '.join(map(str, data[key]))}")
    code = lineage.get("code_version")
    if code:
        version, commit = code.get("cloudviz") or "unknown", code.get("git_commit") or "unknown"
        lines.append(f"  Code:       cloudviz {version} commit {commit}")
    return "\n".join(lines)


def endpoint_options(group: str, stage: str | None = None) -> str:
    """The options that choose ``group``'s endpoint on ``stage`` in a command, as a user types them (the defaults
    left out): `` --group Trees --stage prod``, or nothing for iris on dev."""
    from deploy.release import APPROVED_STAGE
    from pipelines.definition import DEFAULT_GROUP

    options = "" if group == DEFAULT_GROUP else f" --group {group}"
    return options if stage in (None, APPROVED_STAGE) else f"{options} --stage {stage}"


def serve_command(group: str, stage: str) -> str:
    """The command that serves ``group`` on ``stage``, as a user types it."""
    return "cloudviz serve" + endpoint_options(group, stage)


def deployment(record: Deployment) -> str:
    serve = serve_command(record.group, record.stage)
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
    api, live = service.api.url, service.live
    key_source = "CLOUDVIZ_API_KEY" if key_from_env else f"kept in {service.home.api_key_file}"
    choose = endpoint_options(live.group, service.stage)
    return "\n".join([
        f"Endpoint  {service.endpoint} at {service.endpoint_server.url} (SageMaker hosting and Runtime API),"
        f" serving {live.group} version {live.version}",
        f"API       {api}/predictions   (OpenAPI document: {api}/openapi.json)",
        f"API key   {service.api_key}   (send it as x-api-key; {key_source})",
        f"Try       curl -s -X POST {api}/predictions -H 'x-api-key: {service.api_key}'"
        f" -H 'Content-Type: application/json' -d '{service.example_body()}'",
        f"Dashboard {api}/dashboard   (live monitoring; `cloudviz dashboard{choose}` opens it;"
        f" Prometheus: {api}/metrics)",
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
            line += (f" Once it passes its smoke test: cloudviz promote local{endpoint_options(group)} --from {stage}"
                     f" --to {later[0]}.")
        return line
    source = stage_before(stage)
    return (f"A version promoted now (cloudviz promote local{endpoint_options(group)} --from {source} --to {stage})"
            " goes live here with no"
            " failed request.")


def alarms_line(service: LocalService) -> str:
    rules = service.evaluator.rules if service.evaluator is not None else ()
    periods = "/".join(f"{period:g}" for period in sorted({rule.period_seconds for rule in rules}))
    destinations = ", ".join(notifier.destination for notifier in service.notifiers)
    choose = endpoint_options(service.live.group, service.stage)
    return (f"Alarms    {len(rules)} rules over {periods} s periods (cloudviz alarms list{choose}); changes go to:"
            f" {destinations}")


def alarm_value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def alarms_table(alarms: Sequence[Alarm]) -> str:
    """Each rule with its recorded state; rules never evaluated show "-"."""
    rows = []
    for alarm in alarms:
        state = alarm.state
        rows.append([
            alarm.rule,
            state["state"] if state else "-",
            state["since"].replace("T", " ")[:19] if state else "-",
            alarm_value(state["value"]) if state else "-",
            alarm.condition,
        ])
    lines = [table(["ALARM", "STATE", "SINCE (UTC)", "VALUE", "CONDITION"], rows)]
    if any(alarm.state is None for alarm in alarms):
        lines.append("-: not evaluated yet (`cloudviz serve` evaluates the alarms while it runs)")
    return "\n".join(lines)


def alarm_history(transitions: Sequence[Transition]) -> str:
    rows = [
        [t.timestamp.replace("T", " ")[:23], t.alarm, f"{t.old_state} -> {t.new_state}", alarm_value(t.value),
         t.reason]
        for t in transitions
    ]
    return table(["TIME (UTC)", "ALARM", "CHANGE", "VALUE", "REASON"], rows)


def deployments_table(deployments: Sequence[Deployment], approvals: Mapping[tuple[str, int], str]) -> str:
    """What each local endpoint serves, since when and why, with the version's approval status now."""
    rows = [
        [d.group, d.stage, str(d.version), approvals.get((d.group, d.version), "-"),
         d.deployed_at.replace("T", " ")[:19], d.endpoint, d.reason]
        for d in deployments
    ]
    return table(["GROUP", "STAGE", "VERSION", "APPROVAL", "SINCE (UTC)", "ENDPOINT", "REASON"], rows)
