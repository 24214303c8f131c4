"""``cloudviz report RUN_ID``: a pipeline run as one self-contained HTML file, with its figures as PNG files.

The HTML embeds its figures (``data:`` URIs) and its style, so it can be mailed or attached to a ticket and
opened anywhere offline; the same figures are written beside it as PNG files for slides and wikis. A run that
failed part way is reported as far as it got, each missing part saying which step did not produce it.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from deploy.deployments import DeploymentStore  # noqa: E402
from deploy.release import local_endpoint_name  # noqa: E402
from pipelines.model_quality import confusion_matrix as confusion_counts  # noqa: E402
from pipelines.model_quality import headline_metrics, scalar_metrics  # noqa: E402
from pipelines.registry import ModelPackage, ModelRegistry  # noqa: E402
from pipelines.runs import RunRecord  # noqa: E402

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: .2em .8em; border-bottom: 1px solid #eee; }
th { text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.Succeeded { color: #1a7f37; } .Failed { color: #cf222e; } .missing { color: #777; font-style: italic; }
img { max-width: 100%; }
"""


@dataclass(frozen=True)
class Figures:
    """Each figure's PNG bytes by file name, in the order the report shows them."""

    images: dict[str, bytes]


@dataclass(frozen=True)
class Report:
    html: Path
    figures: list[Path]

    def to_dict(self) -> dict:
        return {"html": str(self.html), "figures": [str(path) for path in self.figures]}


def write_report(record: RunRecord, registry: ModelRegistry, deployments: DeploymentStore, folder: Path) -> Report:
    """Write ``report.html`` and the figures' PNG files into ``folder``."""
    schema = record.output_json("schema", "schema.json")
    evaluation = record.output_json("evaluation", "evaluation.json")
    statistics = record.output_json("baseline", "statistics.json")
    live = live_package(record, registry, deployments)
    figures = draw(record, schema, evaluation, live)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, png in figures.images.items():
        path = folder / name
        path.write_bytes(png)
        paths.append(path)
    page = folder / "report.html"
    page.write_text(render(record, schema, evaluation, statistics, live, figures), encoding="utf-8")
    return Report(page, paths)


def live_package(record: RunRecord, registry: ModelRegistry, deployments: DeploymentStore) -> ModelPackage | None:
    """The version the run's group serves locally now, if any."""
    group = str(record.parameters.get("ModelPackageGroupName", ""))
    deployment = deployments.current(local_endpoint_name(group)) if group else None
    return registry.get(group, deployment.version) if deployment else None


def compared(evaluation: dict, live: ModelPackage | None) -> list[str]:
    """The headline metrics both this run's report and the live version's have (none: no comparison)."""
    if live is None:
        return []
    theirs = headline_metrics(live.metrics)
    return [name for name in headline_metrics(evaluation) if name in theirs]


# -- figures --------------------------------------------------------------------------------------


def draw(record: RunRecord, schema: dict | None, evaluation: dict | None, live: ModelPackage | None) -> Figures:
    images = {"step_timings.png": png(step_timings(record))}
    if schema:
        images["split_sizes.png"] = png(split_sizes(schema))
    if evaluation:
        if confusion_counts(evaluation) is not None:
            images["confusion_matrix.png"] = png(confusion_matrix(evaluation))
        images["feature_importance.png"] = png(feature_importance(evaluation))
        if compared(evaluation, live):
            images["comparison.png"] = png(comparison(record, evaluation, live))
    return Figures(images)


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def step_timings(record: RunRecord) -> Figure:
    steps = [step for step in record.steps.values() if step.duration_seconds is not None]
    figure, axes = plt.subplots(figsize=(6, 0.45 * len(steps) + 1))
    colours = ["#8c959f" if step.cached_from else "#0969da" for step in steps]
    axes.barh([step.name for step in steps], [step.duration_seconds for step in steps], color=colours)
    axes.invert_yaxis()
    axes.set_xlabel("seconds (grey: reused from the step cache)")
    axes.set_title("Step timings")
    return figure


def split_sizes(schema: dict) -> Figure:
    classes, splits = schema["classes"], [split for split in schema["rows"] if split != "input"]
    figure, axes = plt.subplots(figsize=(6, 3))
    if not classes:  # a regression: rows per split
        axes.bar(splits, [schema["rows"][split] for split in splits], 0.6)
        axes.set_ylabel("rows")
        axes.set_title("Rows per split")
        return figure
    width = 0.8 / len(classes)
    for i, name in enumerate(classes):
        counts = [schema["class_counts"][split][name] for split in splits]
        axes.bar([j + i * width for j in range(len(splits))], counts, width, label=name)
    axes.set_xticks([j + width * (len(classes) - 1) / 2 for j in range(len(splits))], splits)
    axes.set_ylabel("rows")
    axes.set_title("Rows per split and class")
    axes.legend()
    return figure


