"""Stations and their readings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from citysense_common.contract import METRIC_NAME_PATTERN
from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from citysense_alert_api.convert import reading_out, station_out
from citysense_alert_api.models import (
    AggregateList,
    DailyAggregateOut,
    ExceedanceOut,
    ReadingPage,
    StationList,
    StationOut,
    YearSummaryOut,
)
from citysense_alert_api.problems import Problem, problem_responses
from citysense_alert_api.routes.deps import (
    CURSOR_REGEX,
    STATION_ID_REGEX,
    CursorsDep,
    SettingsDep,
    StoreDep,
    cursor_guard,
)

router = APIRouter(prefix="/v1/stations", tags=["stations"])
MAX_READINGS_SPAN = timedelta(days=31)
DEFAULT_SPAN = timedelta(hours=1)
EARLIEST = datetime.min.replace(tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_AGGREGATE_DAYS = 366
# Daily-mean limits with a yearly allowance of exceedance days (kept equal to the batch job's defaults,
# citysense_scorer.batch.aggregates.DEFAULT_ALLOWANCES; a test checks they agree).
ALLOWANCES: tuple[tuple[str, str, float, int, str], ...] = (
    ("eu-pm10-daily", "pm10", 45.0, 18,
     "Directive (EU) 2024/2881, Annex I (from 2030): PM10 daily mean 45 µg/m³, max 18 exceedances/year"),
    ("eu-pm25-daily", "pm2_5", 25.0, 18,
     "Directive (EU) 2024/2881, Annex I (from 2030): PM2.5 daily mean 25 µg/m³, max 18 exceedances/year"),
)

StationIdPath = Annotated[str, Path(pattern=STATION_ID_REGEX, description="station id")]


def _not_found(station_id: str) -> Problem:
    return Problem(404, "Station not found", f"No station with id {station_id!r} has sent a reading.",
                   type_="urn:citysense:problem:not-found")


@router.get("", response_model=StationList, responses=problem_responses(503))
async def list_stations(store: StoreDep, settings: SettingsDep) -> StationList:
    """Every station that has reported, with status, latest values and air-quality category."""
    now = datetime.now(UTC)
    records = sorted(await store.list_stations(), key=lambda r: r.station_id)
    return StationList(items=[station_out(r, settings.station_offline_after_s, now) for r in records])


@router.get("/{station_id}", response_model=StationOut, responses=problem_responses(404, 422, 503))
async def get_station(station_id: StationIdPath, store: StoreDep, settings: SettingsDep) -> Response:
    record = await store.get_station(station_id)
    if record is None:
        raise _not_found(station_id)
    # JSON bytes from our own model: FastAPI would validate it a second time (a hot path: the map's detail view).
    return Response(station_out(record, settings.station_offline_after_s).model_dump_json(),
                    media_type="application/json")


@router.get("/{station_id}/readings", response_model=ReadingPage, responses=problem_responses(400, 404, 422, 503))
async def list_readings(
    station_id: StationIdPath,
    store: StoreDep,
    cursors: CursorsDep,
    from_: Annotated[datetime | None, Query(alias="from", description="start (inclusive), RFC 3339; "
                                                                      "default one hour before `to`")] = None,
    to: Annotated[datetime | None, Query(description="end (exclusive), RFC 3339; default now")] = None,
    metric: Annotated[str | None, Query(pattern=METRIC_NAME_PATTERN, description="only this metric")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
    cursor: Annotated[str | None, Query(pattern=CURSOR_REGEX, description="next_cursor of the previous page")] = None,
) -> ReadingPage:
    """Readings of one station in a time range, newest first, in pages."""
    for name, value in (("from", from_), ("to", to)):
        if value is not None and value.tzinfo is None:
            raise Problem(422, "Invalid request", f"query.{name} needs a time zone, e.g. 2026-01-01T12:00:00Z",
                          type_="urn:citysense:problem:invalid-request",
                          invalid_params=[{"name": f"query.{name}", "reason": "needs a time zone"}])
    end = to or datetime.now(UTC)
    # One hour before `to`, but not before year 1: `to=0001-01-01T00:00:00Z` alone is an empty range, not an error.
    start = from_ or (end - DEFAULT_SPAN if end - EARLIEST >= DEFAULT_SPAN else EARLIEST)
    store_cursor = None
    scope = ("readings", station_id, metric)
    if cursor is not None:
        # The default window moves with the clock; the cursor pins the window of the first page.
        doc = cursors.open(cursor, scope, int_fields=("from", "to"))
        start, end, store_cursor = _from_ms(doc["from"]), _from_ms(doc["to"]), doc["s"]
    if start >= end and from_ is not None:
        raise Problem(422, "Invalid request", "query.from must be earlier than query.to",
                      type_="urn:citysense:problem:invalid-request",
                      invalid_params=[{"name": "query.from", "reason": "must be earlier than query.to"}])
    if end - start > MAX_READINGS_SPAN:
        raise Problem(422, "Invalid request", "the time range may span at most 31 days; page through shorter ranges",
                      type_="urn:citysense:problem:invalid-request",
                      invalid_params=[{"name": "query.from", "reason": "range longer than 31 days"}])
    if await store.get_station(station_id) is None:
        raise _not_found(station_id)
    with cursor_guard():
        page = await store.read_readings(station_id, start, end, metric=metric, limit=limit, cursor=store_cursor)
    next_cursor = None if page.next_cursor is None else cursors.seal(
        scope, page.next_cursor, **{"from": _to_ms(start), "to": _to_ms(end)})
    return ReadingPage(station_id=station_id, items=[reading_out(r) for r in page.items], next_cursor=next_cursor)


def _to_ms(value: datetime) -> int:
    return (value - EPOCH) // timedelta(milliseconds=1)


def _from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


@router.get("/{station_id}/aggregates", response_model=AggregateList, responses=problem_responses(404, 422, 503))
async def list_aggregates(
    station_id: StationIdPath,
    store: StoreDep,
    from_: Annotated[date | None, Query(alias="from", description="first UTC day (inclusive), YYYY-MM-DD; "
                                                                  "default 1 January of `to`'s year")] = None,
    to: Annotated[date | None, Query(description="last UTC day (inclusive), YYYY-MM-DD; default today")] = None,
    metric: Annotated[str | None, Query(pattern=METRIC_NAME_PATTERN, description="only this metric")] = None,
) -> AggregateList:
    """Daily aggregates written by the batch job (``citysense-scorer batch``), with per-year exceedance counts.

    Year summaries cover the days in the range: ask for a whole calendar year to compare against the yearly
    allowance (e.g. EU: PM10 daily mean above 45 µg/m³ on more than 18 days)."""
    last = to or datetime.now(UTC).date()
    first = from_ or date(last.year, 1, 1)
    if first > last:
        raise Problem(422, "Invalid request", "query.from must not be later than query.to",
                      type_="urn:citysense:problem:invalid-request",
                      invalid_params=[{"name": "query.from", "reason": "later than query.to"}])
    if (last - first).days + 1 > MAX_AGGREGATE_DAYS:
        raise Problem(422, "Invalid request", f"the range may span at most {MAX_AGGREGATE_DAYS} days",
                      type_="urn:citysense:problem:invalid-request",
                      invalid_params=[{"name": "query.from", "reason": f"range longer than {MAX_AGGREGATE_DAYS} days"}])
    if await store.get_station(station_id) is None:
        raise _not_found(station_id)
    rows = await store.read_daily_aggregates(station_id, metric=metric, start_day=first.isoformat(),
                                       end_day=last.isoformat())
    items = [DailyAggregateOut(metric=r.metric, day=r.day, mean=r.mean, max=r.max, count=r.count, hours=r.hours,
                               complete=r.complete) for r in rows]
    return AggregateList(station_id=station_id, items=items, years=_year_summaries(items))


def _year_summaries(items: list[DailyAggregateOut]) -> list[YearSummaryOut]:
    out = []
    for metric, year in sorted({(i.metric, int(i.day[:4])) for i in items}):
        days = [i for i in items if i.metric == metric and int(i.day[:4]) == year]
        complete = [i for i in days if i.complete]
        exceedances = []
        for allowance_id, allowance_metric, limit, allowed, source in ALLOWANCES:
            if allowance_metric == metric:
                above = sum(1 for i in complete if i.mean > limit)
                exceedances.append(ExceedanceOut(allowance=allowance_id, limit=limit, allowed_days=allowed,
                                                 days_above=above, exceeded=above > allowed, source=source))
        out.append(YearSummaryOut(
            metric=metric, year=year, days=len(days), complete_days=len(complete),
            mean=round(sum(i.mean for i in complete) / len(complete), 4) if complete else None,
            max=max(i.max for i in days), exceedances=exceedances))
    return out
