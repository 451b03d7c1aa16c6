"""The citizen page in headless Chromium: a Leaflet map with clustered stations, a note when the background map
cannot load, keyboard use, English and German, warnings near a chosen place, the subscribe form, and the page under
its Content-Security-Policy with a real tile server on loopback."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from citysense_alert_api.settings import ApiSettings, build_settings
from citysense_common.citizen.settings import load_citizen_settings
from citysense_common.contract import AlertEvent, AlertKind, AlertState, Location, Severity
from citysense_common.store import AlertRecord, AreaSubscription, StationRecord, Store
from citysense_common.testing.http_server import serving
from playwright.sync_api import Browser, Page, expect, sync_playwright

from .conftest import NOW, LiveServer, alert_event, running_api

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".citysense" / "screenshots"
PARK = (48.8530, 2.3400)  # the crowded park: 12 stations within ~250 m, drawn as one cluster at first
# A 1x1 PNG: what the loopback tile server answers for every tile.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                    "0000000d49444154789c63f8cfc0f01f0005000201e2a7e2a70000000049454e44ae426082")


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run scripts/bootstrap.d/50-chromium "
                    "(or `sudo apt-get install -y chromium`)")
    return path


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def api_settings(tmp_path: Path, kafka_broker, unique_topics) -> ApiSettings:  # noqa: ANN001
    """The conftest's settings with tiles from a loopback port nobody listens on (the map server is unreachable)
    and citizen subscriptions on a topic of their own, two requests per address."""
    run = uuid.uuid4().hex[:8]
    citizen = load_citizen_settings(mail_topic=f"test.{run}.citizen-mail", response_floor_s=0.0, rate_per_address=2)
    return build_settings(data_dir=tmp_path, kafka_bootstrap=kafka_broker.bootstrap,
                          webhook_tests_topic=f"test.{run}.webhook-tests", citizen=citizen,
                          map_tile_url=f"http://127.0.0.1:{_closed_port()}/{{z}}/{{x}}/{{y}}.png", **unique_topics)


def seed_city(store: Store) -> None:
    """On top of the conftest's stations: a crowded park and a real PM2.5 episode at st-bad (a rule of
    config/rules.yaml, so the warning names its band and the band's health advice)."""
    store.upsert_stations([
        StationRecord(f"st-park-{i:02d}", NOW, 5, {"pm2_5": 6.0 + 3 * i},
                      lat=PARK[0] + 0.0004 * (i % 4), lon=PARK[1] + 0.0005 * (i // 4))
        for i in range(12)
    ])
    opened = NOW - timedelta(minutes=3)
    store.upsert_alerts([AlertRecord(
        alert_id="al-episode", station_id="st-bad", rule_id="pm25-acute-1m", kind="threshold", severity="critical",
        state="active", opened_at=opened, updated_at=opened, message="PM2.5 1-minute mean 150.2 µg/m³ exceeds 125.4",
        last_event_id="ev-episode", metric="pm2_5", value=150.2, threshold=125.4, window="1m", lat=48.86, lon=2.36)])


@pytest.fixture
def city(live_server: LiveServer) -> LiveServer:
    seed_city(live_server.store)
    return live_server


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: Browser, url: str, *, locale: str = "en-GB") -> tuple[Page, list[str]]:
    """The page at ``url``, with the console lines it logs (CSP violations show up there)."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}, locale=locale).new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.goto(url + "/")
    expect(page.locator(".station-marker").first).to_be_visible()
    return page, console


def csp_violations(console: list[str]) -> list[str]:
    return [line for line in console if "Content Security Policy" in line]


def tab_to(page: Page, predicate: str, *, limit: int = 80) -> None:
    """From the top of the page, press Tab until ``predicate`` (a JS expression about ``el``, the focused element)
    holds."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"(() => {{ const el = document.activeElement; return Boolean({predicate}); }})()"):
            return
    raise AssertionError(f"Tab never reached an element where {predicate}")


def test_map_clusters_stations_and_notes_missing_tiles(city: LiveServer, browser: Browser, tmp_path: Path) -> None:
    page, console = open_page(browser, city.url)
    expect(page).to_have_title("citysense — air and environment near you")
    # The park's 12 stations are one cluster with their number; the others are single markers.
    park = page.locator(".station-cluster")
    expect(park).to_have_count(1)
    expect(park.locator(".n")).to_have_text("12")
    expect(park).to_have_attribute("aria-label", re.compile(r"^12 stations\. Press Enter to zoom in\.$"))
    expect(page.locator(".station-marker")).to_have_count(3)  # st-nopm has no coordinates: counted, not drawn
    expect(page.locator("#map-note")).to_have_text("16 stations, 1 without coordinates")
    # State by number, shape and text, not colour alone.
    bad = page.locator('.station-marker[aria-label^="Station st-bad"]')
    expect(bad).to_have_class(re.compile(r"\baq-very_unhealthy\b.*\balerting\b"))
    expect(bad.locator(".pin")).to_have_text("5")
    expect(bad.locator(".badge")).to_have_text("!")
    expect(bad).to_have_attribute("aria-label", re.compile(r"Very unhealthy \(PM2\.5 150\.2 µg/m³\), 2 active alerts"))
    expect(page.locator('.station-marker[aria-label^="Station st-good"] .pin')).to_have_text("1")
    expect(page.locator("#legend .legend-item")).to_have_count(9)
    # The tile server is unreachable: the stations stay and a note says why the background is missing.
    expect(page.locator("#tile-note")).to_be_visible(timeout=15_000)
    expect(page.locator("#tile-note")).to_contain_text("background map could not be loaded")
    expect(page.locator("#map")).to_have_class(re.compile(r"\bno-tiles\b"))
    expect(page.locator(".leaflet-control-attribution")).to_contain_text("OpenStreetMap")
    # The city-wide alert list is live: an alert published to Kafka appears without a reload.
    expect(page.locator("#live")).to_have_text("● live", timeout=20_000)
    expect(page.locator("#alerts li")).to_have_count(4)  # the active alerts from the store
    message = "PM2.5 1-minute mean 480 µg/m³ exceeds 250 (US EPA: Hazardous)"
    for _ in range(10):  # the server's stream reader may still be joining: publish until seen
        city.publish(alert_event("st-bad", message))
        try:
            expect(page.locator("#alerts li", has_text=message).first).to_be_visible(timeout=3_000)
            break
        except AssertionError:
            continue
    expect(page.locator("#alerts li", has_text=message).first).to_be_visible()
    # Station detail with the last hour chart, from a click on its marker.
    page.locator('.station-marker[aria-label^="Station st-good"]').click()
    expect(page.locator("#detail-title")).to_have_text("st-good")
    expect(page.locator("#chart path.line")).to_have_count(1)
    assert not csp_violations(console), console
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "citizen-page.png"), full_page=True)
    page.screenshot(path=str(tmp_path / "citizen-page.png"), full_page=True)