def confusion_matrix(evaluation: dict) -> Figure:
    classes = evaluation["classes"]
    table = confusion_counts(evaluation)
    counts = [[table[actual][predicted] for predicted in classes] for actual in classes]
    figure, axes = plt.subplots(figsize=(4.5, 4))
    axes.imshow(counts, cmap="Blues")
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            axes.text(j, i, str(count), ha="center", va="center", color="white" if count > max(map(max, counts)) / 2
                      else "black")
    axes.set_xticks(range(len(classes)), classes, rotation=30)
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title("Confusion matrix (test split)")
    return figure


def feature_importance(evaluation: dict) -> Figure:
    importance = evaluation.get("feature_importance", {})
    figure, axes = plt.subplots(figsize=(6, 0.4 * len(importance) + 1))
    axes.barh(list(importance), list(importance.values()), color="#0969da")
    axes.invert_yaxis()
    axes.set_xlabel("total gain")
    axes.set_title("Feature importance")
    return figure


def comparison(record: RunRecord, evaluation: dict, live: ModelPackage) -> Figure:
    names = compared(evaluation, live)
    ours, theirs = headline_metrics(evaluation), headline_metrics(live.metrics)
    figure, axes = plt.subplots(figsize=(6, 3))
    positions = range(len(names))
    axes.bar([p - 0.2 for p in positions], [ours[m] for m in names], 0.4, label=f"run {record.run_id}")
    axes.bar([p + 0.2 for p in positions], [theirs[m] for m in names], 0.4, label=f"live: version {live.version}")
    axes.set_xticks(list(positions), [m.replace("_", " ") for m in names])
    if all(0 <= value <= 1 for value in (*ours.values(), *theirs.values())):
        axes.set_ylim(0, 1.05)
    axes.set_title("This run against the live model")
    axes.legend(loc="lower right")
    return figure


# -- the page -------------------------------------------------------------------------------------


