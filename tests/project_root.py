"""The repository's root folder, for tests that read its files (README, notebooks, example config, sources)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
