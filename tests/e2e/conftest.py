"""End-to-end tests: the built browser app in a real Chromium (Debian's package, driven by
Playwright), against the session's uvicorn server. Screenshots of the main screens are kept
in tests/e2e/artifacts/ (COLABEL_E2E_ARTIFACTS overrides)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from tests.conftest import PASSWORD
from tests.infra import Api

CHROMIUM = os.environ.get("COLABEL_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("COLABEL_E2E_ARTIFACTS", Path(__file__).parent / "artifacts"))


# Per module, not per session: while Playwright's synchronous API is open it keeps an event
# loop running in this thread, which the asyncio tests that follow cannot share.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("COLABEL_E2E_REQUIRED"):
            pytest.fail(f"no Chromium at {CHROMIUM}; install Debian's chromium package")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    if not (ROOT / "client" / "dist" / "index.html").exists():
        pytest.fail("the browser app is not built: run `make client`")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


def csp_violation(message: ConsoleMessage) -> bool:
    """Chromium reports what the Content-Security-Policy blocked as a console error."""
    return message.type == "error" and "Content Security Policy" in message.text


@pytest.fixture
def new_context(browser: Browser) -> Iterator:
    """Browser contexts for a test. The server's strict CSP is on in every one, and a test
    fails if the app does anything it blocks."""
    contexts: list[BrowserContext] = []
    blocked: list[str] = []

    def make() -> BrowserContext:
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        ctx.set_default_timeout(15_000)
        ctx.on("console", lambda m: csp_violation(m) and blocked.append(m.text))
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        ctx.close()
    assert not blocked, f"the Content-Security-Policy blocked: {blocked}"


def sign_in(ctx: BrowserContext, server: str, who: Api, at: str = "#/") -> Page:
    """A page of the app signed in as `who`, opened at the hash route `at`."""
    assert who.user is not None
    page = ctx.new_page()
    page.goto(f"{server}/#/login")
    page.fill("input[name=email]", who.user["email"])
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=who]")
    if at != "#/":
        page.goto(f"{server}/{at}")
    return page


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
