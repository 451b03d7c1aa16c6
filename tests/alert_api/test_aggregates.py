"""GET /v1/stations/{id}/aggregates: daily aggregates written by the batch job, with yearly exceedance counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from citysense_alert_api.routes.stations import ALLOWANCES
from citysense_common.store import EnrichedReading, StationRecord
from citysense_scorer.batch.aggregates import DEFAULT_ALLOWANCES
from citysense_scorer.batch.daily import run_day

PROBLEM = "application/problem+json"


def seed_days(store, days: int, pm10: float, hours: int = 24) -> None:  # noqa: ANN001
    start = datetime(2025, 1, 1, tzinfo=UTC)
    store.upsert_stations([StationRecord("st-agg", start, 0, {"pm10": pm10}, lat=48.8, lon=2.3)])
    for d in range(days):
        store.write_readings([
            EnrichedReading("st-agg", start + timedelta(days=d, hours=h), d * 100 + h, {"pm10": pm10, "pm2_5": 10.0})
            for h in range(hours)])
        run_day(store, (start + timedelta(days=d)).strftime("%Y-%m-%d"), ["st-agg"])


def test_batch_output_is_served_with_exceedances(client, store) -> None:  # noqa: ANN001
    seed_days(store, 19, 50.0)
    r = client.get("/v1/stations/st-agg/aggregates", params={"from": "2025-01-01", "to": "2025-12-31"})
    assert r.status_code == 200
    body = r.json()
    pm10 = [i for i in body["items"] if i["metric"] == "pm10"]
    assert len(pm10) == 19 and pm10[0] == {"metric": "pm10", "day": "2025-01-01", "mean": 50.0, "max": 50.0,
                                           "count": 24, "hours": 24, "complete": True}
    years = {y["metric"]: y for y in body["years"]}
    [eu] = years["pm10"]["exceedances"]
    assert (eu["days_above"], eu["allowed_days"], eu["exceeded"]) == (19, 18, True)
    assert years["pm2_5"]["exceedances"][0]["days_above"] == 0
    only = client.get("/v1/stations/st-agg/aggregates",
                      params={"from": "2025-01-02", "to": "2025-01-03", "metric": "pm2_5"}).json()
    assert [(i["metric"], i["day"]) for i in only["items"]] == [("pm2_5", "2025-01-02"), ("pm2_5", "2025-01-03")]


def test_errors_are_problems(client) -> None:  # noqa: ANN001
    r = client.get("/v1/stations/nope/aggregates", params={"from": "2025-01-01", "to": "2025-01-31"})
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = client.get("/v1/stations/st-good/aggregates", params={"from": "2025-02-01", "to": "2025-01-01"})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    r = client.get("/v1/stations/st-good/aggregates", params={"from": "2023-01-01", "to": "2025-01-01"})
    assert r.status_code == 422 and "366" in r.json()["detail"]
    r = client.get("/v1/stations/st-good/aggregates", params={"from": "yesterday"})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM


def test_empty_range_and_openapi(client) -> None:  # noqa: ANN001
    body = client.get("/v1/stations/st-good/aggregates").json()
    assert body == {"station_id": "st-good", "items": [], "years": []}
    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/v1/stations/{station_id}/aggregates"]["get"]
    assert {"200", "404", "422"} <= set(op["responses"])


def test_api_allowances_match_the_batch_job() -> None:
    assert [(a.id, a.metric, a.limit, a.allowed_days, a.source) for a in DEFAULT_ALLOWANCES] == list(ALLOWANCES)
