-- Device connectivity: twins, commands and telemetry.

-- One row per device once either document was set; versions start at 0.
CREATE TABLE twins (
    device_id         TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    tenant_id         TEXT NOT NULL,
    desired           TEXT NOT NULL DEFAULT '{}',
    desired_version   INTEGER NOT NULL DEFAULT 0,
    desired_at        INTEGER NOT NULL DEFAULT 0,
    reported          TEXT NOT NULL DEFAULT '{}',
    reported_version  INTEGER NOT NULL DEFAULT 0,
    reported_at       INTEGER NOT NULL DEFAULT 0
);

-- due_at is when the sweeper acts: expires_at while queued, sent_at +
-- timeout once sent, 0 when final.
CREATE TABLE commands (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    device_id     TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    params        TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    expires_at    INTEGER NOT NULL,
    timeout_us    INTEGER NOT NULL,
    sent_at       INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    completed_at  INTEGER NOT NULL DEFAULT 0,
    result        TEXT NOT NULL DEFAULT '',
    error         TEXT NOT NULL DEFAULT '',
    due_at        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX commands_device ON commands (tenant_id, device_id, id);
CREATE INDEX commands_due ON commands (status, due_at);

-- Telemetry: one series per (tenant, device, metric), holding its last
-- value; points are keyed by (series, time), so that the table stores two
-- integers per key instead of three strings (bench/broker: more than twice
-- the insert rate on SQLite). No foreign keys, so that ingestion stays a
-- plain insert; retention removes old points. Kind: n (num), b (num 0/1),
-- s and d (txt); last_kind '' = no value (pruned).
CREATE TABLE telemetry_series (
    id         INTEGER PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    metric     TEXT NOT NULL,
    last_ts    INTEGER NOT NULL DEFAULT 0,
    last_kind  TEXT NOT NULL DEFAULT '',
    last_num   REAL NOT NULL DEFAULT 0,
    last_txt   TEXT NOT NULL DEFAULT '',
    UNIQUE (tenant_id, device_id, metric)
);

CREATE TABLE telemetry (
    series_id  INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    num        REAL NOT NULL DEFAULT 0,
    txt        TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;

CREATE TABLE telemetry_retention (
    tenant_id     TEXT PRIMARY KEY REFERENCES tenants(id),
    retention_us  INTEGER NOT NULL
);
