-- Citizens' area subscriptions (double opt-in email warnings for a circle on the map). The notifier lists the
-- confirmed ones for every public alert event; the API looks an address up on every subscribe request.
CREATE TABLE IF NOT EXISTS area_subscriptions (
    id           TEXT PRIMARY KEY,
    email        TEXT    NOT NULL,
    lat          REAL    NOT NULL,
    lon          REAL    NOT NULL,
    radius_km    REAL    NOT NULL,
    min_severity TEXT    NOT NULL,
    language     TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    confirmed_at INTEGER
);
CREATE INDEX IF NOT EXISTS area_subscriptions_by_email ON area_subscriptions (email, created_at, id);
CREATE INDEX IF NOT EXISTS area_subscriptions_by_status ON area_subscriptions (status, created_at, id);