def test_keyboard_only_reaches_a_station_a_cluster_and_the_warnings(city: LiveServer, browser: Browser) -> None:
    page, _ = open_page(browser, city.url)
    # A single station: Tab to its marker, the focus is visible, Enter opens its detail.
    tab_to(page, "el.classList.contains('station-marker') && el.ariaLabel.startsWith('Station st-bad')")
    outline = page.evaluate("getComputedStyle(document.activeElement.querySelector('.pin')).outlineStyle")
    assert outline == "solid"
    page.keyboard.press("Enter")
    expect(page.locator("#detail-title")).to_have_text("st-bad")
    # The cluster: Enter zooms in until its stations are markers of their own.
    tab_to(page, "el.classList.contains('station-cluster')")
    page.keyboard.press("Enter")
    expect(page.locator('.station-marker[aria-label^="Station st-park-00"]')).to_be_visible()
    # The map itself: the arrow keys move it, Enter chooses its centre as the place.
    tab_to(page, "el.id === 'map'")
    expect(page.get_by_role("region", name=re.compile(r"^Map of measuring stations"))).to_be_focused()
    before = page.evaluate("document.querySelector('.leaflet-map-pane').style.transform")
    page.keyboard.press("ArrowDown")
    expect(page.locator(".leaflet-map-pane")).not_to_have_attribute("style", re.compile(re.escape(before)))
    page.keyboard.press("Enter")
    expect(page.locator("#place-lat")).to_have_value(re.compile(r"^48\.85"))
    expect(page.locator("#warnings-note")).to_contain_text("within 2 km of your place")
    # Coordinates by keyboard: the place near st-bad shows its warning, whose button opens the station.
    tab_to(page, "el.id === 'place-lat'")
    page.keyboard.press("Control+a")
    page.keyboard.type("48.8601")
    page.keyboard.press("Tab")
    page.keyboard.press("Control+a")
    page.keyboard.type("2.3598")
    page.keyboard.press("Enter")
    expect(page.locator("#warnings li", has_text="station st-bad")).to_have_count(2)  # al-0 and the episode
    tab_to(page, "el.closest('#warnings li') && el.textContent === 'Show station'")
    page.locator("#detail-title").evaluate("el => el.textContent = ''")
    page.evaluate("loadWarnings()")  # a refresh (live alerts cause them) rebuilds the list under the focus
    expect(page.locator("#warnings li button:focus")).to_have_text("Show station")
    page.keyboard.press("Enter")
    expect(page.locator("#detail-title")).to_have_text("st-bad")


