"""The citizen page in headless Chromium: it loads, stations appear on the map, a new alert appears live."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from .conftest import alert_event

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path(__file__).resolve().parents[2] / ".citysense" / "screenshots" / "citizen-page.png"


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run scripts/bootstrap.d/50-chromium "
                    "(or `sudo apt-get install -y chromium`)")
    return path


def test_page_shows_stations_and_live_alert(live_server, tmp_path: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_FLAGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(live_server.url + "/")
            expect(page).to_have_title("citysense — air and environment near you")
            stations = page.locator("#map circle.station")
            expect(stations).to_have_count(3)  # st-nopm has no coordinates, so it is counted but not drawn
            expect(page.locator("#map-note")).to_contain_text("4 stations, 1 without coordinates")
            expect(page.locator("#live")).to_have_text("● live", timeout=20_000)
            expect(page.locator("#alerts li")).to_have_count(3)  # the active alerts from the store
            # Station detail with the last hour chart.
            page.locator('circle[data-station="st-good"]').click()
            expect(page.locator("#detail-title")).to_have_text("st-good")
            expect(page.locator("#chart path.line")).to_have_count(1)
            # A new alert published to Kafka appears without a reload.
            message = "PM2.5 1-minute mean 480 µg/m³ exceeds 250 (US EPA: Hazardous)"
            for _ in range(10):  # the server's stream reader may still be joining: publish until seen
                live_server.publish(alert_event("st-bad", message))
                try:
                    expect(page.locator("#alerts li", has_text=message).first).to_be_visible(timeout=3_000)
                    break
                except AssertionError:
                    continue
            expect(page.locator("#alerts li", has_text=message).first).to_be_visible()
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            page.screenshot(path=str(tmp_path / "citizen-page.png"), full_page=True)
        finally:
            browser.close()


def test_page_and_docs_run_under_the_content_security_policy(live_server) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_context().new_page()
            console: list[str] = []
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            others: list[str] = []
            page.on("request", lambda req: others.append(req.url) if not req.url.startswith(live_server.url)
                    and not req.url.startswith("data:") else None)
            page.goto(live_server.url + "/")
            expect(page.locator("#map circle.station")).to_have_count(3)
            page.goto(live_server.url + "/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("citysense alert API", timeout=20_000)
            expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
            page.locator(".swagger-ui .opblock-summary").first.click()  # expand an operation: more rendering
            page.wait_for_timeout(500)
            violations = [line for line in console if "Content Security Policy" in line]
            assert not violations, violations
            assert not others, f"requests to other hosts: {others}"
        finally:
            browser.close()
