"""The dashboard's live-accuracy panel after real predictions and feedback over HTTP: the data document (accuracy,
recall, labelled count, history) and the panel drawn in headless Chromium."""

from __future__ import annotations

import json

import browser
from polling import wait_for
from test_dashboard import GROUP, KEY, PERIOD, data, home, needs_browser, request, training_rows  # noqa: F401

from deploy.local_service import LocalService
from pipelines.state import StateHome

CLASSES = ("setosa", "virginica", "versicolor")


def label_predictions(service: LocalService, rows: list[list[float]], wrong_every: int) -> int:
    """One prediction per row, each given a true label (every ``wrong_every``-th another class); the number right."""
    status, _, body = request(service.api.url, "POST", "/predictions", {"input_data": rows})
    assert status == 200, body
    right = 0
    for index, answer in enumerate(json.loads(body)["predictions"]):
        wrong = index % wrong_every == 0
        true = CLASSES[(CLASSES.index(answer["label"]) + 1) % 3] if wrong else answer["label"]
        right += not wrong
        assert request(service.api.url, "POST", f"/predictions/{answer['id']}/feedback", {"label": true})[0] == 200
    return right


@needs_browser
def test_the_panel_shows_accuracy_recall_and_the_labelled_count(home: StateHome):  # noqa: F811
    with LocalService(home, GROUP, KEY, alarm_period_seconds=PERIOD).start() as service:
        right = label_predictions(service, training_rows(home)[:80], wrong_every=4)
        live = wait_for(lambda: (lambda doc: doc if doc["accuracy"] is not None else None)(
            data(service)["live_accuracy"]), "the live accuracy in the data document", timeout=30)
        assert (live["labelled"], live["accuracy"], right) == (80, 0.75, 60)
        assert set(live["recall"]) <= set(CLASSES) and live["threshold"] == 0.8
        assert live["history"]["labelled"][-1] == 80 and 0.75 in live["history"]["accuracy"]
        with browser.headless_chromium() as chromium:
            page = chromium.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{service.api.url}/dashboard")
            page.wait_for_selector("[data-panel='live-accuracy'][data-state=data] .main-svg", timeout=30_000)
            sub = page.inner_text("[data-panel='live-accuracy'] .sub")
    assert sub.startswith("75.0% right of the newest 80 labelled predictions; recall per true class:"), sub