def test_place_choice_lists_the_warnings_near_it_with_health_advice(city: LiveServer, browser: Browser) -> None:
    page, console = open_page(browser, city.url)
    expect(page.locator("#warnings-note")).to_have_text("Choose a place to see the warnings in force near it.")
    page.locator("#place-lat").fill("48.8601")
    page.locator("#place-lon").fill("2.3598")
    page.locator("#place-radius").fill("1")
    page.get_by_role("button", name="Show warnings here").click()
    expect(page.locator("#warnings-note")).to_have_text("2 warnings in force within 1 km of your place.")
    items = page.locator("#warnings li")
    expect(items).to_have_count(2)  # al-0 (critical, no rule of rules.yaml) and the episode; not st-old's warning
    episode = page.locator('#warnings li[data-alert="al-episode"]')
    expect(episode.locator(".severity")).to_have_text("Severe warning")
    expect(episode.locator("h3")).to_have_text("Air pollution (PM2.5): Very Unhealthy at station st-bad")
    expect(episode.locator(".advice")).to_contain_text("Health advice: People with heart or lung disease")
    expect(episode.locator(".advice")).to_contain_text("avoid all physical activity outdoors")
    expect(episode.locator(".meta")).to_contain_text("0 km away · station st-bad")
    expect(page.locator(".place-area")).to_have_count(1)
    # A click on the map far from st-bad: no warning there (the radius is 1 km).
    box = page.locator("#map").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 20, box["y"] + box["height"] - 20)
    expect(page.locator("#warnings-note")).to_have_text("No warnings in force within 1 km of your place.")
    expect(items).to_have_count(0)
    # Coordinates a person mistypes get a message, not a request.
    page.locator("#place-lat").fill("148.9")
    page.get_by_role("button", name="Show warnings here").click()
    expect(page.locator("#place-error")).to_contain_text("latitude between −90 and 90")
    assert not csp_violations(console), console


def test_language_switch_to_german_and_browser_default(city: LiveServer, browser: Browser) -> None:
    page, _ = open_page(browser, city.url)
    page.locator("#place-lat").fill("48.86")
    page.locator("#place-lon").fill("2.36")
    page.get_by_role("button", name="Show warnings here").click()
    expect(page.locator('#warnings li[data-alert="al-episode"]')).to_be_visible()
    page.get_by_role("button", name="Deutsch").click()
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.get_by_role("button", name="Deutsch")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#map-heading")).to_have_text("Messstationen")
    expect(page.locator("#subscribe-heading")).to_have_text("Warnungen per E-Mail")
    episode = page.locator('#warnings li[data-alert="al-episode"]')
    expect(episode.locator("h3")).to_have_text("Luftverschmutzung (PM2,5): Sehr ungesund an der Messstation st-bad")
    expect(episode.locator(".advice")).to_contain_text("Gesundheitshinweis: Menschen mit Herz- oder Lungenerkrankungen")
    expect(episode.locator(".severity")).to_have_text("Unwetterartige Warnung")
    expect(page.locator("#sub-severity option")).to_have_text(["Hinweis", "Warnung", "Unwetterartige Warnung"])
    expect(page.locator("#sub-language")).to_have_value("de")
    expect(page.locator('.station-marker[aria-label^="Station st-good"]')).to_have_attribute(
        "aria-label", re.compile(r"Gut \(PM2\.5 4 µg/m³\)"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "citizen-page-de.png"), full_page=True)
    # A browser set to German opens the page in German.
    german, _ = open_page(browser, city.url, locale="de-DE")
    expect(german.locator("html")).to_have_attribute("lang", "de")
    expect(german.locator("#place-heading")).to_have_text("Ihr Ort")


