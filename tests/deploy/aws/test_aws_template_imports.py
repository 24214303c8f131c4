"""The AWS deployment's modules depend one way: ``deploy.aws.stacks`` -> ``deploy.aws.templates`` ->
``deploy.aws.settings``/``deploy.aws.templates.common``. These tests fail if a template (or the settings) imports
the stacks module again, even under ``TYPE_CHECKING`` or inside a function."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from project_root import ROOT

TEMPLATES = sorted((ROOT / "deploy" / "aws" / "templates").glob("*.py"))
LOWER_MODULES = [*TEMPLATES, ROOT / "deploy" / "aws" / "settings.py"]  # those stacks.py builds on
STACKS = "deploy.aws.stacks"


def module_name(path: Path) -> str:
    """The dotted name ``path`` is imported under."""
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports anywhere in its body, with ``from package import module`` counted as
    ``package.module`` too."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def test_the_modules_are_found() -> None:
    assert {path.stem for path in TEMPLATES} >= {"api", "automation", "common", "endpoint", "monitoring"}


@pytest.mark.parametrize("path", LOWER_MODULES, ids=module_name)
def test_no_template_imports_the_stacks(path: Path) -> None:
    assert STACKS not in imported_modules(path)


@pytest.mark.parametrize("path", LOWER_MODULES, ids=module_name)
def test_each_template_imports_alone_without_the_stacks(path: Path) -> None:
    """In a fresh interpreter, importing the module first works and loads no stacks module on the way."""
    name = module_name(path)
    script = f"import sys\nimport {name}\nassert {STACKS!r} not in sys.modules, 'loaded {STACKS}'\n"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
