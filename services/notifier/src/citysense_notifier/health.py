"""The notifier's HTTP endpoint: ``/metrics`` (Prometheus) and ``/healthz`` (liveness: is the main loop moving?).

The main loop notes its progress on every pass (at least every few hundred milliseconds while Kafka answers or
times out). ``/healthz`` answers 503 once no pass has completed for ``timeout_s``: the process is alive but stuck (a
call into Kafka or the store that never returns, a blocked event loop), which only a restart fixes. A broker outage
does not count: polling an unreachable broker still returns on time, and a restart would not bring the broker back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class Progress:
    """When the main loop last completed a pass (monotonic seconds)."""

    def __init__(self) -> None:
        self.at = time.monotonic()

    def beat(self) -> None:
        self.at = time.monotonic()

    def stalled_for(self) -> float:
        return time.monotonic() - self.at


def serve(host: str, port: int, registry: CollectorRegistry, stalled_for: Callable[[], float],
          timeout_s: float) -> ThreadingHTTPServer:
    """Start the endpoint on a daemon thread; returns the server (``server_address`` has the port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                stalled = stalled_for()
                ok = stalled < timeout_s
                self._answer(200 if ok else 503, "text/plain; charset=utf-8",
                             b"ok\n" if ok else f"main loop stalled for {stalled:.0f} s\n".encode())
            elif path in ("/metrics", "/"):
                self._answer(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            else:
                self._answer(404, "text/plain; charset=utf-8", b"not found\n")

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
