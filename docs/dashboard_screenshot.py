"""Make ``docs/dashboard.png``, the README's picture of the dashboard, from a live demo (``make dashboard-screenshot``).

    .venv/bin/python docs/dashboard_screenshot.py docs/dashboard.png [--seconds 120] [--width 1440]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path

from deploy.local_service import LocalService
from pipelines.definition import DEFAULT_GROUP, build_pipeline
from pipelines.registry import ModelRegistry
from pipelines.runner import LocalRunner
from pipelines.runs import RunStore
from pipelines.state import StateHome

ROOT = Path(__file__).resolve().parents[1]
# Headless Chromium is a test helper. The root goes on the path too, so that its packages win over the tests/
# folders named after them (deploy/, pipelines/...), here and in the step executors' fork server.
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from browser import headless_chromium  # noqa: E402

FEATURES = ("x1", "x2", "x3", "x4")


def train(home: StateHome) -> None:
    runner = LocalRunner(home, build_pipeline())
    for overrides in ({}, {"NumRound": "5"}, {"MaxDepth": "3"}):
        record = runner.start(overrides)
        if record.status != "Succeeded":
            sys.exit(f"pipeline run {record.run_id} {record.status}: {record.failure_reason}")
    registry = ModelRegistry(home.registry_db)
    registry.update_approval(DEFAULT_GROUP, 1, "Approved", "demo: the default hyperparameters")
    registry.update_approval(DEFAULT_GROUP, 2, "Rejected", "demo: 5 rounds are no better than 10")


def training_rows(home: StateHome) -> list[list[float]]:
    """The feature rows of version 1's training split (label first in the file, no header)."""
    run_id = ModelRegistry(home.registry_db).get(DEFAULT_GROUP, 1).lineage["run_id"]
    folder = Path(RunStore(home.runs).load(run_id).steps["Preprocess"].outputs["train"])
    lines = (folder / "train.csv").read_text(encoding="utf-8").split()
    return [[float(value) for value in line.split(",")[1:]] for line in lines]


class Client:
    def __init__(self, url: str, key: str) -> None:
        self.connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
        self.key = key

    def post(self, body: object) -> int:
        self.connection.request("POST", "/predictions", json.dumps(body),
                                {"x-api-key": self.key, "Content-Type": "application/json"})
        response = self.connection.getresponse()
        response.read()
        return response.status


def traffic(client: Client, rows: list[list[float]], seconds: float) -> None:
    """Batches and single predictions at a rate that wanders, petal length shifted in the last quarter."""
    random.seed(4)
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        shift = 0.5 if elapsed > 0.75 * seconds else 0.0
        batch = []
        for _ in range(random.randint(2, 9)):
            # Training rows as they are: iris is measured to 0.1 cm and the drift bins' edges are such values,
            # so noise added here would move rows across edges and read as drift.
            row = list(random.choice(rows))
            row[2] = round(row[2] + shift, 1)
            batch.append(row)
        client.post({"input_data": batch})
        client.post(dict(zip(FEATURES, batch[0], strict=True)))
        if random.random() < 0.04:
            client.post({"x1": 5.1, "x2": "wide"})  # a client error: 400
        time.sleep(random.uniform(0.15, 0.45))


def photograph(url: str, output: Path, width: int) -> None:
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(url)
        page.wait_for_selector("[data-panel]:not([data-state=data])", state="detached", timeout=30_000)
        page.wait_for_timeout(1000)  # plotly's transitions settle
        output.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(output), full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the PNG file to write (docs/dashboard.png)")
    parser.add_argument("--seconds", type=float, default=120.0, help="seconds of traffic before the picture")
    parser.add_argument("--width", type=int, default=1440, help="browser window width in pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cloudviz-demo-") as folder:
        home = StateHome(Path(folder))
        print("Training three versions...", flush=True)
        train(home)
        key = secrets.token_urlsafe(30)
        with LocalService(home, DEFAULT_GROUP, key, alarm_period_seconds=2.0).start() as service:
            print(f"Serving at {service.api.url}; {args.seconds:g} s of traffic...", flush=True)
            traffic(Client(service.api.url, key), training_rows(home), args.seconds)
            time.sleep(2.5)  # one more sampling period, so the last traffic is in the series
            photograph(f"{service.api.url}/dashboard", args.output, args.width)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
