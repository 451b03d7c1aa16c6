"""P2, P3, P6: alert latency through the API and the webhook, and the stack's memory, at 5,000 readings/s.

The whole local stack runs (broker, scorer, alert API, notifier, simulator at --stations x --rate-hz readings/s as
background load). The simulator starts once the scorer runs micro-batches (started with the stack, it would build a
minute of backlog during the scorer's JVM start, and latency would measure draining that, not the steady state);
after --settle seconds of load, once the scorer's micro-batch cycle has stopped falling (JIT warm-up, see
:func:`warmed_up`) and once its lag is below 2 s of input or has stopped falling (see :func:`settled`), --probes
probe stations (ids ``probe-NNN``, placed far outside the simulated city so one bbox query finds them all) start
one after another, --spacing seconds apart; each sends PM2.5 = 500 µg/m³ (all other
registry metrics normal) at 1 Hz until its alert is both readable and delivered, or --probe-timeout passes. The rule
``pm25-acute-1m`` (1-minute mean, ``for: 5s``) opens an alert whose ``event_time`` is the ``ts`` of the reading that
completed the condition. Latency is measured from the moment that very reading was handed to the producer (the bench
records the produce time of every probe reading by (station, ts)) to:
- P2: the alert first appearing in ``GET /v1/alerts?state=all&bbox=...`` (polled every --poll-ms ms);
- P3: the signed webhook arriving at a local receiver subscribed to the probe stations (signature verified with
  the subscription's secret by the shared receiver, citysense_common.testing.webhook_receiver; unverifiable
  deliveries are counted and excluded).
A probe whose alert does not arrive within --probe-timeout counts as that timeout (censored: the true latency is
larger) and fails the target. P6 = the largest sum of PSS (proportional set size: a page shared by forked processes
counted once) over every process of the stack (launcher, broker, scorer driver + JVM + Python workers, API, notifier,
simulator), sampled every 2 s during the probes; the VmRSS sum is reported beside it.

    python bench/p2_p3_latency.py [--stations 5000] [--rate-hz 1] [--probes 30] [--spacing 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from citysense_common.testing.webhook_receiver import Received, WebhookReceiver
from confluent_kafka import Consumer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline as pl  # noqa: E402
from harness import Figure, progress, write_result  # noqa: E402

RULE = "pm25-acute-1m"
PROBE_LAT, PROBE_LON = -33.87, 151.21  # far from the simulated city (default bbox around Berlin)
PROBE_BBOX = "150.0,-35.0,152.0,-33.0"
GiB = 1024 ** 3


@dataclass
class LatencyRun:
    p2_ms: list[float] = field(default_factory=list)
    p3_ms: list[float] = field(default_factory=list)
    topic_ms: list[float] = field(default_factory=list)  # reading -> its alert event readable on citysense.alerts
    unmatched: int = 0  # alerts whose event_time matched no recorded probe reading
    missing_api: list[str] = field(default_factory=list)
    missing_hook: list[str] = field(default_factory=list)
    rejected_hooks: int = 0
    rss_samples: list[dict] = field(default_factory=list)
    pss_samples: list[dict] = field(default_factory=list)
    lag_samples: list[tuple[float, float]] = field(default_factory=list)
    probes: int = 0
    readings_sent: int = 0
    timeout_ms: float = 0.0

    def censored(self, values: list[float]) -> list[float]:
        """Probes that never got their alert count as the probe timeout (a lower bound on their latency)."""
        return values + [self.timeout_ms] * (self.probes - len(values))

    def summary(self) -> dict:
        p2, p3 = self.censored(self.p2_ms), self.censored(self.p3_ms)
        return {
            "probes": self.probes, "p2_count": len(self.p2_ms), "p3_count": len(self.p3_ms),
            "censored_at_ms": self.timeout_ms,
            "p2_p50_ms": pl.percentile(p2, 50), "p2_p99_ms": pl.percentile(p2, 99), "p2_max_ms": max(p2, default=0),
            "p3_p50_ms": pl.percentile(p3, 50), "p3_p99_ms": pl.percentile(p3, 99), "p3_max_ms": max(p3, default=0),
            "alert_topic_p50_ms": pl.percentile(self.topic_ms, 50),
            "alert_topic_p99_ms": pl.percentile(self.topic_ms, 99),
            "unmatched_event_times": self.unmatched, "missing_api": self.missing_api,
            "missing_webhook": self.missing_hook, "rejected_webhooks": self.rejected_hooks,
            "rss_max_bytes": max((s["total"] for s in self.rss_samples), default=0),
            "rss_by_component_at_max": max(self.rss_samples, key=lambda s: s["total"], default={}),
            "pss_max_bytes": max((s["total"] for s in self.pss_samples), default=0),
            "pss_by_component_at_max": max(self.pss_samples, key=lambda s: s["total"], default={}),
            "lag_max": max((x for _, x in self.lag_samples), default=0),
            "lag_curve": [(round(t, 1), int(x)) for t, x in self.lag_samples][:: max(1, len(self.lag_samples) // 30)],
            "probe_readings_sent": self.readings_sent,
            "p2_each_ms": sorted(round(x) for x in self.p2_ms), "p3_each_ms": sorted(round(x) for x in self.p3_ms),
            "alert_topic_each_ms": sorted(round(x) for x in self.topic_ms),
        }


def lag(run: pl.StackRun, extra_produced: float = 0) -> float | None:
    sim, sc = pl.scrape(run.simulator_metrics_port), pl.scrape(run.scorer_metrics_port)
    if not sc:
        return None
    return (pl.metric(sim, "citysense_simulator_readings_produced_total") + extra_produced
            - pl.metric(sc, "citysense_scorer_rows_total"))


STEADY_WINDOW_S = 20.0


def settled(samples: list[tuple[float, float]], rate: float) -> str | None:
    """Whether the probes can start, from (seconds, lag) samples: "caught up" once the lag is below 2 s of input;
    "steady" once it has stopped falling - the smallest lag of the last 20 s is not 1 s of input below the
    smallest of the 20 s before; "falling behind" when it is 1 s of input above it. At thousands of stations the
    lag right after a commit is a whole cycle of input, so "caught up" may never come; without "steady" the
    probes started from whatever backlog the start-up left, and P2 moved by seconds between runs of the same
    code."""
    if samples and samples[-1][1] < max(2 * rate, 1000):
        return "caught up"
    if not samples or samples[-1][0] - samples[0][0] < 2 * STEADY_WINDOW_S:
        return None
    end = samples[-1][0]
    last = [x for t, x in samples if t > end - STEADY_WINDOW_S]
    before = [x for t, x in samples if end - 2 * STEADY_WINDOW_S < t <= end - STEADY_WINDOW_S]
    if not last or not before:
        return None
    if min(last) - min(before) >= rate:
        return "falling behind"  # the scorer does not keep up: waiting longer only measures a longer backlog
    return "steady" if min(before) - min(last) < rate else None


WARM_WINDOW_S = 30.0


def warmed_up(cycles: list[float], tolerance: float = 0.1) -> bool:
    """Whether the scorer's micro-batch cycle has stopped falling, from its mean cycle in consecutive windows
    (:data:`WARM_WINDOW_S` each, oldest first): the newest window is no more than ``tolerance`` shorter than the one
    before. A fresh scorer's cycle falls for minutes - the JVM compiles its hot code (C2 took ~4 CPU-s per 30 s at
    two minutes in) and every station's state is created - at 5,000 stations from ~1.25 s to ~0.85 s (this
    machine, 2026-12-05); probes started in that time measured the warm-up, not the city's steady state."""
    if len(cycles) < 2 or any(c <= 0 for c in cycles[-2:]):
        return False
    return cycles[-1] >= (1 - tolerance) * cycles[-2]


