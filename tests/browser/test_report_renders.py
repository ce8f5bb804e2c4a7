"""The HTML report opens in headless Chromium: every figure loads, nothing is fetched, no errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Request, sync_playwright

from deskpilot.evaluation.report import write_report
from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.unit.test_report import build_reports

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reports = build_reports()
    html, _ = write_report(
        tmp_path_factory.mktemp("report"),
        reports.challenger,
        reports.champion,
        reports.decision,
        title="Challenger vs champion",
        generated_at=datetime(2026, 1, 2, tzinfo=UTC),
    )
    return html


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def test_report_renders_in_chromium(browser: Browser, report_file: Path, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    fetched: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    def on_request(request: Request) -> None:
        if not request.url.startswith(("file:", "data:")):
            fetched.append(request.url)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", on_request)
    page.goto(report_file.as_uri(), wait_until="load")

    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({alt: e.alt, complete: e.complete, width: e.naturalWidth}))"
    )
    assert len(images) == 4
    assert all(image["complete"] and image["width"] > 0 for image in images), images
    headline = page.locator("#headline table")
    assert headline.is_visible()
    assert headline.locator("tbody tr").count() >= 5
    assert "accuracy" in headline.inner_text()
    assert page.locator(".badge").inner_text() in {"PASS", "FAIL"}
    assert page.locator("script").count() == 0  # the injected customer text stayed text
    assert '<script>alert("pwned")</script>' in (page.locator("body").text_content() or "")
    assert not errors
    assert not fetched

    screenshot = tmp_path / "report.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    page.close()
