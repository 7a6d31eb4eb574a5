"""The Content-Security-Policy in a real Chromium: the app works under it (every other
end-to-end test fails on anything it blocks), an injected inline script does not run, and
no other site can frame the app."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, ConsoleMessage

from server.security_headers import CONTENT_SECURITY_POLICY
from tests.e2e.conftest import csp_violation
from tests.reliability import Measured


@pytest.mark.reliability(
    area="Browser",
    attack="Injected an inline script into the signed-out app and framed the app from another origin.",
    promise="A strict CSP on every page (scripts and styles from self, no inline script, no plugins, "
            "frame-ancestors 'none'): the script does not run and the frame stays empty.")
def test_inline_scripts_and_framing_are_blocked(browser: Browser, server: str, measured: Measured) -> None:
    ctx = browser.new_context()
    blocked: list[str] = []

    def seen(message: ConsoleMessage) -> None:
        if csp_violation(message):
            blocked.append(message.text)

    ctx.on("console", seen)
    try:
        page = ctx.new_page()
        response = page.goto(server + "/")
        assert response is not None
        headers = response.headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"
        page.wait_for_selector("input[name=email]")  # the app itself runs under the policy
        assert blocked == []
        ran = page.evaluate("""() => {
            const s = document.createElement('script');
            s.textContent = 'window.__injected = true';
            document.head.appendChild(s);
            return window.__injected === true;
        }""")
        assert ran is False
        page.wait_for_timeout(100)
        assert any("inline script" in m for m in blocked), blocked

        # Framed from another origin (a page on 127.0.0.2 would do; about:blank is simplest).
        framer = ctx.new_page()
        framer.set_content(f'<iframe id="f" src="{server}/" width="600" height="400"></iframe>')
        framer.wait_for_timeout(1000)
        frame = framer.frames[1]
        assert frame.url.startswith("chrome-error://"), frame.url  # refused, not the app
        assert any("frame-ancestors" in m for m in blocked), blocked
        measured("inline script did not run; framing refused (frame-ancestors 'none'); "
                 f"{len(blocked)} violations reported, none by the app itself")
    finally:
        ctx.close()