def wait_warm(run: pl.StackRun, timeout: float) -> list[float]:
    """Until :func:`warmed_up` or ``timeout`` passes; returns the mean cycle of each window (progress per window)."""
    key = "citysense_scorer_batch_duration_seconds_count"
    cycles: list[float] = []
    t0 = time.monotonic()
    before = pl.metric(pl.scrape(run.scorer_metrics_port), key)
    while time.monotonic() - t0 < timeout:
        time.sleep(WARM_WINDOW_S)
        now = pl.metric(pl.scrape(run.scorer_metrics_port), key)
        cycles.append(WARM_WINDOW_S / (now - before) if now > before else 0.0)
        before = now
        progress(f"  warm-up: mean cycle {cycles[-1]:.2f} s over the last {WARM_WINDOW_S:.0f} s")
        if warmed_up(cycles):
            break
    return cycles


def wait_caught_up(run: pl.StackRun, rate: float, timeout: float) -> tuple[float, str]:
    """Until :func:`settled` says so or ``timeout`` passes; returns the last lag seen and which it was."""
    t0 = time.monotonic()
    samples: list[tuple[float, float]] = []
    while (t := time.monotonic() - t0) < timeout:
        current = lag(run)
        if current is not None:
            samples.append((t, current))
            if state := settled(samples, rate):
                return current, state
        time.sleep(1)
    return (samples[-1][1] if samples else float("inf")), "timed out"


