"""What the benchmark scripts share: the machine's description, Markdown tables, and rewriting one section of
``benchmarks/README.md`` while keeping the others."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
README = HERE / "README.md"


def machine(packages: tuple[str, ...]) -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = psutil.virtual_memory().total
    return {
        "CPUs (nproc)": str(len(os.sched_getaffinity(0))),
        "CPU model": cpu,
        "RAM": f"{memory / 2**30:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        **{name: version(name) for name in packages},
    }


def version(package: str) -> str:
    """Installed version of a package (xgboost may be installed as the xgboost-cpu distribution)."""
    for distribution in (package, f"{package}-cpu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(distribution)
    return "not installed"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table (readable as plain text too)."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows)]


def write_section(heading: str, text: str) -> None:
    """Replace the README's section under ``heading`` (up to the next ``## `` heading), keeping the others."""
    current = README.read_text(encoding="utf-8") if README.exists() else (
        "# Benchmarks\n\nSide-by-side benchmarks of CloudViz with their recorded results. Each section is "
        "written by its benchmark script; rerun the script rather than editing the figures.\n\n"
    )
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text + "\n\n", current, count=1)  # a blank line before the next heading
    else:
        updated = current.rstrip("\n") + "\n\n" + text + "\n"
    README.write_text(updated.rstrip("\n") + "\n", encoding="utf-8")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value
