"""The step cache key covers the versions of Python and of the libraries the steps compute with: an upgrade must
not silently reuse outputs the old versions made."""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from project_root import ROOT

from pipelines import cache
from pipelines.dag import Param, Parameter, Pipeline, ProcessingInput, ProcessingOutput, ProcessingStep, TrainingStep
from pipelines.definition import build_pipeline
from pipelines.local_steps.training import TRAINER
from pipelines.runner import LocalRunner
from pipelines.state import StateHome

COPY = """
    import argparse, pathlib
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-dir")
    base = pathlib.Path(parser.parse_args().base_dir)
    (base / "out").mkdir()
    (base / "out" / "copy.txt").write_text((base / "input" / "data.txt").read_text())
"""


@pytest.fixture
def copier(home: StateHome, write_script, tmp_path: Path):
    """A runner of a one-step pipeline of a real script, and its inputs."""
    data = tmp_path / "data.txt"
    data.write_text("payload")
    step = ProcessingStep(
        name="Copy", code=str(write_script("copy.py", COPY)),
        inputs=(ProcessingInput("raw", Param("InputData"), "/opt/ml/processing/input"),),
        outputs=(ProcessingOutput("out", "/opt/ml/processing/out"),),
    )
    pipeline = Pipeline(name="Tiny", parameters=(Parameter("InputData", "String", ""),), steps=(step,))
    runner = LocalRunner(home, pipeline, repo_root=tmp_path)
    return lambda: runner.start({"InputData": str(data)})


def test_the_versions_are_those_installed_read_without_importing_the_libraries():
    versions = cache.library_versions()
    assert versions["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    import numpy
    import pyarrow
    import xgboost

    assert (versions["numpy"], versions["pyarrow"]) == (numpy.__version__, pyarrow.__version__)
    assert xgboost.__version__ in (versions.get("xgboost"), versions.get("xgboost-cpu"))
    assert versions["scikit-learn"] == metadata.version("scikit-learn")
    code = ("import sys, cloudviz.cli, pipelines.cache; cloudviz.cli.build_parser(); pipelines.cache.library_versions()"
            "; print(sorted({'numpy', 'pyarrow', 'xgboost', 'sklearn', 'pandas'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "[]\n"


@pytest.mark.parametrize("changed", [{"numpy": "0.0.1"}, {"xgboost-cpu": "9.9.9"}, {"python": "3.99.0"},
                                     {"scikit-learn": None}])
def test_a_changed_library_version_misses_the_cache_and_the_same_versions_hit_it(
    copier, monkeypatch: pytest.MonkeyPatch, changed: dict
):
    first = copier()
    again = copier().steps["Copy"]
    assert again.cached_from == first.run_id, "nothing changed: reused"
    installed = cache.library_versions()
    upgraded = {name: version for name, version in {**installed, **changed}.items() if version is not None}
    monkeypatch.setattr(cache, "library_versions", lambda: upgraded)
    after_upgrade = copier()
    step = after_upgrade.steps["Copy"]
    assert step.cached_from is None and step.attempts == 1, "executed again after the upgrade"
    assert step.cache_key != again.cache_key
    assert copier().steps["Copy"].cached_from == after_upgrade.run_id, "the same (upgraded) versions: reused"


def imported_libraries(folder: Path) -> set[str]:
    """The top-level modules the Python files of ``folder`` import that are neither the standard library's nor
    this repository's."""
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    local = {path.stem for path in ROOT.iterdir()}
    return {name for name in names if name not in sys.stdlib_module_names and name not in local}


def test_every_library_the_steps_import_shapes_the_key():
    """A step that starts using another library (scipy, pandas...) must add its distribution to the key."""
    folders = {(ROOT / step.code).parent for step in build_pipeline().steps if isinstance(step, ProcessingStep)}
    folders |= {TRAINER.parent for step in build_pipeline().steps if isinstance(step, TrainingStep)}
    assert len(folders) == 3
    distributions = metadata.packages_distributions()
    libraries = set().union(*(imported_libraries(folder) for folder in folders))
    assert {"numpy", "pyarrow", "xgboost"} <= libraries
    for library in libraries:
        assert set(distributions[library]) <= set(cache.SHAPING_DISTRIBUTIONS), library
