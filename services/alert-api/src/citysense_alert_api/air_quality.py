"""Air-quality category of a station from its latest PM2.5, using the US EPA AQI bands (2024 revision).

The EPA defines the AQI on a 24-hour mean; the map shows the category of the latest value as a quick,
indicative signal and says so in the API description.
"""

from __future__ import annotations

from dataclasses import dataclass

PM25_METRIC = "pm2_5"


@dataclass(frozen=True)
class AqCategory:
    key: str
    label: str
    upper_ug_m3: float  # inclusive upper bound of the band
    color: str  # the EPA's colour for the band


# EPA PM2.5 breakpoints effective 2024-05-06: 9.0 / 35.4 / 55.4 / 125.4 / 225.4 µg/m³.
BANDS: tuple[AqCategory, ...] = (
    AqCategory("good", "Good", 9.0, "#00e400"),
    AqCategory("moderate", "Moderate", 35.4, "#ffff00"),
    AqCategory("unhealthy_sensitive", "Unhealthy for Sensitive Groups", 55.4, "#ff7e00"),
    AqCategory("unhealthy", "Unhealthy", 125.4, "#ff0000"),
    AqCategory("very_unhealthy", "Very Unhealthy", 225.4, "#8f3f97"),
    AqCategory("hazardous", "Hazardous", float("inf"), "#7e0023"),
)


def pm25_category(value: float | None) -> AqCategory | None:
    if value is None or value != value or value < 0:  # value != value: NaN
        return None
    # EPA truncates concentrations to one decimal before looking up the band.
    truncated = int(value * 10) / 10
    for band in BANDS:
        if truncated <= band.upper_ug_m3:
            return band
    return BANDS[-1]