def measure(run: pl.StackRun, probes: int, spacing: float, poll_ms: float, probe_timeout: float) -> LatencyRun:
    """Probe stations against a running full stack; see the module docstring."""
    out = LatencyRun(probes=probes, timeout_ms=probe_timeout * 1000)
    stations = [f"probe-{i:03d}" for i in range(probes)]
    receiver = WebhookReceiver(keep_alive=True)  # persistent connections, as a real subscriber would offer
    token = run.token
    created = pl.http_json("POST", f"{run.api}/v1/subscriptions", {"url": receiver.url,
                           "filters": {"station_ids": stations}}, token=token)
    receiver.secret = created["secret"]
    producer = pl.ProbeProducer(run.bootstrap, location=(PROBE_LAT, PROBE_LON))
    seen_api: dict[str, tuple[float, str]] = {}  # station -> (time first readable, updated_at = event_time)
    stop = threading.Event()

    def poll_api() -> None:
        url = f"{run.api}/v1/alerts?state=all&limit=1000&bbox={PROBE_BBOX}"
        while not stop.is_set():
            started = time.monotonic()
            try:
                req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})  # noqa: S310
                with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - loopback
                    page = json.loads(r.read())
                now = time.time()
                for item in page.get("items", []):
                    if item["rule_id"] == RULE and item["station_id"] not in seen_api:
                        seen_api[item["station_id"]] = (now, item["updated_at"])
            except OSError:
                pass
            stop.wait(max(0.0, poll_ms / 1000 - (time.monotonic() - started)))

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.wait(2.0):
            out.rss_samples.append(run.rss())
            out.pss_samples.append(run.rss(pl.pss_bytes))
            current = lag(run, out.readings_sent)
            if current is not None:
                out.lag_samples.append((time.monotonic() - t0, current))

    on_topic: dict[str, tuple[float, str]] = {}  # station -> (time its open event was read, event_time)

    def read_alerts() -> None:
        consumer = Consumer({"bootstrap.servers": run.bootstrap, "group.id": f"bench-{time.monotonic_ns()}",
                             "auto.offset.reset": "latest", "fetch.wait.max.ms": 10, "enable.auto.commit": False})
        consumer.subscribe([run.alerts_topic])
        try:
            while not stop.is_set():
                msg = consumer.poll(0.1)
                if msg is None or msg.error():
                    continue
                event = json.loads(msg.value())
                if event.get("rule_id") == RULE and event.get("state") == "open":
                    on_topic.setdefault(event["station_id"], (time.time(), event["event_time"]))
        finally:
            consumer.close()

    threads = [threading.Thread(target=poll_api, daemon=True), threading.Thread(target=sample, daemon=True),
               threading.Thread(target=read_alerts, daemon=True)]
    for t in threads:
        t.start()
    hooked: set[str] = set()
    started_at: dict[str, float] = {}
    t0 = time.monotonic()
    deadline = t0 + probes * spacing + probe_timeout + 5
    next_tick = t0
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            for i, station in enumerate(stations):
                if station not in started_at and now - t0 >= i * spacing:
                    started_at[station] = now
            for d in receiver.received():
                data = (d.payload or {}).get("data", {}) if d.verified else {}
                if data.get("rule_id") == RULE and data.get("state") == "open":
                    hooked.add(data.get("station_id"))
            active = [s for s, at in started_at.items()
                      if not (s in seen_api and s in hooked) and now - at < probe_timeout]
            if len(started_at) == probes and not active:
                break
            if now >= next_tick:
                for station in active:
                    producer.send(station, 500.0)
                    out.readings_sent += 1
                next_tick += 1.0
            time.sleep(0.01)
        producer.flush(10)
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        receiver.close()
    sent_at = {}
    for (station, ts_ms), at in producer.produced.items():
        sent_at[(station, ts_ms)] = at
    for station in stations:
        if station not in seen_api:
            out.missing_api.append(station)
            continue
        first, updated = seen_api[station]
        produced = sent_at.get((station, pl.ts_ms_of(updated)))
        if produced is None:
            out.unmatched += 1
        else:
            out.p2_ms.append((first - produced) * 1000)
    for station, (seen, event_time) in on_topic.items():
        produced = sent_at.get((station, pl.ts_ms_of(event_time)))
        if produced is not None:
            out.topic_ms.append((seen - produced) * 1000)
    first_hook: dict[str, Received] = {}
    for d in receiver.received():
        data = (d.payload or {}).get("data", {}) if d.verified else {}
        if data.get("rule_id") == RULE and data.get("state") == "open":
            first_hook.setdefault(data["station_id"], d)
    out.rejected_hooks = receiver.rejected
    for station in stations:
        d = first_hook.get(station)
        if d is None:
            out.missing_hook.append(station)
            continue
        produced = sent_at.get((station, pl.ts_ms_of(d.payload["data"]["event_time"])))
        if produced is None:
            out.unmatched += 1
        else:
            out.p3_ms.append((d.at - produced) * 1000)
    return out


