"""A real headless Chromium for the HTML report tests, driven through Playwright's own driver.

Playwright's wheel carries the driver but not a browser, and these tests must not download one: they use the
system's Chromium (Debian's ``chromium``, listed in ``.ci/apt-packages``) or ``$LSTM_INTERP_CHROMIUM``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Page

# Quiet, offline and sandbox-free (the tests may run as root in a container).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def find_chromium() -> str | None:
    """``$LSTM_INTERP_CHROMIUM``, else the first Chromium-like browser on ``PATH``."""
    if os.environ.get("LSTM_INTERP_CHROMIUM"):
        return os.environ["LSTM_INTERP_CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@contextlib.contextmanager
def launch() -> Iterator[Browser]:
    """A headless Chromium for the duration of the block.

    Without a Chromium the test is skipped on a developer's machine but FAILS under CI (``$CI`` set), where
    ``.ci/run`` installs Debian's ``chromium``: a missing browser must never pass CI as a skipped test.
    """
    from playwright import sync_api

    executable = find_chromium()
    if executable is None:
        message = "no Chromium found (apt-get install chromium, or set LSTM_INTERP_CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageLog:
    """What a page said that a test must check: console errors, uncaught exceptions and dialogs (``alert``)."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@contextlib.contextmanager
def open_report(
    browser: Browser, path: Path, *, width: int = 1280, height: int = 800
) -> Iterator[tuple[Page, PageLog]]:
    """Open ``path`` from disk and wait for its first colouring; yields the page and its log."""
    page = browser.new_page(viewport={"width": width, "height": height})
    log = PageLog()
    page.on("console", lambda message: message.type == "error" and log.errors.append(message.text))
    page.on("pageerror", lambda error: log.errors.append(str(error)))

    def on_dialog(dialog: Dialog) -> None:
        log.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        page.goto(path.resolve().as_uri())
        page.wait_for_function("Number(document.body.dataset.renders) >= 1", timeout=30_000)
        yield page, log
    finally:
        page.close()


def renders(page: Page) -> int:
    """How many recolours the page has finished."""
    return page.evaluate("window.lstmReport.renders")


@contextlib.contextmanager
def recolour(page: Page) -> Iterator[None]:
    """Wrap an action that recolours the text: on exit the page has finished the recolour it caused."""
    before = renders(page)
    yield
    page.wait_for_function(f"window.lstmReport.renders > {before}", timeout=30_000)


def backgrounds(page: Page, count: int = 200) -> list[str]:
    """The computed background colour of the first ``count`` character spans."""
    return page.evaluate(
        "n => [...document.querySelectorAll('#text span')].slice(0, n).map(s => getComputedStyle(s).backgroundColor)",
        count,
    )


def artifacts_dir(default: Path) -> Path:
    """``$LSTM_INTERP_ARTIFACTS`` (created if needed), else ``default``: where screenshots go."""
    folder = Path(os.environ.get("LSTM_INTERP_ARTIFACTS") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
