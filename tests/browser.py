"""Headless Chromium for the dashboard's browser test and its README screenshot: Debian's ``chromium`` package
driven by Playwright for Python through ``executable_path``, so no browser is ever downloaded.

A test helper, not part of the packages: Playwright is a test dependency (``pip install -e '.[test]'``); ``make
test`` installs Debian's chromium when it is missing. The flags keep the browser from calling home: no background
networking, component updates, sync.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.errors import UserError

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
)


def missing() -> str | None:
    """Why a headless browser cannot run here, or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: pip install -e '.[test]'"
    if not CHROMIUM.exists():
        return f"no {CHROMIUM}: install Debian's chromium (apt-get install chromium)"
    return None


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    """A headless Chromium, closed on exit; a one-line UserError when there is none to start."""
    why = missing()
    if why is not None:
        raise UserError(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()