SINK_PHASES = ("handover", "wal", "prepare", "engine", "alerts", "readings", "stations")


def cycle_breakdown(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float] | None:
    """Where the scorer's micro-batch cycle went between two scrapes of its metrics: the mean cycle, Spark's part
    (read, decode, station health; measured as the cycle minus the handover wait, since the sink of batch N runs
    while Spark computes N+1) and each sink phase per batch, in seconds. None without a finished batch."""
    key = "citysense_scorer_batch_duration_seconds_count"
    batches = after.get(key, 0.0) - before.get(key, 0.0)
    if batches < 1 or seconds <= 0:
        return None

    def per_batch(phase: str) -> float:
        name = f'citysense_scorer_sink_phase_seconds_sum{{phase="{phase}"}}'
        return round((after.get(name, 0.0) - before.get(name, 0.0)) / batches, 3)

    out = {"batches": batches, "cycle_s": round(seconds / batches, 3)}
    out.update({f"{phase}_s": per_batch(phase) for phase in SINK_PHASES})
    out["spark_s"] = round(out["cycle_s"] - out["handover_s"] - out["wal_s"], 3)
    out["to_alert_s"] = round(out["prepare_s"] + out["engine_s"] + out["alerts_s"], 3)
    return out


def latency_figures(prefix: str, s: dict, *, with_targets: bool = True) -> list[Figure]:
    def fig(fid: str, name: str, value: float, unit: str, target: str, meets: bool | None) -> Figure:
        return Figure(fid, f"{prefix}{name}", value, unit, target if with_targets else "—",
                      meets if with_targets else None)

    p2_ok = s["p2_count"] == s["probes"]
    p3_ok = s["p3_count"] == s["probes"]

    def censored(count: int) -> str:
        # A value at the timeout is where measuring stopped, not a latency: say so next to the number.
        missing = s["probes"] - count
        return "" if not missing else (f" (at least: {missing} of {s['probes']} probes timed out at "
                                       f"{s['censored_at_ms'] / 1000:g} s)")

    return [
        fig("P2", "reading -> alert readable via API, p50" + censored(s["p2_count"]), s["p2_p50_ms"], "ms", "—", None),
        fig("P2", "reading -> alert readable via API, p99" + censored(s["p2_count"]), s["p2_p99_ms"], "ms",
            "<= 250 ms", p2_ok and s["p2_p99_ms"] <= 250),
        fig("P3", "reading -> signed webhook received, p50" + censored(s["p3_count"]), s["p3_p50_ms"], "ms", "—",
            None),
        fig("P3", "reading -> signed webhook received, p99" + censored(s["p3_count"]), s["p3_p99_ms"], "ms",
            "<= 250 ms", p3_ok and s["p3_p99_ms"] <= 250),
    ]


