"""Playwright (sync API) on Debian's Chromium against pytest-django's live server."""

from __future__ import annotations

import os
import time
from pathlib import Path

import django.test.testcases as _django_testcases
import pytest


def _no_media_handler(application):
    """Django's live server wraps itself in a MEDIA_URL file server; NeoPain has no public media
    (MEDIA_URL is None, which that wrapper cannot even parse). Patient images go through the
    authorised views only, in tests too."""
    return application


_django_testcases._MediaFilesHandler = _no_media_handler

# Playwright's sync API runs an event loop in this thread; Django's ORM calls from the test body are safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("NEOPAIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
DESKTOP = {"width": 1366, "height": 768}
TABLET = {"width": 820, "height": 1180}


@pytest.fixture(scope="session")
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def new_page(chromium):
    """``new_page(viewport=...)`` -> a page in a fresh context (own cookies); closed after the test."""
    contexts = []

    def make(viewport=DESKTOP, **kwargs):
        context = chromium.new_context(viewport=viewport, accept_downloads=True, **kwargs)
        context.set_default_timeout(8000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shoot(page, name: str, full_page: bool = False):
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return shoot


def sign_in(page, base_url: str, username: str, password: str) -> None:
    """By keyboard only: type the user name, Tab, the password, Enter."""
    page.goto(f"{base_url}/login/")
    page.keyboard.type(username)  # the user-name field has autofocus
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base_url}/")


def wait_until(page, expression: str, timeout_ms: int = 8000) -> None:
    """``page.wait_for_function`` without evaluating a string inside the page: the pages' CSP
    (``script-src 'self'``, no eval) refuses the predicate Playwright polls with, while
    ``page.evaluate`` goes through the debugger protocol, which the policy does not cover."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_ms} ms waiting for: {expression}")
        page.wait_for_timeout(50)
