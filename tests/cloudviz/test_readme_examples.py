"""The README's own-data example, run as written.

The fenced block is read from README.md (not copied here): its ``# FILE: columns`` comments say which columns each
file has; the test writes a learnable CSV with them at the path each command names, in a temporary working
directory, and runs every ``cloudviz`` command through the real CLI entry (``cloudviz serve``, which blocks, is
``LocalService`` on free ports). Then every group the commands registered is approved, deployed and served: the
README's own ``curl`` body is POSTed to the group it serves (a generated row to the others), and each endpoint is
called through the stock boto3 ``sagemaker-runtime`` client.
"""

from __future__ import annotations

import http.client
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import numpy as np
from botocore.config import Config
from project_root import ROOT

from cloudviz.cli import main
from deploy.local_service import LocalService
from pipelines.registry import ModelRegistry
from pipelines.state import StateHome

README = ROOT / "README.md"
KEY = "k" * 32
ROWS_PER_CLASS = 60  # each class's train rows weigh past min_child_weight=6 in a multi:softprob tree
CLASSES = 5  # the README's trees.csv: "5 kinds of tree"


def fenced_blocks() -> list[tuple[str, str]]:
    """The README's fenced blocks: (language, text)."""
    return re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)


def own_data_block() -> list[str]:
    """The lines of the README's fenced block that runs own data, backslash continuations joined."""
    (block,) = [text for language, text in fenced_blocks() if not language and "cloudviz pipeline run --data " in text]
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def file_columns(lines: list[str]) -> dict[str, list[str]]:
    """``# trees.csv: tree,leaf_mm,... (what it holds)`` -> {"trees.csv": ["tree", "leaf_mm", ...]}."""
    found = {}
    for line in lines:
        if match := re.fullmatch(r"#\s*(\S+\.csv):\s*([\w,]+).*", line):
            found[match.group(1)] = match.group(2).split(",")
    return found


def parameters(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, item in enumerate(argv) if item == "--param")