def test_subscribe_form_answers_with_the_apis_messages(city: LiveServer, browser: Browser) -> None:
    page, console = open_page(browser, city.url)
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("#subscribe-result")).to_have_text(
        "Choose a place on the map or enter its coordinates first.")
    page.locator("#place-lat").fill("48.86")
    page.locator("#place-lon").fill("2.36")
    page.get_by_role("button", name="Show warnings here").click()
    expect(page.locator("#subscribe-place")).to_have_text("Warnings for stations within 2 km of 48.86, 2.36.")
    # Invalid: the API's 422 message is shown and the field is marked.
    page.get_by_label("Email address").fill("not-an-address")
    page.get_by_role("button", name="Subscribe").click()
    result = page.locator("#subscribe-result")
    expect(result).to_have_class("error")
    expect(result).to_contain_text("email")
    expect(page.locator("#sub-email")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#sub-email-error")).to_be_visible()
    # Valid: 202, "check your inbox"; a pending subscription with the form's values is in the store.
    address = f"resident-{uuid.uuid4().hex[:6]}@example.org"
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Radius (km)").last.fill("3.5")
    page.get_by_label("Warn me from").select_option("critical")
    page.get_by_label("Email language").select_option("de")
    page.get_by_role("button", name="Subscribe").click()
    expect(result).to_have_text(re.compile(r"^Check your inbox"))
    expect(result).to_have_class("ok")
    expect(page.locator("#sub-email")).not_to_have_attribute("aria-invalid", "true")
    subscriptions = city.store.list_area_subscriptions(email=address)
    assert [(s.lat, s.lon, s.radius_km, s.min_severity, s.language, s.status) for s in subscriptions] == [
        (48.86, 2.36, 3.5, "critical", "de", "pending")]
    # Too many requests for one address: the API's 429 message and when to try again.
    page.get_by_role("button", name="Subscribe").click()
    expect(result).to_have_text(re.compile(r"^Check your inbox"))
    page.get_by_role("button", name="Subscribe").click()
    expect(result).to_have_class("error")
    expect(result).to_have_text(re.compile(r"Try again in \d+ seconds\.$"))
    assert not csp_violations(console), console


@pytest.fixture
def tile_server() -> Iterator[tuple[str, list[str]]]:
    """A tile server on loopback: every /z/x/y.png is a small PNG; the list holds the paths asked for."""
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            requested.append(self.path)
            ok = re.fullmatch(r"/\d+/\d+/\d+\.png", self.path) is not None
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG) if ok else 0))
            self.end_headers()
            if ok:
                self.wfile.write(PNG)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as url:
        yield url, requested


