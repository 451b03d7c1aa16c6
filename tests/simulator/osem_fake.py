"""A local stand-in for api.opensensemap.org: real HTTP on 127.0.0.1 serving fixture files.

This is the only fake in the real-data tests (the HTTP boundary); Kafka is the real broker fixture.
Routes answer with queued responses first (e.g. a 429 then a 200), then with their standing response.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "opensensemap"


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"[]"
    headers: dict[str, str] = field(default_factory=dict)


def fixture(name: str) -> Answer:
    return Answer(200, (FIXTURES / name).read_bytes(), {"Content-Type": "application/json; charset=utf-8"})


class FakeOpenSenseMap:
    def __init__(self) -> None:
        self.standing: dict[str, Answer] = {}
        self.queued: dict[str, list[Answer]] = {}
        self.requests: list[str] = []
        self.boxes_by_phenomenon = {"PM2.5": "boxes_pm25.json", "Temperatur": "boxes_temperatur.json"}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                path = parts.path
                with fake._lock:
                    fake.requests.append(self.path)
                    queue = fake.queued.get(path) or []
                    answer = queue.pop(0) if queue else fake.standing.get(path)
                    if answer is None and path == "/boxes":
                        # Like the real API, /boxes answers depend on the phenomenon asked for.
                        phenomenon = parse_qs(parts.query).get("phenomenon", [""])[0]
                        name = fake.boxes_by_phenomenon.get(phenomenon)
                        answer = fixture(name) if name else Answer(200, b"[]")
                if answer is None:
                    answer = Answer(404, json.dumps({"code": "NotFound", "message": "Box not found"}).encode())
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeOpenSenseMap:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def serve_round(self, round_no: int) -> None:
        """Each box's /sensors answers the fixture of that round (round 1 when a box has no newer one)."""
        for path in FIXTURES.glob("sensors_*_round1.json"):
            box_id = path.name.split("_")[1]
            name = f"sensors_{box_id}_round{round_no}.json"
            chosen = name if (FIXTURES / name).exists() else path.name
            self.standing[f"/boxes/{box_id}/sensors"] = fixture(chosen)