def run_once(args: argparse.Namespace, realtime: bool) -> tuple[dict, float, str]:
    """One stack, loaded, warmed up and probed; the summary, the lag before the probes and how it settled."""
    rate = args.stations * args.rate_hz
    env = {"CITYSENSE_SCORER_REALTIME": "true" if realtime else "false"}
    with pl.StackRun(stations=args.stations, rate_hz=args.rate_hz, load_after_scorer=True, extra_env=env) as run:
        progress(f"P2/P3/P6 [{'real-time path' if realtime else 'micro-batch only'}] stack up: {args.stations} "
                 f"stations x {args.rate_hz:g} Hz = {rate:,.0f} readings/s; waiting for the scorer, then the load")
        run.start_load()
        time.sleep(args.settle)  # the load's first ticks and the micro-batch size they lead to
        warm = wait_warm(run, args.warm_up_timeout)
        behind, how = wait_caught_up(run, rate, args.catch_up_timeout)
        progress(f"  scorer lag {behind:,.0f} readings ({how}); {args.probes} probes, one every {args.spacing:g}s")
        before, started = pl.scrape(run.scorer_metrics_port), time.monotonic()
        result = measure(run, args.probes, args.spacing, args.poll_ms, args.probe_timeout)
        cycle = cycle_breakdown(before, pl.scrape(run.scorer_metrics_port), time.monotonic() - started)
    s = result.summary()
    s["scorer_cycle"] = cycle
    s["warm_up_cycles_s"] = [round(c, 3) for c in warm]
    s["realtime"] = realtime
    if cycle:
        progress(f"  scorer cycle {cycle['cycle_s']:.2f} s: Spark {cycle['spark_s']:.2f} s, then the sink to the "
                 f"alert {cycle['to_alert_s']:.2f} s (engine {cycle['engine_s']:.2f}), readings "
                 f"{cycle['readings_s']:.2f} s, stations {cycle['stations_s']:.2f} s ({cycle['batches']:.0f} batches)")
    progress(f"  P2 p50 {s['p2_p50_ms']:.0f} ms p99 {s['p2_p99_ms']:.0f} ms ({s['p2_count']}/{args.probes}); "
             f"P3 p50 {s['p3_p50_ms']:.0f} ms p99 {s['p3_p99_ms']:.0f} ms ({s['p3_count']}/{args.probes}); "
             f"alert event on Kafka p50 {s['alert_topic_p50_ms']:.0f} ms p99 {s['alert_topic_p99_ms']:.0f} ms; "
             f"memory max {s['pss_max_bytes'] / GiB:.2f} GiB (RSS sum {s['rss_max_bytes'] / GiB:.2f}); "
             f"lag max {s['lag_max']:,.0f}")
    return s, behind, how


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=5000)
    parser.add_argument("--rate-hz", type=float, default=1.0)
    parser.add_argument("--probes", type=int, default=30)
    parser.add_argument("--spacing", type=float, default=2.0)
    parser.add_argument("--poll-ms", type=float, default=20)
    parser.add_argument("--probe-timeout", type=float, default=60)
    parser.add_argument("--catch-up-timeout", type=float, default=180)
    parser.add_argument("--settle", type=float, default=30, help="seconds of load before the probes start")
    parser.add_argument("--warm-up-timeout", type=float, default=300,
                        help="longest wait for the scorer's cycle to stop falling (see warmed_up); 0 = no wait")
    parser.add_argument("--no-ab", action="store_true",
                        help="only the real-time path (default: first the micro-batch-only path, then it)")
    parser.add_argument("--output", default="p2_p3_latency", help="result name under bench/results")
    args = parser.parse_args()
    rate = args.stations * args.rate_hz
    load0 = pl.load_avg()
    figures: list[Figure] = []
    notes = []
    runs = [True] if args.no_ab else [False, True]
    for realtime in runs:
        s, behind, how = run_once(args, realtime)
        prefix = "" if realtime else "[A: micro-batch only] "
        run_figures = latency_figures(prefix, s, with_targets=realtime)
        for f in run_figures:
            f.detail = s
        figures += run_figures
        notes.append(f"{'real-time path' if realtime else 'micro-batch only'}: scorer lag before probes "
                     f"{behind:,.0f} ({how})")
        if realtime:
            # P6 is the memory the stack occupies: the PSS sum; the VmRSS sum counts pages shared by forked
            # processes once per process and is kept beside it.
            figures.append(Figure("P6", "resident memory of all stack processes at the P2 load (max, PSS sum)",
                                  s["pss_max_bytes"] / GiB, "GiB", "<= 2 GiB", s["pss_max_bytes"] <= 2 * GiB,
                                  {"by_component_bytes": s["pss_by_component_at_max"]}))
            figures.append(Figure("P6", "RSS of all stack processes at the P2 load (max, VmRSS sum, shared pages "
                                  "repeated)", s["rss_max_bytes"] / GiB, "GiB", "—", None,
                                  {"by_component_bytes": s["rss_by_component_at_max"]}))
    write_result(args.output, figures, notes=(
        f"background {args.stations} stations x {args.rate_hz:g} Hz = {rate:,.0f} readings/s from the stack's "
        f"simulator; {args.probes} probe stations {args.spacing:g} s apart at PM2.5 = 500, 1 Hz; API polled every "
        f"{args.poll_ms:g} ms; " + "; ".join(notes) + " (below 2 s of input, or no longer falling over 20 s). "
        "A/B: the same stack with CITYSENSE_SCORER_REALTIME=false (every rule in the micro-batch engine), then true "
        "(short-window rules on the Real-Time Mode path), one after the other. Missing probes count as failures. "
        f"Machine load (1 min) at start {load0:.1f}, at end {pl.load_avg():.1f}." + pl.run_note()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