def render(
    record: RunRecord,
    schema: dict | None,
    evaluation: dict | None,
    statistics: dict | None,
    live: ModelPackage | None,
    figures: Figures,
) -> str:
    sections = [
        f"<h1>Pipeline run {esc(record.run_id)}: <span class='{esc(record.status)}'>{esc(record.status)}</span></h1>",
        run_section(record, figures),
        data_section(schema, statistics, figures, str(record.parameters.get("DataSetVersion") or "")),
        metrics_section(evaluation, figures),
        comparison_section(record, evaluation, live, figures),
        champion_section(evaluation),
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>CloudViz run {esc(record.run_id)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )


def run_section(record: RunRecord, figures: Figures) -> str:
    rows = [
        [step.name, f"<span class='{esc(step.status)}'>{esc(step.status)}</span>",
         "-" if step.duration_seconds is None else f"{step.duration_seconds:.2f}s",
         esc(f"cached from {step.cached_from}" if step.cached_from else step.failure_reason or "")]
        for step in record.steps.values()
    ]
    parameters = [[esc(name), esc(value)] for name, value in record.parameters.items()]
    failure = f"<p class='Failed'>{esc(record.failure_reason)}</p>" if record.failure_reason else ""
    return (
        f"<h2>Run</h2><p>Pipeline {esc(record.pipeline)}, started {esc(record.created_at)}, "
        f"ended {esc(record.ended_at or 'not yet')}.</p>{failure}"
        + table(["step", "status", "time", "note"], rows)
        + image(figures, "step_timings.png", "Step timings")
        + "<h3>Parameters</h3>" + table(["parameter", "value"], parameters)
    )


def data_section(schema: dict | None, statistics: dict | None, figures: Figures, dataset: str = "") -> str:
    """The data the run read: a data set version by its ref (its parts are stored under their hashes), else the
    file by name."""
    if schema is None:
        return "<h2>Data</h2>" + missing("the Preprocess step produced no schema")
    source = schema["source"]
    splits = [[esc(split), number(count)] for split, count in schema["rows"].items()]
    target = schema.get("target") or {}
    label = (", ".join(f"{esc(name)} = {i}" for i, name in enumerate(schema["classes"])) if schema["classes"]
             else f"a number from {esc(target.get('min'))} to {esc(target.get('max'))}")
    summary = (
        f"<p>{esc(dataset or source['file'])} ({source['bytes']:,} bytes, "
        f"sha256 <code>{esc(source['sha256'])}</code>); "
        f"label column {esc(schema['label_column'])}, {'classes ' if schema['classes'] else ''}{label}.</p>"
    )
    features = ""
    if statistics:
        rows = [
            [esc(name), *(number(round(values[key], 4)) for key in ("mean", "std", "min", "max"))]
            for name, values in statistics["features"].items()
        ]
        features = "<h3>Training features</h3>" + table(["feature", "mean", "std", "min", "max"], rows)
    return (
        "<h2>Data</h2>" + summary + table(["rows", "count"], splits)
        + image(figures, "split_sizes.png", "Rows per split and class") + features
    )


def metrics_section(evaluation: dict | None, figures: Figures) -> str:
    if evaluation is None:
        return "<h2>Metrics</h2>" + missing("the run did not get as far as the Evaluate step")
    values = scalar_metrics(evaluation)
    rows = [[esc(name.replace("_", " ")), number(round(value, 4))] for name, value in values.items()]
    per_class = [
        [esc(name), *(number(round(scores[key], 3)) for key in ("precision", "recall", "f1")),
         number(scores["support"])]
        for name, scores in evaluation.get("per_class", {}).items()
    ]
    gate = evaluation.get("gate") or {}
    return (
        f"<h2>Metrics</h2><p>On {esc(evaluation['test_rows'])} test rows.</p>"
        + (f"<p>Gate: {esc(gate['message'])}.</p>" if gate.get("message") else "")
        + table(["metric", "value"], rows)
        + (table(["class", "precision", "recall", "F1", "support"], per_class) if per_class else "")
        + image(figures, "confusion_matrix.png", "Confusion matrix")
        + image(figures, "feature_importance.png", "Feature importance")
    )


def comparison_section(record: RunRecord, evaluation: dict | None, live: ModelPackage | None, figures: Figures) -> str:
    title = "<h2>Against the live model</h2>"
    if live is None:
        return title + missing("no version of this run's model package group is deployed (cloudviz deploy local)")
    names = compared(evaluation, live) if evaluation is not None else []
    if not names:
        return title + missing(f"version {live.version} is live, but there are no metrics to compare")
    ours, theirs = headline_metrics(evaluation), headline_metrics(live.metrics)
    rows = [
        [esc(name.replace("_", " ")), number(round(ours[name], 4)), number(round(theirs[name], 4)),
         number(f"{ours[name] - theirs[name]:+.4f}")]
        for name in names
    ]
    sizes = (evaluation.get("test_rows"), live.metrics.get("test_rows"))
    same_split = "on the same number of test rows" if sizes[0] == sizes[1] else (
        f"on different test splits ({sizes[0]} rows here, {sizes[1]} for the live version): a difference is "
        "partly the split's")
    return (
        title + f"<p>{esc(live.group)} version {live.version} is live (trained by run "
        f"{esc(live.lineage.get('run_id', 'unknown'))}); measured {esc(same_split)}.</p>"
        + table(["metric", f"run {esc(record.run_id)}", f"live v{live.version}", "difference"], rows)
        + image(figures, "comparison.png", "This run against the live model")
    )


def champion_section(evaluation: dict | None) -> str:
    """The champion Evaluate scored on this run's own test rows: the comparison the gate made."""
    title = "<h2>Champion vs challenger</h2>"
    champion = (evaluation or {}).get("champion")
    if not champion:
        return title + missing("the run's Evaluate step compared with no champion")
    if champion.get("status") != "compared":
        return title + missing(champion.get("reason", "no champion"))
    who = f"version {champion['version']}" if "version" in champion else "the model given"
    ours, theirs = headline_metrics(evaluation), headline_metrics(champion)
    rows = [[esc(name.replace("_", " ")), number(round(ours[name], 4)), number(round(theirs[name], 4)),
             number(f"{ours[name] - theirs[name]:+.4f}")] for name in ours if name in theirs]
    verdict = "passed" if champion["passed"] else "failed"
    return (
        title + f"<p>The champion, {esc(champion.get('group', ''))} {esc(who)}, scored on this run's "
        f"{esc(champion['test_rows'])} test rows; MaxRegression {esc(champion['max_regression'])}: {verdict}.</p>"
        + table(["metric", "challenger", f"champion ({esc(who)})", "difference"], rows)
    )


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def number(value: object) -> str:
    return f"<td class='n'>{esc(value)}</td>"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Cells are HTML already (escaped text, or a ``number`` cell)."""
    head = "".join(f"<th>{esc(name)}</th>" for name in headers)
    body = "".join(
        "<tr>" + "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def image(figures: Figures, name: str, alt: str) -> str:
    png_bytes = figures.images.get(name)
    if png_bytes is None:
        return ""
    encoded = base64.b64encode(png_bytes).decode("ascii")
    return f"<p><img alt='{esc(alt)}' src='data:image/png;base64,{encoded}'></p>"


def missing(why: str) -> str:
    return f"<p class='missing'>Not available: {esc(why)}.</p>"
