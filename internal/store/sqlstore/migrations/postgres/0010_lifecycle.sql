-- Connection observations for the audit checks (refused revoked
-- certificates, client IDs that are not the device ID, session takeovers,
-- token logins), counted per device and hour; neighbours that agents and
-- gateways see on their networks (unmanaged-device discovery).
CREATE TABLE connection_observations (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    device_id   TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL,
    obs_key     TEXT COLLATE "C" NOT NULL,
    hour        BIGINT NOT NULL,
    count       BIGINT NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    detail      TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, kind, device_id, obs_key, hour)
);
CREATE INDEX connection_observations_seen ON connection_observations (tenant_id, kind, last_seen);
CREATE INDEX connection_observations_device ON connection_observations (tenant_id, device_id);

CREATE TABLE neighbours (
    tenant_id    TEXT COLLATE "C" NOT NULL,
    mac          TEXT COLLATE "C" NOT NULL,
    site         TEXT COLLATE "C" NOT NULL DEFAULT '',
    ip           TEXT COLLATE "C" NOT NULL DEFAULT '',
    hostname     TEXT COLLATE "C" NOT NULL DEFAULT '',
    sources      TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    services     TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    vendor       TEXT COLLATE "C" NOT NULL DEFAULT '',
    reported_by  TEXT COLLATE "C" NOT NULL,
    reports      BIGINT NOT NULL DEFAULT 1,
    first_seen   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL,
    status       TEXT COLLATE "C" NOT NULL DEFAULT 'unmanaged',
    note         TEXT COLLATE "C" NOT NULL DEFAULT '',
    device_id    TEXT COLLATE "C" NOT NULL DEFAULT '',
    changed_by   TEXT COLLATE "C" NOT NULL DEFAULT '',
    changed_at   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, mac)
);
CREATE INDEX neighbours_status ON neighbours (tenant_id, status, mac);
CREATE INDEX neighbours_seen ON neighbours (tenant_id, last_seen);
