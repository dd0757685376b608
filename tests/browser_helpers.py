"""What the browser tests share: Debian's Chromium driven by Playwright, with the network cut off.

Call :func:`require_browser` at the top of a test module (it skips the module without Chromium,
Playwright or the other packages named); :func:`launch` starts the browser with the same
arguments everywhere; :func:`cut_off_network` aborts every request outside the page's own
origin and collects those and the page's JavaScript errors; :func:`open_offline` is a page of a
local file opened that way.
"""
from __future__ import annotations

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1300, "height": 900}


def require_browser(*modules):
    """Skip the calling module unless Chromium, ``modules`` (in order) and Playwright are
    installed; returns ``playwright.sync_api``."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/ensure-chromium.sh installs it)", allow_module_level=True)
    for module in modules:
        pytest.importorskip(module)
    return pytest.importorskip("playwright.sync_api")


def launch(playwright):
    """Chromium, headless, without sandbox, GPU or any background traffic of its own."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)


def cut_off_network(page, allow: str = "file:"):
    """Abort every request of ``page`` whose URL does not start with ``allow``; returns the lists
    ``(blocked URLs, JavaScript errors)``, which fill as the page runs."""
    blocked, errors = [], []

    def route(r):
        if r.request.url.startswith(allow):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return blocked, errors


def open_offline(browser, path, *, timeout: int = 60_000):
    """A page of the local file ``path`` in an offline context, every non-file request aborted,
    once its ``body[data-ready='1']`` is there; returns ``(page, blocked URLs, JS errors)``."""
    context = browser.new_context(viewport=VIEWPORT, offline=True)
    page = context.new_page()
    blocked, errors = cut_off_network(page)
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=timeout)
    return page, blocked, errors
