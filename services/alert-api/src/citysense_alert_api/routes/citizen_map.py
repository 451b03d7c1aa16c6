"""What the citizen page reads besides stations and alerts: its map settings and the warnings near a place.

The warnings carry the same words as the CAP feed and the warning emails (headline, description, health advice,
area; :mod:`citysense_common.warnings`), in the language asked for, so the page holds no warning texts of its own.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from citysense_common.citizen.area import RADIUS_MAX_KM, RADIUS_MIN_KM, distance_km
from citysense_common.contract import AlertKind, Severity
from citysense_common.store import AlertQuery, AlertRecord, Store
from citysense_common.warnings.config import PublicWarnings
from citysense_common.warnings.texts import phase_of, warning_text
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from citysense_alert_api.problems import Problem, problem_responses
from citysense_alert_api.routes.deps import SettingsDep, StoreDep

router = APIRouter(prefix="/v1/citizen", tags=["citizen"])
PAGE_LANGUAGES = ("en", "de")
RADIUS_DEFAULT_KM = 2.0
PAGE = 500  # store page size while collecting the active alerts around a place
MAX_RECORDS = 5000  # active alerts looked at for one place at most
SEVERITY_ORDER = {s.value: i for i, s in enumerate(Severity)}  # info < warning < critical
KM_PER_DEGREE = 111.32

Language = Literal["en", "de"]


class TilesOut(BaseModel):
    url: str = Field(description="tile URL template ({z}/{x}/{y}, optionally {s})")
    attribution: str = Field(description="attribution the tiles' licence requires (HTML)")
    max_zoom: int


class SeverityOut(BaseModel):
    value: str = Field(description="info, warning or critical")
    names: dict[str, str] = Field(description="its name per page language (from the CAP configuration)")


class CitizenMapOut(BaseModel):
    tiles: TilesOut | None = Field(description="background map; null = none configured")
    languages: list[str]
    radius_km: dict[str, float] = Field(description="min, max and default radius of a place's area")
    severities: list[SeverityOut] = Field(description="levels a citizen may choose to be warned from, lowest first")


class WarningOut(BaseModel):
    alert_id: str
    station_id: str
    kind: str
    severity: str
    severity_name: str
    lat: float
    lon: float
    distance_km: float = Field(description="from the place to the station")
    event: str
    headline: str
    description: str
    instruction: str = Field(description="health advice")
    area: str
    opened_at: str
    updated_at: str


class WarningList(BaseModel):
    language: str = Field(description="the language of the texts (a language of the CAP configuration)")
    radius_km: float
    items: list[WarningOut] = Field(description="most severe first, then nearest, then newest")


def _newest_first(iso: str) -> float:
    return -datetime.fromisoformat(iso).timestamp()


def _warnings(request: Request) -> PublicWarnings | None:
    return getattr(request.app.state, "cap_feed", None)


def _config_language(warnings: PublicWarnings, language: str) -> str:
    """The CAP configuration's language for a page language (``de`` -> ``de-DE``); the first one otherwise."""
    codes = list(warnings.config.languages)
    return next((c for c in codes if c.split("-")[0].lower() == language), codes[0])


@router.get("/map", response_model=CitizenMapOut)
async def citizen_map(request: Request, settings: SettingsDep) -> CitizenMapOut:
    """Settings of the citizen page: background tiles, languages, area radius bounds and warning levels."""
    warnings = _warnings(request)
    severities = []
    for severity in Severity:
        names = {}
        for language in PAGE_LANGUAGES:
            if warnings is not None:
                texts = warnings.config.languages[_config_language(warnings, language)]
                names[language] = texts.severity_names[severity]
            else:
                names[language] = severity.value
        severities.append(SeverityOut(value=severity.value, names=names))
    tiles = None
    if settings.map_tile_url:
        tiles = TilesOut(url=settings.map_tile_url, attribution=settings.map_tile_attribution,
                         max_zoom=settings.map_tile_max_zoom)
    return CitizenMapOut(tiles=tiles, languages=list(PAGE_LANGUAGES), severities=severities,
                         radius_km={"min": RADIUS_MIN_KM, "max": RADIUS_MAX_KM, "default": RADIUS_DEFAULT_KM})


def _bbox(lat: float, lon: float, radius_km: float) -> tuple[float, float, float, float]:
    dlat = radius_km / KM_PER_DEGREE
    dlon = min(180.0, radius_km / (KM_PER_DEGREE * max(math.cos(math.radians(lat)), 1e-6)))
    return (max(-180.0, lon - dlon), max(-90.0, lat - dlat), min(180.0, lon + dlon), min(90.0, lat + dlat))


def active_public_records(store: Store, warnings: PublicWarnings,
                          bbox: tuple[float, float, float, float]) -> list[AlertRecord]:
    """Active alerts of the public kinds inside ``bbox`` (the caller keeps those in the circle)."""
    records: list[AlertRecord] = []
    for kind in sorted(warnings.config.public, key=lambda k: list(AlertKind).index(k)):
        cursor = None
        while len(records) < MAX_RECORDS:
            page = store.list_alerts(AlertQuery(state="active", kind=kind.value, bbox=bbox, limit=PAGE,
                                                cursor=cursor))
            records.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    return records[:MAX_RECORDS]


@router.get("/warnings", response_model=WarningList, responses=problem_responses(404, 422, 503))
async def warnings_near(
    request: Request,
    store: StoreDep,
    lat: Annotated[float, Query(ge=-90, le=90, description="latitude of the place (WGS 84)")],
    lon: Annotated[float, Query(ge=-180, le=180, description="longitude of the place (WGS 84)")],
    radius_km: Annotated[float, Query(ge=RADIUS_MIN_KM, le=RADIUS_MAX_KM,
                                      description="stations this far from the place count")] = RADIUS_DEFAULT_KM,
    language: Annotated[Language, Query(description="language of the texts")] = "en",
) -> WarningList:
    """Public warnings in force at stations within ``radius_km`` of a place, with the health advice, in English or
    German: what the CAP feed says about them, for the citizen page's list."""
    warnings = _warnings(request)
    if warnings is None:
        raise Problem(404, "No public warnings", "This API publishes no public warnings (no config/cap.yaml).",
                      type_="urn:citysense:problem:not-found")
    records = await store.run(active_public_records, store.store, warnings, _bbox(lat, lon, radius_km))
    code = _config_language(warnings, language)
    names = warnings.config.languages[code].severity_names
    items = []
    for record in records:
        if record.lat is None or record.lon is None or phase_of(record, warnings) != "active":
            continue
        distance = distance_km(lat, lon, record.lat, record.lon)
        if distance > radius_km:  # the same edge as a subscription's area (citizen.area.covers)
            continue
        text = warning_text(record, warnings, "active", code)
        items.append(WarningOut(
            alert_id=record.alert_id, station_id=record.station_id, kind=record.kind, severity=record.severity,
            severity_name=names[Severity(record.severity)], lat=record.lat, lon=record.lon,
            distance_km=round(distance, 3),
            event=text.event, headline=text.headline, description=text.description, instruction=text.instruction,
            area=text.area, opened_at=record.opened_at.isoformat(), updated_at=record.updated_at.isoformat()))
    items.sort(key=lambda w: (-SEVERITY_ORDER.get(w.severity, -1), w.distance_km, _newest_first(w.updated_at),
                              w.alert_id))
    return WarningList(language=code, radius_km=radius_km, items=items)
