"""The Studio walkthrough (notebooks/walkthrough.ipynb), executed top to bottom with the local target.

The kernel is this Python (the .venv's): a kernel spec for ``sys.executable`` is written into the test's folder
and used by name, so an installed ``python3`` kernel spec of another Python is never picked up.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest
from ipykernel import kernelspec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from project_root import ROOT

NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"
KERNEL_NAME = "cloudviz-test-python"
CELL_TIMEOUT_SECONDS = 120
CLEARED_ENVIRONMENT = (
    # Nothing AWS: the walkthrough runs locally and builds the SageMaker definition offline with placeholders.
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN", "CLOUDVIZ_SAGEMAKER_ROLE_ARN", "CLOUDVIZ_BUCKET", "CLOUDVIZ_API_KEY",
)


def kernel_manager(folder: Path) -> KernelManager:
    """A kernel manager for a kernel spec of this very Python, kept in ``folder``."""
    kernels = folder / "kernels"
    kernelspec.write_kernel_spec(kernels / KERNEL_NAME, overrides={"display_name": "CloudViz test"})
    spec = json.loads((kernels / KERNEL_NAME / "kernel.json").read_text(encoding="utf-8"))
    assert spec["argv"][0] == sys.executable
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))


def text_of(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)


def test_the_committed_notebook_targets_local_and_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert re.search(r'^TARGET = "local"', code[0].source, re.MULTILINE)
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


def test_only_the_first_cell_names_the_target_and_the_rest_use_the_public_api():
    code = [cell.source for cell in nbformat.read(NOTEBOOK, as_version=4).cells if cell.cell_type == "code"]
    assert "TARGET" not in "\n".join(code[1:])
    imports = re.findall(r"^\s*(?:from|import) ([\w.]+)", "\n".join(code), re.MULTILINE)
    project_packages = ("pipelines", "deploy", "serving_lambdas", "preprocessing", "evaluation", "cloudviz.")
    assert imports and not [name for name in imports if name.startswith(project_packages)]


def test_the_walkthrough_runs_locally_and_predicts_the_seed_example(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch):
    for name in CLEARED_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("CLOUDVIZ_HOME", str(home))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOK, as_version=4)

    client = nbclient.NotebookClient(
        notebook, km=kernel_manager(tmp_path), timeout=CELL_TIMEOUT_SECONDS,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # run from notebooks/, as Jupyter does
    )
    client.execute()  # raises CellExecutionError naming the cell when one fails

    assert (home / "registry.db").is_file()  # it used the state home it was given
    prediction = next(cell for cell in notebook.cells if "prediction" in cell.metadata.get("tags", []))
    answer = json.loads(text_of(prediction))
    assert (answer["prediction"], answer["label"], answer["model_version"]) == (1, "virginica", 1)
    outputs = [text_of(cell) for cell in notebook.cells if cell.cell_type == "code"]
    assert any("CheckAccuracy" in text and "Succeeded" in text for text in outputs)
    # The loop: 60 labelled predictions exported as iris@2, a run on it compared with version 1 (the champion).
    assert any(text.startswith("60 predictions labelled") for text in outputs), outputs
    assert any(text.startswith("iris@2: 210 rows in 2 parts (export-feedback)") for text in outputs), outputs
    assert any("champion (version 1) accuracy" in text for text in outputs), outputs
    assert any("image/png" in output.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs)  # the confusion matrix
