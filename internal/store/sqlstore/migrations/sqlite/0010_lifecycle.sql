-- Connection observations for the audit checks (refused revoked
-- certificates, client IDs that are not the device ID, session takeovers,
-- token logins), counted per device and hour; neighbours that agents and
-- gateways see on their networks (unmanaged-device discovery).
CREATE TABLE connection_observations (
    tenant_id   TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    obs_key     TEXT NOT NULL,
    hour        INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    detail      TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, kind, device_id, obs_key, hour)
);
CREATE INDEX connection_observations_seen ON connection_observations (tenant_id, kind, last_seen);
CREATE INDEX connection_observations_device ON connection_observations (tenant_id, device_id);

CREATE TABLE neighbours (
    tenant_id    TEXT NOT NULL,
    mac          TEXT NOT NULL,
    site         TEXT NOT NULL DEFAULT '',
    ip           TEXT NOT NULL DEFAULT '',
    hostname     TEXT NOT NULL DEFAULT '',
    sources      TEXT NOT NULL DEFAULT '[]',
    services     TEXT NOT NULL DEFAULT '[]',
    vendor       TEXT NOT NULL DEFAULT '',
    reported_by  TEXT NOT NULL,
    reports      INTEGER NOT NULL DEFAULT 1,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    status       TEXT NOT NULL DEFAULT 'unmanaged',
    note         TEXT NOT NULL DEFAULT '',
    device_id    TEXT NOT NULL DEFAULT '',
    changed_by   TEXT NOT NULL DEFAULT '',
    changed_at   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, mac)
);
CREATE INDEX neighbours_status ON neighbours (tenant_id, status, mac);
CREATE INDEX neighbours_seen ON neighbours (tenant_id, last_seen);
