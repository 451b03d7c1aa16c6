"""Live source: senseBoxes from the openSenseMap API published as citysense stations.

Discovery (``GET /boxes?bbox&phenomenon``, one request per phenomenon, repeated every ``discovery_interval``)
finds the boxes; each poll round asks every box for its latest measurements (``GET /boxes/{id}/sensors``), one
request at a time. Station id = box id (24 hex characters, a valid contract station id); location = the box's
current location. Measurements of one box taken at the same instant become one reading with several metrics,
stamped with the measurement's own ``createdAt``. A measurement is published once: the last ``createdAt`` sent per
sensor is persisted (see :mod:`opensensemap_state`) after the producer confirms delivery.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from citysense_common.contract import STATION_ID_PATTERN, Location, Reading

from citysense_simulator.opensensemap_client import ApiError, ApiUnavailable, OpenSenseMapClient, parse_time
from citysense_simulator.opensensemap_mapping import PhenomenonMapper
from citysense_simulator.opensensemap_state import SentState
from citysense_simulator.runner import Publisher

log = logging.getLogger("citysense.simulator.opensensemap")


@dataclass(frozen=True)
class Box:
    box_id: str
    name: str
    location: Location | None


def box_location(doc: dict[str, Any]) -> Location | None:
    """``currentLocation.coordinates`` (GeoJSON [lon, lat, height?]), else the newest ``loc`` entry."""
    coords = (doc.get("currentLocation") or {}).get("coordinates")
    if not coords and isinstance(doc.get("loc"), list) and doc["loc"]:
        coords = ((doc["loc"][0] or {}).get("geometry") or {}).get("coordinates")
    try:
        return Location(lon=float(coords[0]), lat=float(coords[1]))
    except (TypeError, ValueError, IndexError):
        return None


def parse_boxes(docs: Iterable[Any]) -> list[Box]:
    boxes = []
    for doc in docs:
        box_id = doc.get("_id") if isinstance(doc, dict) else None
        if not isinstance(box_id, str) or not re.fullmatch(STATION_ID_PATTERN, box_id):
            log.warning("ignoring a box without a usable _id: %r", str(doc)[:80])
            continue
        boxes.append(Box(box_id, str(doc.get("name", "")), box_location(doc)))
    return boxes


@dataclass
class PendingRound:
    """Readings built in one round and the state to commit once they are delivered."""

    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    last_sent: dict[str, str] = field(default_factory=dict)


def latest_readings(box: Box, sensors: list[Any], mapper: PhenomenonMapper, state: SentState,
                    pending: PendingRound, now: datetime, max_age_s: float) -> list[Reading]:
    """New measurements of one box (not sent before, not older than ``max_age_s``), one reading per instant."""
    by_time: dict[datetime, dict[str, float]] = {}
    for sensor in sensors:
        if not isinstance(sensor, dict):
            continue
        last = sensor.get("lastMeasurement")
        sensor_id = sensor.get("_id")
        if not isinstance(last, dict) or not isinstance(sensor_id, str):
            continue  # a sensor that never measured has no lastMeasurement (or only an id)
        conversion = mapper.resolve(str(sensor.get("title", "")), sensor.get("unit"))
        if conversion is None:
            continue
        try:
            created = parse_time(str(last["createdAt"]))
            value = float(last["value"])
        except (KeyError, TypeError, ValueError):
            log.debug("box %s sensor %s: unusable lastMeasurement %r", box.box_id, sensor_id, last)
            continue
        previous = state.last_sent.get(sensor_id)
        if previous is not None and created <= parse_time(previous):
            continue
        if (now - created).total_seconds() > max_age_s:
            continue  # an offline box's last value from months ago is not live data
        by_time.setdefault(created, {})[conversion.metric] = conversion.apply(value)
        pending.last_sent[sensor_id] = last["createdAt"]
    readings = []
    for created in sorted(by_time):
        readings.append(Reading(schema_version=1, station_id=box.box_id, ts=created, seq=state.take_seq(box.box_id),
                                location=box.location, metrics=by_time[created]))
    return readings


class OpenSenseMapSource:
    def __init__(self, client: OpenSenseMapClient, mapper: PhenomenonMapper, state: SentState, publisher: Publisher,
                 *, bbox: str, phenomena: list[str], poll_interval: float = 300.0,
                 discovery_interval: float = 3600.0, max_boxes: int = 500, max_age_s: float = 6 * 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.client, self.mapper, self.state, self.publisher = client, mapper, state, publisher
        self.bbox, self.phenomena = bbox, phenomena
        self.poll_interval, self.discovery_interval = poll_interval, discovery_interval
        self.max_boxes, self.max_age_s = max_boxes, max_age_s
        self.clock = clock
        self.boxes: dict[str, Box] = {}
        self.published = 0

    def discover(self) -> dict[str, Box]:
        found: dict[str, Box] = {}
        for phenomenon in self.phenomena:
            for box in parse_boxes(self.client.boxes(self.bbox, phenomenon)):
                found.setdefault(box.box_id, box)
        if len(found) > self.max_boxes:
            log.warning("%d boxes in the bbox; polling the first %d (raise --max-boxes or shrink the bbox)",
                        len(found), self.max_boxes)
            found = dict(sorted(found.items())[: self.max_boxes])
        log.info("discovered %d senseBoxes in %s for %s", len(found), self.bbox, ", ".join(self.phenomena))
        self.boxes = found
        return found

    def poll_round(self) -> int:
        """Poll every box once, publish what is new, and persist the state once delivery is confirmed."""
        pending = PendingRound()
        now = datetime.fromtimestamp(self.clock(), UTC)
        for box in list(self.boxes.values()):
            try:
                doc = self.client.box_sensors(box.box_id)
            except ApiUnavailable as exc:
                log.warning("box %s skipped this round: %s", box.box_id, exc)
                continue
            except ApiError as exc:
                log.warning("box %s dropped until the next discovery: %s", box.box_id, exc)
                self.boxes.pop(box.box_id, None)
                continue
            sensors = doc.get("sensors") if isinstance(doc.get("sensors"), list) else []
            for reading in latest_readings(box, sensors, self.mapper, self.state, pending, now, self.max_age_s):
                pending.messages.append((reading.station_id.encode(), reading.to_json()))
        return self._deliver(pending)

    def _deliver(self, pending: PendingRound) -> int:
        failed_before = self.publisher.counts.failed
        self.publisher.publish_batch(pending.messages)
        self.publisher.poll()
        undelivered = self.publisher.close(30.0)  # flush: the producer stays usable afterwards
        failed = self.publisher.counts.failed - failed_before
        if undelivered or failed:
            # Not committed: the next round (or a restart) sends these measurements again rather than losing them.
            log.error("%d readings undelivered, %d failed; state not saved, will retry", undelivered, failed)
            return 0
        self.state.last_sent.update(pending.last_sent)
        if pending.messages or pending.last_sent:
            self.state.save()
        self.published += len(pending.messages)
        if pending.messages:
            log.info("published %d readings from %d boxes (%d in total)", len(pending.messages),
                     len({k for k, _ in pending.messages}), self.published)
        return len(pending.messages)

    def run(self, stop: threading.Event, rounds: int | None = None) -> int:
        """Discover and poll until ``stop`` is set (or ``rounds`` poll rounds are done); return readings published."""
        next_discovery, done = 0.0, 0
        while not stop.is_set() and (rounds is None or done < rounds):
            if self.clock() >= next_discovery:
                try:
                    self.discover()
                except (ApiUnavailable, ApiError) as exc:
                    log.error("discovery failed (%s); keeping the %d boxes known", exc, len(self.boxes))
                next_discovery = self.clock() + self.discovery_interval
            self.poll_round()
            done += 1
            if rounds is None or done < rounds:
                stop.wait(self.poll_interval)
        return self.published
