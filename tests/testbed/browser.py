"""A real headless browser for the tests: Debian's `chromium`, driven by Playwright.

Playwright's own browser builds are never downloaded (`playwright install` cannot work
here); its Python package drives the system's Chromium over the DevTools protocol.
`.ci/bootstrap` installs the `chromium` package.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from testbed.process import StartError

CHROMIUM = "/usr/bin/chromium"
# Headless as root, with nothing that talks to the network on its own account: the tests
# only ever reach loopback, and anything else would be slow or flagged.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed on exit; raises `StartError` if it is not installed.

    Playwright gives each launch a fresh temporary profile (it refuses `--user-data-dir`
    in `args`) and removes it on close. Open one `browser.new_context()` per test: contexts
    share nothing (cookies, storage).
    """
    if not Path(CHROMIUM).exists():
        raise StartError("Chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=list(FLAGS)
        )
        try:
            yield browser
        finally:
            browser.close()
