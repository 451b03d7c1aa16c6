-- citysense embedded store, schema 1. Times are INTEGER milliseconds since the epoch (UTC), the precision
-- Cassandra keeps, so both backends agree on identities. JSON columns are compact JSON text.

-- Raw enriched readings (002_readings_rowid.sql turns this into a rowid table with the key as a unique index).
-- WITHOUT ROWID + this key order: rows are stored clustered per station newest first,
-- exactly the read_readings scan, and the key itself makes INSERT OR IGNORE the idempotent write.
CREATE TABLE IF NOT EXISTS readings (
    station_id  TEXT    NOT NULL,
    ts          INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    -- Metrics as parallel columns: names comma-joined (registry names never contain a comma) and values as
    -- little-endian float64s. Measured ~4x cheaper to encode than JSON (float repr dominates) at 10 metrics.
    metric_names  TEXT NOT NULL,
    metric_values BLOB NOT NULL,
    lat         REAL,
    lon         REAL,
    outliers    TEXT,               -- JSON list, NULL when empty (the common case, cheaper to write)
    zscores     TEXT,               -- JSON object, NULL when empty
    faults      TEXT,               -- JSON list, NULL when empty
    late        INTEGER NOT NULL DEFAULT 0,
    ingested_at INTEGER,
    PRIMARY KEY (station_id, ts DESC, seq ASC)
) WITHOUT ROWID;

-- Latest state per station. The reading columns follow the newest last_seen; the status columns follow the
-- newest status_ts (status_changed_at, else last_seen, of whichever write set them).
CREATE TABLE IF NOT EXISTS stations (
    station_id        TEXT PRIMARY KEY,
    last_seen         INTEGER NOT NULL,
    last_seq          INTEGER NOT NULL,
    latest            TEXT    NOT NULL,
    lat               REAL,
    lon               REAL,
    status            TEXT    NOT NULL,
    status_changed_at INTEGER,
    status_ts         INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS alerts (
    alert_id      TEXT PRIMARY KEY,
    station_id    TEXT    NOT NULL,
    rule_id       TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    severity      TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    opened_at     INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    message       TEXT    NOT NULL,
    last_event_id TEXT    NOT NULL,
    metric        TEXT,
    value         REAL,
    threshold     REAL,
    window        TEXT,
    lat           REAL,
    lon           REAL,
    resolved_at   INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (opened_at DESC, alert_id ASC);
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts (state, opened_at DESC, alert_id ASC);
CREATE INDEX IF NOT EXISTS alerts_by_station ON alerts (station_id, opened_at DESC, alert_id ASC);

CREATE TABLE IF NOT EXISTS subscriptions (
    id          TEXT PRIMARY KEY,
    url         TEXT    NOT NULL,
    secret      TEXT    NOT NULL,
    description TEXT    NOT NULL,
    filters     TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS deliveries (
    subscription_id  TEXT    NOT NULL,
    event_id         TEXT    NOT NULL,
    webhook_id       TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    event_type       TEXT    NOT NULL,
    last_status_code INTEGER,
    last_error       TEXT,
    next_attempt_at  INTEGER,
    PRIMARY KEY (subscription_id, event_id)
);
CREATE INDEX IF NOT EXISTS deliveries_by_time ON deliveries (subscription_id, created_at DESC, event_id ASC);

CREATE TABLE IF NOT EXISTS daily_aggregates (
    station_id TEXT    NOT NULL,
    metric     TEXT    NOT NULL,
    day        TEXT    NOT NULL,
    mean       REAL    NOT NULL,
    max        REAL    NOT NULL,
    count      INTEGER NOT NULL,
    hours      INTEGER NOT NULL,
    complete   INTEGER NOT NULL,
    PRIMARY KEY (station_id, metric, day)
) WITHOUT ROWID;
