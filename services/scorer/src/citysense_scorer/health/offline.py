"""Offline stations (alert kind ``station_offline``): silence longer than ``offline_after`` on a processing-time timer.

Pure state machine with the clock passed in (``now_ms``), so the boundaries are testable without sleeping. In the
stream, :mod:`citysense_scorer.health.spark` registers a processing-time timer at ``arrival + offline_after`` for
every station; the timer fires on a micro-batch even when no data arrives at all (the query runs a no-data batch
every trigger in processing-time mode), so the alert opens within ``offline_after`` + one trigger interval.

Ids and times are derived from *event* time so a replay reproduces them: the alert belongs to the silence that
followed the station's newest reading, ``opened_at`` = that reading's time + ``offline_after``, and the resolve
carries the event time of the first reading after the silence.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from citysense_common.contract import AlertEvent, AlertKind, AlertState, Severity

from citysense_scorer.health.alert_ids import alert_id, build_event

OFFLINE_RULE_ID = "station-offline"


@dataclass(frozen=True)
class OfflineConfig:
    """``offline_after`` per station group: the first matching glob pattern wins, else ``default_s``."""

    default_s: float = 60.0
    groups: tuple[tuple[str, float], ...] = ()

    def after_ms(self, station_id: str) -> int:
        for pattern, seconds in self.groups:
            if fnmatch.fnmatchcase(station_id, pattern):
                return int(seconds * 1000)
        return int(self.default_s * 1000)


@dataclass
class OfflineState:
    last_arrival_ms: int = -1  # processing time of the newest reading's arrival
    last_event_ms: int = -1  # event time of the newest reading
    alert_id: str | None = None
    opened_ms: int = 0
    events: int = 0
    lat: float | None = None
    lon: float | None = None


@dataclass
class OfflineTracker:
    station_id: str
    after_ms: int
    state: OfflineState = field(default_factory=OfflineState)

    def on_readings(self, now_ms: int, newest_event_ms: int, lat: float | None = None,
                    lon: float | None = None) -> tuple[list[AlertEvent], int]:
        """Readings arrived at ``now_ms``: resolve an open alert; return (events, next timer expiry)."""
        st = self.state
        events: list[AlertEvent] = []
        if lat is not None and lon is not None:
            st.lat, st.lon = lat, lon
        if st.alert_id is not None:
            st.events += 1
            silent = max(0, newest_event_ms - (st.opened_ms - self.after_ms)) // 1000
            events.append(self._event(AlertState.RESOLVED, max(newest_event_ms, st.opened_ms),
                                      f"Station {self.station_id} is sending again after {silent} s of silence"))
            st.alert_id = None
        st.last_arrival_ms = now_ms
        st.last_event_ms = max(st.last_event_ms, newest_event_ms)
        return events, now_ms + self.after_ms

    def on_timer(self, now_ms: int) -> list[AlertEvent]:
        """A timer fired at ``now_ms``: open the alert when the station has been silent for ``after_ms``."""
        st = self.state
        if st.alert_id is not None or st.last_arrival_ms < 0 or now_ms - st.last_arrival_ms < self.after_ms:
            return []
        st.opened_ms = st.last_event_ms + self.after_ms
        st.alert_id = alert_id(self.station_id, OFFLINE_RULE_ID, st.last_event_ms)
        st.events = 1
        return [self._event(AlertState.OPEN, st.opened_ms,
                            f"Station {self.station_id} has sent nothing for {self.after_ms // 1000} s "
                            f"(offline after {self.after_ms // 1000} s of silence)")]

    def _event(self, state: AlertState, event_ms: int, message: str) -> AlertEvent:
        st = self.state
        assert st.alert_id is not None
        return build_event(alert=st.alert_id, number=st.events, state=state, kind=AlertKind.STATION_OFFLINE,
                           severity=Severity.WARNING, rule_id=OFFLINE_RULE_ID, station_id=self.station_id,
                           opened_ms=st.opened_ms, event_ms=event_ms, message=message,
                           window=f"{self.after_ms // 1000}s", lat=st.lat, lon=st.lon)
