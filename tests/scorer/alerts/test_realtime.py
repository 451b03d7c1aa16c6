"""The real-time alert path (alerts/realtime): Spark's Kafka source, the JVM checks and the JVM lifecycle, run on a
real broker. The query runs here with an ``availableNow`` trigger (the same plan as Real-Time Mode, in
micro-batches) so each test reads everything it wrote; the Real-Time Mode run itself is tested end to end in
tests/scorer/job/test_stream_realtime_e2e.py."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from citysense_common.contract import AlertEvent
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_common.registry import load_registry
from citysense_common.testing.topics import read_topic
from citysense_scorer.alerts.engine import NAMESPACE, threshold_wording
from citysense_scorer.alerts.realtime.query import RealtimeSettings, start
from citysense_scorer.alerts.realtime.spec import build_spec, plan
from citysense_scorer.alerts.rules import load_rules
from citysense_scorer.settings import ScorerSettings
from confluent_kafka import Producer

REGISTRY = load_registry()
RULES = load_rules(ScorerSettings().rules_path, REGISTRY)
FAST = plan(RULES, enabled=True, max_window="10m").realtime
ACUTE = next(r for r in FAST.rules if r.id == "pm25-acute-1m")
T0 = int(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp() * 1000)


def reading(station: str, ts_ms: int, pm25: float, seq: int = 0) -> bytes:
    ts = datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return json.dumps({"schema_version": 1, "station_id": station, "ts": ts, "seq": seq,
                       "location": {"lat": 52.52, "lon": 13.40}, "metrics": {"pm2_5": pm25, "humidity": 50}}).encode()


def series(station: str, start_ms: int, values: list[float]) -> list[tuple[str, bytes]]:
    """One reading a second from ``start_ms``."""
    return [(station, reading(station, start_ms + i * 1000, v, i)) for i, v in enumerate(values)]


class Runner:
    def __init__(self, spark, broker, tmp: Path) -> None:  # noqa: ANN001
        self.spark, self.bootstrap, self.tmp = spark, broker.bootstrap, tmp
        tag = uuid.uuid4().hex[:8]
        self.readings, self.alerts = f"rt.{tag}.readings", f"rt.{tag}.alerts"
        ensure_topics(self.bootstrap, [TopicSpec(self.readings, 2, {"message.timestamp.type": "LogAppendTime"}),
                                       TopicSpec(self.alerts, 2)])

    def send(self, records: list[tuple[str, bytes]]) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        for key, value in records:
            producer.produce(self.readings, key=key, value=value)
        assert producer.flush(30) == 0

    def run(self, checkpoint: str = "ck") -> None:
        query = start(self.spark, FAST, REGISTRY, RealtimeSettings(
            bootstrap=self.bootstrap, readings_topic=self.readings, alerts_topic=self.alerts, kafka_options={},
            checkpoint_dir=self.tmp / checkpoint, checkpoint_interval="5 seconds", watermark_ms=300_000,
            future_tolerance_s=300, trigger="availableNow"))
        query.awaitTermination(180)
        assert query.exception() is None, query.exception()

    def events(self) -> list[dict]:
        return read_topic(self.bootstrap, self.alerts)


@pytest.fixture
def runner(spark, kafka_broker, tmp_path) -> Runner:  # noqa: ANN001
    return Runner(spark, kafka_broker, tmp_path)


def of(events: list[dict], station: str) -> list[dict]:
    return [e for e in events if e["station_id"] == station]


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def uuid5(text: str) -> str:
    return str(uuid.uuid5(NAMESPACE, text))


def test_lifecycle_opens_after_for_updates_and_resolves(runner) -> None:  # noqa: ANN001
    clean, hot, calm = [10.0] * 10, [300.0] * 20, [5.0] * 120
    runner.send(series("s-episode", T0, clean + hot + calm)
                + series("s-spike", T0, clean + [300.0] * 2 + calm)  # mean above 55.4 for 1 s: shorter than `for`
                + series("s-hysteresis", T0, clean + hot + [45.0] * 120))  # between clear (35.4) and 55.4
    runner.run()
    events = runner.events()
    for event in events:
        AlertEvent.model_validate(event)  # the contract's own model accepts every event

    episode = of(events, "s-episode")
    assert [e["state"] for e in episode][0] == "open" and episode[-1]["state"] == "resolved"
    assert {e["state"] for e in episode[1:-1]} <= {"update"}
    assert len({e["alert_id"] for e in episode}) == 1  # one open alert per station and rule
    opened = ms(episode[0]["opened_at"])
    # `for` 5 s, counted from the first reading whose 1-minute mean crossed the lowest band
    crossed = T0 + 10_000 + min(i for i in range(20) if (300 * (i + 1) + 100) / (11 + i) > 55.4) * 1000
    assert opened - crossed == ACUTE.for_ms
    assert episode[0]["event_time"] == episode[0]["opened_at"]  # event time = measurement time
    assert all(ms(e["event_time"]) % 1000 == 0 and T0 <= ms(e["event_time"]) < T0 + 150_000 for e in episode)
    assert episode[0]["alert_id"] == uuid5(f"s-episode|{ACUTE.id}|{opened}")
    assert [e["event_id"] for e in episode] == [
        uuid5(f"{e['alert_id']}|{n}|{e['state']}") for n, e in enumerate(episode, start=1)]
    resolved = episode[-1]
    assert resolved["value"] <= ACUTE.clear and resolved["resolved_at"] == resolved["event_time"]
    subject, unit, standard = threshold_wording(ACUTE, REGISTRY)
    first = episode[0]
    band = next(b for b in reversed(ACUTE.bands) if first["value"] > b.threshold)
    assert first["severity"] == band.severity.value and first["threshold"] == band.threshold
    assert first["message"] == (f"{subject} {first['value']:.1f} {unit} exceeds {band.threshold:g} {unit} "
                                f"({standard}: {band.label})")
    assert resolved["message"] == f"{subject} {resolved['value']:.1f} {unit} is back to {ACUTE.clear:g} {unit} " \
                                  "or below; alert resolved"
    assert first["location"] == {"lat": 52.52, "lon": 13.40} and first["window"] == "1m"

    assert of(events, "s-spike") == []
    held = of(events, "s-hysteresis")
    assert held[0]["state"] == "open" and "resolved" not in {e["state"] for e in held}
    assert held[-1]["severity"] == ACUTE.bands[0].severity.value  # hysteresis keeps the lowest band


def test_cooldown_holds_a_second_episode_back(runner) -> None:  # noqa: ANN001
    episode = [300.0] * 20 + [5.0] * 70  # opens, resolves once the 1-minute mean is back under 35.4
    soon = [300.0] * 20 + [5.0] * 70  # inside the 5-minute cooldown: no new alert
    later = [5.0] * 200 + [300.0] * 20 + [5.0] * 70  # after it: a new alert
    runner.send(series("s-cool", T0, episode + soon + later))
    runner.run()
    events = of(runner.events(), "s-cool")
    opens = [e for e in events if e["state"] == "open"]
    assert len(opens) == 2 and opens[0]["alert_id"] != opens[1]["alert_id"]
    first_resolve = next(e for e in events if e["state"] == "resolved")
    assert ms(opens[1]["opened_at"]) >= ms(first_resolve["event_time"]) + ACUTE.cooldown_ms


def test_a_station_ahead_cannot_make_another_late_but_its_own_late_readings_are_ignored(runner) -> None:  # noqa: ANN001
    now = int(datetime.now(UTC).timestamp() * 1000) // 1000 * 1000
    ahead = series("s-ahead", now + 240_000, [10.0] * 5)  # 4 min ahead: inside the future tolerance
    victim = series("s-victim", now - 60_000, [300.0] * 20)
    late = series("s-late", now - 60_000, [10.0] * 5) + series("s-late", now - 60_000 - 400_000, [300.0] * 20)
    runner.send(ahead + victim + late)
    runner.run()
    events = runner.events()
    assert [e["state"] for e in of(events, "s-victim")] == ["open"]
    assert of(events, "s-late") == []  # behind its own station's watermark (5 min)


def test_a_restart_from_the_checkpoint_gives_the_same_events_as_one_run(spark, kafka_broker, tmp_path) -> None:  # noqa: ANN001
    data = series("s-a", T0, [10.0] * 10 + [300.0] * 20 + [5.0] * 90) \
        + series("s-b", T0, [300.0] * 15 + [80.0] * 30 + [5.0] * 75)
    whole = Runner(spark, kafka_broker, tmp_path / "whole")
    whole.send(data)
    whole.run()
    split = Runner(spark, kafka_broker, tmp_path / "split")
    half = len(data) // 2
    split.send(data[:half])
    split.run()
    split.send(data[half:])
    split.run()  # same checkpoint: state and offsets carry over
    key = lambda e: (e["station_id"], e["event_time"], e["event_id"])  # noqa: E731
    expected = sorted(whole.events(), key=key)
    assert len(expected) >= 4
    assert sorted(split.events(), key=key) == expected


def test_the_spec_comes_from_the_rule_file() -> None:
    spec = build_spec(FAST, REGISTRY, watermark_ms=300_000)
    assert [r["id"] for r in spec["rules"]] == [r.id for r in FAST.rules]
    assert ACUTE in FAST.rules
    # long windows and derived metrics stay in the micro-batch engine; together the two paths keep every rule
    split = plan(RULES, enabled=True, max_window="10m")
    assert {r.id for r in split.micro_batch.rules} | {r.id for r in split.realtime.rules} == {r.id for r in RULES.rules}
    assert not {r.id for r in split.micro_batch.rules} & {r.id for r in split.realtime.rules}
    assert all(r.window_ms > 600_000 or r.metric == "heat_index" for r in split.micro_batch.rules)
    assert plan(RULES, enabled=False, max_window="10m").realtime.rules == ()
    changed = RULES.model_copy(update={"rules": tuple(r.model_copy(update={"clear": 30.0}) if r.id == ACUTE.id
                                                        else r for r in FAST.rules)})
    assert build_spec(changed, REGISTRY, watermark_ms=300_000)["fingerprint"] != spec["fingerprint"]
