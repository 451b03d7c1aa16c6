"""Server-Sent Events: an alert event written to Kafka reaches a connected client, filters apply."""

from __future__ import annotations

import json
import queue
import threading

import httpx

from .conftest import alert_event


def _collect(url: str, out: queue.Queue, stop: threading.Event) -> None:
    with httpx.stream("GET", url, timeout=httpx.Timeout(60, read=60)) as response:
        out.put(("status", response.status_code, response.headers.get("content-type")))
        event: dict[str, str] = {}
        for line in response.iter_lines():
            if stop.is_set():
                return
            if line == "":
                if "data" in event:
                    out.put(("event", event))
                event = {}
            elif line.startswith(":"):
                out.put(("comment", line))
            else:
                key, _, value = line.partition(": ")
                event[key] = value


def test_stream_delivers_new_alerts_matching_filters(live_server) -> None:
    out: queue.Queue = queue.Queue()
    stop = threading.Event()
    url = f"{live_server.url}/v1/alerts/stream?station_id=st-bad&severity=critical"
    threading.Thread(target=_collect, args=(url, out, stop), daemon=True).start()
    assert out.get(timeout=20) == ("status", 200, "text/event-stream; charset=utf-8")
    assert out.get(timeout=20)[0] == "comment"  # ": connected" — the stream is open
    other = alert_event(station_id="st-good")
    wanted = alert_event(station_id="st-bad", message="the one")
    # The reader may still be assigning partitions: publish until the wanted event arrives.
    received = None
    for _ in range(20):
        live_server.publish(other)
        live_server.publish(wanted)
        try:
            while True:
                kind, payload = out.get(timeout=3)[:2]
                if kind == "event":
                    received = payload
                    break
        except queue.Empty:
            continue
        break
    stop.set()
    assert received is not None, "no SSE event arrived"
    assert received["event"] == "alert"
    doc = json.loads(received["data"])
    assert doc["station_id"] == "st-bad" and doc["message"] == "the one"
    assert received["id"] == doc["event_id"]