def write_data(path: Path, columns: list[str], params: dict[str, str], rng: np.random.Generator) -> None:
    """A CSV the command's own parameters learn well past its gate: the label follows the first feature (a class
    per band of it; for regression, a weighted sum of every feature); a column that is neither label nor feature
    is an id."""
    label = params["LabelColumn"]
    features = params.get("FeatureColumns", "").split(",") if params.get("FeatureColumns") else [
        name for name in columns if name != label]
    objective = params.get("Objective", "multi:softprob")
    classes = 0 if objective.startswith("reg:") else 2 if objective.startswith("binary:") else CLASSES
    rows = ROWS_PER_CLASS * (classes or 5)
    values = {name: rng.uniform(0, 10, rows) for name in features}
    if classes:
        kind = rng.permutation(np.repeat(np.arange(classes), ROWS_PER_CLASS))
        values[features[0]] = kind * 10 + rng.normal(0, 1, rows)
        names = ["no", "yes"] if classes == 2 else [f"{label}-{k}" for k in range(classes)]
        target = [names[k] for k in kind]
    else:
        target = sum((i + 1) * 1000 * values[name] for i, name in enumerate(features)) + rng.normal(0, 100, rows)
    cells = {name: [f"{v:.3f}" for v in column] for name, column in values.items()}
    cells[label] = [t if isinstance(t, str) else f"{t:.2f}" for t in target]
    for name in columns:
        cells.setdefault(name, [f"{name}-{i}" for i in range(rows)])
    lines = [",".join(columns)] + [",".join(cells[name][i] for name in columns) for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def post(url: str, path: str, body: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    connection.request("POST" if body else "GET", path, body or None,
                       {"x-api-key": KEY, "Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def runtime(url: str):
    """The stock sagemaker-runtime client pointed at the local endpoint; no AWS configuration is read."""
    return boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local", config=Config(retries={"max_attempts": 1}))


def test_the_readme_own_data_example_runs_as_written(home: StateHome, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    lines = own_data_block()
    columns = file_columns(lines)
    commands = [shlex.split(line) for line in lines if not line.startswith("#")]
    runs = [argv for argv in commands if argv[:3] == ["cloudviz", "pipeline", "run"]]
    assert runs and all(argv[4] in columns for argv in runs), "every file a run reads has its columns commented"
    rng = np.random.default_rng(3)
    for argv in runs:
        write_data(tmp_path / argv[4], columns[argv[4]], parameters(argv), rng)

    # Own data with no group of its own is refused before anything runs, naming one from the file's name.
    first = runs[0]
    group = parameters(first)["ModelPackageGroupName"]
    named = first.index(f"ModelPackageGroupName={group}")
    assert main(first[1 : named - 1] + first[named + 1 :]) == 2
    assert capsys.readouterr().err.endswith(f"e.g. --param ModelPackageGroupName={group}\n")
    assert not home.runs.exists() or not any(home.runs.iterdir())

    served, curl = None, None
    for argv in commands:
        if argv[:2] == ["cloudviz", "serve"]:
            served = argv[argv.index("--group") + 1]
        elif argv[0] == "curl":
            curl = argv
        else:
            assert argv[0] == "cloudviz" and main(argv[1:]) == 0, capsys.readouterr().err
    assert served and curl, "the block serves a group and calls it"

    registry = ModelRegistry(home.registry_db)
    groups = [parameters(argv)["ModelPackageGroupName"] for argv in runs]
    assert len(set(groups)) == len(groups) == 3, "each example its own group"
    for group, argv in zip(groups, runs, strict=True):
        (version,) = registry.list_packages(group)
        schema, given = version.lineage["schema"], parameters(argv)
        task = schema["task"]
        assert {"multiclass": CLASSES, "binary": 2, "regression": 0}[task] == len(schema["classes"])
        features = given["FeatureColumns"].split(",") if given.get("FeatureColumns") else [
            name for name in columns[argv[4]] if name != given["LabelColumn"]]  # empty: all but the label
        assert schema["feature_columns"] == features
        if version.approval_status != "Approved":
            assert main(["models", "approve", group, "1"]) == 0
        assert main(["deploy", "local", "--group", group]) == 0, capsys.readouterr().err
        with LocalService(home, group, KEY).start() as service:
            if group == served:
                body = curl[curl.index("-d") + 1]
                url = next(item for item in curl if "/predictions" in item)
                path = urlsplit(url if "://" in url else f"http://{url}").path
            else:
                body = json.dumps({"features": {f["name"]: (f["min"] + f["max"]) / 2 for f in schema["features"]}})
                path = "/predictions"
            status, answer = post(service.api.url, path, body)
            assert status == 200, answer
            if task == "regression":
                assert isinstance(answer["prediction"], float)
            else:
                assert answer["label"] in schema["classes"] and ("probability" in answer) is (task == "binary")
            sent = json.loads(body)
            if "sample_id" in sent:  # stored and answered as request_id
                assert answer["request_id"] == sent["sample_id"]
                assert post(service.api.url, f"/predictions/{answer['id']}", "")[1]["request_id"] == sent["sample_id"]
            row = ",".join(str((f["min"] + f["max"]) / 2) for f in schema["features"])
            reply = runtime(service.endpoint_server.url).invoke_endpoint(
                EndpointName=service.endpoint, ContentType="text/csv", Accept="application/json", Body=row)
            (score,) = json.loads(reply["Body"].read())["predictions"]
            assert len(np.atleast_1d(score["score"])) == (CLASSES if task == "multiclass" else 1)


def python_api_block() -> str:
    """The README's Python API example for the local target."""
    (block,) = [block for language, block in fenced_blocks() if language == "python" and "cloudviz.local()" in block]
    return block


def test_the_python_api_example_runs_as_written(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLOUDVIZ_HOME", raising=False)  # the example's ./.cloudviz, in this folder
    monkeypatch.delenv("CLOUDVIZ_API_KEY", raising=False)
    exec(compile(python_api_block(), "README.md", "exec"), {})  # noqa: S102 - the README's own code
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("Succeeded {'accuracy': ")
    assert "'model': 'file://" in printed[1] and "'evaluation': 'file://" in printed[1]
    answer = eval(printed[2])  # noqa: S307 - the dict the example printed
    assert (answer["prediction"], answer["label"], answer["model_version"]) == (1, "virginica", 1)
    assert eval(printed[3])[0]["id"] == answer["id"]  # noqa: S307 - newest first
    assert (tmp_path / ".cloudviz" / "registry.db").is_file()