def test_page_and_docs_run_under_the_content_security_policy(
        api_settings: ApiSettings, store: Store, tile_server: tuple[str, list[str]], browser: Browser) -> None:
    tiles, requested = tile_server
    settings = api_settings.model_copy(update={"map_tile_url": tiles + "/{z}/{x}/{y}.png",
                                               "map_tile_attribution": "Test tiles"})
    with running_api(settings, store) as server:
        page = browser.new_context().new_page()
        console: list[str] = []
        page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
        others: list[str] = []
        page.on("request", lambda req: others.append(req.url) if not req.url.startswith((server.url, tiles, "data:"))
                else None)
        response = page.goto(server.url + "/")
        assert response is not None
        csp = response.headers["content-security-policy"]
        assert f"img-src 'self' data: {tiles};" in csp, csp
        assert csp.count(tiles) == 1, csp  # images only: no script, style or connect source for the tile host
        expect(page.locator(".station-marker")).to_have_count(3)
        expect(page.locator("img.leaflet-tile-loaded").first).to_be_attached(timeout=10_000)
        assert any(re.fullmatch(r"/\d+/\d+/\d+\.png", path) for path in requested), requested
        expect(page.locator("#tile-note")).to_be_hidden()
        expect(page.locator(".leaflet-control-attribution")).to_contain_text("Test tiles")
        page.goto(server.url + "/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("citysense alert API", timeout=20_000)
        expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
        page.locator(".swagger-ui .opblock-summary").first.click()  # expand an operation: more rendering
        page.wait_for_timeout(500)
        assert not csp_violations(console), console
        assert not others, f"requests to other hosts: {others}"


# ---------------------------------------------------------------------------------------------- the whole flow
_spec = importlib.util.spec_from_file_location("notifier_fixtures",
                                               Path(__file__).resolve().parents[1] / "notifier" / "conftest.py")
assert _spec is not None and _spec.loader is not None
nf = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = nf  # dataclasses look their module up there
_spec.loader.exec_module(nf)

SECRET = "flow-secret-" + "s" * 32
REFRESH_S = 0.5  # how often the notifier reloads the confirmed areas
LINK = r"http://127\.0\.0\.1:\d+/citizen/{page}\?token=[A-Za-z0-9_.~%=-]+"


def _plain(message) -> str:  # noqa: ANN001 - email.message.EmailMessage
    return message.get_body(preferencelist=("plain",)).get_content()


def _link(message, page: str) -> str:  # noqa: ANN001
    found = re.findall(LINK.format(page=page), _plain(message))
    assert found, f"no {page} link in:\n{_plain(message)}"
    return found[0]


def _to(smtp, address: str) -> list:  # noqa: ANN001
    return [m for m in smtp.messages if address in str(m["To"])]


def _episode_event(state: AlertState = AlertState.OPEN, alert_id: str | None = None) -> AlertEvent:
    now = datetime.now(UTC)
    return AlertEvent(event_id=f"ev-{uuid.uuid4().hex}", alert_id=alert_id or f"al-{uuid.uuid4().hex[:10]}",
                      state=state, kind=AlertKind.THRESHOLD, severity=Severity.CRITICAL, rule_id="pm25-acute-1m",
                      station_id="st-bad", location=Location(lat=48.86, lon=2.36), metric="pm2_5",
                      value=300.0 if state is AlertState.OPEN else 20.0, threshold=225.4, window="1m",
                      opened_at=now, event_time=now, message="PM2.5 1-minute mean 300 µg/m³ exceeds 225.4")


def test_subscribe_confirm_warn_unsubscribe_end_to_end(api_settings: ApiSettings, store: Store, tmp_path: Path,
                                                       browser: Browser) -> None:
    """Page -> subscribe -> confirmation email (real SMTP server on loopback) -> link opened in the browser ->
    confirm -> an episode on Kafka -> warning email -> unsubscribe link -> no more email. The notifier runs as a
    process of its own on the same SQLite store; a second confirmed subscriber whose area covers the station shows
    that later events are processed, and a third far away gets nothing."""
    run = uuid.uuid4().hex[:8]
    citizen = load_citizen_settings(secret=SECRET, mail_topic=f"test.{run}.citizen-mail", response_floor_s=0.0)
    settings = api_settings.model_copy(update={"citizen": citizen})
    smtp = nf.SmtpServer(tmp_path)
    now = datetime.now(UTC)
    witness, far = "neighbour@example.org", "elsewhere@example.org"
    for address, lat, lon in ((witness, 48.861, 2.361), (far, 48.95, 2.60)):
        store.create_area_subscription(AreaSubscription(
            id=f"as-{uuid.uuid4().hex[:12]}", email=address, lat=lat, lon=lon, radius_km=2.0, min_severity="warning",
            language="en", status="confirmed", created_at=now, confirmed_at=now))
    try:
        with running_api(settings, store) as server:
            harness = nf.NotifierHarness(settings.bootstrap, {
                **{k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")},
                "CITYSENSE_KAFKA_BOOTSTRAP": settings.bootstrap, "CITYSENSE_DATA_DIR": str(tmp_path),
                "CITYSENSE_ALERTS_TOPIC": settings.alerts_topic,
                "CITYSENSE_WEBHOOK_TESTS_TOPIC": settings.webhook_tests_topic,
                "CITYSENSE_WEBHOOK_RETRIES_TOPIC": f"test.{run}.webhook-retries",
                "CITYSENSE_NOTIFIER_GROUP": f"test-notifier-{run}", "CITYSENSE_NOTIFIER_METRICS_PORT": "0",
                "CITYSENSE_CITIZEN_SECRET": SECRET, "CITYSENSE_CITIZEN_MAIL_TOPIC": citizen.mail_topic,
                "CITYSENSE_CITIZEN_PUBLIC_URL": server.url, "CITYSENSE_SMTP_HOST": "127.0.0.1",
                "CITYSENSE_SMTP_PORT": str(smtp.port), "CITYSENSE_SMTP_SECURITY": "none",
                "CITYSENSE_SMTP_FROM_ADDRESS": "City warnings <warnings@city.example>",
                "CITYSENSE_SUBSCRIPTIONS_REFRESH_S": str(REFRESH_S), "CITYSENSE_LOG_LEVEL": "INFO",
            }, store, settings.alerts_topic, tmp_path / "notifier.log")
            try:
                harness.start()
                # 1. The citizen subscribes on the page.
                page, console = open_page(browser, server.url)
                page.locator("#place-lat").fill("48.8605")
                page.locator("#place-lon").fill("2.3595")
                page.get_by_role("button", name="Show warnings here").click()
                address = f"resident-{run}@example.org"
                page.get_by_label("Email address").fill(address)
                page.get_by_label("Warn me from").select_option("warning")
                page.get_by_role("button", name="Subscribe").click()
                expect(page.locator("#subscribe-result")).to_have_text(re.compile(r"^Check your inbox"),
                                                                       timeout=15_000)
                # 2. The confirmation email arrives; its link opens a page whose button confirms.
                deadline = time.monotonic() + 60
                while not _to(smtp, address):
                    assert time.monotonic() < deadline, f"no confirmation email\n{harness.logs()}"
                    time.sleep(0.1)
                [confirmation] = _to(smtp, address)
                assert store.list_area_subscriptions(email=address)[0].status == "pending"
                page.goto(_link(confirmation, "confirm"))
                expect(page.locator("h1")).to_have_text("Confirm your warnings")
                page.get_by_role("button", name="Confirm").click()
                expect(page.locator("h1")).to_have_text("Warnings confirmed")
                [subscription] = store.list_area_subscriptions(email=address)
                assert subscription.status == "confirmed"
                # 3. An episode at st-bad: a warning email with the CAP texts and an unsubscribe link.
                harness.publish(_episode_event())
                deadline = time.monotonic() + 60
                while len(_to(smtp, address)) < 2 or not _to(smtp, witness):
                    assert time.monotonic() < deadline, f"no warning email\n{harness.logs()}"
                    time.sleep(0.1)
                warning = _to(smtp, address)[1]
                body = _plain(warning)
                assert "Air pollution (PM2.5): Hazardous at station st-bad" in body, body
                assert "Everyone should avoid all physical activity outdoors" in body, body
                assert warning["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
                assert "/citizen/unsubscribe" in warning["List-Unsubscribe"]
                assert warning.get_body(preferencelist=("html",)) is not None
                assert not _to(smtp, far)
                # 4. The unsubscribe link from the email, opened in the browser.
                page.goto(_link(warning, "unsubscribe"))
                expect(page.locator("h1")).to_have_text("Stop the warnings")
                page.get_by_role("button", name="Unsubscribe").click()
                expect(page.locator("h1")).to_have_text("Unsubscribed")
                assert store.list_area_subscriptions(email=address) == []
                # 5. The next episode, right away, reaches the neighbour and not the former subscriber (the
                # notifier checks each recipient before it sends, whatever its cached areas say).
                harness.publish(_episode_event())
                deadline = time.monotonic() + 60
                while len(_to(smtp, witness)) < 2:
                    assert time.monotonic() < deadline, f"no second warning to the neighbour\n{harness.logs()}"
                    time.sleep(0.1)
                assert [m["Subject"] for m in _to(smtp, address)][2:] == [], "an email after unsubscribing"
                assert not _to(smtp, far)
                assert not csp_violations(console), console
            finally:
                harness.stop_all()
    finally:
        smtp.close()
