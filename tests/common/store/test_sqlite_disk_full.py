"""SQLite on a full disk: a write fails with StoreFull (a StoreError) and a message that says so, readiness (ping)
fails while the filesystem is below its free-space floor, and the same store writes again once space returns.
The free bytes of the store's filesystem are a Prometheus gauge.

The full disk is real: a 4 MiB tmpfs mounted for the test (root only; elsewhere the test is skipped and R13,
tests/reliability/test_r13_disk_full.py, covers the same ground end to end with the same requirement). The chart's
PrometheusRule alerts on the gauges this store exports."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from citysense_common.store import EnrichedReading, SQLiteStore, StoreError
from citysense_common.store.base import StoreFull
from citysense_common.testing.disk import NeedsRoot, fill, small_tmpfs
from prometheus_client import REGISTRY

T0 = datetime(2024, 1, 1, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    try:
        with small_tmpfs(tmp_path / "small", "4m") as mount:
            yield mount
    except NeedsRoot as exc:
        pytest.skip(str(exc))


def batch(first: int, n: int) -> list[EnrichedReading]:
    return [EnrichedReading("st-1", T0 + timedelta(seconds=i), i, {"pm2_5": float(i), "pm10": float(i) + 3},
                            zscores={"pm2_5": 0.5}, ingested_at=T0) for i in range(first, first + n)]


def test_a_full_disk_fails_writes_clearly_then_recovers(small_fs: Path) -> None:
    store = SQLiteStore(small_fs / "citysense.db", min_free_bytes=256 * 1024)
    store.migrate()
    store.write_readings(batch(0, 100))
    store.ping()
    filler = fill(small_fs)
    with pytest.raises(StoreFull, match=r"disk is full.*citysense\.db.*bytes free") as failed:
        store.write_readings(batch(100, 2000))
    assert isinstance(failed.value, StoreError)
    with pytest.raises(StoreFull, match=r"bytes free"):
        store.ping()  # readiness: not ready while the filesystem is below the floor
    # Reads go on.
    assert len(store.read_readings("st-1", T0, T0 + timedelta(days=1), limit=10_000).items) == 100
    filler.unlink()
    store.ping()
    store.write_readings(batch(100, 2000))  # the same connection writes again
    assert len(store.read_readings("st-1", T0, T0 + timedelta(days=1), limit=10_000).items) == 2100
    store.close()


def test_free_bytes_of_the_store_filesystem_are_a_gauge(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "gauge.db")
    store.migrate()
    labels = {"path": str(tmp_path / "gauge.db")}
    free = REGISTRY.get_sample_value("citysense_store_filesystem_free_bytes", labels)
    size = REGISTRY.get_sample_value("citysense_store_filesystem_size_bytes", labels)
    usage = shutil.disk_usage(tmp_path)
    assert free is not None and abs(free - usage.free) < 64 * 1024 * 1024
    assert size == usage.total
    store.close()
    assert REGISTRY.get_sample_value("citysense_store_filesystem_free_bytes", labels) is None  # closed: gone


def test_the_chart_alerts_on_the_store_gauges() -> None:
    chart = REPO / "charts" / "citysense"
    rendered = subprocess.run(
        [str(REPO / ".venv" / "bin" / "helm"), "template", "citysense", str(chart), "--namespace", "citysense",
         "-f", str(chart / "ci" / "production-values.yaml"), "--show-only", "templates/monitoring.yaml"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    rule = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    low, full = alerts["CitysenseStoreDiskLow"], alerts["CitysenseStoreDiskFull"]
    assert "citysense_store_filesystem_free_bytes / citysense_store_filesystem_size_bytes) < 0.1" in low["expr"]
    assert "citysense_store_filesystem_free_bytes) < 268435456" in full["expr"]
    for alert in (low, full):  # Cassandra in the cluster: the kubelet's stats of its data volumes
        assert 'kubelet_volume_stats_available_bytes{namespace="citysense", persistentvolumeclaim=~"server-data-.*"}' \
            in alert["expr"]
    assert (low["labels"]["severity"], full["labels"]["severity"]) == ("warning", "critical")
