-- Readings move from a WITHOUT ROWID table clustered by (station_id, ts DESC, seq) to an ordinary rowid table
-- (rows appended in arrival order) with the same key as a UNIQUE index, which still makes INSERT OR IGNORE the
-- idempotent write and still serves read_readings' scan (station, newest first) from the index.
--
-- Why: a reading row is ~500 bytes (values, z-scores), and a clustered table keeps whole rows in its b-tree, so a
-- micro-batch rewrote one full leaf page per station and split pages every few batches. Measured with 5,000
-- stations x 3 readings per batch after 40 batches: 1.24 s per batch clustered, 0.22 s with rowid + index, and a
-- 35 % smaller file. The API's page of <= 100 readings now reads its rows through the index (one lookup each).
CREATE TABLE readings_v2 (
    station_id  TEXT    NOT NULL,
    ts          INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    metric_names  TEXT NOT NULL,
    metric_values BLOB NOT NULL,
    lat         REAL,
    lon         REAL,
    outliers    TEXT,
    zscores     TEXT,
    faults      TEXT,
    late        INTEGER NOT NULL DEFAULT 0,
    ingested_at INTEGER
);

INSERT INTO readings_v2 (station_id, ts, seq, metric_names, metric_values, lat, lon, outliers, zscores, faults,
                         late, ingested_at)
SELECT station_id, ts, seq, metric_names, metric_values, lat, lon, outliers, zscores, faults, late, ingested_at
FROM readings;

DROP TABLE readings;

ALTER TABLE readings_v2 RENAME TO readings;

CREATE UNIQUE INDEX readings_by_station_time ON readings (station_id, ts DESC, seq ASC);
