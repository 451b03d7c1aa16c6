"""Measure alert event written to Kafka -> signed webhook received, through a real notifier process.

Starts a local broker (unless --bootstrap is given), a SQLite store in a temp dir, a loopback receiver that
verifies every signature, and ``citysense-notifier``; then publishes alert events at a steady rate and reports
p50 / p99 / max latency. Usage: python bench/notifier_latency.py [--events 300] [--rate 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from citysense_common.contract import AlertEvent, AlertKind, AlertState, Location, Severity
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_common.settings import load_settings
from citysense_common.store import Subscription
from citysense_common.store.factory import open_store
from citysense_common.store.settings import StoreSettings
from citysense_common.testing.webhook_receiver import WebhookReceiver
from citysense_common.webhooks import generate_secret
from confluent_kafka import Producer


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting a local broker")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    sent: dict[str, float] = {}
    secret = generate_secret()
    receiver = WebhookReceiver(secret)  # verifies each signature on arrival
    url = receiver.url

    def received() -> dict[str, float]:
        """Event id -> time.time() its first signed delivery arrived."""
        first: dict[str, float] = {}
        for r in receiver.received():
            if r.verified:
                first.setdefault(r.payload["id"], r.at)
        return first

    with contextlib.ExitStack() as stack:
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            from citysense_localstack.servers.kafka import running_kafka

            broker = stack.enter_context(running_kafka())
            bootstrap = broker.bootstrap
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        tag = uuid.uuid4().hex[:8]
        topic = f"bench.{tag}.alerts"
        ensure_topics(bootstrap, [TopicSpec(topic, 3)])
        store = open_store(load_settings(StoreSettings, data_dir=data_dir))
        stack.callback(store.close)
        now = datetime.now(UTC)
        store.create_subscription(Subscription(id=f"sub_{uuid.uuid4().hex[:24]}", url=url, secret=secret,
                                               created_at=now, updated_at=now))
        env = {**os.environ, "CITYSENSE_KAFKA_BOOTSTRAP": bootstrap, "CITYSENSE_DATA_DIR": str(data_dir),
               "CITYSENSE_ALERTS_TOPIC": topic, "CITYSENSE_WEBHOOK_TESTS_TOPIC": f"bench.{tag}.tests",
               "CITYSENSE_NOTIFIER_GROUP": f"bench-{tag}", "CITYSENSE_NOTIFIER_METRICS_PORT": "0",
               "CITYSENSE_LOG_LEVEL": "WARNING"}
        proc = subprocess.Popen([sys.executable, "-m", "citysense_notifier.cli"], env=env)
        stack.callback(lambda: (proc.terminate(), proc.wait(15)))
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})

        def event(i: int) -> AlertEvent:
            t = datetime.now(UTC)
            return AlertEvent(event_id=f"bench-{tag}-{i}", alert_id=f"a-{i}", state=AlertState.OPEN,
                              kind=AlertKind.THRESHOLD, severity=Severity.CRITICAL, rule_id="bench",
                              station_id=f"st-{i % 50}", location=Location(lat=48.8, lon=2.3), metric="pm2_5",
                              value=400.0, threshold=250.0, opened_at=t, event_time=t, message="bench")

        # Warm-up: the first consumer-group join is slow on some brokers; measure only once it delivers.
        print("waiting for the notifier to join its group ...", flush=True)
        warm = event(-1)
        producer.produce(topic, key=warm.station_id.encode(), value=warm.to_json())
        producer.flush(10)
        deadline = time.time() + 60
        while warm.event_id not in received():
            if time.time() > deadline:
                print("notifier did not deliver the warm-up event within 60 s", file=sys.stderr)
                return 1
            time.sleep(0.05)
        print(f"publishing {args.events} events at {args.rate}/s", flush=True)
        interval = 1.0 / args.rate
        start = time.time()
        for i in range(args.events):
            ev = event(i)
            target = start + i * interval
            time.sleep(max(0.0, target - time.time()))
            sent[ev.event_id] = time.time()
            producer.produce(topic, key=ev.station_id.encode(), value=ev.to_json())
            producer.poll(0)
        producer.flush(10)
        deadline = time.time() + 30
        while len(sent.keys() & received().keys()) < len(sent) and time.time() < deadline:
            time.sleep(0.05)
        receiver.close()

    arrived = received()
    bad_signatures = receiver.rejected
    latencies = [(arrived[k] - t) * 1000 for k, t in sent.items() if k in arrived]
    result = {
        "figure": "notifier: alert event on topic -> signed webhook received (ms)",
        "events": len(sent), "delivered": len(latencies), "bad_signatures": bad_signatures,
        "rate_per_s": args.rate,
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
        "machine": {"cores": os.cpu_count()},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if len(latencies) == len(sent) and not bad_signatures else 1


if __name__ == "__main__":
    raise SystemExit(main())
